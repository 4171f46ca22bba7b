//! The in-memory preference pair, independent of the file format it came from.

use serde::Serialize;

/// Who speaks a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions before the conversation.
    System,
    /// The human side (`user`, `human`).
    User,
    /// The model side (`assistant`, `gpt`).
    Assistant,
    /// Output of a tool call (`tool`, `observation`).
    Tool,
}

impl Role {
    /// Parses the role names used by OpenAI/TRL (`system`, `user`, `assistant`, `tool`) and by
    /// ShareGPT (`human`, `gpt`, `observation`); case-insensitive. `None` for anything else.
    pub fn parse(name: &str) -> Option<Role> {
        match name.to_ascii_lowercase().as_str() {
            "system" => Some(Role::System),
            "user" | "human" => Some(Role::User),
            "assistant" | "gpt" | "model" => Some(Role::Assistant),
            "tool" | "observation" => Some(Role::Tool),
            _ => None,
        }
    }

    /// The canonical lowercase name (`system`, `user`, `assistant`, `tool`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: String,
}

impl Message {
    /// A message from `role` saying `content`.
    pub fn new(role: Role, content: impl Into<String>) -> Message {
        Message {
            role,
            content: content.into(),
        }
    }
}

/// The context x of a pair: plain text, or a conversation that the model's chat template renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Prompt {
    /// A plain-text prompt, used as is.
    Text(String),
    /// A conversation; the last message is usually the user's turn that the responses answer.
    Chat(Vec<Message>),
}

impl Prompt {
    /// The prompt as messages: plain text becomes a single user message.
    pub fn to_messages(&self) -> Vec<Message> {
        match self {
            Prompt::Text(text) => vec![Message::new(Role::User, text.clone())],
            Prompt::Chat(messages) => messages.clone(),
        }
    }

    /// Length in characters (Unicode scalar values); for a conversation, the sum over its messages'
    /// contents.
    pub fn char_len(&self) -> usize {
        match self {
            Prompt::Text(text) => text.chars().count(),
            Prompt::Chat(messages) => messages.iter().map(|m| m.content.chars().count()).sum(),
        }
    }
}

/// One preference pair (x, y₁, y₂) with soft label p̂ = P(y₁ ≻ y₂ | x) ∈ [0.5, 1].
///
/// Records whose label was below 0.5 have been re-oriented on loading (chosen and rejected swapped,
/// p̂ → 1 − p̂), so `chosen` is always the (weakly) preferred response. `soft_label == 1.0` is a
/// binary label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferencePair {
    /// The context the responses answer.
    pub prompt: Prompt,
    /// The preferred response y₁ (text of the assistant's reply).
    pub chosen: String,
    /// The other response y₂.
    pub rejected: String,
    /// p̂ = P(chosen ≻ rejected | prompt), in [0.5, 1].
    pub soft_label: f64,
    /// Where the record came from: the 1-based line of a JSONL file, or for a JSON array file the
    /// record's index + 1.
    pub source_line: usize,
}
