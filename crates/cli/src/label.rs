//! `softalign label`: soft preference labels by AI feedback (a judge model scores both orders of
//! every pair), resumable, with a histogram of the labels.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Result, anyhow};
use burn::tensor::Device;
use clap::Args;
use softalign_data::{DataError, Format, ValidationPolicy};
use softalign_judge::{Judge, JudgeSettings, JudgeTemplate, LabelSettings, label_file};
use softalign_model::{Pretrained, load_pretrained_with_adapter};

/// Judge flags shared by `label`, `eval` and `align --online`.
#[derive(Debug, Clone, Args)]
pub struct JudgeFlags {
    /// Judge prompt template (placeholders {context}, {output_1}, {output_2}, optional
    /// {assistant}) [default: the built-in one].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Pairs judged per forward pass; 1 uses a KV cache (least work on a CPU) [default 1].
    #[arg(long, default_value_t = 1)]
    pub batch_size: usize,
    /// Judge tokens kept of each context (its end) [default 384].
    #[arg(long, default_value_t = 384)]
    pub max_context_tokens: usize,
    /// Judge tokens kept of each output (its start) [default 256].
    #[arg(long, default_value_t = 256)]
    pub max_output_tokens: usize,
    /// Give the judge a plain prompt even when it has a chat template.
    #[arg(long)]
    pub no_chat: bool,
}

impl JudgeFlags {
    /// Loads the judge model at `path` onto `device` and builds the judge.
    pub fn judge(&self, path: &Path, device: &Device) -> Result<Judge> {
        self.judge_with_adapter(path, None, device)
    }

    /// Loads the judge model at `path` onto `device`, with a PEFT adapter when given, and
    /// builds the judge.
    pub fn judge_with_adapter(
        &self,
        path: &Path,
        adapter: Option<&Path>,
        device: &Device,
    ) -> Result<Judge> {
        let template = match &self.template {
            Some(file) => JudgeTemplate::from_file(file)?,
            None => JudgeTemplate::builtin(),
        };
        let settings = JudgeSettings {
            max_context_tokens: self.max_context_tokens,
            max_output_tokens: self.max_output_tokens,
            chat: !self.no_chat,
            batch_size: self.batch_size,
        };
        settings.validate()?;
        let loaded = load_model_with_adapter(path, adapter, "judge", device)?;
        Ok(Judge::new(loaded, template, settings)?)
    }
}

/// Loads a model for inference onto `device` and says so on stderr.
pub fn load_model(path: &Path, what: &str, device: &Device) -> Result<Pretrained> {
    load_model_with_adapter(path, None, what, device)
}

/// Loads a model for inference, with a PEFT LoRA adapter on it when given, and says so on
/// stderr.
pub fn load_model_with_adapter(
    path: &Path,
    adapter: Option<&Path>,
    what: &str,
    device: &Device,
) -> Result<Pretrained> {
    let started = Instant::now();
    let loaded = load_pretrained_with_adapter(path, adapter, device)?;
    let c = &loaded.model.config;
    eprintln!(
        "softalign: {what} {} ({} layers, width {}) loaded in {:.1} s",
        path.display(),
        c.num_hidden_layers,
        c.hidden_size,
        started.elapsed().as_secs_f64()
    );
    Ok(loaded)
}

/// Parses `--format` (`auto` detects).
pub fn parse_format(name: Option<&str>) -> Result<Option<Format>> {
    match name {
        None | Some("auto") => Ok(None),
        Some(name) => Ok(Some(
            name.parse::<Format>()
                .map_err(|e: DataError| anyhow!("--format: {e}"))?,
        )),
    }
}

/// Flags of `softalign label`.
#[derive(Debug, Args)]
pub struct LabelArgs {
    /// Judge model: Hugging Face folder or .gguf file.
    #[arg(long)]
    judge: PathBuf,
    /// PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to load onto
    /// the judge model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Preference file to label (JSONL or JSON array, any supported format).
    #[arg(long)]
    data: PathBuf,
    /// Output JSONL; OUT.partial while running (a rerun resumes it), STEM_histogram.png and
    /// STEM_summary.json beside it.
    #[arg(long)]
    out: PathBuf,
    /// Input format: auto, native, trl, hh, shp, ultrafeedback, votes, sharegpt.
    #[arg(long)]
    format: Option<String>,
    /// Skip bad input records instead of stopping at them.
    #[arg(long)]
    skip_invalid: bool,
    /// Label only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    judge_flags: JudgeFlags,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

fn stop_flag() -> &'static AtomicBool {
    static STOP: AtomicBool = AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nsoftalign: stopping after this pair; rerun the same command to resume");
    });
    &STOP
}

/// Runs `softalign label`.
pub fn run(args: LabelArgs) -> Result<()> {
    let settings = LabelSettings {
        data: args.data.clone(),
        format: parse_format(args.format.as_deref())?,
        validation: if args.skip_invalid {
            ValidationPolicy::Skip
        } else {
            ValidationPolicy::Strict
        },
        out: args.out.clone(),
        limit: args.limit,
        progress: !args.no_progress,
    };
    if !args.data.is_file() {
        return Err(anyhow!("{}: no such file", args.data.display()));
    }
    settings.check_paths()?;
    let device = args.device.open("label")?;
    let judge =
        args.judge_flags
            .judge_with_adapter(&args.judge, args.adapter.as_deref(), &device)?;
    let report = label_file(&judge, &settings, Some(stop_flag()))?;
    let h = &report.histogram;
    println!(
        "labelled {} pairs ({} resumed, {} judged now, {} skipped) in {:.1} s",
        report.pairs, report.resumed, report.judged, report.skipped, report.seconds
    );
    println!(
        "p̂: mean {:.3}, median {:.3}; winner differs from the input's chosen in {} pairs; orders disagree in {}; P(first shown preferred) {:.3}",
        report.mean_p,
        report.median_p,
        report.flipped,
        report.order_disagreements,
        report.first_position_preference
    );
    let bins: Vec<String> = h
        .counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (lo, _) = softalign_data::LabelHistogram::edges(i);
            format!("{lo:.2}:{c}")
        })
        .collect();
    println!("histogram (bin start:count) {}", bins.join(" "));
    println!("output {}", report.out.display());
    if let Some(figure) = &report.figure {
        println!("figure {}", figure.display());
    }
    if let Some(summary) = &report.summary {
        println!("summary {}", summary.display());
    }
    if report.interrupted {
        println!("interrupted; rerun the same command to resume");
        std::process::exit(130);
    }
    Ok(())
}
