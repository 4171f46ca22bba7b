//! Preference-pair data for soft-label alignment: reading and validating the common formats, soft
//! labels derived from votes or scores, summaries and a train/held-out split.
//!
//! A file is JSONL (one record per line) or a JSON array; each record is one of the [`Format`]s
//! (native, TRL, Anthropic HH, SHP, UltraFeedback binarized, vote counts, ShareGPT), detected from
//! the first record's keys unless named. Every record becomes a [`PreferencePair`] with a soft label
//! p̂ ∈ [0.5, 1]: a record with p̂ < 0.5 is **re-oriented** (chosen and rejected swapped, p̂ → 1 − p̂).
//! Every bad record is reported as a [`Problem`] printed `FILE:LINE: FIELD: PROBLEM` (for a JSON
//! array, `FILE:record N:` with N the index + 1); [`ValidationPolicy`] says whether any problem is
//! an error or bad records are skipped.
//!
//! This crate does no tokenization (the trainer does, with the model's tokenizer) and no tensor
//! work; it never touches the network.
//!
//! ```
//! use softalign_data::{LoadOptions, ValidationPolicy, load_bytes};
//! let jsonl = br#"{"prompt": "2+2?", "chosen": "4", "rejected": "5", "p_chosen": 0.8}
//! {"prompt": "3+3?", "chosen": "6", "rejected": "6"}"#;
//! let options = LoadOptions::default().with_policy(ValidationPolicy::Skip);
//! let loaded = load_bytes("math.jsonl", jsonl, &options).unwrap();
//! assert_eq!(loaded.pairs.len(), 1);
//! assert_eq!(
//!     loaded.problems[0].to_string(),
//!     "math.jsonl:2: rejected: identical chosen and rejected"
//! );
//! ```

#![deny(missing_docs)]

mod error;
mod format;
mod formats;
pub mod labels;
mod non_finite;
mod pair;
mod problem;
mod read;
mod record;
mod split;
mod summary;

pub use error::DataError;
pub use format::Format;
pub use pair::{Message, PreferencePair, Prompt, Role};
pub use problem::{Location, Problem, ProblemKind};
pub use read::{Layout, LoadOptions, LoadedPairs, ValidationPolicy, load, load_bytes};
pub use split::{Split, split_train_heldout};
pub use summary::{HISTOGRAM_BINS, LabelHistogram, LengthStats, Summary};
