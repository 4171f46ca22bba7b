//! Writing a reproduction's results: JSON and figures land atomically in the output folder.

use std::io::Write;
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

/// Serialize `value` as pretty JSON to `path`, through a temporary file and a rename.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), ReproError> {
    let io = |cause| ReproError::Io {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let partial = path.with_extension("json.partial");
    let mut file = std::fs::File::create(&partial).map_err(io)?;
    serde_json::to_writer_pretty(&mut file, value).map_err(|e| io(e.into()))?;
    file.write_all(b"\n").map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)
}
