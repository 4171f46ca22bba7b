//! The bodies of the fuzz targets: one function per parser of untrusted bytes, each taking the
//! raw input and driving the same entry point the binary uses. A function may return early on
//! an error (that is the expected answer to bad input); it must never panic, abort or allocate
//! beyond what the input justifies.
//!
//! Compiled twice: by the fuzz targets in `fuzz/fuzz_targets/` (outside the workspace) and, via
//! `#[path]`, by `crates/cli/tests/fuzz_corpus.rs`, which replays the committed corpora and
//! every crasher in `fuzz/regressions/` in the normal test suite.

#![allow(dead_code)] // each includer uses its own subset

use std::path::{Path, PathBuf};

use burn::tensor::Device;

#[path = "../../crates/cli/src/config_file.rs"]
mod config_file;

/// Separates the files of a multi-file input (a model folder, a checkpoint).
pub const PART_SEPARATOR: &[u8] = b"\n@@@@\n";

/// The parts of `data` between [`PART_SEPARATOR`]s; at most `n`, the last one holding the rest.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest
            .windows(PART_SEPARATOR.len())
            .position(|w| w == PART_SEPARATOR)
        {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + PART_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}

/// A scratch folder of this process (in memory where `/dev/shm` exists).
pub fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("softalign-fuzz-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a target made of an input: `ok`, or the error's message. The stable mutation runner
/// (`crates/cli/tests/fuzz_corpus.rs`) keeps inputs that give a message not seen before.
pub type Outcome = String;

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> Outcome {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:#}"),
    }
}

/// A GGUF file, loaded as a model (header, metadata, tensor directory, configuration,
/// vocabulary, weights).
pub fn gguf(data: &[u8]) -> Outcome {
    let path = scratch("gguf").join("model.gguf");
    std::fs::write(&path, data).unwrap();
    outcome(softalign_model::load_pretrained(&path, &Device::default()))
}

/// A Hugging Face model folder: `config.json`, `tokenizer.json` and `model.safetensors`, the
/// three parts of the input.
pub fn hf_folder(data: &[u8]) -> Outcome {
    let dir = scratch("hf");
    let files = ["config.json", "tokenizer.json", "model.safetensors"];
    for (name, part) in files.iter().zip(parts(data, 3)) {
        std::fs::write(dir.join(name), part).unwrap();
    }
    outcome(softalign_model::load_pretrained(&dir, &Device::default()))
}

/// A preference data file; the first byte picks the format (auto or one of the seven) and the
/// validation policy.
pub fn preference_data(data: &[u8]) -> Outcome {
    use softalign_data::{Format, LoadOptions, ValidationPolicy};
    let Some((&selector, bytes)) = data.split_first() else {
        return "empty".into();
    };
    let format = match selector % 8 {
        0 => None,
        n => Some(Format::ALL[n as usize - 1]),
    };
    let options = LoadOptions {
        format,
        temperature: 1.0,
        policy: if selector & 0x80 != 0 {
            ValidationPolicy::Skip
        } else {
            ValidationPolicy::Strict
        },
    };
    let loaded = softalign_data::load_bytes("fuzz.jsonl", bytes, &options);
    if let Ok(loaded) = &loaded {
        for pair in &loaded.pairs {
            assert!(
                (0.5..=1.0).contains(&pair.soft_label),
                "{}",
                pair.soft_label
            );
        }
        let _ = softalign_data::Summary::of(loaded);
    }
    outcome(loaded)
}

/// The keys and value types of `sft`/`align` flags in a config file (as `TrainFlags` and
/// `LossFlags` of the binary declare them).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(unused)]
struct Flags {
    model: Option<PathBuf>,
    data: Option<PathBuf>,
    out: Option<PathBuf>,
    format: Option<String>,
    #[serde(default)]
    skip_invalid: bool,
    label_temperature: Option<f64>,
    heldout_fraction: Option<f64>,
    max_eval_examples: Option<usize>,
    template: Option<String>,
    max_length: Option<usize>,
    max_prompt_length: Option<usize>,
    optimizer: Option<String>,
    learning_rate: Option<f64>,
    weight_decay: Option<f64>,
    warmup_ratio: Option<f64>,
    min_lr_ratio: Option<f64>,
    epochs: Option<usize>,
    max_steps: Option<usize>,
    batch_size: Option<usize>,
    grad_accum: Option<usize>,
    max_grad_norm: Option<f64>,
    eval_every: Option<usize>,
    eval_batch_size: Option<usize>,
    save_every: Option<usize>,
    keep_checkpoints: Option<usize>,
    seed: Option<u64>,
    #[serde(default)]
    no_progress: bool,
    loss: Option<String>,
    beta: Option<f64>,
    alpha: Option<f64>,
    gamma: Option<f64>,
    reference: Option<String>,
}

/// A TOML config file, read as `--config FILE` is: keys checked, then deserialized into flags;
/// every error must be one line naming the file.
pub fn toml_config(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return "not utf-8".into();
    };
    let path = Path::new("run.toml");
    let result = config_file::ConfigFile::parse(
        path,
        text.to_string(),
        &[config_file::TRAIN_KEYS, config_file::LOSS_KEYS],
    )
    .and_then(|file| config_file::layer::<Flags>(&file));
    if let Err(error) = &result {
        let message = format!("{error:#}");
        assert!(message.starts_with("run.toml"), "{message}");
    }
    outcome(result)
}

/// An IDX file (MNIST's format), uncompressed.
pub fn idx(data: &[u8]) -> Outcome {
    outcome(softalign_repro::idx::parse_idx(data, Path::new("fuzz.idx")))
}

/// A training checkpoint: `model.bpk`, `optimizer.bpk` and `trainer_state.json`, the three parts
/// of the input, loaded into a tiny model and optimizer as `--resume` does.
pub fn checkpoint(data: &[u8]) -> Outcome {
    let dir = scratch("checkpoint").join("step-00000001");
    std::fs::create_dir_all(&dir).unwrap();
    let files = ["model.bpk", "optimizer.bpk", "trainer_state.json"];
    for (name, part) in files.iter().zip(parts(data, 3)) {
        std::fs::write(dir.join(name), part).unwrap();
    }
    let device = Device::default().autodiff();
    let model = softalign_model::CausalLm::init(&tiny_config(), &device);
    let optim = softalign_optim::OptimizerKind::Adopt.module_optimizer(0.0, None);
    outcome(softalign_train::checkpoint::load_checkpoint(
        &dir, model, optim,
    ))
}

/// The model whose checkpoints [`checkpoint`] reads: 1 block, width 8, vocabulary 16.
pub fn tiny_config() -> softalign_model::ModelConfig {
    softalign_model::ModelConfig {
        vocab_size: 16,
        hidden_size: 8,
        intermediate_size: 12,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 4,
        ..softalign_model::ModelConfig::smollm2_135m()
    }
}
