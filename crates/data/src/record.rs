//! Typed access to one JSON record's fields, collecting every problem instead of stopping at the first.

use serde_json::{Map, Value};

use crate::non_finite;
use crate::pair::{Message, Role};
use crate::problem::{ProblemKind, json_type_name};

/// A field's value that formats allow as plain text or as a chat message list.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TextOrChat {
    Text(String),
    Chat(Vec<Message>),
}

/// One record under inspection, and the problems found in it so far as (field, problem).
pub(crate) struct Fields<'a> {
    object: &'a Map<String, Value>,
    pub(crate) problems: Vec<(String, ProblemKind)>,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(object: &'a Map<String, Value>) -> Fields<'a> {
        Fields {
            object,
            problems: Vec::new(),
        }
    }

    pub(crate) fn report(&mut self, field: impl Into<String>, kind: ProblemKind) {
        self.problems.push((field.into(), kind));
    }

    fn wrong_type(&mut self, field: impl Into<String>, expected: &'static str, value: &Value) {
        let found = json_type_name(value);
        self.report(field, ProblemKind::WrongType { expected, found });
    }

    /// A field that may be absent; `null` counts as absent.
    pub(crate) fn optional(&self, key: &str) -> Option<&'a Value> {
        self.object.get(key).filter(|value| !value.is_null())
    }

    /// A field that must be present (and not `null`).
    pub(crate) fn required(&mut self, key: &str) -> Option<&'a Value> {
        let value = self.optional(key);
        if value.is_none() {
            self.report(key, ProblemKind::MissingField);
        }
        value
    }

    /// A required string field.
    pub(crate) fn string(&mut self, key: &str) -> Option<&'a str> {
        let value = self.required(key)?;
        self.as_str(key, value)
    }

    pub(crate) fn as_str(&mut self, field: &str, value: &'a Value) -> Option<&'a str> {
        match value {
            Value::String(text) if non_finite::token(text).is_some() => {
                let kind = ProblemKind::WrongType {
                    expected: "a string",
                    found: "a non-finite number",
                };
                self.report(field, kind);
                None
            }
            Value::String(text) => Some(text),
            other => {
                self.wrong_type(field, "a string", other);
                None
            }
        }
    }

    /// A required numeric field.
    pub(crate) fn number(&mut self, key: &str) -> Option<f64> {
        let value = self.required(key)?;
        if let Some(token) = value.as_str().and_then(non_finite::token) {
            self.report(
                key,
                ProblemKind::Invalid(format!("{token} is not a finite number")),
            );
            return None;
        }
        match value.as_f64() {
            Some(number) => Some(number),
            None => {
                self.wrong_type(key, "a number", value);
                None
            }
        }
    }

    /// The optional `p_chosen` label: absent means a binary label (1.0). An invalid label is reported
    /// and 1.0 returned; the record is rejected anyway because a problem was reported.
    pub(crate) fn label_or_binary(&mut self, key: &str) -> f64 {
        let Some(value) = self.optional(key) else {
            return crate::labels::BINARY;
        };
        if value.as_str().and_then(non_finite::token).is_some() {
            self.report(key, ProblemKind::LabelNotFinite);
            return crate::labels::BINARY;
        }
        let Some(label) = value.as_f64() else {
            self.wrong_type(key, "a number", value);
            return crate::labels::BINARY;
        };
        match crate::labels::given(label) {
            Ok(label) => label,
            Err(kind) => {
                self.report(key, kind);
                crate::labels::BINARY
            }
        }
    }

    /// A required field holding plain text or a message list.
    pub(crate) fn text_or_chat(&mut self, key: &str) -> Option<TextOrChat> {
        let value = self.required(key)?;
        self.parse_text_or_chat(key, value)
    }

    pub(crate) fn parse_text_or_chat(
        &mut self,
        field: &str,
        value: &'a Value,
    ) -> Option<TextOrChat> {
        match value {
            Value::String(_) => self
                .as_str(field, value)
                .map(|t| TextOrChat::Text(t.to_owned())),
            Value::Array(items) => self.messages(field, items).map(TextOrChat::Chat),
            other => {
                self.wrong_type(field, "a string or a message list", other);
                None
            }
        }
    }

    /// A list of messages; every bad message is reported.
    pub(crate) fn messages(&mut self, field: &str, items: &'a [Value]) -> Option<Vec<Message>> {
        let before = self.problems.len();
        let messages: Vec<Option<Message>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.message(&format!("{field}[{index}]"), item))
            .collect();
        if self.problems.len() > before {
            return None;
        }
        messages.into_iter().collect()
    }

    /// One message: `{"role", "content"}` (OpenAI/TRL) or `{"from", "value"}` (ShareGPT). Content is a
    /// string or a list of parts of which the `{"type": "text", "text"}` ones are joined.
    pub(crate) fn message(&mut self, field: &str, item: &'a Value) -> Option<Message> {
        let Value::Object(object) = item else {
            self.wrong_type(field, "a message object", item);
            return None;
        };
        let (role_key, content_key) = if object.contains_key("from") || object.contains_key("value")
        {
            ("from", "value")
        } else {
            ("role", "content")
        };
        let role_field = format!("{field}.{role_key}");
        let content_field = format!("{field}.{content_key}");
        let role = match object.get(role_key) {
            None | Some(Value::Null) => {
                self.report(&role_field, ProblemKind::MissingField);
                None
            }
            Some(Value::String(name)) => match Role::parse(name) {
                Some(role) => Some(role),
                None => {
                    self.report(&role_field, ProblemKind::UnknownRole(name.clone()));
                    None
                }
            },
            Some(other) => {
                self.wrong_type(&role_field, "a string", other);
                None
            }
        };
        let content = match object.get(content_key) {
            None | Some(Value::Null) => {
                self.report(&content_field, ProblemKind::MissingField);
                None
            }
            Some(value @ Value::String(_)) => self.as_str(&content_field, value).map(str::to_owned),
            Some(Value::Array(parts)) => self.text_parts(&content_field, parts),
            Some(other) => {
                self.wrong_type(&content_field, "a string", other);
                None
            }
        };
        Some(Message::new(role?, content?))
    }

    fn text_parts(&mut self, field: &str, parts: &'a [Value]) -> Option<String> {
        let mut texts = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            let part_field = format!("{field}[{index}]");
            match part {
                Value::Object(object)
                    if object.get("type").and_then(Value::as_str) == Some("text") =>
                {
                    match object.get("text") {
                        Some(Value::String(text)) => texts.push(text.as_str()),
                        Some(other) => {
                            self.wrong_type(format!("{part_field}.text"), "a string", other)
                        }
                        None => {
                            self.report(format!("{part_field}.text"), ProblemKind::MissingField)
                        }
                    }
                }
                Value::Object(_) => self.report(
                    &part_field,
                    ProblemKind::Invalid("only text content parts are supported".into()),
                ),
                other => self.wrong_type(&part_field, "a content part object", other),
            }
        }
        Some(texts.join("\n"))
    }
}
