//! Supervised (prompt → response) data for `sft`.
//!
//! A JSONL file (one record per line) or a JSON array of records, each one of:
//! - `{"prompt": TEXT or MESSAGES, "response": TEXT}` (`completion` is accepted for `response`);
//! - `{"messages": MESSAGES}` or ShareGPT's `{"conversations": MESSAGES}`: the last message is the
//!   assistant's response, the ones before it the prompt.
//!
//! MESSAGES is a list of `{"role", "content"}` (or ShareGPT's `{"from", "value"}`). Every bad
//! record is reported as `FILE:LINE: FIELD: PROBLEM` (for a JSON array, `FILE:record N: …`).

use std::path::Path;

use serde_json::Value;
use softalign_data::{Message, Prompt, Role, ValidationPolicy};

use crate::error::{Result, TrainError, io_error};

/// One supervised example as text.
#[derive(Debug, Clone, PartialEq)]
pub struct SftRecord {
    /// The context.
    pub prompt: Prompt,
    /// The response to learn.
    pub response: String,
    /// Its line (JSONL) or record number (JSON array).
    pub line: usize,
}

/// The examples of a file, and the problems of the records left out (under
/// [`ValidationPolicy::Skip`]).
#[derive(Debug, Clone, Default)]
pub struct SftData {
    /// Valid examples in file order.
    pub records: Vec<SftRecord>,
    /// `FILE:LINE: FIELD: PROBLEM` of every bad record.
    pub problems: Vec<String>,
}

fn messages(value: &Value) -> std::result::Result<Vec<Message>, (String, String)> {
    let Value::Array(items) = value else {
        return Err((String::new(), "expected a list of messages".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| item.get(name).and_then(Value::as_str);
            let role = field("role")
                .or(field("from"))
                .ok_or_else(|| (format!("[{i}].role"), "missing role (or from)".to_string()))?;
            let role = Role::parse(role)
                .ok_or_else(|| (format!("[{i}].role"), format!("unknown role {role:?}")))?;
            let content = field("content").or(field("value")).ok_or_else(|| {
                (
                    format!("[{i}].content"),
                    "missing content (or value)".to_string(),
                )
            })?;
            Ok(Message::new(role, content))
        })
        .collect()
}

fn record(value: &Value, line: usize) -> std::result::Result<SftRecord, (String, String)> {
    let Value::Object(object) = value else {
        return Err(("record".into(), "expected a JSON object".into()));
    };
    let nested = |name: &'static str| {
        move |(field, problem): (String, String)| (format!("{name}{field}"), problem)
    };
    if let Some(prompt) = object.get("prompt") {
        let prompt = match prompt {
            Value::String(text) => Prompt::Text(text.clone()),
            other => Prompt::Chat(messages(other).map_err(nested("prompt"))?),
        };
        let (field, response) = match (object.get("response"), object.get("completion")) {
            (Some(r), _) => ("response", r),
            (None, Some(c)) => ("completion", c),
            (None, None) => return Err(("response".into(), "missing field".into())),
        };
        let response = match response {
            Value::String(text) => text.clone(),
            other => messages(other)
                .map_err(nested(field))?
                .pop()
                .map(|m| m.content)
                .ok_or_else(|| (field.to_string(), "empty list of messages".into()))?,
        };
        if response.is_empty() {
            return Err((field.into(), "empty response".into()));
        }
        return Ok(SftRecord {
            prompt,
            response,
            line,
        });
    }
    for name in ["messages", "conversations"] {
        if let Some(list) = object.get(name) {
            let mut turns = messages(list).map_err(nested(name))?;
            let last = turns
                .pop()
                .ok_or_else(|| (name.to_string(), "empty conversation".to_string()))?;
            if last.role != Role::Assistant {
                return Err((
                    name.into(),
                    "the last message must be the assistant's response".into(),
                ));
            }
            if turns.is_empty() {
                return Err((name.into(), "no prompt before the response".into()));
            }
            if last.content.is_empty() {
                return Err((name.into(), "empty response".into()));
            }
            return Ok(SftRecord {
                prompt: Prompt::Chat(turns),
                response: last.content,
                line,
            });
        }
    }
    Err((
        "record".into(),
        "expected prompt and response, or messages, or conversations".into(),
    ))
}

/// Reads a supervised data file; under [`ValidationPolicy::Strict`] any bad record fails with
/// [`TrainError::Invalid`] listing every problem.
pub fn load_sft(path: &Path, policy: ValidationPolicy) -> Result<SftData> {
    let bytes = std::fs::read(path).map_err(io_error(path))?;
    let shown = path.display();
    let mut data = SftData::default();
    let text = match std::str::from_utf8(&bytes) {
        Ok(text) => text,
        Err(e) => {
            let line = bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(TrainError::Invalid {
                path: path.to_path_buf(),
                problems: vec![format!("{shown}:{line}: record: invalid utf-8")],
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut add =
        |value: std::result::Result<Value, String>, place: String, line: usize| match value
            .map_err(|e| ("record".to_string(), e))
            .and_then(|v| record(&v, line))
        {
            Ok(r) => data.records.push(r),
            Err((field, problem)) => data
                .problems
                .push(format!("{shown}:{place}: {field}: {problem}")),
        };
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(values) => {
                for (i, value) in values.into_iter().enumerate() {
                    add(Ok(value), format!("record {}", i + 1), i + 1);
                }
            }
            Err(e) => add(
                Err(format!("invalid json: {e}")),
                e.line().to_string(),
                e.line(),
            ),
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value =
                serde_json::from_str::<Value>(line).map_err(|e| format!("invalid json: {e}"));
            add(value, (i + 1).to_string(), i + 1);
        }
    }
    if policy == ValidationPolicy::Strict && !data.problems.is_empty() {
        return Err(TrainError::Invalid {
            path: path.to_path_buf(),
            problems: data.problems,
        });
    }
    if data.records.is_empty() {
        return Err(TrainError::Setting {
            name: "data",
            reason: format!("{shown}: no usable examples"),
        });
    }
    Ok(data)
}
