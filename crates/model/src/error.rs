//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, saving or running a model.
///
/// Each variant names the file and, where there is one, the field or tensor at fault, so that the
/// message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        cause: std::io::Error,
    },
    /// A JSON file (config.json, tokenizer_config.json, …) is not valid JSON.
    #[error("{path}: invalid json: {cause}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        cause: serde_json::Error,
    },
    /// A configuration field is missing or has an unusable value.
    #[error("{path}: {field}: {problem}")]
    Config {
        /// The file the configuration came from.
        path: PathBuf,
        /// The field at fault.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A weight file is malformed (bad header, truncated, unknown type, …).
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A tensor the model needs is absent from the weight files.
    #[error("{path}: missing tensor {tensor}")]
    MissingTensor {
        /// The file (or folder) searched.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A tensor has a shape other than the configuration implies.
    #[error("{path}: tensor {tensor}: shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// The tokenizer could not be built, or failed to encode or decode.
    #[error("{path}: tokenizer: {problem}")]
    Tokenizer {
        /// The file the tokenizer came from.
        path: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// Settings that cannot be combined.
    #[error("{field}: {problem}")]
    Setting {
        /// The setting at fault.
        field: &'static str,
        /// Why it does not fit.
        problem: String,
    },
    /// A generation setting is out of range.
    #[error("generation setting {field}: {problem}")]
    Generation {
        /// The setting.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl From<softalign_durable::WriteError> for ModelError {
    fn from(error: softalign_durable::WriteError) -> Self {
        ModelError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}

pub(crate) fn io_error(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ModelError {
    let path = path.into();
    move |cause| ModelError::Io { path, cause }
}
