//! Validation problems: one per bad field of a record, printed as `FILE:LINE: FIELD: PROBLEM`.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "number")]
pub enum Location {
    /// A 1-based line: a JSONL record, or the place a JSON file stops parsing. Printed as `12`.
    Line(usize),
    /// A JSON array element, numbered from 1 (index + 1). Printed as `record 3`.
    Record(usize),
}

impl Location {
    /// The number alone: the line, or the record's index + 1.
    pub fn number(self) -> usize {
        match self {
            Location::Line(n) | Location::Record(n) => n,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(line) => write!(f, "{line}"),
            Location::Record(record) => write!(f, "record {record}"),
        }
    }
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "detail")]
pub enum ProblemKind {
    /// A required field is absent.
    MissingField,
    /// A field holds the wrong JSON type.
    WrongType {
        /// What the format needs, e.g. `a string`.
        expected: &'static str,
        /// What the record holds, e.g. `a number`.
        found: &'static str,
    },
    /// A response is empty or only whitespace.
    EmptyResponse,
    /// A preference label outside [0, 1].
    LabelOutOfRange(f64),
    /// A derived preference label that is NaN or infinite.
    LabelNotFinite,
    /// The line is not valid UTF-8; the byte offset (0-based, within the line) of the first bad byte.
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        byte: usize,
    },
    /// The text is not JSON; serde_json's message.
    MalformedJson(String),
    /// Chosen and rejected are the same text, so the pair carries no preference.
    IdenticalResponses,
    /// A chat message with a role this crate does not know.
    UnknownRole(String),
    /// A format-specific constraint, described in words (lowercase).
    Invalid(String),
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingField => write!(f, "missing field"),
            ProblemKind::WrongType { expected, found } => {
                write!(f, "wrong type: expected {expected}, found {found}")
            }
            ProblemKind::EmptyResponse => write!(f, "empty response"),
            ProblemKind::LabelOutOfRange(value) => {
                write!(f, "label {value} outside [0, 1]")
            }
            ProblemKind::LabelNotFinite => write!(f, "label is not a finite number"),
            ProblemKind::InvalidUtf8 { byte } => write!(f, "invalid UTF-8 at byte {byte}"),
            ProblemKind::MalformedJson(message) => write!(f, "malformed JSON: {message}"),
            ProblemKind::IdenticalResponses => write!(f, "identical chosen and rejected"),
            ProblemKind::UnknownRole(role) => write!(f, "unknown role {role:?}"),
            ProblemKind::Invalid(message) => write!(f, "{message}"),
        }
    }
}

/// One problem of one record: `FILE:LINE: FIELD: PROBLEM`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The file, as the caller named it.
    pub path: PathBuf,
    /// The record's line (JSONL) or index + 1 (JSON array).
    pub location: Location,
    /// The field at fault, with a path into nested values (`chosen[1].content`); `record` when the
    /// whole record is unusable (malformed JSON, invalid UTF-8, not an object).
    pub field: String,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.location,
            self.field,
            self.kind
        )
    }
}

/// The name of a JSON value's type, for `wrong type` messages.
pub(crate) fn json_type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
