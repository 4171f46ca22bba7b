//! GGUF v2/v3 reader: metadata, tensor directory, and dequantisation to f32 of F32, F16, BF16,
//! Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, the K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), IQ4_NL and IQ4_XS
//! tensors, bit-exact to ggml (block decoders in [`quants`]); the configuration (architectures
//! `llama`, `qwen2`, `qwen3`), weights (in Hugging Face names and layout, llama.cpp's Q/K row
//! permutation of `llama` undone) and tokenizer a GGUF file describes.
//!
//! Every error names the file and, where one is at fault, the tensor or metadata key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result, io_error};
use crate::family::Slot;
use crate::quant::{QuantizedMatrix, SharedBytes, WeightFormat};
use crate::rope::RopeScaling;
use crate::tokenizer::GgufVocabulary;
use crate::weights::{HostTensor, WeightMap};

pub use quants::{GgmlType, dequantize};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Unsigned integer (u8, u16, u32 or u64 in the file).
    Uint(u64),
    /// Signed integer (i8, i16, i32 or i64 in the file).
    Int(i64),
    /// Floating point (f32 or f64 in the file).
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array of values.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::Uint(v) => Some(v),
            GgufValue::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::Float(v) => Some(v),
            GgufValue::Uint(v) => Some(v as f64),
            GgufValue::Int(v) => Some(v as f64),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`, …).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<usize>,
    /// Storage type.
    pub kind: GgmlType,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
}

/// A parsed GGUF file, its bytes memory-mapped (or held, when parsed from memory).
#[derive(Debug)]
pub struct GgufFile {
    /// The file, named in errors.
    pub path: PathBuf,
    /// Format version (2 or 3).
    pub version: u32,
    /// Metadata by key.
    pub metadata: BTreeMap<String, GgufValue>,
    /// Tensor directory, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    bytes: SharedBytes,
    data_start: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let slice = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(slice)
            }
            None => Err(ModelError::Format {
                path: self.path.to_path_buf(),
                problem: format!("truncated at byte {} while reading {what}", self.pos),
            }),
        }
    }
    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn len(&mut self, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        // Anything longer than the file cannot be read; refusing it here also avoids huge allocations.
        if n > self.bytes.len() as u64 {
            return Err(self.bad(format!("{what}: length {n} exceeds the file size")));
        }
        Ok(n as usize)
    }
    /// A count of items of at least `min_bytes` each, refused unless they fit in the rest of the
    /// file (so no allocation is ever sized by a forged count).
    fn count(&mut self, what: &str, min_bytes: u64) -> Result<usize> {
        let n = self.u64(what)?;
        let remaining = self.bytes.len() - self.pos;
        layout::check_count(n, min_bytes, remaining).map_err(|p| {
            self.bad(format!(
                "truncated at byte {} while reading {what}: {p}",
                self.pos
            ))
        })
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.len(what)?;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.bad(format!("{what}: invalid utf-8")))
    }
    fn bad(&self, problem: String) -> ModelError {
        ModelError::Format {
            path: self.path.to_path_buf(),
            problem,
        }
    }
    /// The header: magic number, version, tensor count and the metadata.
    fn header(&mut self) -> Result<(u32, usize, BTreeMap<String, GgufValue>)> {
        let magic = self.take(4, "the magic number")?;
        if magic != MAGIC {
            return Err(self.bad(format!(
                "not a gguf file (magic {:02x?}, expected \"GGUF\")",
                magic
            )));
        }
        let version = self.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(self.bad(format!("gguf version {version} is not supported (2 or 3)")));
        }
        let tensor_count = self.count("the tensor count", layout::MIN_TENSOR_ENTRY_BYTES)?;
        let kv_count = self.count("the metadata count", layout::MIN_METADATA_ENTRY_BYTES)?;
        let mut metadata = BTreeMap::new();
        for _ in 0..kv_count {
            let key = self.string("a metadata key")?;
            let kind = self.u32(&key)?;
            let value = self.value(kind, &key, 0)?;
            metadata.insert(key, value);
        }
        Ok((version, tensor_count, metadata))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<GgufValue> {
        Ok(match kind {
            0 => GgufValue::Uint(self.u8(key)? as u64),
            1 => GgufValue::Int(self.u8(key)? as i8 as i64),
            2 => GgufValue::Uint(self.u16(key)? as u64),
            3 => GgufValue::Int(self.u16(key)? as i16 as i64),
            4 => GgufValue::Uint(self.u32(key)? as u64),
            5 => GgufValue::Int(self.u32(key)? as i32 as i64),
            // The shortest decimal that rounds to the f32 (1e-5, not 9.999999747378752e-6), so
            // that a configuration written back says what the converter was given.
            6 => GgufValue::Float(
                f32::from_bits(self.u32(key)?)
                    .to_string()
                    .parse()
                    .unwrap_or(f64::NAN),
            ),
            7 => GgufValue::Bool(self.u8(key)? != 0),
            8 => GgufValue::String(self.string(key)?),
            9 => {
                if depth > 0 {
                    return Err(
                        self.bad(format!("metadata {key}: nested arrays are not supported"))
                    );
                }
                let item = self.u32(key)?;
                let n = self.count(key, layout::min_value_bytes(item))?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::Uint(self.u64(key)?),
            11 => GgufValue::Int(self.u64(key)? as i64),
            12 => GgufValue::Float(f64::from_bits(self.u64(key)?)),
            other => return Err(self.bad(format!("metadata {key}: unknown value type {other}"))),
        })
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    ///
    /// The file is memory-mapped: tensors kept in their block formats share its pages (the
    /// operating system reads them in on first use and may drop them again under memory
    /// pressure). As with llama.cpp, the file must not be changed while a model uses it.
    pub fn read(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io_error(path))?;
        // SAFETY: the mapping is read-only; a file truncated or rewritten by another process
        // while mapped is the one case this cannot guard against (as for every mmap reader).
        let mapped = unsafe { memmap2::Mmap::map(&file) }.map_err(io_error(path))?;
        Self::parse_shared(path, SharedBytes::new(std::sync::Arc::new(mapped)))
    }

    /// Reads only the header of a GGUF file: its version and metadata, without the tensor
    /// directory or data (the result has no tensors). The vocabulary of a large model then costs
    /// the few megabytes its metadata takes, read in growing pieces from the start of the file.
    pub fn read_metadata(path: &Path) -> Result<Self> {
        use std::io::Read;
        let file = std::fs::File::open(path).map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        let mut reader = file.take(len);
        let mut bytes = Vec::new();
        let mut want: u64 = 8 << 20;
        loop {
            let have = bytes.len() as u64;
            (&mut reader)
                .take(want.saturating_sub(have))
                .read_to_end(&mut bytes)
                .map_err(io_error(path))?;
            let mut c = Cursor {
                bytes: &bytes,
                pos: 0,
                path,
            };
            match c.header() {
                Ok((version, _, metadata)) => {
                    return Ok(GgufFile {
                        path: path.to_path_buf(),
                        version,
                        metadata,
                        tensors: Vec::new(),
                        bytes: SharedBytes::from_vec(Vec::new()),
                        data_start: 0,
                    });
                }
                // A failure inside a prefix may only be the prefix's end: read more, until the
                // whole file has given its answer.
                Err(_) if (bytes.len() as u64) < len => want = want.saturating_mul(4),
                Err(e) => return Err(e),
            }
        }
    }

    /// Parses GGUF bytes; `path` names them in errors.
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        Self::parse_shared(path, SharedBytes::from_vec(bytes))
    }

    fn parse_shared(path: &Path, shared: SharedBytes) -> Result<Self> {
        let bytes = shared.as_slice();
        let mut c = Cursor {
            bytes,
            pos: 0,
            path,
        };
        let (version, tensor_count, metadata) = c.header()?;
        let mut tensors = Vec::with_capacity(tensor_count);
        for _ in 0..tensor_count {
            let name = c.string("a tensor name")?;
            let rank = c.u32(&format!("tensor {name}"))? as usize;
            if rank == 0 || rank > 4 {
                return Err(c.bad(format!("tensor {name}: rank {rank} (expected 1 to 4)")));
            }
            let mut dims = Vec::with_capacity(rank);
            for _ in 0..rank {
                dims.push(c.len(&format!("tensor {name}"))?);
            }
            let kind = GgmlType::from_id(c.u32(&format!("tensor {name}"))?)
                .map_err(|problem| c.bad(format!("tensor {name}: {problem}")))?;
            let offset = c.u64(&format!("tensor {name}"))?;
            tensors.push(GgufTensorInfo {
                name,
                dims,
                kind,
                offset,
            });
        }
        let alignment =
            layout::alignment(metadata.get("general.alignment")).map_err(|p| c.bad(p))?;
        let data_start = layout::data_start(c.pos, alignment, bytes.len()).map_err(|p| c.bad(p))?;
        let file = GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            data_start,
            bytes: shared.clone(),
        };
        for info in &file.tensors {
            file.tensor_bytes(info)?;
        }
        Ok(file)
    }

    fn bad(&self, problem: String) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            problem,
        }
    }

    /// The bytes of one tensor, checked against the file's length and the block size.
    fn tensor_bytes(&self, info: &GgufTensorInfo) -> Result<&[u8]> {
        let extent = layout::tensor_extent(info, self.data_start, self.bytes.as_slice().len())
            .map_err(|p| self.bad(p))?;
        Ok(&self.bytes.as_slice()[extent])
    }

    /// The tensor called `name`, or a missing-tensor error naming the file.
    pub fn tensor_info(&self, name: &str) -> Result<&GgufTensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    /// Dequantises tensor `name` to f32; the shape is outermost-first (ggml's order reversed).
    pub fn dequantize(&self, name: &str) -> Result<HostTensor> {
        let info = self.tensor_info(name)?;
        let raw = self.tensor_bytes(info)?;
        Ok(HostTensor {
            shape: info.dims.iter().rev().copied().collect(),
            data: dequantize(info.kind, raw),
        })
    }

    fn meta(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    fn meta_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.meta(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(format!("metadata {key}: expected an unsigned integer"))),
        }
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        match self.meta(key) {
            Some(GgufValue::String(s)) => Some(s),
            _ => None,
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>> {
        self.array(key, "strings", |v| match v {
            GgufValue::String(s) => Some(s.clone()),
            _ => None,
        })
    }

    /// The array `key` (empty when absent), each item converted by `convert`; an item it refuses
    /// (`None`) is an error saying the array should hold `expected`.
    fn array<T>(
        &self,
        key: &str,
        expected: &str,
        convert: impl Fn(&GgufValue) -> Option<T>,
    ) -> Result<Vec<T>> {
        match self.meta(key) {
            None => Ok(Vec::new()),
            Some(GgufValue::Array(items)) => items
                .iter()
                .map(|v| {
                    convert(v)
                        .ok_or_else(|| self.bad(format!("metadata {key}: expected {expected}")))
                })
                .collect(),
            Some(_) => Err(self.bad(format!("metadata {key}: expected an array"))),
        }
    }

    /// The model family a GGUF architecture name stands for. llama.cpp writes Mistral
    /// checkpoints as `llama` (the same computation), so no GGUF maps to [`Family::Mistral`].
    fn family(&self) -> Result<Family> {
        let key = "general.architecture";
        let arch = match self.meta(key) {
            Some(GgufValue::String(arch)) => arch,
            Some(_) => return Err(self.bad(format!("metadata {key}: expected a string"))),
            None => return Err(self.bad(format!("metadata {key}: missing"))),
        };
        if let Some(why) = crate::family::refused_architecture(arch) {
            return Err(self.bad(format!("metadata {key}: {arch}: {why}")));
        }
        Family::from_gguf_architecture(arch).ok_or_else(|| {
            self.bad(format!(
                "metadata {key}: {arch} is not supported (supported: llama, qwen2, qwen3, gemma2, gemma3, phi3)"
            ))
        })
    }

    fn meta_f32s(&self, key: &str) -> Result<Option<Vec<f32>>> {
        match self.tensors.iter().find(|t| t.name == key) {
            None => Ok(None),
            Some(_) => Ok(Some(self.dequantize(key)?.data)),
        }
    }

    fn token_id(&self, key: &str) -> Result<Option<u32>> {
        match self.meta(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.bad(format!("metadata {key}: expected a token id below 2³²"))),
        }
    }

    /// The model configuration from the `ARCH.*` metadata (`llama.*`, `qwen2.*`, `gemma3.*`, …).
    pub fn model_config(&self) -> Result<ModelConfig> {
        let family = self.family()?;
        let arch = family.gguf_architecture();
        let key = |name: &str| format!("{arch}.{name}");
        let required = |name: &str| -> Result<usize> {
            let key = key(name);
            self.meta_usize(&key)?
                .ok_or_else(|| self.bad(format!("metadata {key}: missing")))
        };
        let hidden_size = required("embedding_length")?;
        let num_attention_heads = required("attention.head_count")?;
        let num_hidden_layers = required("block_count")?;
        let num_key_value_heads = self
            .meta_usize(&key("attention.head_count_kv"))?
            .unwrap_or(num_attention_heads);
        let head_dim = match self.meta_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None => hidden_size / num_attention_heads.max(1),
        };
        let float = |name: &str| -> Result<Option<f64>> {
            let key = key(name);
            match self.meta(&key) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.bad(format!("metadata {key}: expected a number"))),
            }
        };
        let vocab_size = match self.meta_usize(&key("vocab_size"))? {
            Some(n) => n,
            None => layout::embedding_rows(self.tensor_info("token_embd.weight")?)
                .map_err(|p| self.bad(p))?,
        };
        let max_position_embeddings = self.meta_usize(&key("context_length"))?.unwrap_or(2048);
        // The rotated share of each head.
        let partial_rotary_factor = match self.meta_usize(&key("rope.dimension_count"))? {
            None => 1.0,
            Some(n) if n > 0 && n <= head_dim && n % 2 == 0 => n as f64 / head_dim as f64,
            Some(n) => {
                return Err(self.bad(format!(
                    "metadata {}: {n} is not an even number of channels in (0, {head_dim}]",
                    key("rope.dimension_count")
                )));
            }
        };
        let rotary_dim = (head_dim as f64 * partial_rotary_factor) as usize;
        let rope_scaling = self.rope_scaling(&key, rotary_dim, max_position_embeddings)?;
        // llama.cpp writes 0 for "no window".
        let window = self
            .meta_usize(&key("attention.sliding_window"))?
            .filter(|&w| w > 0);
        let (sliding_window, sliding_layers) = match family {
            Family::Gemma2 | Family::Gemma3 => match window {
                None => (None, None),
                Some(w) => {
                    let pattern = match self.meta(&key("attention.sliding_window_pattern")) {
                        Some(GgufValue::Array(items)) => items
                            .iter()
                            .map(|v| matches!(v, GgufValue::Bool(true)))
                            .collect(),
                        Some(v) => {
                            let n = v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                                self.bad(format!(
                                    "metadata {}: expected a positive integer or booleans",
                                    key("attention.sliding_window_pattern")
                                ))
                            })? as usize;
                            (0..num_hidden_layers).map(|i| (i + 1) % n != 0).collect()
                        }
                        // llama.cpp's fixed patterns: Gemma 2 alternates, Gemma 3 makes every
                        // sixth layer global.
                        None if family == Family::Gemma2 => {
                            (0..num_hidden_layers).map(|i| i % 2 == 0).collect()
                        }
                        None => (0..num_hidden_layers).map(|i| (i + 1) % 6 != 0).collect(),
                    };
                    (Some(w), Some(pattern))
                }
            },
            Family::Phi3 => (window.filter(|&w| w < max_position_embeddings), None),
            _ => {
                if let Some(w) = window
                    && w < max_position_embeddings
                {
                    return Err(self.bad(format!(
                        "metadata {}: sliding-window attention ({w}) is not supported for architecture {arch}",
                        key("attention.sliding_window")
                    )));
                }
                (None, None)
            }
        };
        let gemma = family.is_gemma();
        // llama.cpp scales Gemma's scores by 1/√key_length, except for the 27B models, whose
        // query_pre_attn_scalar is width / heads (46 blocks for Gemma 2, 62 for Gemma 3).
        let query_pre_attn_scalar = gemma.then(|| {
            let big = matches!(
                (family, num_hidden_layers),
                (Family::Gemma2, 46) | (Family::Gemma3, 62)
            );
            if big {
                (hidden_size / num_attention_heads.max(1)) as f64
            } else {
                head_dim as f64
            }
        });
        let config = ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size: required("feed_forward_length")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5),
            rope_theta: float("rope.freq_base")?.unwrap_or(10_000.0),
            tie_word_embeddings: !self.tensors.iter().any(|t| t.name == "output.weight"),
            max_position_embeddings,
            bos_token_id: self.token_id("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: self
                .token_id("tokenizer.ggml.eos_token_id")?
                .into_iter()
                .collect(),
            sliding_window,
            sliding_layers,
            rope_scaling,
            rope_local_theta: (family == Family::Gemma3)
                .then(|| float("rope.freq_base_swa"))
                .transpose()?
                .map(|theta| theta.unwrap_or(10_000.0)),
            partial_rotary_factor,
            hidden_activation: if gemma {
                crate::config::Activation::GeluTanh
            } else {
                crate::config::Activation::Silu
            },
            query_pre_attn_scalar,
            attn_logit_softcapping: if family == Family::Gemma2 {
                float("attn_logit_softcapping")?
            } else {
                None
            },
            final_logit_softcapping: if family == Family::Gemma2 {
                float("final_logit_softcapping")?
            } else {
                None
            },
        };
        config.validate(&self.path)?;
        Ok(config)
    }

    /// The rotary scaling: `rope_freqs.weight` divisors (Llama 3), `rope_factors_long/short`
    /// (LongRoPE), or `ARCH.rope.scaling.type` linear / yarn.
    fn rope_scaling(
        &self,
        key: &dyn Fn(&str) -> String,
        rotary_dim: usize,
        max_positions: usize,
    ) -> Result<RopeScaling> {
        let float = |name: &str| -> Result<Option<f64>> {
            match self.meta(&key(name)) {
                None => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| self.bad(format!("metadata {}: expected a number", key(name)))),
            }
        };
        let original = self
            .meta_usize(&key("rope.scaling.original_context_length"))?
            .filter(|&n| n > 0);
        if let Some(divisors) = self.meta_f32s("rope_freqs.weight")? {
            return Ok(RopeScaling::Divisors(divisors));
        }
        if let (Some(long), Some(short)) = (
            self.meta_f32s("rope_factors_long.weight")?,
            self.meta_f32s("rope_factors_short.weight")?,
        ) {
            let _ = rotary_dim;
            return Ok(RopeScaling::LongRope {
                short_factor: short.iter().map(|&v| v as f64).collect(),
                long_factor: long.iter().map(|&v| v as f64).collect(),
                original_max: original.unwrap_or(max_positions),
                factor: None,
                attention_factor: float("rope.scaling.attn_factor")?,
            });
        }
        let scaling = key("rope.scaling.type");
        let kind = match self.meta(&scaling) {
            None => return Ok(RopeScaling::None),
            Some(GgufValue::String(kind)) => kind.as_str(),
            Some(_) => return Err(self.bad(format!("metadata {scaling}: expected a string"))),
        };
        let factor = || -> Result<f64> {
            float("rope.scaling.factor")?.ok_or_else(|| {
                self.bad(format!("metadata {}: missing", key("rope.scaling.factor")))
            })
        };
        match kind {
            "none" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear { factor: factor()? }),
            "yarn" => Ok(RopeScaling::Yarn {
                factor: factor()?,
                original_max: original.unwrap_or(max_positions),
                attention_factor: None,
                beta_fast: float("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
                beta_slow: float("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
                mscale: None,
                mscale_all_dim: None,
                truncate: true,
            }),
            other => Err(self.bad(format!(
                "metadata {scaling}: {other} rope scaling is not supported (none, linear, yarn)"
            ))),
        }
    }

    /// The tokenizer tables in the metadata, with llama.cpp's defaults for the flags a file
    /// leaves out: a SentencePiece vocabulary (`tokenizer.ggml.model` = `llama`) adds BOS and a
    /// prefix space unless it says otherwise; a byte-level one adds neither.
    pub fn vocabulary(&self) -> Result<GgufVocabulary> {
        let tokens = self.strings("tokenizer.ggml.tokens")?;
        if tokens.is_empty() {
            return Err(self.bad("metadata tokenizer.ggml.tokens: missing".into()));
        }
        let model = self
            .meta_str("tokenizer.ggml.model")
            .unwrap_or("gpt2")
            .to_string();
        let sentencepiece = model == "llama";
        let flag = |key: &str, default: bool| -> Result<bool> {
            match self.meta(key) {
                None => Ok(default),
                Some(GgufValue::Bool(b)) => Ok(*b),
                Some(_) => Err(self.bad(format!("metadata {key}: expected a boolean"))),
            }
        };
        let id = |key: &str| -> Result<Option<u32>> {
            match self.meta_usize(key)? {
                None => Ok(None),
                Some(n) => u32::try_from(n)
                    .map(Some)
                    .map_err(|_| self.bad(format!("metadata {key}: {n} is not a token id"))),
            }
        };
        Ok(GgufVocabulary {
            architecture: self.meta_str("general.architecture").map(str::to_string),
            model,
            pre: self.meta_str("tokenizer.ggml.pre").map(str::to_string),
            tokens,
            scores: self.array("tokenizer.ggml.scores", "numbers", |v| {
                v.as_f64().map(|x| x as f32)
            })?,
            token_types: self.array(
                "tokenizer.ggml.token_type",
                "32-bit integers",
                |v| match *v {
                    GgufValue::Int(n) => i32::try_from(n).ok(),
                    GgufValue::Uint(n) => i32::try_from(n).ok(),
                    _ => None,
                },
            )?,
            merges: self.strings("tokenizer.ggml.merges")?,
            bos_token_id: id("tokenizer.ggml.bos_token_id")?,
            eos_token_id: id("tokenizer.ggml.eos_token_id")?,
            unknown_token_id: id("tokenizer.ggml.unknown_token_id")?,
            padding_token_id: id("tokenizer.ggml.padding_token_id")?,
            add_bos_token: flag("tokenizer.ggml.add_bos_token", sentencepiece)?,
            add_eos_token: flag("tokenizer.ggml.add_eos_token", false)?,
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", sentencepiece)?,
            chat_template: self.meta_str("tokenizer.chat_template").map(str::to_string),
        })
    }

    /// The weights under Hugging Face names and layout, through the family's table. Shapes are
    /// checked against `config` (errors name the GGUF tensor), the Q/K rows that llama.cpp's
    /// converter interleaves for its rotary layout are put back in the half-split order, and a
    /// tensor the configuration does not use is refused by name.
    pub fn model_weights(&self, config: &ModelConfig) -> Result<WeightMap> {
        self.model_weights_as(config, WeightFormat::F32)
    }

    /// [`GgufFile::model_weights`], with the linear weights of the blocks held as `format`
    /// says: kept in their block formats (sharing the file's mapped bytes; Q/K rows that
    /// llama.cpp permuted are copied in Hugging Face's order), or all de-quantized to f32.
    pub fn model_weights_as(
        &self,
        config: &ModelConfig,
        format: WeightFormat,
    ) -> Result<WeightMap> {
        crate::guard::check_layers_fit(config, self.tensors.len(), &self.path)?;
        let family = config.family;
        let mut wanted: Vec<Wanted> = Vec::new();
        for row in family.model_tensors() {
            if row.slot == Slot::Head && config.tie_word_embeddings {
                continue;
            }
            wanted.push((
                format!("{}.weight", row.gguf),
                format!("{}.weight", row.hf),
                config.tensor_shape(row.slot),
                None,
                false,
            ));
        }
        let permuted = family.gguf_permutes_qk();
        for i in 0..config.num_hidden_layers {
            for row in family.block_tensors() {
                let heads = match row.slot {
                    Slot::Q if permuted => Some(config.num_attention_heads),
                    Slot::K if permuted => Some(config.num_key_value_heads),
                    _ => None,
                };
                let shape = config.tensor_shape(row.slot);
                wanted.push((
                    format!("blk.{i}.{}.weight", row.gguf),
                    format!("model.layers.{i}.{}.weight", row.hf),
                    shape.clone(),
                    heads,
                    row.slot.is_linear(),
                ));
                if family.qkv_bias() && matches!(row.slot, Slot::Q | Slot::K | Slot::V) {
                    wanted.push((
                        format!("blk.{i}.{}.bias", row.gguf),
                        format!("model.layers.{i}.{}.bias", row.hf),
                        vec![shape[0]],
                        None,
                        false,
                    ));
                }
            }
        }
        // Tensors the configuration reads elsewhere (rotary scaling).
        let side = [
            "rope_freqs.weight",
            "rope_factors_long.weight",
            "rope_factors_short.weight",
        ];
        let known: std::collections::HashSet<&str> = wanted
            .iter()
            .map(|(g, ..)| g.as_str())
            .chain(side)
            .collect();
        if let Some(stray) = self
            .tensors
            .iter()
            .find(|t| !known.contains(t.name.as_str()))
        {
            return Err(self.bad(format!(
                "tensor {} is not used by a {} model with this configuration",
                stray.name, family
            )));
        }
        let mut map = WeightMap {
            source: self.path.clone(),
            norms_include_one: family.is_gemma(),
            quantize_to: match format {
                WeightFormat::Quantize(kind) => Some(kind),
                _ => None,
            },
            ..Default::default()
        };
        for (gguf_name, hf_name, shape, heads, linear) in wanted {
            let info = self.tensor_info(&gguf_name)?;
            let found: Vec<usize> = info.dims.iter().rev().copied().collect();
            if found != shape {
                return Err(ModelError::ShapeMismatch {
                    path: self.path.clone(),
                    tensor: gguf_name,
                    expected: shape.iter().rev().copied().collect(),
                    found: info.dims.clone(),
                });
            }
            if linear && info.kind.is_block_format() && format != WeightFormat::F32 {
                let raw = self.tensor_bytes(info)?;
                let start = raw.as_ptr() as usize - self.bytes.as_slice().as_ptr() as usize;
                let bytes = self.bytes.slice(start..start + raw.len());
                let mut matrix = QuantizedMatrix::new(info.kind, shape[0], shape[1], bytes)
                    .map_err(|p| self.bad(format!("tensor {gguf_name}: {p}")))?;
                if let Some(heads) = heads {
                    matrix = matrix.permute_rows(&rotary_row_order(shape[0], heads));
                }
                map.quantized.insert(hf_name, matrix);
                continue;
            }
            let mut tensor = self.dequantize(&gguf_name)?;
            if let Some(heads) = heads {
                tensor = unpermute_rotary_rows(&tensor, heads);
            }
            map.tensors.insert(hf_name, tensor);
        }
        Ok(map)
    }
}

/// A tensor [`GgufFile::model_weights_as`] reads: GGUF name, Hugging Face name, shape, the Q/K
/// heads to unpermute, and whether it is a block's linear weight.
type Wanted = (String, String, Vec<usize>, Option<usize>, bool);

/// Undoes llama.cpp's `permute` of Q/K weights: within each head, llama.cpp stores row
/// `2i + s` what Hugging Face stores at row `s·d/2 + i` (d the head width, s ∈ {0, 1}).
pub fn unpermute_rotary_rows(tensor: &HostTensor, heads: usize) -> HostTensor {
    let (rows, cols) = (tensor.shape[0], tensor.shape[1]);
    let mut data = Vec::with_capacity(rows * cols);
    for from in rotary_row_order(rows, heads) {
        data.extend_from_slice(&tensor.data[from * cols..(from + 1) * cols]);
    }
    HostTensor {
        shape: tensor.shape.clone(),
        data,
    }
}

/// For each Hugging Face row of a permuted Q/K weight, the llama.cpp row holding it.
fn rotary_row_order(rows: usize, heads: usize) -> Vec<usize> {
    let d = rows / heads;
    let half = d / 2;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                order[h * d + s * half + i] = h * d + 2 * i + s;
            }
        }
    }
    order
}

/// IEEE half → f32, subnormals, infinities and NaN included.
#[inline]
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let magnitude = match exponent {
        0 => {
            // Zero or subnormal: mantissa · 2⁻²⁴.
            let value = mantissa as f32 * 2f32.powi(-24);
            return if sign != 0 { -value } else { value };
        }
        0x1f => 0x7f80_0000 | (mantissa << 13),
        e => ((e + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[inline]
fn f16_at(raw: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([raw[at], raw[at + 1]]))
}

mod layout;
pub mod quants;

#[cfg(test)]
pub(crate) mod writer;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile;

#[cfg(test)]
mod loader_tests;
