//! `softalign generate`: stream a model's continuation of a prompt to stdout.
//!
//! Only generated text goes to stdout (a newline is added at the end when stdout is a terminal);
//! loading and speed diagnostics go to stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use softalign_model::{
    ChatMessage, GenerationConfig, Sampling, TextStream, generate, load_pretrained_with_adapter_as,
};

/// Flags of `softalign generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to load onto
    /// the model.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Text to continue (with --chat: the user's message).
    #[arg(long)]
    prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Most tokens of prompt + generated text [default: the model's context,
    /// max_position_embeddings]: a longer prompt is refused, and generation stops there.
    #[arg(long)]
    max_length: Option<usize>,
    /// Wrap the prompt in the model's chat template as a user turn, and stop at end of turn.
    #[arg(long)]
    chat: bool,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    top_p: f64,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    quantize: crate::device::QuantizeArg,
    #[command(flatten)]
    device: crate::device::DeviceArg,
}

/// Runs `softalign generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    let sampling = Sampling::new(args.temperature, args.top_p, args.top_k)?;
    let device = args.device.open("generate")?;
    let started = Instant::now();
    let loaded = load_pretrained_with_adapter_as(
        &args.model,
        args.adapter.as_deref(),
        &device,
        args.quantize.format(),
    )?;
    eprintln!(
        "softalign: loaded {} ({} layers, width {}) in {:.1} s",
        args.model.display(),
        loaded.model.config.num_hidden_layers,
        loaded.model.config.hidden_size,
        started.elapsed().as_secs_f64()
    );
    if args.chat && loaded.tokenizer.chat_template().is_none() {
        eprintln!(
            "softalign: note: {} has no chat template; --chat renders the prompt as ChatML",
            args.model.display()
        );
    }
    let text = if args.chat {
        loaded
            .tokenizer
            .apply_chat_template(&[ChatMessage::new("user", &args.prompt)], true)?
    } else {
        args.prompt.clone()
    };
    let prompt = if args.chat {
        loaded.tokenizer.encode_chat(&text)?
    } else {
        loaded.tokenizer.encode(&text)?
    };
    let context = loaded.model.config.max_position_embeddings;
    let limit = args.max_length.unwrap_or(context);
    if prompt.len() >= limit {
        let bound = match args.max_length {
            Some(_) => format!("--max-length {limit}"),
            None => format!(
                "the model's context of {context} positions (max_position_embeddings; --max-length goes past it)"
            ),
        };
        bail!(
            "--prompt: {} tokens leave no room to generate within {bound}",
            prompt.len()
        );
    }
    let room = limit - prompt.len();
    let settings = GenerationConfig {
        max_new_tokens: args.max_tokens.min(room),
        sampling,
        seed: args.seed,
        stop_tokens: loaded.stop_tokens(args.chat),
    };
    let mut stream = TextStream::new(&loaded.tokenizer);
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let tokens = generate(&loaded.model, &prompt, &settings, |id| {
        let piece = stream.push(id)?;
        // A closed pipe (e.g. `| head`) ends generation quietly.
        Ok(stdout
            .write_all(piece.as_bytes())
            .and_then(|_| stdout.flush())
            .is_ok())
    })?;
    // A last character whose bytes the tokens never completed is still printed, as U+FFFD.
    let rest = stream.finish()?;
    let _ = stdout
        .write_all(rest.as_bytes())
        .and_then(|_| stdout.flush());
    if stdout.is_terminal() {
        let _ = writeln!(stdout);
    }
    if room < args.max_tokens && tokens.len() == room {
        eprintln!(
            "softalign: stopped at {limit} tokens of prompt + output ({})",
            match args.max_length {
                Some(_) => "--max-length".to_string(),
                None => "the model's context, max_position_embeddings; --max-length goes past it"
                    .to_string(),
            }
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "softalign: {} prompt tokens, {} generated in {seconds:.2} s ({:.1} tokens/s)",
        prompt.len(),
        tokens.len(),
        tokens.len() as f64 / seconds.max(1e-9)
    );
    Ok(())
}
