//! `softalign align --online`: online alignment, two samples per prompt per step from the current
//! policy, labelled by the judge, by self-preference, or (built-in demo) by the true reward.
//!
//! An online run is an `align` run: the same flag layers (defaults < the checkpoint's
//! config.toml with `--resume` < `--config FILE` < flags), the same run folder (locked, claimed,
//! `config.toml` written first, `--overwrite`), the same loop (checkpoints, `--resume`, the
//! non-finite guard with exit status 3) and the same atomic export. Only the defaults differ,
//! and they are written into the run's `config.toml` like every other value.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use softalign_judge::JudgeError;
use softalign_judge::online::{
    DemoReferenceSettings, DemoTask, LabelSource, OnlineReport, OnlineSettings, OnlineTask,
    PromptTask, run_online,
};
use softalign_judge::{Judge, JudgeSettings, JudgeTemplate};
use softalign_model::load_pretrained_with_adapter;
use softalign_optim::OptimizerKind;
use softalign_train::{LoopSettings, ReferenceMode, Schedule, Truncation, config_path};

use crate::align::{
    LossFlags, TrainFlags, abandon_unstarted_run, report_error, start_run, stop_flag,
};
use crate::config_file::{ConfigFile, layer};

/// Flags of online alignment (with `softalign align`); also keys of a `--config` file and of a
/// run's `config.toml`.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct OnlineFlags {
    /// Online alignment: each step samples two responses per prompt from the current policy,
    /// labels them, and trains on them. With no --model and --data, the built-in demo task.
    /// Its defaults differ from offline align: --max-steps 150 (20 with --model),
    /// --batch-size 32 prompts (2), --learning-rate 1e-4 (1e-6), --eval-every 25 (0), --out
    /// out/align-online-demo (out/align-online); reference log-probabilities on the fly.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub online: bool,
    /// Labels of the sampled pairs: judge (AI feedback, needs --judge), self (σ(βδ) of the policy,
    /// without gradient) or true-reward (the built-in demo only) [default: judge with --judge,
    /// true-reward for the demo].
    #[arg(long)]
    pub label_by: Option<String>,
    /// Judge model for --label-by judge.
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// Judge prompt template file [default: the built-in one].
    #[arg(long)]
    pub judge_template: Option<PathBuf>,
    /// Sampling temperature of the two responses [default 1].
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Nucleus mass of the sampling [default 1].
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Most new tokens per sampled response (real models) [default 48].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
}

/// Keys of the online flags in a `--config` file or a run's `config.toml`.
pub const ONLINE_KEYS: &[&str] = &[
    "online",
    "label-by",
    "judge",
    "judge-template",
    "temperature",
    "top-p",
    "max-new-tokens",
];

impl OnlineFlags {
    /// The online flags of a config file, its relative paths taken as relative to its folder.
    pub fn from_config_file(file: &ConfigFile) -> Result<Self> {
        let mut flags: OnlineFlags = layer(file)?;
        if let Some(dir) = file.path().parent().filter(|d| !d.as_os_str().is_empty()) {
            for path in [&mut flags.judge, &mut flags.judge_template]
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
    pub fn fill_from(&mut self, lower: &OnlineFlags) {
        macro_rules! fill {
            ($($field:ident),*) => {
                $( if self.$field.is_none() { self.$field = lower.$field.clone(); } )*
            };
        }
        fill!(
            label_by,
            judge,
            judge_template,
            temperature,
            top_p,
            max_new_tokens
        );
        self.online |= lower.online;
    }

    /// Refuses online flags in a run that is not online, naming the first.
    pub fn refuse_without_online(&self) -> Result<()> {
        let given = [
            (self.label_by.is_some(), "--label-by"),
            (self.judge.is_some(), "--judge"),
            (self.judge_template.is_some(), "--judge-template"),
            (self.temperature.is_some(), "--temperature"),
            (self.top_p.is_some(), "--top-p"),
            (self.max_new_tokens.is_some(), "--max-new-tokens"),
        ];
        match given.iter().find(|(given, _)| *given) {
            Some((_, flag)) => bail!("{flag} needs --online"),
            None => Ok(()),
        }
    }
}

/// The training defaults of an online run where they differ from offline `align`'s (the
/// built-in demo's, or a real model's), as the lowest layer of flags.
fn online_defaults(demo: bool) -> TrainFlags {
    TrainFlags {
        out: Some(PathBuf::from(if demo {
            "out/align-online-demo"
        } else {
            "out/align-online"
        })),
        max_steps: Some(if demo { 150 } else { 20 }),
        batch_size: Some(if demo { 32 } else { 2 }),
        learning_rate: Some(if demo { 1e-4 } else { 1e-6 }),
        eval_every: Some(if demo { 25 } else { 0 }),
        optimizer: Some(OptimizerKind::Adopt.name().into()),
        weight_decay: Some(0.0),
        warmup_ratio: Some(0.1),
        min_lr_ratio: Some(0.0),
        grad_accum: Some(1),
        max_grad_norm: Some(1.0),
        save_every: Some(0),
        keep_checkpoints: Some(2),
        seed: Some(0),
        device: Some("cpu".into()),
        ..TrainFlags::default()
    }
}

/// The trainer's settings of an online run from flags filled with [`online_defaults`].
fn loop_settings(train: &TrainFlags, label: &str) -> Result<LoopSettings> {
    train.check_integer_range()?;
    let value = |v: Option<f64>, flag: &str| v.ok_or_else(|| anyhow!("--{flag} is required"));
    let count = |v: Option<usize>, flag: &str| v.ok_or_else(|| anyhow!("--{flag} is required"));
    let steps = count(train.max_steps, "max-steps")?;
    if steps == 0 {
        bail!("--max-steps: must be at least 1");
    }
    let warmup_ratio = value(train.warmup_ratio, "warmup-ratio")?;
    if !(0.0..1.0).contains(&warmup_ratio) {
        bail!("--warmup-ratio: must be in [0, 1), got {warmup_ratio}");
    }
    let norm = value(train.max_grad_norm, "max-grad-norm")?;
    if !(norm.is_finite() && norm >= 0.0) {
        bail!("--max-grad-norm: must be positive and finite, or 0 for no clipping; got {norm}");
    }
    let optimizer = train.optimizer.as_deref().unwrap_or("adopt");
    let warmup = (warmup_ratio * steps as f64).round() as usize;
    Ok(LoopSettings {
        optimizer: optimizer.parse().map_err(|e| anyhow!("--optimizer: {e}"))?,
        weight_decay: value(train.weight_decay, "weight-decay")?,
        schedule: Schedule {
            peak: value(train.learning_rate, "learning-rate")?,
            warmup_steps: warmup.min(steps - 1),
            total_steps: steps,
            min_ratio: value(train.min_lr_ratio, "min-lr-ratio")?,
        },
        batch_size: count(train.batch_size, "batch-size")?,
        grad_accum: count(train.grad_accum, "grad-accum")?,
        max_grad_norm: (norm != 0.0).then_some(norm),
        eval_every: count(train.eval_every, "eval-every")?,
        eval_batch_size: train.eval_batch_size.unwrap_or(8),
        save_every: count(train.save_every, "save-every")?,
        keep_checkpoints: count(train.keep_checkpoints, "keep-checkpoints")?,
        seed: train.seed.unwrap_or(0),
        out_dir: train
            .out
            .clone()
            .ok_or_else(|| anyhow!("--out is required"))?,
        progress: !train.no_progress,
        label: label.to_string(),
        replicas: Default::default(),
    })
}

/// The label source: `--label-by`, else the judge when one is given, the true reward for the
/// demo.
fn label_source(online: &OnlineFlags, demo: bool) -> Result<LabelSource> {
    let labels: LabelSource = match (&online.label_by, demo, &online.judge) {
        (Some(name), _, _) => name.parse()?,
        (None, true, _) => LabelSource::Task,
        (None, false, Some(_)) => LabelSource::Judge,
        (None, false, None) => bail!("--online needs --judge (or --label-by self)"),
    };
    if labels == LabelSource::Judge && online.judge.is_none() {
        bail!("--label-by judge needs --judge");
    }
    if demo && labels == LabelSource::Judge {
        bail!("the built-in demo labels by true-reward or self, not by a judge");
    }
    Ok(labels)
}

/// The run's `config.toml`: every value the run used, paths absolute, so that `--resume`
/// continues it from any folder.
fn resolved_config(
    train: &TrainFlags,
    loss: &softalign_pref::PrefLoss,
    online: &OnlineFlags,
) -> Result<String> {
    let absolute = |p: &Option<PathBuf>| {
        p.as_deref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()))
    };
    let train = TrainFlags {
        model: absolute(&train.model),
        data: absolute(&train.data),
        out: absolute(&train.out),
        adapter: absolute(&train.adapter),
        ..train.clone()
    };
    let online = OnlineFlags {
        judge: absolute(&online.judge),
        judge_template: absolute(&online.judge_template),
        ..online.clone()
    };
    let mut table = toml::Table::try_from(train)?;
    table.extend(toml::Table::try_from(LossFlags::resolved(
        loss,
        ReferenceMode::OnTheFly,
    ))?);
    table.extend(toml::Table::try_from(online)?);
    Ok(toml::to_string(&table)?)
}

/// The loop's or the task's error for the user: a non-finite stop keeps its type (exit 3), bad
/// data lists its problems.
fn report_online_error(error: JudgeError) -> anyhow::Error {
    match error {
        JudgeError::Train(error) => report_error(error),
        other => other.into(),
    }
}

/// Runs `softalign align --online` with every layer of flags already applied.
pub fn run(
    mut train: TrainFlags,
    loss: LossFlags,
    mut online: OnlineFlags,
    resume: Option<PathBuf>,
    overwrite: bool,
) -> Result<()> {
    let demo = train.model.is_none() && train.data.is_none();
    train.fill_from(&online_defaults(demo));
    let labels = label_source(&online, demo)?;
    online.label_by = Some(labels.name().into());
    online.fill_from(&OnlineFlags {
        temperature: Some(1.0),
        top_p: Some(1.0),
        max_new_tokens: Some(48),
        ..OnlineFlags::default()
    });
    let (pref_loss, reference) = loss.settings()?;
    if reference == ReferenceMode::Cached && loss.reference.is_some() {
        bail!(
            "--reference: online alignment scores fresh samples, so its reference log-probabilities are computed on the fly; drop --reference cached"
        );
    }
    let settings = OnlineSettings {
        loss: pref_loss,
        labels,
        temperature: online.temperature.unwrap_or(1.0),
        top_p: online.top_p.unwrap_or(1.0),
        train: loop_settings(&train, pref_loss.name())?,
        resume: resume.clone(),
        merge: train.merge,
    };
    settings.validate()?;
    let out = settings.train.out_dir.clone();
    let config = resolved_config(&train, &pref_loss, &online)?;
    let (_lock, created) = start_run(&out, resume.is_none(), overwrite, &config)?;
    let report = if demo {
        run_demo(&train, &settings)
    } else {
        run_model(&train, &online, &settings)
    }
    .inspect_err(|_| abandon_unstarted_run(&out, created))?;
    print_report(&out, &settings, &report);
    Ok(())
}

/// The built-in demo: the SFT reference (trained again, or taken from the run's finished SFT
/// stage when resuming), then online alignment against it.
fn run_demo(train: &TrainFlags, settings: &OnlineSettings) -> Result<OnlineReport> {
    let device = train.device_spec()?.open_one("align --online")?;
    let out = &settings.train.out_dir;
    let reference_settings = DemoReferenceSettings {
        seed: settings.train.seed,
        heldout_prompts: 200,
        demonstrations_per_prompt: 4,
        steps: 400,
        batch_size: 32,
        learning_rate: 3e-3,
        out_dir: out.join("sft"),
        progress: settings.train.progress,
        device,
        reuse_finished: settings.resume.is_some(),
    };
    eprintln!(
        "softalign: online demo: SFT a tiny Llama on noisy demonstrations, then online {} with {} labels of two samples per prompt",
        settings.loss.name(),
        match settings.labels {
            LabelSource::Task => "Bradley–Terry true-reward",
            LabelSource::SelfPreference => "self-preference",
            LabelSource::Judge => "judge",
        }
    );
    let (task, reference) = DemoTask::with_reference(&reference_settings)?;
    let before = task.evaluate(&burn::module::Module::valid(&reference))?;
    eprintln!(
        "softalign: sft reference: held-out greedy true reward {:.3}, exact {:.1}%",
        before[0].1,
        100.0 * before[1].1
    );
    let policy = reference
        .clone()
        .with_gradient_checkpointing(train.gradient_checkpointing)?;
    let frozen = burn::module::Module::valid(&reference);
    online_loop(policy, &frozen, &task, settings)
}

/// A real model on the prompts of `--data`, labelled by the judge or by self-preference.
fn run_model(
    train: &TrainFlags,
    online: &OnlineFlags,
    settings: &OnlineSettings,
) -> Result<OnlineReport> {
    let device = train.device_spec()?.open_one("align --online")?;
    let model_path = train
        .model
        .clone()
        .ok_or_else(|| anyhow!("--model is required"))?;
    let data = train
        .data
        .clone()
        .ok_or_else(|| anyhow!("--data is required"))?;
    let format = crate::label::parse_format(train.format.as_deref())?;
    let options = softalign_data::LoadOptions {
        format,
        ..Default::default()
    };
    let prompts: Vec<_> = softalign_data::load(&data, &options)?
        .pairs
        .into_iter()
        .map(|p| p.prompt)
        .collect();
    let judge = match (&online.judge, settings.labels) {
        (Some(path), LabelSource::Judge) => {
            let template = match &online.judge_template {
                Some(file) => JudgeTemplate::from_file(file)?,
                None => JudgeTemplate::builtin(),
            };
            let loaded = crate::label::load_model(path, "judge", &device)?;
            Some(Judge::new(loaded, template, JudgeSettings::default())?)
        }
        _ => None,
    };
    let mut policy = load_pretrained_with_adapter(
        &model_path,
        train.adapter.as_deref(),
        &device.clone().autodiff(),
    )?;
    if let Some(lora) = train.lora()? {
        if train.adapter.is_some() {
            bail!("--adapter takes its LoRA settings from its adapter_config.json; drop --lora-r");
        }
        lora.validate()
            .map_err(|(flag, problem)| anyhow!("--{flag}: {problem}"))?;
        softalign_train::lora::check_rank(&policy.model, &lora)?;
        policy.model = policy.model.with_lora(&lora, settings.train.seed);
    }
    policy.model = policy
        .model
        .with_gradient_checkpointing(train.gradient_checkpointing)?;
    // With adapters, the reference is the same network with them switched off.
    let reference = burn::module::Module::valid(&policy.model.without_adapters());
    let max_length = train.max_length.unwrap_or(512);
    let truncation = Truncation {
        max_length,
        max_prompt_length: train.max_prompt_length.unwrap_or(256),
    };
    let task = PromptTask::new(
        &policy,
        prompts,
        truncation,
        online.max_new_tokens.unwrap_or(48),
        judge.as_ref(),
        &data,
    )?;
    online_loop(policy.model.clone(), &reference, &task, settings)
}

fn online_loop(
    policy: softalign_model::CausalLm,
    reference: &softalign_model::CausalLm,
    task: &dyn OnlineTask,
    settings: &OnlineSettings,
) -> Result<OnlineReport> {
    let stop = stop_flag();
    run_online(policy, reference, task, settings, Some(stop), &mut |line| {
        eprintln!("softalign: {line}")
    })
    .map_err(report_online_error)
}

/// Prints where the run's outputs are; exits 130 after an interruption.
fn print_report(out: &Path, settings: &OnlineSettings, report: &OnlineReport) {
    let last = |split: &str, name: &str| {
        report
            .history
            .iter()
            .rev()
            .filter(|r| r.split == split)
            .find_map(|r| r.get(name))
    };
    let first_eval = report
        .history
        .iter()
        .find(|r| r.split == "eval")
        .and_then(|r| r.get("eval/reward"));
    if let (Some(before), Some(after)) = (first_eval, last("eval", "eval/reward")) {
        println!(
            "held-out greedy true reward: {before:.3} (sft reference) -> {after:.3} (online {}), exact {:.1}%",
            settings.loss.name(),
            100.0 * last("eval", "eval/exact").unwrap_or(f64::NAN)
        );
    }
    println!("config {}", config_path(out).display());
    println!(
        "steps {}/{} in {:.1} s; {} pairs trained, {} skipped; metrics {}/metrics.jsonl",
        report.steps,
        settings.train.schedule.total_steps,
        report.seconds,
        report.pairs,
        report.skipped,
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
    if let Some(model) = &report.model_dir {
        println!("model {} (Hugging Face layout)", model.display());
    }
    if report.interrupted {
        println!(
            "interrupted; continue with: softalign align --resume {}",
            out.display()
        );
        std::process::exit(130);
    }
}
