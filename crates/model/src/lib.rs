//! Causal language models for burn — the Llama, Mistral, Qwen2/2.5 and Qwen3 families (SmolLM2,
//! TinyLlama, Llama 2/3, Mistral 7B, Qwen2.5, Qwen3 checkpoints): the model, its weights in and
//! out, its tokenizer, and generation.
//!
//! - [`CausalLm`]: one model type for every [`Family`]: RMSNorm, rotary embeddings (half-split
//!   layout, configurable base), grouped-query attention, SwiGLU, tied or untied head, and the
//!   family's switches in its [`ModelConfig`] (Qwen2's q/k/v biases, Qwen3's q/k norms and free
//!   `head_dim`, Mistral's sliding window). [`CausalLm::forward`] gives the
//!   causal logits of whole sequences for training; [`CausalLm::forward_cached`] decodes
//!   incrementally with a [`KvCache`].
//! - [`load_pretrained`] reads a Hugging Face folder (`config.json`, `*.safetensors`,
//!   `tokenizer.json`) or a GGUF file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the
//!   K-quants Q2_K to Q6_K, IQ4_NL, IQ4_XS, dequantised to f32; tokenizer rebuilt from its
//!   vocabulary). [`save_pretrained`] writes the Hugging Face layout
//!   that `transformers` loads.
//! - [`TextTokenizer`] encodes exactly as the model's own tokenizer does and renders the chat
//!   template; [`generate`] decodes greedily or by seeded sampling.
//!
//! ```
//! use burn::tensor::{Device, Int, Tensor, TensorData};
//! use softalign_model::{ModelConfig, CausalLm, next_token_logps};
//!
//! let config = ModelConfig { vocab_size: 50, hidden_size: 16, intermediate_size: 24,
//!     num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 4,
//!     ..ModelConfig::smollm2_135m() };
//! let device = Device::default();
//! let model = CausalLm::init(&config, &device);
//! let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 1, 4, 1, 5], [1, 5]), &device);
//! let logits = model.forward(tokens.clone());
//! assert_eq!(logits.dims(), [1, 5, 50]);
//! let logps = next_token_logps(logits, tokens); // [1, 4], each ≤ 0
//! assert!(logps.into_data().iter::<f32>().all(|x| x <= 0.0));
//! ```
#![deny(missing_docs)]

pub mod chat_template;
pub mod checkpointing;
pub mod config;
pub mod device;
pub mod error;
pub mod family;
pub mod fused;
pub mod generate;
pub mod gguf;
pub mod guard;
pub mod lora;
pub mod memory;
pub mod model;
pub mod peft_targets;
pub mod quant;
pub mod rope;
pub mod score;
pub mod tokenizer;
pub mod weights;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use serde_json::Value;

pub use config::{Activation, Family, ModelConfig};
pub use device::{DeviceError, DeviceSpec};
pub use error::{ModelError, Result};
pub use generate::{GenerationConfig, Sampling, TextStream, generate, sample_token};
pub use gguf::GgufFile;
pub use lora::{
    LoraConfig, load_adapter, load_pretrained_with_adapter, load_pretrained_with_adapter_as,
    save_adapter,
};
pub use memory::keep_freed_memory;
pub use model::{CausalLm, KvCache, Linear, LinearWeight, next_token_logps, token_logps};
pub use quant::WeightFormat;
pub use rope::{Rope, RopeScaling};
pub use score::{TextScore, score_text};
pub use tokenizer::{ChatMessage, TextTokenizer};
pub use weights::{HostTensor, WeightMap};

use error::io_error;

/// A model with its tokenizer, as loaded from disk.
#[derive(Debug)]
pub struct Pretrained {
    /// The network.
    pub model: CausalLm,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl Pretrained {
    /// Tokens that end generation: the model's EOS ids, and in chat mode the end-of-turn tokens
    /// of its chat format.
    pub fn stop_tokens(&self, chat: bool) -> Vec<u32> {
        let mut stops = self.model.config.eos_token_ids.clone();
        if chat {
            for id in self.tokenizer.end_of_turn_ids() {
                if !stops.contains(&id) {
                    stops.push(id);
                }
            }
        }
        stops
    }
}

/// Whether `path` is a GGUF file (by extension or magic number).
fn is_gguf(path: &Path) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|_| &magic == b"GGUF")
}

/// Loads a model and its tokenizer onto `device` from a Hugging Face model folder (or a file in
/// one) or from a `.gguf` file.
pub fn load_pretrained(path: &Path, device: &Device) -> Result<Pretrained> {
    load_pretrained_as(path, device, WeightFormat::Native)
}

/// [`load_pretrained`], with the linear weights held as `format` says (a GGUF's block formats
/// kept, everything f32, or a Hugging Face model's weights quantized as they load). Weights
/// stay quantized only on the CPU; for other devices they are de-quantized.
pub fn load_pretrained_as(
    path: &Path,
    device: &Device,
    format: WeightFormat,
) -> Result<Pretrained> {
    if path.is_file() && is_gguf(path) {
        return load_gguf_as(path, device, format);
    }
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else if path.is_file() {
        hf_folder_of_file(path)?
    } else {
        return Err(ModelError::Io {
            path: path.to_path_buf(),
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
        });
    };
    load_hf_folder_as(&folder, device, format)
}

/// The Hugging Face folder a file given as the model belongs to: one of the folder's own files
/// (`config.json`, `tokenizer.json`, a `.safetensors` shard) names its folder; any other file is
/// neither a GGUF nor part of a model folder.
fn hf_folder_of_file(path: &Path) -> Result<PathBuf> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_model_file = name.ends_with(".safetensors")
        || name.ends_with(".json") && path.with_file_name("config.json").is_file();
    if !is_model_file {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            problem: "neither a GGUF file nor a Hugging Face model folder (config.json, *.safetensors, tokenizer.json) or a file in one".into(),
        });
    }
    Ok(path.parent().unwrap_or(Path::new(".")).to_path_buf())
}

/// Loads a GGUF file: configuration and tokenizer from its metadata, linear weights kept in their
/// block formats on the CPU (see [`load_gguf_as`]).
pub fn load_gguf(path: &Path, device: &Device) -> Result<Pretrained> {
    load_gguf_as(path, device, WeightFormat::Native)
}

/// Loads a GGUF file, its linear weights held as `format` says.
pub fn load_gguf_as(path: &Path, device: &Device, format: WeightFormat) -> Result<Pretrained> {
    let file = GgufFile::read(path)?;
    let config = file.model_config()?;
    let tokenizer = file.vocabulary()?.to_tokenizer(path)?;
    guard::check_token_ids(&tokenizer, &config, path)?;
    let weights = file.model_weights_as(&config, format)?;
    drop(file);
    let model = CausalLm::from_weights(&config, weights, device)?;
    Ok(Pretrained {
        model,
        tokenizer,
        source: path.to_path_buf(),
    })
}

/// Loads a Hugging Face folder: `config.json`, `*.safetensors`, `tokenizer.json` (and
/// `tokenizer_config.json`, `generation_config.json` when present).
pub fn load_hf_folder(folder: &Path, device: &Device) -> Result<Pretrained> {
    load_hf_folder_as(folder, device, WeightFormat::Native)
}

/// Loads a Hugging Face folder, its linear weights quantized as they load when `format` is
/// [`WeightFormat::Quantize`].
pub fn load_hf_folder_as(
    folder: &Path,
    device: &Device,
    format: WeightFormat,
) -> Result<Pretrained> {
    let mut config = ModelConfig::from_hf_json_file(&folder.join("config.json"))?;
    let generation = folder.join("generation_config.json");
    if generation.exists() {
        let text = std::fs::read_to_string(&generation).map_err(io_error(&generation))?;
        let value: Value = serde_json::from_str(&text).map_err(|cause| ModelError::Json {
            path: generation.clone(),
            cause,
        })?;
        let ids: Vec<u32> = match value.get("eos_token_id") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_u64().map(|n| n as u32))
                .collect(),
            Some(v) => v.as_u64().map(|n| n as u32).into_iter().collect(),
            None => Vec::new(),
        };
        for id in ids {
            if !config.eos_token_ids.contains(&id) {
                config.eos_token_ids.push(id);
            }
        }
    }
    let tokenizer = TextTokenizer::from_file(&folder.join("tokenizer.json"))?;
    guard::check_token_ids(&tokenizer, &config, &folder.join("config.json"))?;
    let mut weights = WeightMap::read_hf_folder(folder)?;
    if let WeightFormat::Quantize(kind) = format {
        weights.quantize_to = Some(kind);
    }
    let model = CausalLm::from_weights(&config, weights, device)?;
    Ok(Pretrained {
        model,
        tokenizer,
        source: folder.to_path_buf(),
    })
}

/// Writes `model` and `tokenizer` into `folder` in the Hugging Face layout that
/// `transformers.AutoModelForCausalLM.from_pretrained` loads: `model.safetensors` (f32),
/// `config.json`, `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`. Each file
/// is written to a temporary name and renamed into place.
///
/// A model carrying LoRA adapters is written merged (`W + (α/r)·A·B`), so the files always
/// compute what the model does; [`save_adapter`] writes the adapters alone.
pub fn save_pretrained(model: &CausalLm, tokenizer: &TextTokenizer, folder: &Path) -> Result<()> {
    let merged;
    let model = if model.has_adapters() {
        merged = model.clone().merge_adapters();
        &merged
    } else {
        model
    };
    let config = &model.config;
    let config_json = config.to_hf_json().map_err(|problem| ModelError::Format {
        path: folder.join("config.json"),
        problem,
    })?;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).expect("json value serialises");
    let generation = serde_json::json!({
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config_json["eos_token_id"],
    });
    std::fs::create_dir_all(folder).map_err(io_error(folder))?;
    weights::write_safetensors(&folder.join("model.safetensors"), &model.to_weights())?;
    weights::write_atomic(&folder.join("config.json"), pretty(&config_json).as_bytes())?;
    weights::write_atomic(
        &folder.join("generation_config.json"),
        pretty(&generation).as_bytes(),
    )?;
    tokenizer.save(folder)
}
