//! ShareGPT style, as in LLaMA-Factory's `dpo_en_demo.json`: `conversations` is a list of
//! `{"from": "system"|"human"|"gpt", "value"}` messages (the prompt), `chosen` and `rejected` are
//! single `{"from": "gpt", "value"}` messages; an optional top-level `system` string is prepended as
//! a system message. Label 1.0, or `p_chosen` when present.

use serde_json::Value;

use crate::formats::Parts;
use crate::pair::{Prompt, Role};
use crate::problem::{ProblemKind, json_type_name};
use crate::record::Fields;

pub(super) fn convert(fields: &mut Fields<'_>) -> Parts {
    let mut prompt = match fields.required("conversations") {
        Some(Value::Array(items)) => fields.messages("conversations", items),
        Some(other) => {
            fields.report(
                "conversations",
                ProblemKind::WrongType {
                    expected: "a message list",
                    found: json_type_name(other),
                },
            );
            None
        }
        None => None,
    };
    if let Some(system) = fields.optional("system")
        && let Some(system) = fields.as_str("system", system)
        && let Some(messages) = prompt.as_mut()
        && !system.trim().is_empty()
    {
        messages.insert(0, crate::pair::Message::new(Role::System, system));
    }
    if let Some(messages) = &prompt
        && !messages.iter().any(|m| m.role == Role::User)
    {
        fields.report(
            "conversations",
            ProblemKind::Invalid("no human message".into()),
        );
    }
    let chosen = response(fields, "chosen");
    let rejected = response(fields, "rejected");
    let label = fields.label_or_binary("p_chosen");
    Parts {
        prompt: prompt.map(Prompt::Chat),
        chosen,
        rejected,
        label,
    }
}

/// `{"from": "gpt", "value"}`.
fn response(fields: &mut Fields<'_>, key: &str) -> Option<String> {
    let value = fields.required(key)?;
    let message = fields.message(key, value)?;
    if message.role != Role::Assistant {
        fields.report(
            format!("{key}.from"),
            ProblemKind::Invalid(format!("expected gpt, found {}", message.role.as_str())),
        );
        return None;
    }
    Some(message.content)
}
