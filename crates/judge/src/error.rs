//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong labelling, evaluating or aligning online.
///
/// Messages are one line, lowercase, and name the file, line or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// A setting is out of its domain; `name` is the flag (`batch-size`, `max-tokens`).
    #[error("{name}: {reason}")]
    Setting {
        /// The flag.
        name: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
    /// A judge template lacks a placeholder or has an unknown one.
    #[error("{path}: template: {problem}", path = path.display())]
    Template {
        /// The template file (`<built-in>` for the embedded one).
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A record cannot be judged (e.g. the judge prompt encodes to no tokens).
    #[error("{path}:{line}: {field}: {problem}", path = path.display())]
    Record {
        /// The data file.
        path: PathBuf,
        /// The record's line (JSONL) or number (JSON array).
        line: usize,
        /// The field at fault.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// An output file left by an earlier run does not continue the input, so it cannot be
    /// resumed.
    #[error("{path}:{line}: cannot resume: {problem}", path = path.display())]
    Resume {
        /// The earlier output.
        path: PathBuf,
        /// Its line at fault.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {cause}", path = path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error.
        cause: std::io::Error,
    },
    /// A figure could not be drawn.
    #[error("{path}: cannot draw figure: {message}", path = path.display())]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// What the plotting library reported.
        message: String,
    },
    /// The judge's scores are not finite (a broken model or an overflow).
    #[error("{path}:{line}: judge scores are not finite ({scores:?})", path = path.display())]
    NonFinite {
        /// The data file.
        path: PathBuf,
        /// The record.
        line: usize,
        /// The two scores.
        scores: [f64; 2],
    },
    /// Preference data could not be read or is invalid.
    #[error(transparent)]
    Data(#[from] softalign_data::DataError),
    /// A model could not be loaded or run.
    #[error(transparent)]
    Model(#[from] softalign_model::ModelError),
    /// Training (encoding, the loss, checkpoints) failed.
    #[error(transparent)]
    Train(#[from] softalign_train::TrainError),
    /// A preference-loss setting is invalid.
    #[error(transparent)]
    Pref(#[from] softalign_pref::PrefError),
}

/// Shorthand for results of this crate.
pub type Result<T, E = JudgeError> = std::result::Result<T, E>;

impl From<softalign_durable::WriteError> for JudgeError {
    fn from(error: softalign_durable::WriteError) -> Self {
        JudgeError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}

/// Maps an I/O error to [`JudgeError::Io`] naming `path`.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> JudgeError + '_ {
    move |cause| JudgeError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A [`JudgeError::Setting`].
pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> JudgeError {
    JudgeError::Setting {
        name,
        reason: reason.into(),
    }
}
