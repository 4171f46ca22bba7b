//! Python's `json` module writes `NaN`, `Infinity` and `-Infinity`, which JSON does not allow. So
//! that such a record is reported as a bad label (`p_chosen: label is not a finite number`) rather
//! than as malformed JSON, a record that fails to parse is retried with those bare tokens turned
//! into marker strings, which the field readers recognise.

/// Prefix of the marker string that stands for a non-finite number token.
const MARKER: &str = "\u{0}non-finite:";

/// The token (`NaN`, `Infinity`, `-Infinity`) a marker string stands for, if `text` is one.
pub(crate) fn token(text: &str) -> Option<&str> {
    text.strip_prefix(MARKER)
}

/// `text` with every bare `NaN`, `Infinity` and `-Infinity` outside strings replaced by a marker
/// string; `None` when there is none.
pub(crate) fn quote_tokens(text: &str) -> Option<String> {
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let mut out = String::with_capacity(text.len() + 32);
    let mut in_string = false;
    let mut escaped = false;
    let mut replaced = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(found) = TOKENS.iter().find(|t| starts_token(rest, t)) {
            out.push('"');
            out.push_str(&MARKER.replace('\u{0}', "\\u0000"));
            out.push_str(found);
            out.push('"');
            rest = &rest[found.len()..];
            replaced = true;
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    replaced.then_some(out)
}

/// Whether `rest` starts with the whole token `token` (not followed by an identifier character).
fn starts_token(rest: &str, token: &str) -> bool {
    rest.starts_with(token)
        && !rest[token.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_outside_strings_become_markers() {
        let text = r#"{"a": NaN, "b": [-Infinity, Infinity], "c": "NaN \" NaN"}"#;
        let quoted = quote_tokens(text).unwrap();
        let value: serde_json::Value = serde_json::from_str(&quoted).unwrap();
        assert_eq!(token(value["a"].as_str().unwrap()), Some("NaN"));
        assert_eq!(token(value["b"][0].as_str().unwrap()), Some("-Infinity"));
        assert_eq!(token(value["b"][1].as_str().unwrap()), Some("Infinity"));
        assert_eq!(value["c"], "NaN \" NaN");
        assert_eq!(quote_tokens(r#"{"a": "NaN"}"#), None);
    }
}
