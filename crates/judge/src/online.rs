//! Online alignment (GDPO paper §5.4): every step samples two responses per prompt from the
//! current policy, labels the pair, and takes one optimizer step of the preference loss on the
//! fresh pairs.
//!
//! Labels come from a [`LabelSource`]: the AI-feedback judge, the policy's own preference
//! `ρθ = σ(β δ)` computed without gradient (self-preference; at the first step the policy is the
//! reference, so δ = 0 and every label is ½), or a task's own labeller (the built-in demo's
//! Bradley–Terry probability on its true reward). What is sampled and how it is encoded is an
//! [`OnlineTask`]: [`PromptTask`] for a real model and a prompt file, [`DemoTask`] for the
//! built-in demo.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use softalign_data::Prompt;
use softalign_model::{
    CausalLm, GenerationConfig, Pretrained, Sampling, TextTokenizer, generate, save_adapter,
    save_pretrained,
};
use softalign_optim::OptimizerKind;
use softalign_pref::{PrefLoss, orient_pair, sigmoid};
use softalign_train::demo::{pairs as demo_pairs, seeded_model, task as demo_task};
use softalign_train::encode::Encoder;
use softalign_train::figures::write_figures;
use softalign_train::metrics::{MetricRecord, MetricsLog};
use softalign_train::progress_bar;
use softalign_train::{
    EncodedExample, EncodedPair, Item, LoopSettings, Objective, PreferenceObjective,
    PromptTemplate, ReferenceMode, Run, Schedule, SftObjective, Truncation, clip_global_grad_norm,
    example_at, global_grad_norm, train_loop,
};

use crate::error::{Result, io_error, setting};
use crate::judge::{Judge, JudgeItem};

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
pub trait OnlineTask {
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
    /// Saves the trained policy.
    fn save(&self, policy: &CausalLm, dir: &Path) -> Result<()>;
}

/// Settings of an online run.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineSettings {
    /// The loss (binarized labels for DPO/IPO/ROPO, soft ones for the others).
    pub loss: PrefLoss,
    /// Label source.
    pub labels: LabelSource,
    /// Optimizer steps.
    pub steps: usize,
    /// Prompts per step (two samples each).
    pub prompts_per_step: usize,
    /// Sampling temperature (> 0).
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay.
    pub weight_decay: f64,
    /// Peak learning rate (linear warmup, cosine decay).
    pub learning_rate: f64,
    /// Fraction of steps of warmup.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Evaluate every this many steps (and before and after); 0: before and after only.
    pub eval_every: usize,
    /// Seed of prompt order and sampling.
    pub seed: u64,
    /// Output folder: metrics.jsonl/csv, figures, model/.
    pub out_dir: PathBuf,
    /// Progress bar on stderr.
    pub progress: bool,
}

impl OnlineSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        if self.steps == 0 {
            return Err(setting("max-steps", "must be at least 1"));
        }
        if self.prompts_per_step == 0 {
            return Err(setting("batch-size", "must be at least 1"));
        }
        Sampling::new(self.temperature, self.top_p, None)?;
        if self.temperature == 0.0 {
            return Err(setting(
                "temperature",
                "must be positive: greedy decoding gives two identical samples",
            ));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(setting(
                "learning-rate",
                format!("must be positive, got {}", self.learning_rate),
            ));
        }
        Ok(())
    }
}

/// What an online run did.
#[derive(Debug, Clone)]
pub struct OnlineReport {
    /// Steps completed.
    pub steps: usize,
    /// Pairs trained on.
    pub pairs: usize,
    /// Pairs skipped as carrying no preference (identical samples, equal rewards).
    pub skipped: usize,
    /// Every metric record.
    pub history: Vec<MetricRecord>,
    /// Figures written.
    pub figures: Vec<PathBuf>,
    /// The saved policy.
    pub model_dir: PathBuf,
    /// Whether the stop flag ended the run early.
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

/// Self-preference labels `σ(β δ)` of `pairs` (first, second) under `policy` and `reference`.
fn self_labels(
    objective: &mut PreferenceObjective,
    policy: &CausalLm,
    pairs: &[EncodedPair],
) -> Result<Vec<f64>> {
    let items: Vec<Item<'_, EncodedPair>> = pairs
        .iter()
        .enumerate()
        .map(|(key, example)| Item { key, example })
        .collect();
    let (_, outputs) = objective.forward(policy, &items)?;
    let beta = objective.loss.beta();
    Ok((0..pairs.len())
        .map(|i| {
            let delta = (outputs.policy_chosen[i] - outputs.reference_chosen[i])
                - (outputs.policy_rejected[i] - outputs.reference_rejected[i]);
            sigmoid(beta * delta)
        })
        .collect())
}

/// Runs online alignment of `model` (on an autodiff device) against the frozen `reference`.
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
    let out = &settings.out_dir;
    std::fs::create_dir_all(out).map_err(io_error(out))?;
    let pad = reference.config.pad_token_id();
    let mut objective =
        PreferenceObjective::new(settings.loss, reference, ReferenceMode::OnTheFly, pad);
    let sampling = Sampling::new(settings.temperature, settings.top_p, None)?;
    let schedule = Schedule {
        peak: settings.learning_rate,
        warmup_steps: (settings.warmup_ratio * settings.steps as f64) as usize,
        total_steps: settings.steps,
        min_ratio: 0.0,
    };
    schedule.validate()?;
    let mut optim = settings
        .optimizer
        .module_optimizer(settings.weight_decay, None);
    let mut columns = vec!["step", "split"];
    columns.extend(objective.metric_names());
    columns.extend([
        "sample/reward",
        "pairs",
        "skipped",
        "grad_norm",
        "learning_rate",
        "eval/reward",
        "eval/exact",
    ]);
    let mut log = MetricsLog::create(out, &columns, &[])?;
    let mut history = Vec::new();
    let record_eval =
        |model: &CausalLm, step: usize, history: &mut Vec<MetricRecord>, log: &mut MetricsLog| {
            let metrics = task.evaluate(&model.valid())?;
            if !metrics.is_empty() {
                let record = MetricRecord::new(step, "eval", metrics);
                log.append(&record)?;
                history.push(record);
            }
            Ok::<_, crate::JudgeError>(())
        };
    record_eval(&model, 0, &mut history, &mut log)?;

    let bar = progress_bar(
        settings.progress,
        settings.loss.name(),
        "steps",
        settings.steps,
        0,
    );
    let mut model = model;
    let (mut trained, mut skipped, mut done, mut interrupted) = (0usize, 0usize, 0usize, false);
    for step in 0..settings.steps {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupted = true;
            break;
        }
        // 1. Two samples per prompt from the current policy.
        let policy = model.valid();
        let mut samples = Vec::with_capacity(settings.prompts_per_step);
        let mut rewards = Vec::new();
        for j in 0..settings.prompts_per_step {
            let index = example_at(
                step * settings.prompts_per_step + j,
                task.prompts(),
                settings.seed,
            );
            let first = task.sample(
                &policy,
                index,
                sampling,
                sample_seed(settings.seed, step, j, 0),
            )?;
            let second = task.sample(
                &policy,
                index,
                sampling,
                sample_seed(settings.seed, step, j, 1),
            )?;
            rewards.extend(task.sample_reward(index, &first));
            rewards.extend(task.sample_reward(index, &second));
            samples.push((index, first, second));
        }
        // 2. Labels P(first ≻ second).
        let distinct: Vec<(usize, String, String)> =
            samples.into_iter().filter(|(_, a, b)| a != b).collect();
        let mut step_skipped = settings.prompts_per_step - distinct.len();
        let labels: Vec<Option<f64>> = match settings.labels {
            LabelSource::Judge => task
                .judge_labels(&distinct)?
                .into_iter()
                .map(Some)
                .collect(),
            LabelSource::Task => distinct
                .iter()
                .map(|(i, a, b)| task.task_label(*i, a, b))
                .collect::<Result<_>>()?,
            LabelSource::SelfPreference => {
                let unlabelled = distinct
                    .iter()
                    .map(|(i, a, b)| task.encode(*i, a, b, 1.0))
                    .collect::<Result<Vec<_>>>()?;
                self_labels(&mut objective, &policy, &unlabelled)?
                    .into_iter()
                    .map(Some)
                    .collect()
            }
        };
        // 3. Oriented, encoded pairs.
        let mut pairs = Vec::with_capacity(distinct.len());
        for ((index, first, second), label) in distinct.iter().zip(labels) {
            let Some(p) = label else {
                step_skipped += 1;
                continue;
            };
            let oriented = orient_pair(first.as_str(), second.as_str(), p)?;
            pairs.push(task.encode(
                *index,
                oriented.chosen,
                oriented.rejected,
                oriented.soft_label,
            )?);
        }
        skipped += step_skipped;
        let learning_rate = schedule.learning_rate(step);
        // 4. One optimizer step on the fresh pairs (none: the step only advances the schedule).
        let mut metrics = if pairs.is_empty() {
            vec![("loss", f64::NAN)]
        } else {
            let items: Vec<Item<'_, EncodedPair>> = pairs
                .iter()
                .enumerate()
                .map(|(key, example)| Item { key, example })
                .collect();
            let (mut grads, outputs) = objective.gradients(&model, &items)?;
            let grad_norm = match settings.max_grad_norm {
                Some(max) => clip_global_grad_norm(&model, &mut grads, max),
                None => global_grad_norm(&model, &grads),
            };
            model = optim.step(learning_rate, model, grads);
            trained += pairs.len();
            let mut metrics = objective.metrics(&outputs);
            metrics.push(("grad_norm", grad_norm));
            metrics
        };
        done = step + 1;
        if !rewards.is_empty() {
            metrics.push((
                "sample/reward",
                rewards.iter().sum::<f64>() / rewards.len() as f64,
            ));
        }
        metrics.push(("pairs", pairs.len() as f64));
        metrics.push(("skipped", step_skipped as f64));
        metrics.push(("learning_rate", learning_rate));
        let loss = metrics[0].1;
        let record = MetricRecord::new(done, "train", metrics);
        log.append(&record)?;
        history.push(record);
        bar.set_message(format!("loss {loss:.4}, {} pairs", pairs.len()));
        bar.inc(1);
        if settings.eval_every > 0 && done % settings.eval_every == 0 && done < settings.steps {
            record_eval(&model, done, &mut history, &mut log)?;
        }
    }
    bar.finish_and_clear();
    record_eval(&model, done, &mut history, &mut log)?;
    let figures = write_figures(&history, out, &format!("online {}", settings.loss.name()))?;
    let model_dir = out.join("model");
    task.save(&model.valid(), &model_dir)?;
    notify(&format!(
        "online: {done} steps, {trained} pairs trained, {skipped} skipped (no preference)"
    ));
    Ok(OnlineReport {
        steps: done,
        pairs: trained,
        skipped,
        history,
        figures,
        model_dir,
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Online alignment of a real model on the prompts of a preference file.
pub struct PromptTask<'a> {
    /// The policy's tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Encodes prompts (chat template) and responses, with truncation.
    pub encoder: Encoder<'a>,
    /// The training prompts.
    pub prompts: Vec<Prompt>,
    /// Tokens that end a sampled response.
    pub stop_tokens: Vec<u32>,
    /// Most new tokens per sample.
    pub max_new_tokens: usize,
    /// The judge, for `LabelSource::Judge`.
    pub judge: Option<&'a Judge>,
    /// Names the prompt file in errors.
    pub source: PathBuf,
    /// Where the policy's base model came from (named in an exported LoRA adapter).
    pub base_model: PathBuf,
}

impl<'a> PromptTask<'a> {
    /// A task over `prompts` for the loaded `policy`.
    pub fn new(
        policy: &'a Pretrained,
        prompts: Vec<Prompt>,
        truncation: Truncation,
        max_new_tokens: usize,
        judge: Option<&'a Judge>,
        source: &Path,
    ) -> Result<Self> {
        let encoder = Encoder::new(
            &policy.tokenizer,
            &policy.model.config,
            PromptTemplate::Auto,
            truncation,
            source,
        )?;
        let stop_tokens = policy.stop_tokens(encoder.uses_chat_template());
        Ok(Self {
            tokenizer: &policy.tokenizer,
            encoder,
            prompts,
            stop_tokens,
            max_new_tokens,
            judge,
            source: source.to_path_buf(),
            base_model: policy.source.clone(),
        })
    }

    fn prompt_ids(&self, index: usize) -> Result<Vec<u32>> {
        let mut ids = self.encoder.prompt_ids(&self.prompts[index])?;
        let keep = 256usize;
        if ids.len() > keep {
            ids.drain(..ids.len() - keep);
        }
        Ok(ids)
    }
}

impl OnlineTask for PromptTask<'_> {
    fn prompts(&self) -> usize {
        self.prompts.len()
    }

    fn sample(
        &self,
        policy: &CausalLm,
        index: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<String> {
        let config = GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling,
            seed,
            stop_tokens: self.stop_tokens.clone(),
        };
        let tokens = generate(policy, &self.prompt_ids(index)?, &config, |_| Ok(true))?;
        Ok(self.tokenizer.decode(&tokens, true)?)
    }

    fn encode(
        &self,
        index: usize,
        chosen: &str,
        rejected: &str,
        soft_label: f64,
    ) -> Result<EncodedPair> {
        let mut prompt = self.prompt_ids(index)?;
        let mut chosen = self.encoder.response_ids(chosen)?;
        let mut rejected = self.encoder.response_ids(rejected)?;
        let budget = self.prompt_limit();
        budget.apply(&mut prompt, &mut [&mut chosen, &mut rejected]);
        Ok(EncodedPair {
            prompt,
            chosen,
            rejected,
            soft_label,
            source_line: index + 1,
        })
    }

    fn judge_labels(&self, pairs: &[(usize, String, String)]) -> Result<Vec<f64>> {
        let Some(judge) = self.judge else {
            return Err(setting("label-by", "judge labels need --judge"));
        };
        let items: Vec<JudgeItem<'_>> = pairs
            .iter()
            .map(|(i, a, b)| JudgeItem {
                context: &self.prompts[*i],
                first: a,
                second: b,
                line: i + 1,
            })
            .collect();
        Ok(judge
            .judge(&items, &self.source)?
            .into_iter()
            .map(|j| j.p)
            .collect())
    }

    /// The model in Hugging Face layout (merged, for a LoRA policy), and a LoRA policy's adapter
    /// in PEFT's layout beside it (`adapter/`).
    fn save(&self, policy: &CausalLm, dir: &Path) -> Result<()> {
        if policy.has_adapters() {
            let base = self.base_model.display().to_string();
            save_adapter(policy, &dir.with_file_name("adapter"), &base)?;
        }
        Ok(save_pretrained(policy, self.tokenizer, dir)?)
    }
}

impl PromptTask<'_> {
    fn prompt_limit(&self) -> Truncation {
        Truncation {
            max_length: 256 + self.max_new_tokens + 1,
            max_prompt_length: 256,
        }
    }
}

/// The built-in demo as an online task: prompts of the digit task, samples of up to six
/// tokens, Bradley–Terry labels on the true reward, held-out greedy true reward as evaluation.
pub struct DemoTask {
    tokenizer: TextTokenizer,
    train: Vec<demo_task::Prompt>,
    heldout: Vec<demo_task::Prompt>,
}

/// Settings of the demo's supervised stage (the reference of online alignment).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReferenceSettings {
    /// Seed of the prompt split, demonstrations, initial weights.
    pub seed: u64,
    /// Held-out prompts.
    pub heldout_prompts: usize,
    /// Noisy demonstrations per training prompt.
    pub demonstrations_per_prompt: usize,
    /// SFT steps.
    pub steps: usize,
    /// SFT batch size.
    pub batch_size: usize,
    /// SFT peak learning rate.
    pub learning_rate: f64,
    /// SFT output folder.
    pub out_dir: PathBuf,
    /// Progress bar.
    pub progress: bool,
    /// Where the reference trains.
    pub device: burn::tensor::Device,
}

impl DemoTask {
    /// Trains the demo's SFT reference (as `softalign align` with no data does) and returns it
    /// (on the autodiff device) with the task.
    pub fn with_reference(settings: &DemoReferenceSettings) -> Result<(Self, CausalLm)> {
        let tokenizer = demo_task::tokenizer()?;
        let device = settings.device.clone().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut prompts = demo_task::all_prompts();
        prompts.shuffle(&mut rng);
        let (heldout, train) = prompts.split_at(settings.heldout_prompts.min(prompts.len() - 1));
        let encode = |prompt: &demo_task::Prompt, response: &str| -> Result<EncodedExample> {
            let mut ids = tokenizer.encode(response)?;
            ids.push(demo_task::EOS_ID);
            Ok(EncodedExample {
                prompt: tokenizer.encode(&demo_task::prompt_text(prompt))?,
                response: ids,
                source_line: 0,
            })
        };
        let mut examples = Vec::new();
        for prompt in train {
            for _ in 0..settings.demonstrations_per_prompt {
                examples.push(encode(
                    prompt,
                    &demo_task::noisy_demonstration(prompt, &mut rng),
                )?);
            }
        }
        let loop_settings = LoopSettings {
            optimizer: OptimizerKind::Adopt,
            weight_decay: 0.0,
            schedule: Schedule {
                peak: settings.learning_rate,
                warmup_steps: settings.steps / 10,
                total_steps: settings.steps,
                min_ratio: 0.1,
            },
            batch_size: settings.batch_size,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            eval_every: 0,
            eval_batch_size: 256,
            save_every: 0,
            keep_checkpoints: 1,
            seed: settings.seed,
            out_dir: settings.out_dir.clone(),
            progress: settings.progress,
            label: "sft".into(),
            replicas: Default::default(),
        };
        let initial = seeded_model(&demo_task::model_config(), settings.seed, &device)?;
        let outcome = train_loop(
            initial,
            Run {
                objective: &mut SftObjective {
                    pad_id: demo_task::PAD_ID,
                },
                train: &examples,
                eval: &[],
                settings: &loop_settings,
                resume: None,
                stop: None,
            },
        )?;
        let task = Self {
            tokenizer,
            train: train.to_vec(),
            heldout: heldout.to_vec(),
        };
        Ok((task, outcome.model))
    }
}

impl OnlineTask for DemoTask {
    fn prompts(&self) -> usize {
        self.train.len()
    }

    fn sample(
        &self,
        policy: &CausalLm,
        index: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<String> {
        Ok(demo_pairs::sample_response(
            policy,
            &self.tokenizer,
            &self.train[index],
            sampling,
            seed,
        )?)
    }

    fn encode(
        &self,
        index: usize,
        chosen: &str,
        rejected: &str,
        soft_label: f64,
    ) -> Result<EncodedPair> {
        let pair = demo_pairs::LabelledPair {
            prompt: self.train[index],
            chosen: chosen.to_string(),
            rejected: rejected.to_string(),
            soft_label,
        };
        Ok(demo_pairs::encode_pair(&self.tokenizer, &pair)?)
    }

    fn task_label(&self, index: usize, first: &str, second: &str) -> Result<Option<f64>> {
        let prompt = &self.train[index];
        let (r1, r2) = (
            demo_task::true_reward(prompt, first),
            demo_task::true_reward(prompt, second),
        );
        Ok((r1 != r2).then(|| demo_pairs::bradley_terry(r1, r2)))
    }

    fn sample_reward(&self, index: usize, response: &str) -> Option<f64> {
        Some(demo_task::true_reward(&self.train[index], response))
    }

    fn evaluate(&self, policy: &CausalLm) -> Result<Vec<(&'static str, f64)>> {
        let mut total = 0.0;
        let mut exact = 0usize;
        for prompt in &self.heldout {
            let answer =
                demo_pairs::sample_response(policy, &self.tokenizer, prompt, Sampling::Greedy, 0)?;
            let reward = demo_task::true_reward(prompt, &answer);
            total += reward;
            exact += usize::from(reward == 0.0);
        }
        let n = self.heldout.len().max(1) as f64;
        Ok(vec![
            ("eval/reward", total / n),
            ("eval/exact", exact as f64 / n),
        ])
    }

    fn save(&self, policy: &CausalLm, dir: &Path) -> Result<()> {
        Ok(save_pretrained(policy, &self.tokenizer, dir)?)
    }
}
