//! Formats that name prompt, chosen and rejected directly: native, TRL, votes, UltraFeedback.

use crate::formats::Parts;
use crate::labels;
use crate::pair::{Message, Prompt, Role};
use crate::problem::ProblemKind;
use crate::record::{Fields, TextOrChat};

/// Native: three strings and an optional `p_chosen`.
pub(super) fn native(fields: &mut Fields<'_>) -> Parts {
    let prompt = fields.string("prompt").map(|p| Prompt::Text(p.to_owned()));
    let chosen = fields.string("chosen").map(str::to_owned);
    let rejected = fields.string("rejected").map(str::to_owned);
    let label = fields.label_or_binary("p_chosen");
    Parts {
        prompt,
        chosen,
        rejected,
        label,
    }
}

/// TRL preference format, explicit or implicit prompt, with an optional `p_chosen`.
pub(super) fn trl(fields: &mut Fields<'_>) -> Parts {
    let mut parts = conversation(fields);
    parts.label = fields.label_or_binary("p_chosen");
    parts
}

/// Votes: TRL-like texts, p̂ = votes_chosen / (votes_chosen + votes_rejected).
pub(super) fn votes(fields: &mut Fields<'_>) -> Parts {
    let mut parts = conversation(fields);
    let votes = (
        fields.number("votes_chosen"),
        fields.number("votes_rejected"),
    );
    if let (Some(chosen), Some(rejected)) = votes {
        match labels::from_votes(chosen, rejected) {
            Ok(label) => parts.label = label,
            Err(kind) => fields.report("votes_chosen", kind),
        }
    }
    parts
}

/// UltraFeedback binarized: p̂ = σ((score_chosen − score_rejected)/τ).
pub(super) fn ultrafeedback(fields: &mut Fields<'_>, temperature: f64) -> Parts {
    let mut parts = conversation(fields);
    let scores = (
        fields.number("score_chosen"),
        fields.number("score_rejected"),
    );
    if let (Some(chosen), Some(rejected)) = scores {
        match labels::from_scores(chosen, rejected, temperature) {
            Ok(label) => parts.label = label,
            Err(kind) => fields.report("score_chosen", kind),
        }
    }
    parts
}

/// Reads `prompt` (optional), `chosen` and `rejected` as text or message lists and splits
/// conversations into prompt and responses.
fn conversation(fields: &mut Fields<'_>) -> Parts {
    let prompt = match fields.optional("prompt") {
        Some(value) => fields.parse_text_or_chat("prompt", value).map(|p| match p {
            TextOrChat::Text(text) => Prompt::Text(text),
            TextOrChat::Chat(messages) => Prompt::Chat(messages),
        }),
        None => None,
    };
    let explicit_prompt = fields.optional("prompt").is_some();
    let chosen = fields.text_or_chat("chosen");
    let rejected = fields.text_or_chat("rejected");
    let (Some(chosen), Some(rejected)) = (chosen, rejected) else {
        return Parts {
            prompt,
            ..Parts::default()
        };
    };
    match (chosen, rejected) {
        (TextOrChat::Text(chosen), TextOrChat::Text(rejected)) if !explicit_prompt => {
            split_texts(fields, &chosen, &rejected)
        }
        (TextOrChat::Text(chosen), TextOrChat::Text(rejected)) => Parts {
            prompt,
            chosen: Some(chosen),
            rejected: Some(rejected),
            label: labels::BINARY,
        },
        (TextOrChat::Chat(chosen), TextOrChat::Chat(rejected)) => {
            split_conversations(fields, prompt, explicit_prompt, &chosen, &rejected)
        }
        (TextOrChat::Text(_), TextOrChat::Chat(_)) => {
            fields.report(
                "rejected",
                ProblemKind::WrongType {
                    expected: "a string, as chosen",
                    found: "an array",
                },
            );
            Parts {
                prompt,
                ..Parts::default()
            }
        }
        (TextOrChat::Chat(_), TextOrChat::Text(_)) => {
            fields.report(
                "rejected",
                ProblemKind::WrongType {
                    expected: "a message list, as chosen",
                    found: "a string",
                },
            );
            Parts {
                prompt,
                ..Parts::default()
            }
        }
    }
}

/// Chosen and rejected as plain texts with an implicit prompt, split as TRL's `extract_prompt`
/// does: the prompt is the characters they share up to the first that differs, less a space just
/// before it (which stays at the start of both responses). When one text is a prefix of the other,
/// TRL's loop ends on the shorter text's last character, and so does this. Texts that share no
/// first character have no prompt to extract and are reported.
fn split_texts(fields: &mut Fields<'_>, chosen: &str, rejected: &str) -> Parts {
    let chosen_chars: Vec<(usize, char)> = chosen.char_indices().collect();
    let shorter = chosen_chars.len().min(rejected.chars().count());
    let differs = chosen_chars
        .iter()
        .zip(rejected.chars())
        .position(|(&(_, a), b)| a != b);
    let cut = match differs {
        Some(0) => None,
        Some(index) if chosen_chars[index - 1].1 == ' ' => Some(index - 1),
        Some(index) => Some(index),
        None => shorter.checked_sub(1).filter(|&index| index > 0),
    };
    let Some(cut) = cut.filter(|&cut| cut > 0) else {
        fields.report(
            "prompt",
            ProblemKind::Invalid(
                "missing, and chosen and rejected share no leading text to take it from".into(),
            ),
        );
        return Parts::default();
    };
    let at = chosen_chars[cut].0;
    let rejected_at = rejected
        .char_indices()
        .nth(cut)
        .map_or(rejected.len(), |(at, _)| at);
    Parts {
        prompt: Some(Prompt::Text(chosen[..at].to_owned())),
        chosen: Some(chosen[at..].to_owned()),
        rejected: Some(rejected[rejected_at..].to_owned()),
        label: labels::BINARY,
    }
}

/// Chosen and rejected as message lists: the messages they share are the prompt (unless an explicit
/// prompt is given, which wins), and each must end in exactly one assistant message, the response.
fn split_conversations(
    fields: &mut Fields<'_>,
    explicit: Option<Prompt>,
    explicit_present: bool,
    chosen: &[Message],
    rejected: &[Message],
) -> Parts {
    if chosen == rejected {
        fields.report("rejected", ProblemKind::IdenticalResponses);
        return Parts {
            prompt: explicit,
            ..Parts::default()
        };
    }
    let shared = chosen
        .iter()
        .zip(rejected)
        .take_while(|(a, b)| a == b)
        .count();
    let prompt = if explicit_present {
        explicit
    } else if shared == 0 {
        fields.report("prompt", ProblemKind::MissingField);
        None
    } else {
        Some(Prompt::Chat(chosen[..shared].to_vec()))
    };
    Parts {
        prompt,
        chosen: response(fields, "chosen", shared, &chosen[shared..]),
        rejected: response(fields, "rejected", shared, &rejected[shared..]),
        label: labels::BINARY,
    }
}

/// The single assistant message after the shared prefix (`offset` messages long).
fn response(
    fields: &mut Fields<'_>,
    field: &str,
    offset: usize,
    turns: &[Message],
) -> Option<String> {
    match turns {
        [] => Some(String::new()),
        [turn] if turn.role == Role::Assistant => Some(turn.content.clone()),
        [turn] => {
            fields.report(
                format!("{field}[{offset}].role"),
                ProblemKind::Invalid(format!("expected assistant, found {}", turn.role.as_str())),
            );
            None
        }
        _ => {
            fields.report(
                field,
                ProblemKind::Invalid(format!(
                    "expected one assistant message after the {offset} shared prompt message(s), found {}",
                    turns.len()
                )),
            );
            None
        }
    }
}
