//! `softalign align`: preference alignment of a model on a data file, or the built-in demo when
//! neither `--model` nor `--data` is given.
//!
//! Flags parse into low-level values here ([`TrainFlags`], [`LossFlags`]: strings and numbers,
//! every one optional), layered as defaults < the checkpoint's config.toml (with `--resume`) <
//! `--config FILE` < flags, then validated into `softalign_train`'s settings. The resolved values
//! are written beside the outputs as `config.toml`, which `--config` reads back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use softalign_data::{DataError, Format, ValidationPolicy};
use softalign_model::{DeviceSpec, LoraConfig};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;
use softalign_train::checkpoint::CHECKPOINTS_DIR;
use softalign_train::run_dir::{self, RunLock};

pub use crate::config_file::{ConfigFile, LOSS_KEYS, TRAIN_KEYS, layer, read_config};
use crate::online::{ONLINE_KEYS, OnlineFlags};
use softalign_train::demo::{DemoSettings, run_demo};
use softalign_train::{
    AlignSettings, PromptTemplate, ReferenceMode, RunReport, TrainError, TrainSettings, Truncation,
    config_path, run_align,
};

/// Flags shared by `sft` and `align`; also the keys of a `--config` TOML file.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct TrainFlags {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Data file (JSONL or JSON array).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Output folder: metrics, figures, checkpoints, config.toml, model/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Preference format: auto, native, trl, hh, shp, ultrafeedback, votes, sharegpt.
    #[arg(long)]
    pub format: Option<String>,
    /// Skip bad records (counted and reported) instead of stopping at them.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_invalid: bool,
    /// τ of UltraFeedback labels p̂ = σ((score_chosen − score_rejected)/τ).
    #[arg(long)]
    pub label_temperature: Option<f64>,
    /// Fraction of prompts held out for evaluation, in [0, 1) [default 0.05].
    #[arg(long)]
    pub heldout_fraction: Option<f64>,
    /// Evaluate at most this many held-out examples [default 64].
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// Prompt rendering: auto (the chat template when the tokenizer has one), chat, plain.
    #[arg(long)]
    pub template: Option<String>,
    /// Most tokens of prompt + response [default 512]. Truncation: the prompt loses tokens
    /// from its start (down to --max-prompt-length), then the response from its end.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Prompt tokens kept at least when a sequence is too long [default: half of --max-length].
    #[arg(long)]
    pub max_prompt_length: Option<usize>,
    /// Optimizer: adopt, adam, adamw, amsgrad [default adopt].
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Peak learning rate [default 1e-6 for align, 2e-5 for sft].
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Weight decay (decoupled for adopt and adamw, L2 for adam and amsgrad) [default 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Fraction of steps of linear warmup before the cosine decay [default 0.1].
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Final learning rate as a fraction of the peak [default 0].
    #[arg(long)]
    pub min_lr_ratio: Option<f64>,
    /// Passes over the training data [default 1].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Examples (pairs) per micro-batch [default 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step [default 1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Clip the global gradient norm to this; 0 turns clipping off [default 1].
    #[arg(long, allow_negative_numbers = true)]
    pub max_grad_norm: Option<f64>,
    /// Evaluate every N steps; 0: before and after training only [default 0].
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Examples per evaluation batch [default 8].
    #[arg(long)]
    pub eval_batch_size: Option<usize>,
    /// Checkpoint every N steps; 0: at the end and at Ctrl-C only [default 0].
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Newest checkpoints kept [default 2].
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Seed of the held-out split and the data order [default 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_progress: bool,
    /// Gradient checkpointing: keep one hidden state per decoder block and recompute each block
    /// in the backward pass instead of keeping its activations: less memory, one more forward
    /// pass of the blocks, the same gradients (LoRA dropout must be 0).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gradient_checkpointing: bool,
    /// LoRA rank: train low-rank adapters on the frozen model instead of every weight; 0
    /// fine-tunes every weight [default 0].
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA α: the adapters' update is scaled by α/r [default 8, PEFT's].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapters' input during training, in [0, 1) [default 0].
    #[arg(long, allow_negative_numbers = true)]
    pub lora_dropout: Option<f64>,
    /// Modules to adapt: all-linear, or a comma-separated list of q_proj, k_proj, v_proj,
    /// o_proj, gate_proj, up_proj, down_proj (Phi-3: qkv_proj, o_proj, gate_up_proj,
    /// down_proj) [default all-linear].
    #[arg(long)]
    pub lora_targets: Option<String>,
    /// Start from this PEFT adapter folder (adapter_config.json, adapter_model.safetensors) on
    /// --model and train it further.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// After a LoRA run, also write the model with the adapters merged to OUT/model/.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merge: bool,
    /// Where to train: cpu, wgpu, wgpu:N, cuda, cuda:N, or several CUDA GPUs cuda:0,cuda:1,…
    /// (data parallel: each batch is split across them) [default cpu]. GPU backends need a
    /// binary built with --features wgpu or cuda.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,
}

/// Loss flags of `align`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct LossFlags {
    /// Loss: dpo, cdpo, ipo, cipo, ropo, gdpo, gipo, gropo [default gdpo].
    #[arg(long)]
    pub loss: Option<String>,
    /// β [default: the loss's, e.g. 0.1 for dpo, 0.3 for gdpo].
    #[arg(long, allow_negative_numbers = true)]
    pub beta: Option<f64>,
    /// α of ropo and gropo [default 2].
    #[arg(long, allow_negative_numbers = true)]
    pub alpha: Option<f64>,
    /// γ of ropo and gropo [default 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub gamma: Option<f64>,
    /// Reference log-probabilities: cached (computed once per pair) or on-the-fly [default cached].
    #[arg(long)]
    pub reference: Option<String>,
}

/// Flags of `softalign align`.
#[derive(Debug, Args)]
pub struct AlignArgs {
    #[command(flatten)]
    train: TrainFlags,
    #[command(flatten)]
    loss: LossFlags,
    /// TOML file holding any of the flags (kebab-case keys, e.g. `max-steps = 4`); flags given
    /// on the command line win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from a checkpoint folder, or from an output folder's newest checkpoint; the
    /// output folder's config.toml supplies the settings.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace the run that --out already holds (its config, metrics, figures, checkpoints and
    /// model; other files stay); without it such a folder is refused.
    #[arg(long)]
    overwrite: bool,
    #[command(flatten)]
    online: OnlineFlags,
}

macro_rules! fill {
    ($into:expr, $from:expr; $($field:ident),* $(,)?) => {
        $( if $into.$field.is_none() { $into.$field = $from.$field.clone(); } )*
    };
}

impl TrainFlags {
    /// The training flags of a config file, its relative paths (`model`, `data`, `out`,
    /// `adapter`) taken as relative to the file's folder, as a config file's readers expect.
    pub fn from_config_file(file: &ConfigFile) -> Result<Self> {
        let mut flags: TrainFlags = layer(file)?;
        if let Some(dir) = file.path().parent().filter(|d| !d.as_os_str().is_empty()) {
            for path in [
                &mut flags.model,
                &mut flags.data,
                &mut flags.out,
                &mut flags.adapter,
            ]
            .into_iter()
            .flatten()
            {
                if path.is_relative() {
                    *path = dir.join(&*path);
                }
            }
        }
        Ok(flags)
    }

    /// Takes every value this lacks from `lower` (a lower-priority layer).
    pub fn fill_from(&mut self, lower: &TrainFlags) {
        fill!(self, lower; model, data, out, format, label_temperature, heldout_fraction,
            max_eval_examples, template, max_length, max_prompt_length, optimizer, learning_rate,
            weight_decay, warmup_ratio, min_lr_ratio, epochs, max_steps, batch_size, grad_accum,
            max_grad_norm, eval_every, eval_batch_size, save_every, keep_checkpoints, seed,
            lora_r, lora_alpha, lora_dropout, lora_targets, adapter, device);
        self.skip_invalid |= lower.skip_invalid;
        self.no_progress |= lower.no_progress;
        self.gradient_checkpointing |= lower.gradient_checkpointing;
        self.merge |= lower.merge;
    }

    /// Refuses integers above `i64::MAX`: a run's `config.toml` (TOML integers are i64) could
    /// not hold them, so they would stop the run only when it is written, without naming the flag.
    pub(crate) fn check_integer_range(&self) -> Result<()> {
        let widen = |v: Option<usize>| v.map(|v| v as u64);
        let integers = [
            ("--max-eval-examples", widen(self.max_eval_examples)),
            ("--max-length", widen(self.max_length)),
            ("--max-prompt-length", widen(self.max_prompt_length)),
            ("--epochs", widen(self.epochs)),
            ("--max-steps", widen(self.max_steps)),
            ("--batch-size", widen(self.batch_size)),
            ("--grad-accum", widen(self.grad_accum)),
            ("--eval-every", widen(self.eval_every)),
            ("--eval-batch-size", widen(self.eval_batch_size)),
            ("--save-every", widen(self.save_every)),
            ("--keep-checkpoints", widen(self.keep_checkpoints)),
            ("--seed", self.seed),
            ("--lora-r", widen(self.lora_r)),
        ];
        for (flag, value) in integers {
            if let Some(value) = value
                && value > i64::MAX as u64
            {
                bail!(
                    "{flag}: {value} is larger than the largest integer a run's config.toml holds ({})",
                    i64::MAX
                );
            }
        }
        Ok(())
    }

    /// Validates into the library's settings; `default_lr` is the command's learning rate.
    pub fn settings(&self, default_lr: f64) -> Result<TrainSettings> {
        self.check_integer_range()?;
        let model = self
            .model
            .clone()
            .ok_or_else(|| anyhow!("--model is required"))?;
        let data = self
            .data
            .clone()
            .ok_or_else(|| anyhow!("--data is required"))?;
        let out = self
            .out
            .clone()
            .ok_or_else(|| anyhow!("--out is required"))?;
        let mut s = TrainSettings::new(model, data, out);
        s.learning_rate = default_lr;
        if let Some(format) = &self.format {
            s.format = match format.as_str() {
                "auto" => None,
                name => Some(
                    name.parse::<Format>()
                        .map_err(|e: DataError| anyhow!("--format: {e}"))?,
                ),
            };
        }
        if self.skip_invalid {
            s.validation = ValidationPolicy::Skip;
        }
        if let Some(template) = &self.template {
            s.template = template.parse::<PromptTemplate>()?;
        }
        if let Some(optimizer) = &self.optimizer {
            s.optimizer = optimizer
                .parse::<OptimizerKind>()
                .map_err(|e| anyhow!("--optimizer: {e}"))?;
        }
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $( if let Some(v) = self.$field { s.$field = v; } )*
            };
        }
        set!(
            label_temperature,
            heldout_fraction,
            learning_rate,
            weight_decay,
            warmup_ratio,
            min_lr_ratio,
            epochs,
            batch_size,
            grad_accum,
            eval_every,
            eval_batch_size,
            save_every,
            keep_checkpoints,
            seed
        );
        if let Some(n) = self.max_eval_examples {
            s.max_eval_examples = Some(n);
        }
        s.max_steps = self.max_steps.or(s.max_steps);
        if let Some(norm) = self.max_grad_norm {
            if !(norm.is_finite() && norm >= 0.0) {
                bail!(
                    "--max-grad-norm: must be positive and finite, or 0 for no clipping; got {norm}"
                );
            }
            s.max_grad_norm = (norm != 0.0).then_some(norm);
        }
        let max_length = self.max_length.unwrap_or(s.truncation.max_length);
        s.truncation = Truncation {
            max_length,
            max_prompt_length: self.max_prompt_length.unwrap_or(max_length / 2),
        };
        s.progress = !self.no_progress;
        s.gradient_checkpointing = self.gradient_checkpointing;
        s.lora = self.lora()?;
        s.adapter = self.adapter.clone();
        s.merge = self.merge;
        s.device = self.device_spec()?;
        Ok(s)
    }

    /// `--device`, parsed (the CPU when absent).
    pub fn device_spec(&self) -> Result<DeviceSpec> {
        Ok(match &self.device {
            Some(text) => text.parse()?,
            None => DeviceSpec::Cpu,
        })
    }

    /// The LoRA settings: `None` for a full fine-tune (`--lora-r` 0 or absent).
    pub(crate) fn lora(&self) -> Result<Option<LoraConfig>> {
        if self.lora_r.unwrap_or(0) == 0 {
            let given = [
                (self.lora_alpha.is_some(), "--lora-alpha"),
                (self.lora_dropout.is_some(), "--lora-dropout"),
                (self.lora_targets.is_some(), "--lora-targets"),
            ];
            if let Some((_, flag)) = given.iter().find(|(given, _)| *given) {
                bail!("{flag} needs --lora-r (a rank of at least 1)");
            }
            return Ok(None);
        }
        let mut lora = LoraConfig::new(self.lora_r.unwrap_or(0));
        if let Some(targets) = &self.lora_targets {
            lora.targets =
                LoraConfig::parse_targets(targets).map_err(|e| anyhow!("--lora-targets: {e}"))?;
        }
        lora.alpha = self.lora_alpha.unwrap_or(lora.alpha);
        lora.dropout = self.lora_dropout.unwrap_or(lora.dropout);
        Ok(Some(lora))
    }

    /// The flags that reproduce `s` (every value present), for config.toml.
    /// Paths are made absolute, so that `--resume` from any directory finds the same files.
    pub fn resolved(s: &TrainSettings) -> Self {
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        Self {
            model: Some(absolute(&s.model)),
            data: Some(absolute(&s.data)),
            out: Some(absolute(&s.out_dir)),
            format: Some(s.format.map_or("auto".into(), |f| f.name().into())),
            skip_invalid: s.validation == ValidationPolicy::Skip,
            label_temperature: Some(s.label_temperature),
            heldout_fraction: Some(s.heldout_fraction),
            max_eval_examples: s.max_eval_examples,
            template: Some(
                match s.template {
                    PromptTemplate::Auto => "auto",
                    PromptTemplate::Chat => "chat",
                    PromptTemplate::Plain => "plain",
                }
                .into(),
            ),
            max_length: Some(s.truncation.max_length),
            max_prompt_length: Some(s.truncation.max_prompt_length),
            optimizer: Some(s.optimizer.name().into()),
            learning_rate: Some(s.learning_rate),
            weight_decay: Some(s.weight_decay),
            warmup_ratio: Some(s.warmup_ratio),
            min_lr_ratio: Some(s.min_lr_ratio),
            epochs: Some(s.epochs),
            max_steps: s.max_steps,
            batch_size: Some(s.batch_size),
            grad_accum: Some(s.grad_accum),
            max_grad_norm: Some(s.max_grad_norm.unwrap_or(0.0)),
            eval_every: Some(s.eval_every),
            eval_batch_size: Some(s.eval_batch_size),
            save_every: Some(s.save_every),
            keep_checkpoints: Some(s.keep_checkpoints),
            seed: Some(s.seed),
            no_progress: !s.progress,
            gradient_checkpointing: s.gradient_checkpointing,
            lora_r: s.lora.as_ref().map(|l| l.r),
            lora_alpha: s.lora.as_ref().map(|l| l.alpha),
            lora_dropout: s.lora.as_ref().map(|l| l.dropout),
            lora_targets: s.lora.as_ref().map(LoraConfig::targets_text),
            adapter: s.adapter.clone(),
            merge: s.merge,
            device: Some(s.device.to_string()),
        }
    }
}

impl LossFlags {
    fn fill_from(&mut self, lower: &LossFlags) {
        fill!(self, lower; loss, beta, alpha, gamma, reference);
    }

    pub(crate) fn settings(&self) -> Result<(PrefLoss, ReferenceMode)> {
        let name = self.loss.as_deref().unwrap_or("gdpo");
        let mut loss: PrefLoss = name.parse().map_err(|e| anyhow!("--loss: {e}"))?;
        if let Some(beta) = self.beta {
            loss = loss.with_beta(beta);
        }
        match (&mut loss, self.alpha, self.gamma) {
            (PrefLoss::Ropo { alpha, gamma, .. } | PrefLoss::GRopo { alpha, gamma, .. }, a, g) => {
                *alpha = a.unwrap_or(*alpha);
                *gamma = g.unwrap_or(*gamma);
            }
            (_, None, None) => {}
            _ => bail!("--alpha and --gamma apply to ropo and gropo only, not {name}"),
        }
        loss.validate().map_err(|e| anyhow!("--loss: {e}"))?;
        let reference = match self.reference.as_deref().unwrap_or("cached") {
            "cached" => ReferenceMode::Cached,
            "on-the-fly" => ReferenceMode::OnTheFly,
            other => bail!("--reference: unknown mode {other:?} (expected cached or on-the-fly)"),
        };
        Ok((loss, reference))
    }

    pub(crate) fn resolved(loss: &PrefLoss, reference: ReferenceMode) -> Self {
        let (alpha, gamma) = match *loss {
            PrefLoss::Ropo { alpha, gamma, .. } | PrefLoss::GRopo { alpha, gamma, .. } => {
                (Some(alpha), Some(gamma))
            }
            _ => (None, None),
        };
        Self {
            loss: Some(loss.name().into()),
            beta: Some(loss.beta()),
            alpha,
            gamma,
            reference: Some(
                match reference {
                    ReferenceMode::Cached => "cached",
                    ReferenceMode::OnTheFly => "on-the-fly",
                }
                .into(),
            ),
        }
    }
}

/// The run folder that `--resume PATH` continues: PATH itself, or for a checkpoint
/// (`OUT/checkpoints/step-N`) its output folder. A missing path or a plain file is refused here,
/// naming the flag.
pub fn resume_run_dir(resume: &Path) -> Result<PathBuf> {
    if !resume.exists() {
        bail!("--resume {}: no such folder", resume.display());
    }
    if !resume.is_dir() {
        bail!(
            "--resume {}: not a folder; give a run's output folder or one of its checkpoints",
            resume.display()
        );
    }
    Ok(resume_out_dir(resume))
}

/// Layers the resumed run's saved settings under `train`. The continuation writes into the run's
/// own folder (wherever the command is run from), or into `--out` when one is given (a fork
/// from a checkpoint).
pub fn resume_layers(
    resume: &Path,
    known: &[&[&str]],
    train: &mut TrainFlags,
    mut more: impl FnMut(&ConfigFile) -> Result<()>,
) -> Result<()> {
    let run_dir = resume_run_dir(resume)?;
    let out = train.out.take().unwrap_or_else(|| run_dir.clone());
    let saved = config_path(&run_dir);
    if saved.is_file() {
        let file = read_config(&saved, known)?;
        train.fill_from(&TrainFlags::from_config_file(&file)?);
        more(&file)?;
    }
    train.out = Some(out);
    Ok(())
}

/// Locks the output folder for this process (refusing one another run holds, naming its pid),
/// readies it for a fresh run (refusing one that holds another run's checkpoint unless
/// `overwrite`) and writes its `config.toml`. Returns the lock, to hold for the whole run, and
/// whether the folder was created here.
pub fn start_run(
    out: &Path,
    fresh: bool,
    overwrite: bool,
    config: &str,
) -> Result<(RunLock, bool)> {
    let created = !out.exists();
    let lock = run_dir::lock_out_dir(out)?;
    if fresh {
        run_dir::claim_out_dir(out, overwrite)?;
    }
    write_atomic(&config_path(out), config)?;
    Ok((lock, created))
}

/// After a run failed before training began (bad data, a model that does not load), removes
/// what [`start_run`] wrote: the `config.toml` and the lock file, and the folder if it was
/// created for the run and is empty now. A run that wrote anything else (checkpoints, metrics)
/// is left as it is.
pub fn abandon_unstarted_run(out: &Path, created: bool) {
    let ours = |name: &std::ffi::OsStr| name == "config.toml" || name == run_dir::LOCK_FILE;
    let others = std::fs::read_dir(out)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .any(|e| !ours(&e.file_name()))
        })
        .unwrap_or(true);
    if others {
        return;
    }
    let _ = std::fs::remove_file(config_path(out));
    let _ = std::fs::remove_file(out.join(run_dir::LOCK_FILE));
    if created {
        let _ = std::fs::remove_dir(out);
    }
}

/// The output folder a `--resume` path belongs to: the folder itself, or for a checkpoint
/// (`OUT/checkpoints/step-N`) its grandparent.
pub fn resume_out_dir(resume: &Path) -> PathBuf {
    match resume.parent() {
        Some(parent) if parent.file_name().is_some_and(|n| n == CHECKPOINTS_DIR) => parent
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        _ => resume.to_path_buf(),
    }
}

/// Writes `text` to `path` whole or not at all (`softalign_durable::write_file_atomic`); a
/// failed write (a full disk) removes its temporary file.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(softalign_durable::write_file_atomic(path, text.as_bytes())?)
}

/// Installs the Ctrl-C handler: the first press asks the run to stop after the current step with
/// a checkpoint; a second one ends the process at once.
pub fn stop_flag() -> &'static AtomicBool {
    static STOP: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!(
            "\nsoftalign: stopping after this step and saving a checkpoint (Ctrl-C again to quit now)"
        );
    });
    &STOP
}

/// Prints the problems of an invalid data file one per line (`FILE:LINE: FIELD: PROBLEM`) and
/// turns the error into a one-line summary.
pub fn report_error(error: TrainError) -> anyhow::Error {
    let problems = match &error {
        TrainError::Data(DataError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        TrainError::Invalid { problems, .. } => problems.clone(),
        _ => Vec::new(),
    };
    if problems.is_empty() {
        return error.into();
    }
    for problem in &problems {
        eprintln!("{problem}");
    }
    let path = match &error {
        TrainError::Data(DataError::Invalid { path, .. }) | TrainError::Invalid { path, .. } => {
            path.display().to_string()
        }
        _ => String::new(),
    };
    anyhow!(
        "{path}: {} problem(s); fix them or pass --skip-invalid",
        problems.len()
    )
}

/// Prints where a run's outputs are and its last metrics; exits 130 after an interruption.
pub fn print_report(command: &str, out: &Path, report: &RunReport) {
    if !report.skipped.is_empty() {
        eprintln!("softalign: skipped {} problem(s):", report.skipped.len());
        for problem in &report.skipped {
            eprintln!("  {problem}");
        }
    }
    for (name, record) in [("train", &report.final_train), ("eval", &report.final_eval)] {
        if let Some(record) = record {
            let values: Vec<String> = record
                .metrics
                .iter()
                .map(|(k, v)| format!("{k}={v:.4}"))
                .collect();
            println!("{name} (step {}): {}", record.step, values.join(" "));
        }
    }
    println!(
        "steps {}/{} in {:.1} s; metrics {}/metrics.jsonl, {}/metrics.csv",
        report.steps.0,
        report.steps.1,
        report.seconds,
        out.display(),
        out.display()
    );
    for figure in &report.figures {
        println!("figure {}", figure.display());
    }
    if let Some(checkpoint) = &report.checkpoint {
        println!("checkpoint {}", checkpoint.display());
    }
    if let Some(adapter) = &report.adapter {
        println!("adapter {} (PEFT layout)", adapter.display());
    }
    if let Some(model) = &report.exported {
        println!("model {} (Hugging Face layout)", model.display());
    }
    if report.interrupted {
        println!(
            "interrupted; continue with: softalign {command} --resume {}",
            out.display()
        );
        std::process::exit(130);
    }
}

/// Runs `softalign align`.
pub fn run(args: AlignArgs) -> Result<()> {
    let AlignArgs {
        mut train,
        mut loss,
        config,
        resume,
        overwrite,
        mut online,
    } = args;
    let demo = !online.online
        && train.model.is_none()
        && train.data.is_none()
        && resume.is_none()
        && config.is_none();
    if demo {
        online.refuse_without_online()?;
        return run_demo_command(&train, &loss);
    }
    let known: &[&[&str]] = &[TRAIN_KEYS, LOSS_KEYS, ONLINE_KEYS];
    if let Some(path) = &config {
        let file = read_config(path, known)?;
        train.fill_from(&TrainFlags::from_config_file(&file)?);
        loss.fill_from(&layer(&file)?);
        online.fill_from(&OnlineFlags::from_config_file(&file)?);
    }
    if let Some(resume) = &resume {
        resume_layers(resume, known, &mut train, |file| {
            loss.fill_from(&layer(file)?);
            online.fill_from(&OnlineFlags::from_config_file(file)?);
            Ok(())
        })?;
    }
    if online.online {
        return crate::online::run(train, loss, online, resume, overwrite);
    }
    online.refuse_without_online()?;
    let mut settings = train.settings(1e-6)?;
    settings.resume = resume;
    let (pref_loss, reference) = loss.settings()?;
    let settings = AlignSettings {
        train: settings,
        loss: pref_loss,
        reference,
    };
    settings.validate()?;
    let out = settings.train.out_dir.clone();
    let mut resolved = toml::Table::try_from(TrainFlags::resolved(&settings.train))?;
    resolved.extend(toml::Table::try_from(LossFlags::resolved(
        &pref_loss, reference,
    ))?);
    let (_lock, created) = start_run(
        &out,
        settings.train.resume.is_none(),
        overwrite,
        &toml::to_string(&resolved)?,
    )?;
    let stop = stop_flag();
    let report = run_align(&settings, Some(stop), &mut |line| {
        eprintln!("softalign: {line}")
    })
    .inspect_err(|_| abandon_unstarted_run(&out, created))
    .map_err(report_error)?;
    println!("config {}", config_path(&out).display());
    print_report("align", &out, &report);
    Ok(())
}

fn run_demo_command(train: &TrainFlags, loss: &LossFlags) -> Result<()> {
    let given_other = TrainFlags {
        out: None,
        seed: None,
        no_progress: false,
        device: None,
        ..train.clone()
    } != TrainFlags::default()
        || *loss != LossFlags::default();
    if given_other {
        bail!(
            "the built-in demo (no --model and --data) takes only --out, --seed, --device and --no-progress; give --model and --data to align your own model"
        );
    }
    let mut settings = DemoSettings::default();
    if let Some(out) = &train.out {
        settings.out_dir = out.clone();
    }
    if let Some(seed) = train.seed {
        settings.seed = seed;
    }
    settings.progress = !train.no_progress;
    settings.device = train.device_spec()?.open_one("the built-in demo")?;
    eprintln!(
        "softalign: built-in demo: SFT a tiny Llama on noisy demonstrations, then DPO vs cDPO vs GDPO on Bradley–Terry soft labels, each loss's β chosen on validation prompts (seed {})",
        settings.seed
    );
    let report = run_demo(&settings, &mut |line| eprintln!("softalign: {line}"))?;
    println!("{}", report.table());
    println!("{}", report.summary());
    let out = &settings.out_dir;
    println!(
        "report  {}  {}",
        out.join("report.md").display(),
        out.join("report.json").display()
    );
    println!(
        "figures {}  and loss.png, reward_margins.png, logratios.png in {}/{{sft,dpo,cdpo,gdpo}}",
        out.join("comparison.png").display(),
        out.display()
    );
    println!("done in {:.0} s", report.seconds);
    Ok(())
}
