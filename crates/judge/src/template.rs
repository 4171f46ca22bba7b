//! Judge prompt templates: the text a judge model reads before answering `(1)` or `(2)`.
//!
//! A template is plain text with the placeholders `{context}`, `{output_1}` and `{output_2}`
//! (each required) and, optionally, `{assistant}`: with a chat model, the text before
//! `{assistant}` is the user's turn, rendered by the model's chat template, and the text after it
//! opens the assistant's turn (the answer lead, e.g. `The more preferable output is: `); without a
//! chat template, or without the marker, the whole text is one plain prompt. One final newline of
//! the file is dropped, so the answer follows the lead directly. Substitution is one pass: text
//! inserted for a placeholder is never scanned for placeholders again.

use std::path::{Path, PathBuf};

use crate::error::{JudgeError, Result, io_error};

/// The built-in template (the paper's §4.1 wording, adapted to helpfulness and harmlessness).
pub const DEFAULT_TEMPLATE: &str = include_str!("../templates/default.txt");

/// What a placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Context,
    First,
    Second,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Slot(Slot),
}

/// A parsed judge template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeTemplate {
    source: PathBuf,
    user: Vec<Piece>,
    assistant: Option<Vec<Piece>>,
}

/// A rendered judge prompt: the user's turn and, when the template has `{assistant}`, the lead
/// of the assistant's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// Text before `{assistant}` (all of it without the marker).
    pub user: String,
    /// Text after `{assistant}`.
    pub assistant_lead: Option<String>,
}

impl RenderedPrompt {
    /// The prompt as one plain text (user part followed by the lead).
    pub fn plain(&self) -> String {
        let mut text = self.user.clone();
        if let Some(lead) = &self.assistant_lead {
            text.push_str(lead);
        }
        text
    }
}

impl JudgeTemplate {
    /// The built-in template.
    pub fn builtin() -> Self {
        Self::parse(DEFAULT_TEMPLATE, Path::new("<built-in template>"))
            .expect("the built-in template is valid")
    }

    /// Reads a template file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        Self::parse(&text, path)
    }

    /// Parses template text; `source` names it in errors.
    ///
    /// ```
    /// use softalign_judge::JudgeTemplate;
    /// let t = JudgeTemplate::parse("{context}|{output_1}|{output_2}{assistant}Best: ", "t".as_ref()).unwrap();
    /// let r = t.render("x", "{output_2}", "b");
    /// assert_eq!(r.user, "x|{output_2}|b");
    /// assert_eq!(r.assistant_lead.as_deref(), Some("Best: "));
    /// assert!(JudgeTemplate::parse("{context} {output_1}", "t".as_ref()).is_err());
    /// ```
    pub fn parse(text: &str, source: &Path) -> Result<Self> {
        let problem = |problem: String| JudgeError::Template {
            path: source.to_path_buf(),
            problem,
        };
        let text = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        let mut user = Vec::new();
        let mut assistant: Option<Vec<Piece>> = None;
        let mut literal = String::new();
        let mut counts = [0usize; 3];
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let name_len = after
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(after.len());
            let closes = after[name_len..].starts_with('}') && name_len > 0;
            if !closes {
                literal.push('{');
                rest = after;
                continue;
            }
            let name = &after[..name_len];
            rest = &after[name_len + 1..];
            let target = assistant.as_mut().unwrap_or(&mut user);
            let slot = match name {
                "context" => Some(Slot::Context),
                "output_1" => Some(Slot::First),
                "output_2" => Some(Slot::Second),
                "assistant" => None,
                other => {
                    return Err(problem(format!(
                        "unknown placeholder {{{other}}} (expected {{context}}, {{output_1}}, {{output_2}}, {{assistant}})"
                    )));
                }
            };
            if !literal.is_empty() {
                target.push(Piece::Text(std::mem::take(&mut literal)));
            }
            match slot {
                Some(slot) => {
                    counts[slot as usize] += 1;
                    target.push(Piece::Slot(slot));
                }
                None if assistant.is_some() => {
                    return Err(problem("{assistant} appears more than once".into()));
                }
                None => assistant = Some(Vec::new()),
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            assistant
                .as_mut()
                .unwrap_or(&mut user)
                .push(Piece::Text(literal));
        }
        for (count, name) in counts.iter().zip(["{context}", "{output_1}", "{output_2}"]) {
            if *count == 0 {
                return Err(problem(format!("missing placeholder {name}")));
            }
        }
        Ok(Self {
            source: source.to_path_buf(),
            user,
            assistant,
        })
    }

    /// Where the template came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Fills the placeholders.
    pub fn render(&self, context: &str, first: &str, second: &str) -> RenderedPrompt {
        let fill = |pieces: &[Piece]| {
            let mut text = String::new();
            for piece in pieces {
                text.push_str(match piece {
                    Piece::Text(t) => t,
                    Piece::Slot(Slot::Context) => context,
                    Piece::Slot(Slot::First) => first,
                    Piece::Slot(Slot::Second) => second,
                });
            }
            text
        };
        RenderedPrompt {
            user: fill(&self.user),
            assistant_lead: self.assistant.as_deref().map(fill),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_template_ends_with_the_answer_lead() {
        let rendered = JudgeTemplate::builtin().render("C", "A", "B");
        assert!(rendered.user.contains("Output (1):\nA\n\nOutput (2):\nB\n"));
        assert_eq!(
            rendered.assistant_lead.as_deref(),
            Some("The more preferable output is: ")
        );
    }

    #[test]
    fn bad_templates_name_the_problem() {
        let err = |t: &str| {
            JudgeTemplate::parse(t, Path::new("j.txt"))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("{context}{output_1}"),
            "j.txt: template: missing placeholder {output_2}"
        );
        assert!(
            err("{context}{output_1}{output_2}{answer}").contains("unknown placeholder {answer}")
        );
        assert!(
            err("{context}{output_1}{output_2}{assistant}{assistant}").contains("more than once")
        );
        // Braces that are not placeholders stay literal.
        let t =
            JudgeTemplate::parse("{ {context} {output_1}{output_2} {}", Path::new("j")).unwrap();
        assert_eq!(t.render("c", "a", "b").plain(), "{ c ab {}");
    }
}
