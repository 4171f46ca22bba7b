//! `softalign align --online`: online alignment, two samples per prompt per step from the current
//! policy, labelled by the judge, by self-preference, or (built-in demo) by the true reward.

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use burn::module::Module;
use clap::Args;
use softalign_judge::online::{
    DemoReferenceSettings, DemoTask, LabelSource, OnlineSettings, OnlineTask, PromptTask,
    run_online,
};
use softalign_judge::{Judge, JudgeSettings, JudgeTemplate};
use softalign_model::load_pretrained_with_adapter;
use softalign_train::Truncation;

use crate::align::{LossFlags, TrainFlags, stop_flag};

/// Flags of online alignment (with `softalign align`).
#[derive(Debug, Clone, Default, Args)]
pub struct OnlineFlags {
    /// Online alignment: each step samples two responses per prompt from the current policy,
    /// labels them, and trains on them. With no --model and --data, the built-in demo task.
    #[arg(long)]
    pub online: bool,
    /// Labels of the sampled pairs: judge (AI feedback, needs --judge), self (σ(βδ) of the policy,
    /// without gradient) or true-reward (the built-in demo only) [default: judge with --judge,
    /// true-reward for the demo].
    #[arg(long, requires = "online")]
    pub label_by: Option<String>,
    /// Judge model for --label-by judge.
    #[arg(long, requires = "online")]
    pub judge: Option<PathBuf>,
    /// Judge prompt template file [default: the built-in one].
    #[arg(long, requires = "online")]
    pub judge_template: Option<PathBuf>,
    /// Sampling temperature of the two responses [default 1].
    #[arg(long, requires = "online")]
    pub temperature: Option<f64>,
    /// Nucleus mass of the sampling [default 1].
    #[arg(long, requires = "online")]
    pub top_p: Option<f64>,
    /// Most new tokens per sampled response (real models) [default 48].
    #[arg(long, requires = "online")]
    pub max_new_tokens: Option<usize>,
}

/// Runs `softalign align --online`.
pub fn run(train: &TrainFlags, loss: &LossFlags, online: &OnlineFlags) -> Result<()> {
    let demo = train.model.is_none() && train.data.is_none();
    let (pref_loss, _) = loss.settings()?;
    let labels: LabelSource = match (&online.label_by, demo, &online.judge) {
        (Some(name), _, _) => name.parse()?,
        (None, true, _) => LabelSource::Task,
        (None, false, Some(_)) => LabelSource::Judge,
        (None, false, None) => bail!("--online needs --judge (or --label-by self)"),
    };
    if labels == LabelSource::Judge && online.judge.is_none() {
        bail!("--label-by judge needs --judge");
    }
    let out = train.out.clone().unwrap_or_else(|| {
        PathBuf::from(if demo {
            "out/align-online-demo"
        } else {
            "out/align-online"
        })
    });
    let settings = OnlineSettings {
        loss: pref_loss,
        labels,
        steps: train.max_steps.unwrap_or(if demo { 150 } else { 20 }),
        prompts_per_step: train.batch_size.unwrap_or(if demo { 32 } else { 2 }),
        temperature: online.temperature.unwrap_or(1.0),
        top_p: online.top_p.unwrap_or(1.0),
        optimizer: match &train.optimizer {
            Some(name) => name.parse().map_err(|e| anyhow!("--optimizer: {e}"))?,
            None => softalign_optim::OptimizerKind::Adopt,
        },
        weight_decay: train.weight_decay.unwrap_or(0.0),
        learning_rate: train
            .learning_rate
            .unwrap_or(if demo { 1e-4 } else { 1e-6 }),
        warmup_ratio: train.warmup_ratio.unwrap_or(0.1),
        max_grad_norm: match train.max_grad_norm {
            Some(0.0) => None,
            Some(norm) => Some(norm),
            None => Some(1.0),
        },
        eval_every: train.eval_every.unwrap_or(if demo { 25 } else { 0 }),
        seed: train.seed.unwrap_or(0),
        out_dir: out.clone(),
        progress: !train.no_progress,
    };
    settings.validate()?;
    let device = train.device_spec()?.open_one("align --online")?;
    let stop = stop_flag();
    let mut notify = |line: &str| eprintln!("softalign: {line}");
    let report = if demo {
        if labels == LabelSource::Judge {
            bail!("the built-in demo labels by true-reward or self, not by a judge");
        }
        let reference_settings = DemoReferenceSettings {
            seed: settings.seed,
            heldout_prompts: 200,
            demonstrations_per_prompt: 4,
            steps: 400,
            batch_size: 32,
            learning_rate: 3e-3,
            out_dir: out.join("sft"),
            progress: settings.progress,
            device: device.clone(),
        };
        eprintln!(
            "softalign: online demo: SFT a tiny Llama on noisy demonstrations, then online {} with {} labels of two samples per prompt",
            settings.loss.name(),
            match labels {
                LabelSource::Task => "Bradley–Terry true-reward",
                LabelSource::SelfPreference => "self-preference",
                LabelSource::Judge => "judge",
            }
        );
        let (task, reference) = DemoTask::with_reference(&reference_settings)?;
        let before = task.evaluate(&reference.valid())?;
        notify(&format!(
            "sft reference: held-out greedy true reward {:.3}, exact {:.1}%",
            before[0].1,
            100.0 * before[1].1
        ));
        run_online(
            reference
                .clone()
                .with_gradient_checkpointing(train.gradient_checkpointing)?,
            &reference.valid(),
            &task,
            &settings,
            Some(stop),
            &mut notify,
        )?
    } else {
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
        let judge = match (&online.judge, labels) {
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
            lora.validate()
                .map_err(|(flag, problem)| anyhow!("--{flag}: {problem}"))?;
            if train.adapter.is_some() {
                bail!(
                    "--adapter takes its LoRA settings from its adapter_config.json; drop --lora-r"
                );
            }
            policy.model = policy.model.with_lora(&lora, settings.seed);
        }
        policy.model = policy
            .model
            .with_gradient_checkpointing(train.gradient_checkpointing)?;
        // With adapters, the reference is the same network with them switched off.
        let reference = policy.model.without_adapters().valid();
        let truncation = Truncation {
            max_length: train.max_length.unwrap_or(512),
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
        run_online(
            policy.model.clone(),
            &reference,
            &task,
            &settings,
            Some(stop),
            &mut notify,
        )?
    };
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
    println!(
        "steps {} in {:.1} s; {} pairs trained, {} skipped; metrics {}/metrics.jsonl",
        report.steps,
        report.seconds,
        report.pairs,
        report.skipped,
        out.display()
    );
    for figure in &report.figures {
        println!("figure {}", figure.display());
    }
    println!("model {} (Hugging Face layout)", report.model_dir.display());
    if report.interrupted {
        println!("interrupted (online runs do not resume)");
        std::process::exit(130);
    }
    Ok(())
}
