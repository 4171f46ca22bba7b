//! `softalign score`: per-token log-probabilities of texts under a model, and their sum and
//! perplexity — for perplexity checks and for comparing a model with a reference implementation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use softalign_model::{TextScore, load_pretrained_with_adapter, score_text};

/// Flags of `softalign score`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "file"])))]
pub struct ScoreArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// One text to score (encoded with no special tokens added).
    #[arg(long)]
    text: Option<String>,
    /// A JSONL file of texts, one `{"text": "…"}` object per line (blank lines are skipped).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Print `{"texts": [{"text", "tokens", "input_ids", "token_logps", "sum_logp", "perplexity"}]}`
    /// instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Runs `softalign score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    let texts = match (&args.text, &args.file) {
        (Some(text), _) => vec![text.clone()],
        (None, Some(file)) => read_texts(file)?,
        (None, None) => bail!("give --text or --file"),
    };
    let device = args.device.open("score")?;
    let loaded = load_pretrained_with_adapter(&args.model, args.adapter.as_deref(), &device)?;
    let scores = texts
        .iter()
        .map(|text| score_text(&loaded, text))
        .collect::<softalign_model::Result<Vec<TextScore>>>()?;
    if args.json {
        println!("{}", serde_json::json!({ "texts": scores }));
    } else {
        print_table(&scores);
    }
    Ok(())
}

/// The `text` field of every non-blank line of a JSONL file; errors name the line.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let content = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut texts = Vec::new();
    for (index, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), index + 1);
        let value: Value =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{at}: invalid json: {e}"))?;
        match value.get("text") {
            Some(Value::String(text)) => texts.push(text.clone()),
            Some(_) => bail!("{at}: text: expected a string"),
            None => bail!("{at}: text: missing"),
        }
    }
    if texts.is_empty() {
        bail!("{}: no texts", path.display());
    }
    Ok(texts)
}

fn print_table(scores: &[TextScore]) {
    println!(
        "{:>7}  {:>12}  {:>11}  text",
        "tokens", "sum_logp", "perplexity"
    );
    for score in scores {
        let perplexity = score
            .perplexity
            .map_or_else(|| "-".to_string(), |p| format!("{p:.4}"));
        let mut preview: String = score.text.chars().take(48).collect();
        if preview.len() < score.text.len() {
            preview.push('…');
        }
        println!(
            "{:>7}  {:>12.4}  {perplexity:>11}  {}",
            score.tokens,
            score.sum_logp,
            preview.replace('\n', "⏎")
        );
    }
}
