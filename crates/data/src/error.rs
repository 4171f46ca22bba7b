//! The crate's error type.

use std::path::PathBuf;

use crate::problem::{Location, Problem};

/// How many problems `DataError::Invalid` prints in its one-line message; all are kept in the value.
const PROBLEMS_SHOWN: usize = 5;

/// Everything that can go wrong reading preference data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file cannot be read at all.
    #[error("cannot read {path}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why (reported as the error's source).
        source: std::io::Error,
    },
    /// Automatic detection found no known format in the first record's keys.
    #[error(
        "{path}:{location}: record: cannot detect the format from the keys [{keys}]; name the format explicitly",
        path = path.display()
    )]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// The first record that is a JSON object.
        location: Location,
        /// Its keys, comma-separated.
        keys: String,
    },
    /// The file holds no records (empty, only blank lines, or `[]`), or none that is a JSON object.
    #[error("{path}: no preference records", path = path.display())]
    NoRecords {
        /// The file.
        path: PathBuf,
    },
    /// Strict validation found bad records. The message shows the first few problems; `problems`
    /// holds every one of them.
    #[error(
        "{path}: {count} problem(s): {shown}",
        path = path.display(),
        count = problems.len(),
        shown = show_problems(problems)
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
    /// A setting out of its domain (temperature, held-out fraction, …).
    #[error("invalid setting {name}: {reason}")]
    Setting {
        /// The setting's name, e.g. `temperature`.
        name: &'static str,
        /// What is wrong, including the value.
        reason: String,
    },
}

fn show_problems(problems: &[Problem]) -> String {
    let mut shown: Vec<String> = problems
        .iter()
        .take(PROBLEMS_SHOWN)
        .map(ToString::to_string)
        .collect();
    if problems.len() > PROBLEMS_SHOWN {
        shown.push(format!("and {} more", problems.len() - PROBLEMS_SHOWN));
    }
    shown.join("; ")
}
