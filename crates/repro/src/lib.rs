//! The papers' analyses as library functions, one module per reproduction, each headed by what
//! it shows. The `softalign repro …` commands are thin wrappers around these.

#![deny(missing_docs)]

pub mod bandit;
pub mod idx;
pub mod lm;
pub mod mnist;
mod output;
pub mod report;
pub mod soft_labels;
pub mod stats;
pub mod toy;
pub use output::{ReproError, write_json_atomic};
