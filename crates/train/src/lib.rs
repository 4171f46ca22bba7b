//! Supervised fine-tuning and soft-label preference alignment of Llama-family models.
//!
//! - [`train_loop`]: the loop SFT and alignment share: data order from the seed and step
//!   ([`example_at`]), gradient accumulation, global gradient-norm clipping, warmup + cosine
//!   [`Schedule`], held-out evaluation, `metrics.jsonl` / `metrics.csv`, a progress bar,
//!   atomic checkpoints and bitwise-exact resume ([`checkpoint`]).
//! - [`BatchSource`]: where each step's examples come from: a fixed set in seeded order, or
//!   examples made for the step from the policy (online alignment).
//! - [`Objective`]: what a step optimises: [`SftObjective`] (response tokens only) or
//!   [`PreferenceObjective`] (any `softalign_pref::PrefLoss` against a frozen reference, with
//!   reference log-probabilities cached or computed on the fly).
//! - [`run_align`] and [`run_sft`]: the `align` and `sft` commands from files, with validated
//!   [`AlignSettings`] / [`TrainSettings`] (the command line parses flags; this crate validates).
//! - [`bench_step`]: the training-step benchmark (`softalign bench step`).
//! - [`demo`]: the built-in demo with an exactly computable true reward.
//!
//! The crate never parses command lines and never touches the network.

#![deny(missing_docs)]

pub mod bench_generate;
pub mod bench_step;
pub mod checkpoint;
pub mod demo;
pub mod encode;
mod error;
pub mod figures;
pub mod lora;
pub mod metrics;
pub mod objective;
mod pipeline;
mod progress;
pub mod run_dir;
mod schedule;
pub mod sequence;
pub mod sft_data;
pub mod source;
pub mod test_hook;
mod trainer;

pub use encode::PromptTemplate;
pub use error::{Result, TrainError};
pub use objective::{
    Item, Objective, PreferenceObjective, PreferenceOutputs, ReferenceMode, SftObjective,
    SftOutputs,
};
pub use pipeline::{
    ADAPTER_DIR, AlignSettings, MODEL_DIR, RunReport, TrainSettings, config_path, export_trained,
    resume_checkpoint, run_align, run_sft,
};
pub use progress::progress_bar;
pub use schedule::Schedule;
pub use sequence::{EncodedExample, EncodedPair, SequenceBatch, Truncation};
pub use source::{BatchSource, StepBatch, StepExamples};
pub use trainer::{
    LoopOutcome, LoopSettings, Replicas, Run, clip_global_grad_norm, evaluate, example_at,
    global_grad_norm, shard_ranges, train_loop,
};
