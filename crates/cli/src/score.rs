//! `softalign score`: per-token log-probabilities of texts under a model, and their sum and
//! perplexity — for perplexity checks and for comparing a model with a reference implementation.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use softalign_model::{TextScore, load_pretrained_with_adapter_as, score_text};

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
    /// Most tokens of a text [default: the model's context, max_position_embeddings]; a longer
    /// text is refused (past the context a model's scores mean little, and the cost of a pass
    /// grows with the square of the length).
    #[arg(long)]
    max_length: Option<usize>,
    /// Print `{"texts": [{"text", "tokens", "input_ids", "token_logps", "sum_logp", "perplexity"}]}`
    /// instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    quantize: crate::device::QuantizeArg,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Runs `softalign score`.
pub fn run(args: ScoreArgs) -> Result<()> {
    let texts = match (&args.text, &args.file) {
        (Some(text), _) => vec![("--text".to_string(), text.clone())],
        (None, Some(file)) => read_texts(file)?,
        (None, None) => bail!("give --text or --file"),
    };
    if args.max_length == Some(0) {
        bail!("--max-length: must be at least 1");
    }
    let device = args.device.open("score")?;
    let loaded = load_pretrained_with_adapter_as(
        &args.model,
        args.adapter.as_deref(),
        &device,
        args.quantize.format(),
    )?;
    let context = loaded.model.config.max_position_embeddings;
    let limit = args.max_length.unwrap_or(context);
    for (at, text) in &texts {
        let tokens = loaded.tokenizer.encode(text)?.len();
        if tokens > limit {
            bail!("{}", too_long(at, tokens, limit, context, args.max_length));
        }
    }
    let scores = texts
        .iter()
        .map(|(_, text)| score_text(&loaded, text))
        .collect::<softalign_model::Result<Vec<TextScore>>>()?;
    if args.json {
        println!("{}", serde_json::json!({ "texts": scores }));
    } else {
        print_table(&scores);
    }
    Ok(())
}

/// The refusal of a text (named by `at`) of `tokens` tokens, over `limit`: the model's context
/// of `context` positions, or the `--max-length` given.
pub fn too_long(
    at: &str,
    tokens: usize,
    limit: usize,
    context: usize,
    max_length: Option<usize>,
) -> String {
    match max_length {
        Some(_) => format!("{at}: {tokens} tokens, more than --max-length {limit}"),
        None => format!(
            "{at}: {tokens} tokens, more than the model's context of {context} positions (max_position_embeddings); shorten it, or pass --max-length to go past the context"
        ),
    }
}

/// `(FILE:LINE, text)` of the `text` field of every non-blank line of a JSONL file; errors name
/// the line.
fn read_texts(path: &Path) -> Result<Vec<(String, String)>> {
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
            Some(Value::String(text)) => texts.push((format!("{at}: text"), text.clone())),
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
