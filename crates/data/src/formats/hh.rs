//! Anthropic HH-RLHF: `chosen` and `rejected` are whole dialogues
//! `"\n\nHuman: … \n\nAssistant: … \n\nHuman: … \n\nAssistant: <response>"`.
//!
//! The prompt is the dialogues' common prefix up to its last `"\n\nAssistant:"`; it becomes a chat of
//! user/assistant turns (text before the first turn, if any, a system message). What follows is the
//! response, trimmed; a response that still holds a `"\n\nHuman:"` turn means the dialogues differ
//! before their last assistant turn, and is reported.

use crate::formats::Parts;
use crate::pair::{Message, Prompt, Role};
use crate::problem::ProblemKind;
use crate::record::Fields;

const HUMAN: &str = "\n\nHuman:";
const ASSISTANT: &str = "\n\nAssistant:";

pub(super) fn convert(fields: &mut Fields<'_>) -> Parts {
    let chosen = fields.string("chosen").map(normalize);
    let rejected = fields.string("rejected").map(normalize);
    let label = fields.label_or_binary("p_chosen");
    let (Some(chosen), Some(rejected)) = (chosen, rejected) else {
        return Parts {
            label,
            ..Parts::default()
        };
    };
    let shared = common_prefix_len(&chosen, &rejected);
    let Some(cut) = chosen[..shared].rfind(ASSISTANT) else {
        fields.report(
            "chosen",
            ProblemKind::Invalid(
                "no \"\\n\\nAssistant:\" turn shared by chosen and rejected".into(),
            ),
        );
        return Parts {
            label,
            ..Parts::default()
        };
    };
    let turns = parse_turns(&chosen[..cut]);
    if !turns.iter().any(|turn| turn.role == Role::User) {
        fields.report(
            "chosen",
            ProblemKind::Invalid("no \"Human:\" turn before the response".into()),
        );
    }
    let start = cut + ASSISTANT.len();
    Parts {
        prompt: Some(Prompt::Chat(turns)),
        chosen: response(fields, "chosen", &chosen[start..]),
        rejected: response(fields, "rejected", &rejected[start..]),
        label,
    }
}

/// Whether `text` is an HH dialogue: it has an assistant turn once normalized.
pub(super) fn is_dialogue(text: &str) -> bool {
    text.starts_with("Human:") || text.contains(ASSISTANT)
}

/// Accepts dialogues that start with `Human:` without the blank line before it.
fn normalize(dialogue: &str) -> String {
    if dialogue.starts_with("Human:") || dialogue.starts_with("Assistant:") {
        format!("\n\n{dialogue}")
    } else {
        dialogue.to_owned()
    }
}

fn response(fields: &mut Fields<'_>, field: &str, text: &str) -> Option<String> {
    if text.contains(HUMAN) {
        fields.report(
            field,
            ProblemKind::Invalid(
                "response holds a further Human turn: the dialogues differ before their last assistant turn"
                    .into(),
            ),
        );
        return None;
    }
    Some(text.trim().to_owned())
}

/// Length in bytes of the longest common prefix, on a character boundary.
fn common_prefix_len(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((index, _), _)| index)
}

/// Splits a transcript at its `Human:`/`Assistant:` markers into trimmed messages.
fn parse_turns(transcript: &str) -> Vec<Message> {
    let mut markers: Vec<(usize, Role, usize)> = Vec::new();
    for (marker, role) in [(HUMAN, Role::User), (ASSISTANT, Role::Assistant)] {
        markers.extend(
            transcript
                .match_indices(marker)
                .map(|(at, _)| (at, role, marker.len())),
        );
    }
    markers.sort_by_key(|&(at, _, _)| at);
    let mut turns = Vec::with_capacity(markers.len() + 1);
    let preamble = &transcript[..markers.first().map_or(transcript.len(), |m| m.0)];
    if !preamble.trim().is_empty() {
        turns.push(Message::new(Role::System, preamble.trim()));
    }
    for (index, &(at, role, len)) in markers.iter().enumerate() {
        let end = markers.get(index + 1).map_or(transcript.len(), |m| m.0);
        turns.push(Message::new(role, transcript[at + len..end].trim()));
    }
    turns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_respects_char_boundaries() {
        assert_eq!(common_prefix_len("héllo", "hélp"), 4);
        assert_eq!(common_prefix_len("ab", "abc"), 2);
        assert_eq!(common_prefix_len("é", "è"), 0);
    }

    #[test]
    fn turns_alternate_with_preamble() {
        let turns = parse_turns("Be kind.\n\nHuman: hi\n\nAssistant: hello\n\nHuman: bye");
        assert_eq!(
            turns,
            vec![
                Message::new(Role::System, "Be kind."),
                Message::new(Role::User, "hi"),
                Message::new(Role::Assistant, "hello"),
                Message::new(Role::User, "bye"),
            ]
        );
    }
}
