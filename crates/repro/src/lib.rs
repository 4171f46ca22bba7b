//! The papers' analyses as library functions, one module per reproduction, each headed by what
//! it shows. The `softalign repro …` commands are thin wrappers around these.

#![deny(missing_docs)]

pub mod bandit;
mod output;
pub use output::{ReproError, write_json_atomic};
