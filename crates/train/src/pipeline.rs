//! `sft` and `align` from files: validated settings, data loading and tokenization, the shared
//! loop, figures and the exported model.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::module::Module;
use softalign_data::{Format, LoadOptions, ValidationPolicy, split_train_heldout};
use softalign_model::{
    CausalLm, DeviceSpec, LoraConfig, ModelConfig, Pretrained, TextTokenizer, WeightFormat,
    load_pretrained_with_adapter_as, save_adapter, save_pretrained,
};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;

use crate::checkpoint::{TRAINER_STATE_FILE, find_checkpoint, list_checkpoints};
use crate::encode::{Encoder, PromptTemplate};
use crate::error::{Result, setting};
use crate::figures::write_figures;
use crate::metrics::MetricRecord;
use crate::objective::{Objective, PreferenceObjective, ReferenceMode, SftObjective};
use crate::schedule::Schedule;
use crate::sequence::Truncation;
use crate::sft_data::load_sft;
use crate::trainer::{LoopSettings, Replicas, Run, train_loop};

/// Folder of the exported model (Hugging Face layout) inside the output folder.
pub const MODEL_DIR: &str = "model";
/// Folder of the exported LoRA adapter (PEFT layout) inside the output folder.
pub const ADAPTER_DIR: &str = "adapter";

/// Settings shared by `sft` and `align`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// Hugging Face model folder or `.gguf` file.
    pub model: PathBuf,
    /// The data file.
    pub data: PathBuf,
    /// Preference format (`None` detects it); unused by SFT.
    pub format: Option<Format>,
    /// Stop at the first bad record (strict) or skip bad records.
    pub validation: ValidationPolicy,
    /// τ of UltraFeedback-style labels.
    pub label_temperature: f64,
    /// Fraction of prompts held out for evaluation.
    pub heldout_fraction: f64,
    /// At most this many held-out examples are evaluated.
    pub max_eval_examples: Option<usize>,
    /// Output folder.
    pub out_dir: PathBuf,
    /// Prompt rendering.
    pub template: PromptTemplate,
    /// Sequence length limits.
    pub truncation: Truncation,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Weight decay.
    pub weight_decay: f64,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of the steps spent in linear warmup, in [0, 1).
    pub warmup_ratio: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Passes over the training data (when `max_steps` is not set).
    pub epochs: usize,
    /// Optimizer steps of the run; overrides `epochs`.
    pub max_steps: Option<usize>,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per step.
    pub grad_accum: usize,
    /// Global gradient-norm clip.
    pub max_grad_norm: Option<f64>,
    /// Evaluate every this many steps (0: before and after only).
    pub eval_every: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Checkpoint every this many steps (0: at the end and on interruption only).
    pub save_every: usize,
    /// Checkpoints kept.
    pub keep_checkpoints: usize,
    /// Seed of the split and the data order.
    pub seed: u64,
    /// Progress bar on stderr.
    pub progress: bool,
    /// Resume from this checkpoint or output folder.
    pub resume: Option<PathBuf>,
    /// Recompute activations in the backward pass instead of keeping them (less memory, more
    /// compute; the gradients are the same).
    pub gradient_checkpointing: bool,
    /// Train LoRA adapters with these settings on the frozen model instead of every weight.
    pub lora: Option<LoraConfig>,
    /// Start from this PEFT adapter (and train it further) instead of fresh adapters.
    pub adapter: Option<PathBuf>,
    /// After a LoRA run, also write the model with the adapters merged to `OUT/model/`.
    pub merge: bool,
    /// Where to train: the CPU, a GPU, or several CUDA GPUs (data parallel).
    pub device: DeviceSpec,
    /// How the model's linear weights are held (`--quantize`): a frozen base under LoRA stays
    /// in its block format; full fine-tuning de-quantizes the weights it trains.
    pub weight_format: WeightFormat,
}

impl TrainSettings {
    /// Defaults for `model`, `data` and `out_dir` (TRL's where it has them: β per loss,
    /// learning rate 1e-6 for alignment, 2e-5 for SFT, one epoch, warmup ratio 0.1).
    pub fn new(model: PathBuf, data: PathBuf, out_dir: PathBuf) -> Self {
        Self {
            model,
            data,
            format: None,
            validation: ValidationPolicy::Strict,
            label_temperature: 1.0,
            heldout_fraction: 0.05,
            max_eval_examples: Some(64),
            out_dir,
            template: PromptTemplate::Auto,
            truncation: Truncation {
                max_length: 512,
                max_prompt_length: 256,
            },
            optimizer: OptimizerKind::Adopt,
            weight_decay: 0.0,
            learning_rate: 1e-6,
            warmup_ratio: 0.1,
            min_lr_ratio: 0.0,
            epochs: 1,
            max_steps: None,
            batch_size: 4,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            eval_every: 0,
            eval_batch_size: 8,
            save_every: 0,
            keep_checkpoints: 2,
            seed: 0,
            progress: true,
            resume: None,
            gradient_checkpointing: false,
            lora: None,
            adapter: None,
            weight_format: WeightFormat::Native,
            merge: false,
            device: DeviceSpec::Cpu,
        }
    }

    /// Checks what can be checked before the data is read.
    pub fn validate(&self) -> Result<()> {
        self.truncation.validate()?;
        if !(0.0..1.0).contains(&self.heldout_fraction) {
            return Err(setting(
                "heldout-fraction",
                format!("must be in [0, 1), got {}", self.heldout_fraction),
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(setting(
                "warmup-ratio",
                format!("must be in [0, 1), got {}", self.warmup_ratio),
            ));
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            return Err(setting("epochs", "must be at least 1"));
        }
        if self.max_steps == Some(0) {
            return Err(setting("max-steps", "must be at least 1"));
        }
        if !(self.label_temperature.is_finite() && self.label_temperature > 0.0) {
            return Err(setting(
                "label-temperature",
                format!("must be positive, got {}", self.label_temperature),
            ));
        }
        if let Some(lora) = &self.lora {
            if self.adapter.is_some() {
                return Err(setting(
                    "adapter",
                    "takes its LoRA settings from its adapter_config.json; drop --lora-r",
                ));
            }
            lora.validate()
                .map_err(|(flag, problem)| setting(flag, problem))?;
        }
        if self.merge && self.lora.is_none() && self.adapter.is_none() {
            return Err(setting(
                "merge",
                "needs LoRA adapters (--lora-r or --adapter); a full fine-tune is always written to model/",
            ));
        }
        self.loop_settings(1, "check").validate()
    }

    /// Whether the run trains LoRA adapters rather than every weight.
    pub fn uses_lora(&self) -> bool {
        self.lora.is_some() || self.adapter.is_some()
    }

    /// The loop's settings for a run of `total_steps` steps.
    pub fn loop_settings(&self, total_steps: usize, label: &str) -> LoopSettings {
        let warmup = (self.warmup_ratio * total_steps as f64).round() as usize;
        LoopSettings {
            optimizer: self.optimizer,
            weight_decay: self.weight_decay,
            schedule: Schedule {
                peak: self.learning_rate,
                warmup_steps: warmup.min(total_steps.saturating_sub(1)),
                total_steps,
                min_ratio: self.min_lr_ratio,
            },
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            max_grad_norm: self.max_grad_norm,
            eval_every: self.eval_every,
            eval_batch_size: self.eval_batch_size,
            save_every: self.save_every,
            keep_checkpoints: self.keep_checkpoints,
            seed: self.seed,
            out_dir: self.out_dir.clone(),
            progress: self.progress,
            label: label.to_string(),
            replicas: Default::default(),
        }
    }

    /// Steps of the run over `train_examples` examples.
    pub fn total_steps(&self, train_examples: usize) -> usize {
        self.max_steps.unwrap_or_else(|| {
            // Validated not to overflow; an absurd epoch count saturates into a very long run.
            let per_step = self.batch_size.saturating_mul(self.grad_accum).max(1);
            self.epochs
                .saturating_mul(train_examples)
                .div_ceil(per_step)
                .max(1)
        })
    }
}

/// Settings of `align`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignSettings {
    /// Everything `sft` has too.
    pub train: TrainSettings,
    /// The preference loss and its β (α, γ).
    pub loss: PrefLoss,
    /// Reference log-probabilities cached or on the fly.
    pub reference: ReferenceMode,
}

impl AlignSettings {
    /// Checks every setting.
    pub fn validate(&self) -> Result<()> {
        self.loss.validate()?;
        self.train.validate()
    }
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Training examples (pairs for `align`).
    pub train_examples: usize,
    /// Held-out examples evaluated.
    pub eval_examples: usize,
    /// Examples cut by the truncation policy.
    pub truncated: usize,
    /// Records skipped as invalid (skip policy), with their problems.
    pub skipped: Vec<String>,
    /// Steps completed and planned.
    pub steps: (usize, usize),
    /// Whether the run stopped early on request (a checkpoint was saved).
    pub interrupted: bool,
    /// The last checkpoint.
    pub checkpoint: Option<PathBuf>,
    /// The exported model (not when interrupted; for a LoRA run only with `merge`).
    pub exported: Option<PathBuf>,
    /// The exported LoRA adapter (not when interrupted).
    pub adapter: Option<PathBuf>,
    /// Figures written.
    pub figures: Vec<PathBuf>,
    /// The last evaluation's metrics.
    pub final_eval: Option<MetricRecord>,
    /// The last training step's metrics.
    pub final_train: Option<MetricRecord>,
    /// Seconds from start to end.
    pub seconds: f64,
}

/// Loads `--model` for training; with LoRA settings or `--adapter`, adds the adapters and
/// freezes the base.
fn load_model(settings: &TrainSettings, notify: &mut dyn FnMut(&str)) -> Result<Pretrained> {
    let started = Instant::now();
    let device = settings.device.open()?.remove(0);
    let mut loaded = load_pretrained_with_adapter_as(
        &settings.model,
        settings.adapter.as_deref(),
        &device.clone().autodiff(),
        settings.weight_format,
    )?;
    if let Some(lora) = &settings.lora {
        crate::lora::check_rank(&loaded.model, lora)?;
        loaded.model = loaded.model.with_lora(lora, settings.seed);
    }
    if !loaded.model.has_adapters() {
        // Every weight is trained: quantized ones become f32 parameters.
        loaded.model = loaded.model.dequantize_linears(&device.autodiff());
    }
    let (quantized, bytes) = loaded.model.quantized_weights();
    if quantized > 0 {
        notify(&format!(
            "base: {quantized} linear weights kept quantized ({:.1} MB), frozen under the adapters",
            bytes as f64 / 1e6
        ));
    }
    loaded.model = loaded
        .model
        .with_gradient_checkpointing(settings.gradient_checkpointing)?;
    if let Some(lora) = loaded.model.lora_config() {
        notify(&format!(
            "LoRA: rank {}, alpha {}, dropout {}, on {} ({} trainable parameters; the base is frozen)",
            lora.r,
            lora.alpha,
            lora.dropout,
            lora.targets_text(),
            loaded.model.adapters().num_params()
        ));
    }
    let c = &loaded.model.config;
    notify(&format!(
        "model: {} ({} layers, width {}, vocabulary {}) loaded in {:.1} s",
        settings.model.display(),
        c.num_hidden_layers,
        c.hidden_size,
        c.vocab_size,
        started.elapsed().as_secs_f64()
    ));
    Ok(loaded)
}

#[allow(clippy::too_many_arguments)]
fn finish<O: Objective>(
    settings: &TrainSettings,
    label: &str,
    loaded: Pretrained,
    objective: &mut O,
    train: &[O::Example],
    eval: &[O::Example],
    stop: Option<&AtomicBool>,
    mut report: RunReport,
    notify: &mut dyn FnMut(&str),
) -> Result<RunReport> {
    let started = Instant::now();
    check_batch(
        settings,
        train.len(),
        &loaded.model.config,
        O::SEQUENCES_PER_EXAMPLE,
    )?;
    let total = settings.total_steps(train.len());
    let mut loop_settings = settings.loop_settings(total, label);
    if settings.device.is_several() {
        loop_settings.replicas = Replicas::Devices(settings.device.open()?);
    }
    let resume = resume_checkpoint(settings.resume.as_deref(), notify)?;
    let outcome = train_loop(
        loaded.model,
        Run {
            objective,
            train,
            eval,
            settings: &loop_settings,
            resume: resume.as_deref(),
            stop,
        },
    )?;
    report.figures = write_figures(&outcome.history, &settings.out_dir, label)?;
    report.steps = (outcome.steps, total);
    report.interrupted = outcome.interrupted;
    report.checkpoint = outcome.checkpoint.clone();
    report.final_eval = outcome
        .history
        .iter()
        .rev()
        .find(|r| r.split == "eval")
        .cloned();
    report.final_train = outcome
        .history
        .iter()
        .rev()
        .find(|r| r.split == "train")
        .cloned();
    if !outcome.interrupted {
        (report.adapter, report.exported) = export_trained(
            &outcome.model.valid(),
            &loaded.tokenizer,
            &settings.out_dir,
            &settings.model,
            settings.merge,
        )?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Writes a finished run's outputs into `out_dir`: a LoRA model's adapters to `adapter/` (PEFT
/// layout, naming `base_model` as their base) and the model in Hugging Face layout to `model/`
/// (for a LoRA model only with `merge`: the adapters merged), each whole or not at all. Returns
/// the adapter and model folders written.
pub fn export_trained(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    out_dir: &Path,
    base_model: &Path,
    merge: bool,
) -> Result<(Option<PathBuf>, Option<PathBuf>)> {
    let mut adapter = None;
    if model.has_adapters() {
        let dir = out_dir.join(ADAPTER_DIR);
        // A failed write (a full disk) leaves no half-written adapter folder behind.
        save_adapter(model, &dir, &base_model.display().to_string())?;
        adapter = Some(dir);
    }
    let mut exported = None;
    if !model.has_adapters() || merge {
        let dir = out_dir.join(MODEL_DIR);
        export_model(model, tokenizer, &dir)?;
        exported = Some(dir);
    }
    Ok((adapter, exported))
}

/// The checkpoint a `--resume` path continues from: the checkpoint itself, or a run folder's
/// newest one; `None` (start from the beginning) without `--resume`, or for a run folder whose
/// run stopped before its first checkpoint.
pub fn resume_checkpoint(
    resume: Option<&Path>,
    notify: &mut dyn FnMut(&str),
) -> Result<Option<PathBuf>> {
    let resume = match resume {
        Some(run) if stopped_before_a_checkpoint(run) => {
            notify(&format!(
                "{} holds no checkpoint yet (its run stopped before the first): starting from the beginning",
                run.display()
            ));
            None
        }
        other => other.map(find_checkpoint).transpose()?,
    };
    if let Some(dir) = &resume {
        notify(&format!("resuming from {}", dir.display()));
    }
    Ok(resume)
}

/// Whether `path` is a run's output folder (it holds the run's `config.toml`) in which no
/// checkpoint was completed: `--resume` of it starts the run from the beginning.
fn stopped_before_a_checkpoint(path: &Path) -> bool {
    config_path(path).is_file()
        && !path.join(TRAINER_STATE_FILE).is_file()
        && list_checkpoints(path).is_empty()
}

/// Refuses a micro-batch larger than the training data, or whose activations cannot fit in this
/// machine's memory: about
/// `batch × sequences × max-length × (3 × vocabulary + layers × (14 × width + 4 × FFN width))`
/// f32 values (logits with their softmax and gradient, and each block's saved activations).
/// The estimate is rough, but a batch beyond all of the memory can never run, and without this
/// check it is killed by the kernel after minutes of swapping.
fn check_batch(
    settings: &TrainSettings,
    train_examples: usize,
    config: &ModelConfig,
    sequences_per_example: usize,
) -> Result<()> {
    if train_examples > 0 && settings.batch_size > train_examples {
        return Err(setting(
            "batch-size",
            format!(
                "{} is more than the {train_examples} training examples",
                settings.batch_size
            ),
        ));
    }
    let per_token = 3 * config.vocab_size as u128
        + config.num_hidden_layers as u128
            * (14 * config.hidden_size as u128 + 4 * config.intermediate_size as u128);
    let bytes = settings.batch_size as u128
        * sequences_per_example as u128
        * settings.truncation.max_length as u128
        * per_token
        * 4;
    match softalign_model::memory::total_bytes() {
        Some(total) if bytes > total as u128 => Err(setting(
            "batch-size",
            format!(
                "a micro-batch of {} needs about {:.1} GB of activations at --max-length {}, more than this machine's {:.1} GB; lower --batch-size (use --grad-accum for the same step size)",
                settings.batch_size,
                bytes as f64 / 1e9,
                settings.truncation.max_length,
                total as f64 / 1e9
            ),
        )),
        _ => Ok(()),
    }
}

/// Writes the model folder `dir` whole or not at all (`softalign_durable::replace_dir_atomic`).
/// A run killed during the export leaves the previous `dir` (or none) and a temporary folder the
/// next run to lock the output folder removes.
fn export_model(model: &CausalLm, tokenizer: &TextTokenizer, dir: &Path) -> Result<()> {
    softalign_durable::replace_dir_atomic(dir, |partial| {
        save_pretrained(model, tokenizer, partial)?;
        crate::test_hook::reached("export");
        Ok(())
    })
}

fn limit_eval<T>(mut eval: Vec<T>, limit: Option<usize>) -> Vec<T> {
    if let Some(limit) = limit {
        eval.truncate(limit);
    }
    eval
}

/// Runs `softalign align`: reads and validates the preference file, holds out a fraction of its
/// prompts, tokenizes with the model's tokenizer and chat template, trains with the chosen loss
/// (reference = the initial model), writes metrics, figures and checkpoints into `out_dir`, and
/// exports the final model in Hugging Face layout to `out_dir/model`.
pub fn run_align(
    settings: &AlignSettings,
    stop: Option<&AtomicBool>,
    notify: &mut dyn FnMut(&str),
) -> Result<RunReport> {
    settings.validate()?;
    let t = &settings.train;
    let options = LoadOptions {
        format: t.format,
        temperature: t.label_temperature,
        policy: t.validation,
    };
    let loaded_pairs = softalign_data::load(&t.data, &options)?;
    let skipped: Vec<String> = loaded_pairs
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    let split = split_train_heldout(loaded_pairs.pairs, t.heldout_fraction, t.seed)?;
    let heldout = limit_eval(split.heldout, t.max_eval_examples);
    let loaded = load_model(t, notify)?;
    let mut encoder = Encoder::new(
        &loaded.tokenizer,
        &loaded.model.config,
        t.template,
        t.truncation,
        &t.data,
    )?;
    let train = split
        .train
        .iter()
        .map(|p| encoder.pair(p))
        .collect::<Result<Vec<_>>>()?;
    let eval = heldout
        .iter()
        .map(|p| encoder.pair(p))
        .collect::<Result<Vec<_>>>()?;
    notify(&format!(
        "data: {} pairs for training, {} held out; {} truncated to {} tokens; prompts {}",
        train.len(),
        eval.len(),
        encoder.truncated,
        t.truncation.max_length,
        if encoder.uses_chat_template() {
            "in the chat template"
        } else {
            "as plain text"
        }
    ));
    let report = RunReport {
        train_examples: train.len(),
        eval_examples: eval.len(),
        truncated: encoder.truncated,
        skipped,
        steps: (0, 0),
        interrupted: false,
        checkpoint: None,
        exported: None,
        adapter: None,
        figures: Vec::new(),
        final_eval: None,
        final_train: None,
        seconds: 0.0,
    };
    // With adapters, the reference is the same network with them switched off (no second copy).
    let mut objective = PreferenceObjective::new(
        settings.loss,
        &loaded.model.without_adapters(),
        settings.reference,
        loaded.model.config.pad_token_id(),
    );
    finish(
        t,
        settings.loss.name(),
        loaded,
        &mut objective,
        &train,
        &eval,
        stop,
        report,
        notify,
    )
}

/// Runs `softalign sft`: prompt → response examples, loss on response tokens only; otherwise as
/// [`run_align`].
pub fn run_sft(
    settings: &TrainSettings,
    stop: Option<&AtomicBool>,
    notify: &mut dyn FnMut(&str),
) -> Result<RunReport> {
    settings.validate()?;
    let data = load_sft(&settings.data, settings.validation)?;
    let loaded = load_model(settings, notify)?;
    let mut encoder = Encoder::new(
        &loaded.tokenizer,
        &loaded.model.config,
        settings.template,
        settings.truncation,
        &settings.data,
    )?;
    let heldout_every = if settings.heldout_fraction > 0.0 {
        (1.0 / settings.heldout_fraction).round().max(2.0) as usize
    } else {
        usize::MAX
    };
    let (mut train, mut eval) = (Vec::new(), Vec::new());
    for (i, record) in data.records.iter().enumerate() {
        let example = encoder.example(&record.prompt, &record.response, record.line)?;
        if (i + 1) % heldout_every == 0 {
            eval.push(example);
        } else {
            train.push(example);
        }
    }
    let eval = limit_eval(eval, settings.max_eval_examples);
    notify(&format!(
        "data: {} examples for training, {} held out; {} truncated to {} tokens",
        train.len(),
        eval.len(),
        encoder.truncated,
        settings.truncation.max_length
    ));
    let report = RunReport {
        train_examples: train.len(),
        eval_examples: eval.len(),
        truncated: encoder.truncated,
        skipped: data.problems,
        steps: (0, 0),
        interrupted: false,
        checkpoint: None,
        exported: None,
        adapter: None,
        figures: Vec::new(),
        final_eval: None,
        final_train: None,
        seconds: 0.0,
    };
    let mut objective = SftObjective {
        pad_id: loaded.model.config.pad_token_id(),
    };
    finish(
        settings,
        "sft",
        loaded,
        &mut objective,
        &train,
        &eval,
        stop,
        report,
        notify,
    )
}

/// The output folder's resolved configuration file.
pub fn config_path(out_dir: &Path) -> PathBuf {
    out_dir.join("config.toml")
}
