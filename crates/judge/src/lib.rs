//! AI feedback for soft-label preference alignment (Furuta et al., NeurIPS 2024, §4.1, §4.2,
//! §5.4): a judge language model labels pairs, evaluates models by win rate, and labels the
//! policy's own samples during online alignment.
//!
//! - [`Judge`]: `score(k) = log p_judge("(k)" | template(context, output 1, output 2))`,
//!   p̂ = softmax over the two answers, averaged over both orders of the pair ([`Judgement`]).
//!   Templates are files ([`JudgeTemplate`]); the built-in one is embedded.
//! - [`label_file`]: `softalign label`, resumable JSONL output oriented so the winner is
//!   `chosen`, with the label histogram (the paper's Fig. 2).
//! - [`winrate`]: binary and percentage win rates with 95% intervals; [`evaluate`]: `softalign
//!   eval`, greedy responses judged against references or another model, and the
//!   preference-classification accuracy of a model's implicit reward.
//! - [`online`]: online alignment, two samples per prompt per step labelled by the judge, by
//!   self-preference σ(βδ), or by the built-in demo's true reward.
//!
//! The crate never touches the network and never parses command lines.

#![deny(missing_docs)]

mod error;
pub mod eval;
mod judge;
pub mod label;
pub mod online;
mod template;
pub mod winrate;

pub use error::{JudgeError, Result};
pub use eval::{EvalReport, EvalSettings, Opponent, evaluate};
pub use judge::{ANSWERS, Judge, JudgeItem, JudgeSettings, Judgement};
pub use label::{LabelReport, LabelSettings, label_file};
pub use template::{DEFAULT_TEMPLATE, JudgeTemplate, RenderedPrompt};
pub use winrate::{Estimate, WinRates};
