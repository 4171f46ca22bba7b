//! GGUF v2/v3 reader: metadata, tensor directory, and dequantisation of F32, F16, BF16, Q8_0,
//! Q4_0 and Q4_1 tensors to f32; the configuration (architectures `llama`, `qwen2`, `qwen3`),
//! weights (in Hugging Face names and layout, llama.cpp's Q/K row permutation of `llama` undone)
//! and tokenizer a GGUF file describes.
//!
//! Every error names the file and, where one is at fault, the tensor or metadata key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result, io_error};
use crate::tokenizer::GgufVocabulary;
use crate::weights::{HostTensor, WeightMap};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
const QK: usize = 32;

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

/// The ggml tensor types this reader dequantises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit values; `x = (q − 8)·d`.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values; `x = q·d + m`.
    Q4_1,
    /// Blocks of 32: f16 scale `d`, 32 signed bytes; `x = q·d`.
    Q8_0,
}

impl GgmlType {
    /// The type with ggml id `id`, or the ggml name of an unsupported type.
    fn from_id(id: u32) -> std::result::Result<Self, String> {
        const NAMES: [&str; 31] = [
            "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k",
            "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
            "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
            "bf16",
        ];
        match id {
            0 => Ok(GgmlType::F32),
            1 => Ok(GgmlType::F16),
            2 => Ok(GgmlType::Q4_0),
            3 => Ok(GgmlType::Q4_1),
            8 => Ok(GgmlType::Q8_0),
            30 => Ok(GgmlType::Bf16),
            other => Err(match NAMES.get(other as usize) {
                Some(name) => {
                    format!("type {name} is not supported (f32, f16, bf16, q8_0, q4_0, q4_1)")
                }
                None => format!("unknown tensor type {other}"),
            }),
        }
    }

    /// The ggml id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Bf16 => 30,
        }
    }

    /// (values per block, bytes per block).
    fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (QK, 2 + QK / 2),
            GgmlType::Q4_1 => (QK, 4 + QK / 2),
            GgmlType::Q8_0 => (QK, 2 + QK),
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

/// A parsed GGUF file, its bytes held in memory.
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
    bytes: Vec<u8>,
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
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        Self::parse(path, bytes)
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
                        bytes: Vec::new(),
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
        let mut c = Cursor {
            bytes: &bytes,
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
            bytes,
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
        let extent = layout::tensor_extent(info, self.data_start, self.bytes.len())
            .map_err(|p| self.bad(p))?;
        Ok(&self.bytes[extent])
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
        let arch = self.meta_str("general.architecture").unwrap_or("llama");
        match arch {
            "llama" => Ok(Family::Llama),
            "qwen2" => Ok(Family::Qwen2),
            "qwen3" => Ok(Family::Qwen3),
            other => Err(self.bad(format!(
                "metadata general.architecture: {other} is not supported (supported: llama, qwen2, qwen3)"
            ))),
        }
    }

    /// The model configuration from the `ARCH.*` metadata (`llama.*`, `qwen2.*`, `qwen3.*`).
    pub fn model_config(&self) -> Result<ModelConfig> {
        let family = self.family()?;
        let arch = family.model_type();
        let key = |name: &str| format!("{arch}.{name}");
        let required = |name: &str| -> Result<usize> {
            let key = key(name);
            self.meta_usize(&key)?
                .ok_or_else(|| self.bad(format!("metadata {key}: missing")))
        };
        let hidden_size = required("embedding_length")?;
        let num_attention_heads = required("attention.head_count")?;
        let num_key_value_heads = self
            .meta_usize(&key("attention.head_count_kv"))?
            .unwrap_or(num_attention_heads);
        let head_dim = match self.meta_usize(&key("attention.key_length"))? {
            Some(d) => d,
            None => hidden_size / num_attention_heads.max(1),
        };
        let float = |name: &str, default: f64| -> Result<f64> {
            let key = key(name);
            match self.meta(&key) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| self.bad(format!("metadata {key}: expected a number"))),
            }
        };
        let vocab_size = match self.meta_usize(&key("vocab_size"))? {
            Some(n) => n,
            None => layout::embedding_rows(self.tensor_info("token_embd.weight")?)
                .map_err(|p| self.bad(p))?,
        };
        let token =
            |key: &str| -> Result<Option<u32>> { Ok(self.meta_usize(key)?.map(|n| n as u32)) };
        let config = ModelConfig {
            family,
            vocab_size,
            hidden_size,
            intermediate_size: required("feed_forward_length")?,
            num_hidden_layers: required("block_count")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
            rope_theta: float("rope.freq_base", 10_000.0)?,
            tie_word_embeddings: !self.tensors.iter().any(|t| t.name == "output.weight"),
            max_position_embeddings: self.meta_usize(&key("context_length"))?.unwrap_or(2048),
            bos_token_id: token("tokenizer.ggml.bos_token_id")?,
            eos_token_ids: token("tokenizer.ggml.eos_token_id")?.into_iter().collect(),
            sliding_window: None,
        };
        let scaling = key("rope.scaling.type");
        if let Some(GgufValue::String(kind)) = self.meta(&scaling)
            && kind != "none"
        {
            return Err(self.bad(format!(
                "metadata {scaling}: {kind} rope scaling is not supported"
            )));
        }
        if let Some(window) = self.meta_usize(&key("attention.sliding_window"))?
            && window < config.max_position_embeddings
        {
            return Err(self.bad(format!(
                "metadata {}: sliding-window attention ({window}) is not supported in GGUF files",
                key("attention.sliding_window")
            )));
        }
        config.validate(&self.path)?;
        Ok(config)
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

    /// The weights under Hugging Face names and layout. Shapes are checked against `config`
    /// (errors name the GGUF tensor), and the Q/K rows that llama.cpp's converter interleaves for
    /// its rotary layout are put back in the half-split order.
    pub fn model_weights(&self, config: &ModelConfig) -> Result<WeightMap> {
        let (c, f, v) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        crate::guard::check_layers_fit(config, self.tensors.len(), &self.path)?;
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let mut wanted: Vec<(String, String, Vec<usize>, Option<usize>)> = vec![
            (
                "token_embd.weight".into(),
                "model.embed_tokens.weight".into(),
                vec![v, c],
                None,
            ),
            (
                "output_norm.weight".into(),
                "model.norm.weight".into(),
                vec![c],
                None,
            ),
        ];
        if !config.tie_word_embeddings {
            wanted.push((
                "output.weight".into(),
                "lm_head.weight".into(),
                vec![v, c],
                None,
            ));
        }
        // llama.cpp permutes the Q/K rows of architecture `llama` only; qwen2/qwen3 tensors are
        // stored in Hugging Face's layout.
        let permuted = config.family == Family::Llama;
        let rows_of = |heads: usize| permuted.then_some(heads);
        let d = config.head_dim;
        for i in 0..config.num_hidden_layers {
            let (g, h) = (format!("blk.{i}"), format!("model.layers.{i}"));
            let mut tensors = vec![
                ("attn_norm.weight", "input_layernorm.weight", vec![c], None),
                (
                    "ffn_norm.weight",
                    "post_attention_layernorm.weight",
                    vec![c],
                    None,
                ),
                (
                    "attn_q.weight",
                    "self_attn.q_proj.weight",
                    vec![q, c],
                    rows_of(config.num_attention_heads),
                ),
                (
                    "attn_k.weight",
                    "self_attn.k_proj.weight",
                    vec![kv, c],
                    rows_of(config.num_key_value_heads),
                ),
                (
                    "attn_v.weight",
                    "self_attn.v_proj.weight",
                    vec![kv, c],
                    None,
                ),
                (
                    "attn_output.weight",
                    "self_attn.o_proj.weight",
                    vec![c, q],
                    None,
                ),
                ("ffn_gate.weight", "mlp.gate_proj.weight", vec![f, c], None),
                ("ffn_up.weight", "mlp.up_proj.weight", vec![f, c], None),
                ("ffn_down.weight", "mlp.down_proj.weight", vec![c, f], None),
            ];
            if config.family.qkv_bias() {
                tensors.extend([
                    ("attn_q.bias", "self_attn.q_proj.bias", vec![q], None),
                    ("attn_k.bias", "self_attn.k_proj.bias", vec![kv], None),
                    ("attn_v.bias", "self_attn.v_proj.bias", vec![kv], None),
                ]);
            }
            if config.family.qk_norm() {
                tensors.extend([
                    (
                        "attn_q_norm.weight",
                        "self_attn.q_norm.weight",
                        vec![d],
                        None,
                    ),
                    (
                        "attn_k_norm.weight",
                        "self_attn.k_norm.weight",
                        vec![d],
                        None,
                    ),
                ]);
            }
            for (gguf, hf, shape, heads) in tensors {
                wanted.push((format!("{g}.{gguf}"), format!("{h}.{hf}"), shape, heads));
            }
        }
        let mut map = WeightMap {
            source: self.path.clone(),
            tensors: Default::default(),
        };
        for (gguf_name, hf_name, shape, heads) in wanted {
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
            let mut tensor = self.dequantize(&gguf_name)?;
            if let Some(heads) = heads {
                tensor = unpermute_rotary_rows(&tensor, heads);
            }
            map.tensors.insert(hf_name, tensor);
        }
        Ok(map)
    }
}

/// Undoes llama.cpp's `permute` of Q/K weights: within each head, llama.cpp stores row
/// `2i + s` what Hugging Face stores at row `s·d/2 + i` (d the head width, s ∈ {0, 1}).
pub fn unpermute_rotary_rows(tensor: &HostTensor, heads: usize) -> HostTensor {
    let (rows, cols) = (tensor.shape[0], tensor.shape[1]);
    let d = rows / heads;
    let half = d / 2;
    let mut data = vec![0.0f32; rows * cols];
    for h in 0..heads {
        for s in 0..2 {
            for i in 0..half {
                let hf = h * d + s * half + i;
                let gg = h * d + 2 * i + s;
                data[hf * cols..(hf + 1) * cols]
                    .copy_from_slice(&tensor.data[gg * cols..(gg + 1) * cols]);
            }
        }
    }
    HostTensor {
        shape: tensor.shape.clone(),
        data,
    }
}

/// IEEE half → f32, subnormals, infinities and NaN included.
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

fn f16_at(raw: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([raw[at], raw[at + 1]]))
}

/// Dequantises `raw` bytes of type `kind` (a whole number of blocks) to f32.
pub fn dequantize(kind: GgmlType, raw: &[u8]) -> Vec<f32> {
    let (per_block, block_bytes) = kind.block();
    let mut out = Vec::with_capacity(raw.len() / block_bytes * per_block);
    match kind {
        GgmlType::F32 => out.extend(
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        GgmlType::F16 => out.extend(raw.chunks_exact(2).map(|b| f16_at(b, 0))),
        GgmlType::Bf16 => out.extend(
            raw.chunks_exact(2)
                .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16)),
        ),
        GgmlType::Q8_0 => {
            for block in raw.chunks_exact(block_bytes) {
                let d = f16_at(block, 0);
                out.extend(block[2..].iter().map(|&q| q as i8 as f32 * d));
            }
        }
        GgmlType::Q4_0 => {
            for block in raw.chunks_exact(block_bytes) {
                let d = f16_at(block, 0);
                let qs = &block[2..];
                out.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
                out.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
            }
        }
        GgmlType::Q4_1 => {
            for block in raw.chunks_exact(block_bytes) {
                let (d, m) = (f16_at(block, 0), f16_at(block, 2));
                let qs = &block[4..];
                out.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
                out.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
            }
        }
    }
    out
}

mod layout;

#[cfg(test)]
pub(crate) mod writer;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod hostile;
