//! `softalign eval`: win rates of a model's greedy responses against reference responses or
//! another model, judged by AI feedback in both orders, and the implicit-reward accuracy.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use softalign_data::ValidationPolicy;
use softalign_judge::{EvalSettings, Opponent, evaluate};
use softalign_train::PromptTemplate;

use crate::label::{JudgeFlags, load_model, load_model_with_adapter, parse_format};

/// Flags of `softalign eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The model to evaluate: Hugging Face folder or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder to load onto --model (the implicit reward's reference stays
    /// --reference).
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Held-out preference file: prompts, reference responses (chosen), labels.
    #[arg(long)]
    data: PathBuf,
    /// Judge the model against this model's greedy responses instead of the references.
    #[arg(long)]
    versus: Option<PathBuf>,
    /// Judge model for the win rates.
    #[arg(long)]
    judge: Option<PathBuf>,
    /// Reference model: adds the preference-classification accuracy of the model's implicit
    /// reward β·log(π/π_ref) on the file's labelled pairs.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// β of the implicit reward [default 0.1].
    #[arg(long, default_value_t = 0.1)]
    beta: f64,
    /// Most new tokens per greedy response [default 128].
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Prompt tokens kept (the end) when generating [default 256].
    #[arg(long, default_value_t = 256)]
    max_prompt_tokens: usize,
    /// Most tokens of prompt + response for the implicit-reward accuracy [default 512].
    #[arg(long, default_value_t = 512)]
    max_length: usize,
    /// Use only the first N pairs.
    #[arg(long)]
    limit: Option<usize>,
    /// Input format: auto, native, trl, hh, shp, ultrafeedback, votes, sharegpt.
    #[arg(long)]
    format: Option<String>,
    /// Skip bad records instead of stopping at them.
    #[arg(long)]
    skip_invalid: bool,
    /// Prompt rendering of the evaluated models: auto, chat, plain [default auto].
    #[arg(long, default_value = "auto")]
    prompt_template: String,
    /// Folder for eval.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    judge_flags: JudgeFlags,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Runs `softalign eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let mut settings = EvalSettings::new(args.data.clone());
    settings.format = parse_format(args.format.as_deref())?;
    if args.skip_invalid {
        settings.validation = ValidationPolicy::Skip;
    }
    settings.limit = args.limit;
    settings.max_new_tokens = args.max_tokens;
    settings.max_prompt_tokens = args.max_prompt_tokens;
    settings.max_length = args.max_length;
    settings.beta = args.beta;
    settings.template = args.prompt_template.parse::<PromptTemplate>()?;
    settings.progress = !args.no_progress;
    settings.validate()?;
    if args.judge.is_none() && args.reference.is_none() {
        return Err(anyhow!(
            "nothing to evaluate: give --judge (win rates) and/or --reference (implicit-reward accuracy)"
        ));
    }
    if args.versus.is_some() && args.judge.is_none() {
        return Err(anyhow!("--versus needs --judge"));
    }
    if !args.data.is_file() {
        return Err(anyhow!("{}: no such file", args.data.display()));
    }
    // Read the data before loading models, so a bad file fails fast.
    settings.load_pairs()?;
    let device = args.device.open("eval")?;
    let judge = match &args.judge {
        Some(path) => Some((args.judge_flags.judge(path, &device)?, path.clone())),
        None => None,
    };
    let model = load_model_with_adapter(&args.model, args.adapter.as_deref(), "model", &device)?;
    let versus = match &args.versus {
        Some(path) => Some(load_model(path, "versus", &device)?),
        None => None,
    };
    let reference = match &args.reference {
        Some(path) => Some(load_model(path, "reference", &device)?),
        None => None,
    };
    let opponent = versus.as_ref().map_or(Opponent::Reference, Opponent::Model);
    let report = evaluate(
        &model,
        opponent,
        judge.as_ref().map(|(j, p)| (j, p.as_path())),
        reference.as_ref().map(|r| &r.model),
        &settings,
    )?;
    println!("{}", report.table());
    if let Some(dir) = &args.out {
        println!("report {}", report.write(dir)?.display());
    }
    Ok(())
}
