//! Online alignment (GDPO paper §5.4): every step samples two responses per prompt from the
//! current policy, labels the pair, and takes one optimizer step of the preference loss on the
//! fresh pairs.
//!
//! Sampling and labelling are a [`BatchSource`] of the trainer's loop
//! ([`softalign_train::train_loop`]), so an online run has what an offline one has: gradient
//! accumulation and clipping, the schedule, the non-finite guard, checkpoints every
//! `save_every` steps and at Ctrl-C, bitwise resume and the atomic export. The source keeps no
//! state: prompt `j` of step `t` is [`example_at`]`(t × per_step + j)` and its two samples are
//! drawn with seeds derived from the run's seed, `t`, `j` and the sample's number, so a run
//! resumed from a checkpoint (model, optimizer, step, seed) samples what the uninterrupted run
//! sampled.
//!
//! Labels come from a [`LabelSource`]: the AI-feedback judge, the policy's own preference
//! `ρθ = σ(β δ)` computed without gradient (self-preference; at the first step the policy is the
//! reference, so δ = 0 and every label is ½), or a task's own labeller (the built-in demo's
//! Bradley–Terry probability on its true reward). What is sampled and how it is encoded is an
//! [`OnlineTask`]: [`PromptTask`] for a real model and a prompt file, [`DemoTask`] for the
//! built-in demo.

mod tasks;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Module;
use softalign_model::{CausalLm, Sampling, TextTokenizer};
use softalign_pref::{PrefLoss, orient_pair, sigmoid};
use softalign_train::figures::write_figures;
use softalign_train::metrics::MetricRecord;
use softalign_train::{
    BatchSource, EncodedPair, Item, LoopSettings, Objective, PreferenceObjective, ReferenceMode,
    Run, StepBatch, StepExamples, TrainError, example_at, export_trained, resume_checkpoint,
    train_loop,
};

pub use tasks::{DemoReferenceSettings, DemoTask, PromptTask};

use crate::JudgeError;
use crate::error::{Result, setting};

/// Where the labels of the sampled pairs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    /// The AI-feedback judge (both orders averaged).
    Judge,
    /// Self-preference `σ(β δ)` under the current policy and the reference, without gradient.
    SelfPreference,
    /// The task's own labeller (the demo's true reward through Bradley–Terry).
    Task,
}

impl LabelSource {
    /// The name `--label-by` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Judge => "judge",
            Self::SelfPreference => "self",
            Self::Task => "true-reward",
        }
    }
}

impl std::str::FromStr for LabelSource {
    type Err = crate::JudgeError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "judge" => Ok(Self::Judge),
            "self" => Ok(Self::SelfPreference),
            "true-reward" => Ok(Self::Task),
            other => Err(setting(
                "label-by",
                format!("unknown label source {other:?} (expected judge, self or true-reward)"),
            )),
        }
    }
}

/// What online alignment samples from, and how samples are encoded and labelled.
pub trait OnlineTask: Sync {
    /// Number of training prompts.
    fn prompts(&self) -> usize;
    /// A response of `policy` (in inference mode) to training prompt `index`.
    fn sample(
        &self,
        policy: &CausalLm,
        index: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<String>;
    /// Token ids of a pair of responses to prompt `index`.
    fn encode(
        &self,
        index: usize,
        chosen: &str,
        rejected: &str,
        soft_label: f64,
    ) -> Result<EncodedPair>;
    /// P(first ≻ second) from the task's own labeller (`LabelSource::Task`); `Ok(None)` when
    /// the pair carries no preference (it is skipped).
    fn task_label(&self, _index: usize, _first: &str, _second: &str) -> Result<Option<f64>> {
        Err(setting(
            "label-by",
            "true-reward labels exist only for the built-in demo",
        ))
    }
    /// P(first ≻ second) by the judge, for every pair at once.
    fn judge_labels(&self, _pairs: &[(usize, String, String)]) -> Result<Vec<f64>> {
        Err(setting("label-by", "judge labels need --judge"))
    }
    /// Extra per-sample metric (e.g. the demo's true reward), averaged per step as `sample/reward`.
    fn sample_reward(&self, _index: usize, _response: &str) -> Option<f64> {
        None
    }
    /// Held-out metrics of `policy` (in inference mode), logged as an `eval` record.
    fn evaluate(&self, _policy: &CausalLm) -> Result<Vec<(&'static str, f64)>> {
        Ok(Vec::new())
    }
    /// The policy's tokenizer, saved with the exported model.
    fn tokenizer(&self) -> &TextTokenizer;
    /// Where the policy's base model came from (named in an exported LoRA adapter).
    fn base_model(&self) -> &Path;
}

/// Settings of an online run.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineSettings {
    /// The loss (binarized labels for DPO/IPO/ROPO, soft ones for the others).
    pub loss: PrefLoss,
    /// Label source.
    pub labels: LabelSource,
    /// Sampling temperature (> 0).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// The trainer's settings: `batch_size × grad_accum` prompts per step (two samples each),
    /// `schedule.total_steps` steps, the seed of prompt order and sampling, the output folder.
    pub train: LoopSettings,
    /// Continue from this checkpoint, or this run folder's newest one.
    pub resume: Option<PathBuf>,
    /// After a LoRA run, also write the model with the adapters merged to `OUT/model/`.
    pub merge: bool,
}

impl OnlineSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        self.sampling()?;
        if self.temperature == 0.0 {
            return Err(setting(
                "temperature",
                "must be positive: greedy decoding gives two identical samples",
            ));
        }
        self.train.validate()?;
        if !(self.train.schedule.peak.is_finite() && self.train.schedule.peak > 0.0) {
            return Err(setting(
                "learning-rate",
                format!("must be positive, got {}", self.train.schedule.peak),
            ));
        }
        Ok(())
    }

    fn sampling(&self) -> Result<Sampling> {
        Ok(Sampling::new(self.temperature, self.top_p, None)?)
    }
}

/// What an online run did.
#[derive(Debug, Clone)]
pub struct OnlineReport {
    /// Steps completed (resumed parts included).
    pub steps: usize,
    /// Pairs trained on.
    pub pairs: usize,
    /// Pairs skipped as carrying no preference (identical samples, equal rewards).
    pub skipped: usize,
    /// Every metric record.
    pub history: Vec<MetricRecord>,
    /// Figures written.
    pub figures: Vec<PathBuf>,
    /// The last checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// The exported model (not when interrupted; for a LoRA run only with `merge`).
    pub model_dir: Option<PathBuf>,
    /// The exported LoRA adapter (not when interrupted).
    pub adapter: Option<PathBuf>,
    /// Whether the stop flag ended the run early (a checkpoint was saved).
    pub interrupted: bool,
    /// Seconds of the run.
    pub seconds: f64,
}

/// A seed for sample `k` of slot `j` at `step`, independent across all three.
fn sample_seed(seed: u64, step: usize, j: usize, k: usize) -> u64 {
    let mut x = seed ^ 0x5851_f42d_4c95_7f2d;
    for v in [step as u64, j as u64, k as u64] {
        x = (x ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^= x >> 31;
    }
    x
}

/// An error of the task inside the trainer's loop, kept whole to be taken back out.
fn into_train(error: JudgeError) -> TrainError {
    match error {
        JudgeError::Train(error) => error,
        other => TrainError::Source(Box::new(other)),
    }
}

/// The loop's error as this crate's: the task's own errors come back as they were.
fn from_train(error: TrainError) -> JudgeError {
    match error {
        TrainError::Source(inner) => match inner.downcast::<JudgeError>() {
            Ok(error) => *error,
            Err(inner) => JudgeError::Train(TrainError::Source(inner)),
        },
        other => JudgeError::Train(other),
    }
}

/// Online sampling and labelling as the trainer's batch source.
struct OnlineSource<'a> {
    task: &'a dyn OnlineTask,
    labels: LabelSource,
    sampling: Sampling,
    loss: PrefLoss,
    reference: &'a CausalLm,
}

impl OnlineSource<'_> {
    /// Self-preference labels `σ(β δ)` of `pairs` (first, second) under `policy`.
    fn self_labels(&self, policy: &CausalLm, pairs: &[EncodedPair]) -> Result<Vec<f64>> {
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let pad = self.reference.config.pad_token_id();
        let mut objective =
            PreferenceObjective::new(self.loss, self.reference, ReferenceMode::OnTheFly, pad);
        let items: Vec<Item<'_, EncodedPair>> = pairs
            .iter()
            .enumerate()
            .map(|(key, example)| Item { key, example })
            .collect();
        let (_, outputs) = objective.forward(policy, &items)?;
        let beta = self.loss.beta();
        (0..pairs.len())
            .map(|i| {
                let delta = (outputs.policy_chosen[i] - outputs.reference_chosen[i])
                    - (outputs.policy_rejected[i] - outputs.reference_rejected[i]);
                let label = sigmoid(beta * delta);
                if label.is_finite() {
                    Ok(label)
                } else {
                    // The loop fills in the step and the checkpoint it keeps.
                    Err(JudgeError::Train(TrainError::NonFinite {
                        step: 0,
                        what: "a self-preference label",
                        value: label,
                        first: 0,
                        end: 0,
                        kept: String::new(),
                    }))
                }
            })
            .collect()
    }

    /// P(first ≻ second) of each distinct pair; `None` where the pair carries no preference.
    fn labels(
        &self,
        policy: &CausalLm,
        distinct: &[(usize, String, String)],
    ) -> Result<Vec<Option<f64>>> {
        Ok(match self.labels {
            LabelSource::Judge => self
                .task
                .judge_labels(distinct)?
                .into_iter()
                .map(Some)
                .collect(),
            LabelSource::Task => distinct
                .iter()
                .map(|(i, a, b)| self.task.task_label(*i, a, b))
                .collect::<Result<_>>()?,
            LabelSource::SelfPreference => {
                let unlabelled = distinct
                    .iter()
                    .map(|(i, a, b)| self.task.encode(*i, a, b, 1.0))
                    .collect::<Result<Vec<_>>>()?;
                self.self_labels(policy, &unlabelled)?
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        })
    }

    /// The step's oriented, encoded pairs keyed by their position in the run's prompt stream,
    /// with the step's metrics.
    fn step_pairs(
        &self,
        model: &CausalLm,
        step: usize,
        settings: &LoopSettings,
    ) -> Result<StepBatch<'static, EncodedPair>> {
        let per_step = settings.examples_per_step();
        let policy = model.valid();
        // 1. Two samples per prompt from the current policy.
        let mut samples = Vec::with_capacity(per_step);
        let mut rewards = Vec::new();
        for j in 0..per_step {
            let position = step * per_step + j;
            let index = example_at(position, self.task.prompts(), settings.seed);
            let [first, second] = [0, 1].map(|k| {
                let seed = sample_seed(settings.seed, step, j, k);
                self.task.sample(&policy, index, self.sampling, seed)
            });
            let (first, second) = (first?, second?);
            rewards.extend(self.task.sample_reward(index, &first));
            rewards.extend(self.task.sample_reward(index, &second));
            samples.push((position, index, first, second));
        }
        // 2. Labels P(first ≻ second) of the distinct pairs.
        samples.retain(|(_, _, a, b)| a != b);
        let distinct: Vec<(usize, String, String)> = samples
            .iter()
            .map(|(_, i, a, b)| (*i, a.clone(), b.clone()))
            .collect();
        let labels = self.labels(&policy, &distinct)?;
        // 3. Oriented, encoded pairs.
        let mut pairs = Vec::with_capacity(samples.len());
        for ((position, index, first, second), label) in samples.iter().zip(labels) {
            let Some(p) = label else { continue };
            let oriented = orient_pair(first.as_str(), second.as_str(), p)?;
            let pair = self.task.encode(
                *index,
                oriented.chosen,
                oriented.rejected,
                oriented.soft_label,
            )?;
            pairs.push((*position, pair));
        }
        let mut metrics = Vec::new();
        if !rewards.is_empty() {
            metrics.push((
                "sample/reward",
                rewards.iter().sum::<f64>() / rewards.len() as f64,
            ));
        }
        metrics.push(("pairs", pairs.len() as f64));
        metrics.push(("skipped", (per_step - pairs.len()) as f64));
        Ok(StepBatch {
            examples: StepExamples::Owned(pairs),
            metrics,
        })
    }
}

impl BatchSource<EncodedPair> for OnlineSource<'_> {
    fn size(&self) -> usize {
        self.task.prompts()
    }

    fn step_examples(
        &self,
        model: &CausalLm,
        step: usize,
        settings: &LoopSettings,
    ) -> softalign_train::Result<StepBatch<'_, EncodedPair>> {
        self.step_pairs(model, step, settings).map_err(into_train)
    }

    fn reads_model(&self) -> bool {
        true
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec![
            "sample/reward",
            "pairs",
            "skipped",
            "eval/reward",
            "eval/exact",
        ]
    }

    fn evaluate(&self, model: &CausalLm) -> softalign_train::Result<Vec<(&'static str, f64)>> {
        self.task.evaluate(model).map_err(into_train)
    }
}

/// Sums a metric over the `train` records of `history`.
fn total(history: &[MetricRecord], name: &str) -> usize {
    history
        .iter()
        .filter(|r| r.split == "train")
        .filter_map(|r| r.get(name))
        .sum::<f64>() as usize
}

/// Runs online alignment of `model` (on an autodiff device) against the frozen `reference`,
/// through the trainer's loop: metrics, checkpoints and figures in `settings.train.out_dir`,
/// and, unless stopped, the trained model exported there as an offline `align` exports it.
pub fn run_online(
    model: CausalLm,
    reference: &CausalLm,
    task: &dyn OnlineTask,
    settings: &OnlineSettings,
    stop: Option<&AtomicBool>,
    notify: &mut dyn FnMut(&str),
) -> Result<OnlineReport> {
    settings.validate()?;
    if task.prompts() == 0 {
        return Err(setting("data", "no prompts"));
    }
    let started = Instant::now();
    let out = &settings.train.out_dir;
    let resume = resume_checkpoint(settings.resume.as_deref(), notify)?;
    let source = OnlineSource {
        task,
        labels: settings.labels,
        sampling: settings.sampling()?,
        loss: settings.loss,
        reference,
    };
    let pad = reference.config.pad_token_id();
    let mut objective =
        PreferenceObjective::new(settings.loss, reference, ReferenceMode::OnTheFly, pad);
    let outcome = train_loop(
        model,
        Run {
            objective: &mut objective,
            train: &source,
            eval: &[],
            settings: &settings.train,
            resume: resume.as_deref(),
            stop,
        },
    )
    .map_err(from_train)?;
    let figures = write_figures(
        &outcome.history,
        out,
        &format!("online {}", settings.loss.name()),
    )?;
    let (adapter, model_dir) = if outcome.interrupted {
        (None, None)
    } else {
        export_trained(
            &outcome.model.valid(),
            task.tokenizer(),
            out,
            task.base_model(),
            settings.merge,
        )?
    };
    let (pairs, skipped) = (
        total(&outcome.history, "pairs"),
        total(&outcome.history, "skipped"),
    );
    notify(&format!(
        "online: {} steps, {pairs} pairs trained, {skipped} skipped (no preference)",
        outcome.steps
    ));
    Ok(OnlineReport {
        steps: outcome.steps,
        pairs,
        skipped,
        history: outcome.history,
        figures,
        checkpoint: outcome.checkpoint,
        model_dir,
        adapter,
        interrupted: outcome.interrupted,
        seconds: started.elapsed().as_secs_f64(),
    })
}
