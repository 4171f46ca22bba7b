//! A checkpoint's own Jinja chat template, rendered as `transformers` renders it.
//!
//! `transformers`' `apply_chat_template` compiles the template in a Jinja2 sandbox with
//! `trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension, a `tojson` filter that is
//! Python's `json.dumps` (no HTML escaping), and the globals `raise_exception(message)` and
//! `strftime_now(format)`; it renders with `messages`, `add_generation_prompt`, `tools` and
//! `documents` (both `None` here) and the tokenizer's special tokens (`bos_token`, `eos_token`).
//! [`ChatTemplate`] does the same with `minijinja` (the engine text-generation-inference and
//! mistral.rs use) and `minijinja-contrib`'s Python string and dict methods (`.strip()`,
//! `.startswith()`, `.split()`, `.items()`, …), so Llama 3, Gemma, Phi-3, Mistral, Qwen and
//! SmolLM templates give the strings `transformers` gives, byte for byte
//! (`crates/model/tests/chat_templates.rs` checks them against `transformers`' own output).
//!
//! ```
//! use std::path::Path;
//! use softalign_model::{ChatMessage, chat_template::{ChatTemplate, TemplateTokens}};
//!
//! let template = ChatTemplate::new(
//!     "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content.strip() }}\n{% endfor %}\
//!      {% if add_generation_prompt %}[assistant] {% endif %}",
//!     Path::new("tokenizer_config.json"),
//!     "chat_template",
//! );
//! let tokens = TemplateTokens { bos_token: Some("<s>".into()), eos_token: None };
//! let text = template.render(&[ChatMessage::new("user", " Hi ")], true, &tokens).unwrap();
//! assert_eq!(text, "<s>[user] Hi\n[assistant] ");
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State};

use crate::error::{ModelError, Result};
use crate::tokenizer::ChatMessage;

/// The name the template is registered under (it appears in no message).
const NAME: &str = "chat_template";

/// The special-token strings a template sees as `bos_token` and `eos_token`; an absent one is
/// undefined in the template, as in `transformers`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateTokens {
    /// The beginning-of-sequence token's text (`<s>`, `<|begin_of_text|>`, `<bos>`, …).
    pub bos_token: Option<String>,
    /// The end-of-sequence token's text.
    pub eos_token: Option<String>,
}

/// A compiled chat template and the file (and field) it came from, which errors name.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    origin: PathBuf,
    field: String,
    /// The compiled template, or the one-line reason it does not compile (reported when it is
    /// rendered, so that a model whose template this engine cannot read still loads for plain
    /// text).
    compiled: std::result::Result<Environment<'static>, String>,
}

impl ChatTemplate {
    /// Compiles `source`, the template text read from `field` of `origin`
    /// (`tokenizer_config.json`'s `chat_template`, a `chat_template.jinja` file, or a GGUF file's
    /// `tokenizer.chat_template`).
    pub fn new(source: impl Into<String>, origin: &Path, field: impl Into<String>) -> Self {
        let source = source.into();
        let compiled = compile(&source).map_err(|e| describe(&e));
        Self {
            source,
            origin: origin.to_path_buf(),
            field: field.into(),
            compiled,
        }
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The file the template was read from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// Renders a conversation as `transformers`' `apply_chat_template(messages,
    /// add_generation_prompt=…, tokenize=False)` does. A template that refuses the conversation
    /// (`raise_exception`, as Gemma's does for a system turn) gives its message as the error.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tokens: &TemplateTokens,
    ) -> Result<String> {
        let env = self
            .compiled
            .as_ref()
            .map_err(|problem| self.error(problem))?;
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| {
                Value::from_pairs([
                    ("role", Value::from(m.role.as_str())),
                    ("content", Value::from(m.content.as_str())),
                ])
            })
            .collect();
        let mut context = vec![
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
        ];
        for (name, token) in [
            ("bos_token", &tokens.bos_token),
            ("eos_token", &tokens.eos_token),
        ] {
            if let Some(token) = token {
                context.push((name, Value::from(token.as_str())));
            }
        }
        env.get_template(NAME)
            .and_then(|template| template.render(Value::from_pairs(context)))
            .map_err(|e| self.error(describe(&e)))
    }

    fn error(&self, problem: impl Into<String>) -> ModelError {
        ModelError::Config {
            path: self.origin.clone(),
            field: self.field.clone(),
            problem: problem.into(),
        }
    }
}

/// The environment `transformers` compiles templates in, holding `source`.
fn compile(source: &str) -> std::result::Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(python_formatter);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_template_owned(NAME, without_generation_tags(source))?;
    Ok(env)
}

/// Prints values as Jinja2 under Python does where minijinja differs: `True`, `False`, `None`.
fn python_formatter(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> std::result::Result<(), Error> {
    let word = match value.kind() {
        ValueKind::Bool if value.is_true() => "True",
        ValueKind::Bool => "False",
        ValueKind::None => "None",
        _ => return minijinja::escape_formatter(out, state, value),
    };
    out.write_str(word).map_err(Error::from)
}

/// One line for an engine error: the template's own message for `raise_exception`, else the
/// engine's description, with the template line.
fn describe(error: &Error) -> String {
    let raised = std::error::Error::source(error).is_some_and(|s| s.is::<Raised>());
    let text = match (raised, error.detail()) {
        (true, Some(detail)) => detail.to_string(),
        (false, Some(detail)) => format!("{}: {detail}", error.kind()),
        (_, None) => error.kind().to_string(),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let what = if raised {
        "raised by the template"
    } else {
        "template"
    };
    match error.line() {
        Some(line) => format!("{text} ({what}, line {line})"),
        None => format!("{text} ({what})"),
    }
}

/// Marks an error as the template's own `raise_exception`.
#[derive(Debug)]
struct Raised;

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the chat template")
    }
}

impl std::error::Error for Raised {}

/// `raise_exception(message)`: the template refuses the conversation.
fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message).with_source(Raised))
}

/// `{% generation %}…{% endgeneration %}` (transformers' assistant-mask extension) renders its
/// body unchanged; it becomes `{% if true %}…{% endif %}` with the same whitespace control.
fn without_generation_tags(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let tag = &rest[start..];
        let Some(end) = tag.find("%}") else {
            break;
        };
        let inner = &tag[2..end];
        let (open, body) = match inner.strip_prefix(['-', '+']) {
            Some(body) => (&inner[..1], body),
            None => ("", inner),
        };
        let (body, close) = match body.strip_suffix(['-', '+']) {
            Some(trimmed) => (trimmed, &body[trimmed.len()..]),
            None => (body, ""),
        };
        let replacement = match body.trim() {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(statement) => {
                let _ = write!(out, "{{%{open} {statement} {close}%}}");
            }
            None => out.push_str(&tag[..end + 2]),
        }
        rest = &tag[end + 2..];
    }
    out.push_str(rest);
    out
}

/// `tojson`, as transformers defines it: Python's `json.dumps(value, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)` with those keyword arguments honoured.
fn tojson(value: &Value, kwargs: Kwargs) -> std::result::Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let style = JsonStyle {
        indent,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        item_separator: if indent.is_some() { "," } else { ", " },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item, key) = match &separators {
        Some(pair) if pair.len() == 2 => (pair[0].as_str(), pair[1].as_str()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        None => (style.item_separator, ": "),
    };
    let style = JsonStyle {
        item_separator: item,
        ..style
    };
    let mut out = String::new();
    write_json(value, &style, key, 0, &mut out)?;
    Ok(out)
}

struct JsonStyle<'a> {
    indent: Option<usize>,
    sort_keys: bool,
    ensure_ascii: bool,
    item_separator: &'a str,
}

fn write_json(
    value: &Value,
    style: &JsonStyle<'_>,
    key_separator: &str,
    depth: usize,
    out: &mut String,
) -> std::result::Result<(), Error> {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = style.indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => match value.to_string().as_str() {
            "inf" => out.push_str("Infinity"),
            "-inf" => out.push_str("-Infinity"),
            number => out.push_str(number),
        },
        ValueKind::String => write_json_string(value.as_str().unwrap_or(""), style, out),
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_separator);
                }
                newline(out, depth + 1);
                let name = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                write_json_string(&name, style, out);
                out.push_str(key_separator);
                write_json(&value.get_item(key)?, style, key_separator, depth + 1, out)?;
            }
            newline(out, depth);
            out.push('}');
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(style.item_separator);
                }
                newline(out, depth + 1);
                write_json(item, style, key_separator, depth + 1, out)?;
            }
            newline(out, depth);
            out.push(']');
        }
        other => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: a {other} value is not JSON"),
            ));
        }
    }
    Ok(())
}

/// A JSON string literal as Python's `json.dumps` writes it.
fn write_json_string(text: &str, style: &JsonStyle<'_>, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (style.ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `strftime_now(format)`: the current time, formatted as Python's `strftime` does. The clock is
/// read in UTC (transformers reads the local clock: the same on a machine set to UTC).
fn strftime_now(format: String) -> std::result::Result<String, Error> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    strftime(&format, seconds).map_err(|problem| Error::new(ErrorKind::InvalidOperation, problem))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `seconds` since the Unix epoch (UTC) with the C `strftime` directives chat templates
/// use (`%d %b %Y`, `%Y-%m-%d`, …), including glibc's `%-d` (no padding).
pub(crate) fn strftime(format: &str, seconds: i64) -> std::result::Result<String, String> {
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 4).rem_euclid(7) as usize; // 1970-01-01 was a Thursday.
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut directive = chars.next();
        let unpadded = directive == Some('-');
        if unpadded {
            directive = chars.next();
        }
        let number = |out: &mut String, value: i64, width: usize| {
            if unpadded {
                let _ = write!(out, "{value}");
            } else {
                let _ = write!(out, "{value:0width$}");
            }
        };
        let month_name = MONTHS[month as usize - 1];
        let weekday_name = WEEKDAYS[weekday];
        match directive {
            Some('Y') => {
                let _ = write!(out, "{year}");
            }
            Some('y') => number(&mut out, year.rem_euclid(100), 2),
            Some('m') => number(&mut out, month, 2),
            Some('d') => number(&mut out, day, 2),
            Some('e') => {
                let _ = write!(out, "{day:>2}");
            }
            Some('j') => number(&mut out, day_of_year, 3),
            Some('H') => number(&mut out, hour, 2),
            Some('I') => number(&mut out, (hour + 11) % 12 + 1, 2),
            Some('M') => number(&mut out, minute, 2),
            Some('S') => number(&mut out, second, 2),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month_name),
            Some('b') | Some('h') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(weekday_name),
            Some('a') => out.push_str(&weekday_name[..3]),
            Some('%') => out.push('%'),
            Some(other) => return Err(format!("strftime_now: unsupported directive %{other}")),
            None => return Err("strftime_now: format ends with %".into()),
        }
    }
    Ok(out)
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a (year, month, day).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[ChatMessage]) -> Result<String> {
        ChatTemplate::new(source, Path::new("t.json"), "chat_template").render(
            messages,
            false,
            &TemplateTokens::default(),
        )
    }

    #[test]
    fn strftime_formats_a_known_instant() {
        // 2024-07-26 09:05:03 UTC, a Friday, day 208 of a leap year.
        let t = 1_721_984_703;
        assert_eq!(strftime("%d %b %Y", t).unwrap(), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %-d, %y %H:%M:%S %p %j %%", t).unwrap(),
            "Friday July 26, 24 09:05:03 AM 208 %"
        );
        assert_eq!(strftime("%Y-%m-%d %a", 0).unwrap(), "1970-01-01 Thu");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400).unwrap(), "2000-02-29");
        assert!(strftime("%Q", t).unwrap_err().contains("%Q"));
    }

    #[test]
    fn strftime_now_is_callable_from_a_template() {
        let text = render("{{ strftime_now('%Y') }}", &[]).unwrap();
        let year: i64 = text.parse().unwrap();
        assert!((2024..3000).contains(&year), "{text}");
    }

    #[test]
    fn raise_exception_is_a_one_line_error_naming_file_and_field() {
        let e = render(
            "{% if messages[0]['role'] == 'system' %}\n{{ raise_exception('System role\nnot supported') }}{% endif %}",
            &[ChatMessage::new("system", "x")],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "t.json: chat_template: System role not supported (raised by the template, line 2)"
        );
    }

    #[test]
    fn syntax_and_method_errors_are_reported_when_rendering() {
        let e = render("{% if %}", &[]).unwrap_err().to_string();
        assert!(e.starts_with("t.json: chat_template: syntax error"), "{e}");
        let e = render("{{ messages.nope() }}", &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.json: chat_template: unknown method"),
            "{e}"
        );
    }

    #[test]
    fn tojson_writes_python_json_dumps() {
        let template = "{{ {'b': 1, 'a': [1.5, none, true, 'x\"\\u00e9\\n']} | tojson }}|\
                        {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }}|\
                        {{ [1, {'k': []}] | tojson(indent=2) }}|{{ 'é' | tojson(ensure_ascii=true) }}";
        assert_eq!(
            render(template, &[]).unwrap(),
            "{\"b\": 1, \"a\": [1.5, null, true, \"x\\\"é\\n\"]}|{\"a\": 2, \"b\": 1}|\
             [\n  1,\n  {\n    \"k\": []\n  }\n]|\"\\u00e9\""
        );
    }

    #[test]
    fn generation_tags_render_their_body_with_their_whitespace_control() {
        let template = "{% for m in messages %}<{{ m.role }}>\n  {%- generation -%}\n  {{ m.content }}\n  {%- endgeneration %}\n{% endfor %}";
        assert_eq!(
            render(template, &[ChatMessage::new("assistant", "hi")]).unwrap(),
            "<assistant>hi"
        );
        assert_eq!(
            without_generation_tags("a{%- generation +%}b{%endgeneration%}{% if x %}"),
            "a{%- if true +%}b{% endif %}{% if x %}"
        );
    }

    #[test]
    fn python_string_and_dict_methods_work() {
        let template = "{% for m in messages %}{{ m.content.strip().split(',')[-1] }}\
                        {{ m.content.startswith(' a') }}{% for k, v in m.items() %}{{ k }}{% endfor %}{% endfor %}";
        assert_eq!(
            render(template, &[ChatMessage::new("user", " a,b ")]).unwrap(),
            "bTruerolecontent"
        );
        assert_eq!(
            render("{{ true }} {{ 1 > 2 }} {{ none }} {{ [1] }}", &[]).unwrap(),
            "True False None [1]"
        );
    }
}
