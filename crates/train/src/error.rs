//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong setting up, running or resuming a training run.
///
/// Messages are one line, lowercase, and name the file, line or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting is out of its domain; `name` is the flag or config key (`--beta`, `max-length`).
    #[error("{name}: {reason}")]
    Setting {
        /// The flag or config key.
        name: &'static str,
        /// What is wrong, with the value.
        reason: String,
    },
    /// A data record cannot be used for training (after loading and validation succeeded), e.g.
    /// a response that encodes to no tokens.
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
    /// Strict validation of a supervised data file found bad records; `problems` holds one
    /// `FILE:LINE: FIELD: PROBLEM` line per problem.
    #[error("{path}: {count} problem(s): {first}", path = path.display(), count = problems.len(), first = problems.first().map_or("", String::as_str))]
    Invalid {
        /// The data file.
        path: PathBuf,
        /// Every problem, one line each.
        problems: Vec<String>,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {cause}", path = path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating-system error.
        cause: std::io::Error,
    },
    /// A JSON file the trainer wrote (trainer state, reference cache) does not parse.
    #[error("{path}: invalid json: {cause}", path = path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        cause: serde_json::Error,
    },
    /// A checkpoint to resume from is missing or unusable.
    #[error("{path}: cannot resume: {problem}", path = path.display())]
    Resume {
        /// The folder given to resume from.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Preference data could not be read or is invalid.
    #[error(transparent)]
    Data(#[from] softalign_data::DataError),
    /// The model could not be loaded, saved or run.
    #[error(transparent)]
    Model(#[from] softalign_model::ModelError),
    /// The device asked for is not built in or not present.
    #[error(transparent)]
    Device(#[from] softalign_model::DeviceError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] softalign_optim::checkpoint::CheckpointError),
    /// A preference-loss setting is invalid.
    #[error(transparent)]
    Pref(#[from] softalign_pref::PrefError),
    /// A figure could not be drawn.
    #[error("{path}: cannot draw figure: {message}", path = path.display())]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// What the plotting library reported.
        message: String,
    },
    /// A [`crate::BatchSource`] could not make a step's examples (online alignment: sampling or
    /// labelling failed); the source's own error, whose crate can take it back by downcasting.
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
    /// The loss or the gradient became NaN or infinite. The run stops before the step is
    /// applied; the state before it is saved as a checkpoint.
    #[error(
        "step {step} (data positions {first}..{end}): {what} is not finite ({value}); the last good state is in {kept}; lower the learning rate or check the data"
    )]
    NonFinite {
        /// The optimizer step (1-based) whose batch gave the value.
        step: usize,
        /// `loss`, `gradient norm` or `the updated weights`.
        what: &'static str,
        /// The value.
        value: f64,
        /// First position of the step's examples in the run's data stream ([`crate::example_at`]).
        first: usize,
        /// One past the last position.
        end: usize,
        /// Where the last good state is (a checkpoint, or that there is none).
        kept: String,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl From<softalign_durable::WriteError> for TrainError {
    fn from(error: softalign_durable::WriteError) -> Self {
        TrainError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}

/// Maps an I/O error to [`TrainError::Io`] naming `path`.
pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |cause| TrainError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

/// A [`TrainError::Setting`].
pub(crate) fn setting(name: &'static str, reason: impl Into<String>) -> TrainError {
    TrainError::Setting {
        name,
        reason: reason.into(),
    }
}
