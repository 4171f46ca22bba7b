//! Writing a reproduction's results: JSON and figures land atomically in the output folder.

use std::path::{Path, PathBuf};

/// Errors a reproduction reports.
#[derive(Debug, thiserror::Error)]
pub enum ReproError {
    /// Reading or writing a file failed.
    #[error("{path}: {cause}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// The underlying error (part of the message, not a separate cause, so the
        /// one-line report names it once).
        cause: std::io::Error,
    },
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] softalign_plot::PlotError),
    /// Training a model of a study failed.
    #[error(transparent)]
    Train(#[from] softalign_train::TrainError),
    /// A setting is out of its valid range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// An input file is malformed (wrong magic number, truncated, inconsistent with another).
    #[error("{path}: {message}")]
    Format {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it, naming the field or offset.
        message: String,
    },
}

/// Serialize `value` as pretty JSON to `path`, whole or not at all
/// (`softalign_durable::write_file_atomic`).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ReproError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| ReproError::Io {
        path: path.to_path_buf(),
        cause: e.into(),
    })?;
    text.push(b'\n');
    Ok(softalign_durable::write_file_atomic(path, &text)?)
}

impl From<softalign_durable::WriteError> for ReproError {
    fn from(error: softalign_durable::WriteError) -> Self {
        ReproError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}
