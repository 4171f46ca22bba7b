//! Model shape and hyper-parameters, read from Hugging Face `config.json` (transformers 4 and 5
//! layouts) or from GGUF metadata, and written back as a `config.json` that transformers loads.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};
pub use crate::family::Family;
use crate::rope::{Rope, RopeScaling};

/// The shape of a decoder of one of the supported [`Family`]s: RMSNorm, rotary embeddings,
/// grouped-query attention, SwiGLU MLP, tied or untied output head, and the family's switches.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which family's computation and file layout this is.
    pub family: Family,
    /// Number of tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU hidden layer.
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than the query heads).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// ε added to the mean square in RMSNorm.
    pub rms_norm_eps: f64,
    /// Base of the rotary frequencies (θ).
    pub rope_theta: f64,
    /// Whether the output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// Longest context the checkpoint was trained for.
    pub max_position_embeddings: usize,
    /// Beginning-of-sequence token, if the model has one.
    pub bos_token_id: Option<u32>,
    /// Tokens that end generation.
    pub eos_token_ids: Vec<u32>,
    /// The sliding attention window: a query of a sliding layer sees at most this many keys
    /// (itself included). `None`: full causal attention everywhere.
    pub sliding_window: Option<usize>,
    /// Which layers slide (Gemma's `layer_types`); `None` with a window: every layer does
    /// (Mistral, Phi-3).
    pub sliding_layers: Option<Vec<bool>>,
    /// Long-context scaling of the rotary frequencies (of the global layers, for Gemma 3).
    pub rope_scaling: RopeScaling,
    /// Gemma 3's rotary base on sliding layers (unscaled there); `None`: the global one.
    pub rope_local_theta: Option<f64>,
    /// The share of each head that rotates (Phi-3's `partial_rotary_factor`), in (0, 1].
    pub partial_rotary_factor: f64,
    /// The MLP's gate activation.
    pub hidden_activation: Activation,
    /// Gemma's attention scale `1/√query_pre_attn_scalar` (else `1/√head_dim`).
    pub query_pre_attn_scalar: Option<f64>,
    /// Gemma 2's soft cap on attention scores: `cap·tanh(s/cap)`.
    pub attn_logit_softcapping: Option<f64>,
    /// Gemma 2's soft cap on the output logits.
    pub final_logit_softcapping: Option<f64>,
}

/// The gate activation of the MLP: `act(x·gate) ⊙ (x·up)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(x)` (SwiGLU).
    Silu,
    /// GELU, tanh approximation (`gelu_pytorch_tanh`; GeGLU).
    GeluTanh,
}

impl Activation {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Activation::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Activation::GeluTanh),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
        }
    }
}

impl ModelConfig {
    /// The id that pads batched sequences: the first end-of-sequence token, or 0. Padded positions
    /// are masked out, so any id works; an EOS id keeps the padding inside the vocabulary.
    pub fn pad_token_id(&self) -> u32 {
        self.eos_token_ids.first().copied().unwrap_or(0)
    }

    /// A Llama-family configuration with every family switch off: no sliding window, no rotary
    /// scaling, the whole head rotated, SiLU, no soft-capping. The shape fields are those of
    /// SmolLM2-135M; struct literals override them (`..ModelConfig::llama_defaults()`).
    pub fn llama_defaults() -> Self {
        Self {
            family: Family::Llama,
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 8192,
            bos_token_id: Some(1),
            eos_token_ids: vec![2],
            sliding_window: None,
            sliding_layers: None,
            rope_scaling: RopeScaling::None,
            rope_local_theta: None,
            partial_rotary_factor: 1.0,
            hidden_activation: Activation::Silu,
            query_pre_attn_scalar: None,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
        }
    }

    /// The SmolLM2-135M shape (30 blocks, width 576, FFN 1536, 9/3 heads, vocabulary 49,152, tied):
    /// [`ModelConfig::llama_defaults`], whose shape fields are SmolLM2-135M's.
    pub fn smollm2_135m() -> Self {
        Self::llama_defaults()
    }

    /// Qwen2.5-1.5B's shape (28 blocks, width 1536, FFN 8960, 12/2 heads, vocabulary 151,936,
    /// tied, q/k/v biases, rope θ 10⁶): for memory and speed measurements with random weights.
    pub fn qwen2_5_1_5b() -> Self {
        Self {
            family: Family::Qwen2,
            vocab_size: 151_936,
            hidden_size: 1536,
            intermediate_size: 8960,
            num_hidden_layers: 28,
            num_attention_heads: 12,
            num_key_value_heads: 2,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            tie_word_embeddings: true,
            max_position_embeddings: 32768,
            bos_token_id: None,
            eos_token_ids: vec![151_643],
            ..Self::llama_defaults()
        }
    }

    /// Whether block `layer` attends through the sliding window.
    pub fn is_sliding(&self, layer: usize) -> bool {
        self.sliding_window.is_some()
            && self
                .sliding_layers
                .as_ref()
                .is_none_or(|layers| layers.get(layer).copied().unwrap_or(false))
    }

    /// The rotary parameters of block `layer`'s kind: Gemma 3's sliding layers have their own
    /// base and no scaling.
    pub fn rope(&self, sliding: bool) -> Rope {
        match (sliding, self.rope_local_theta) {
            (true, Some(theta)) => Rope {
                theta,
                scaling: RopeScaling::None,
            },
            _ => Rope {
                theta: self.rope_theta,
                scaling: self.rope_scaling.clone(),
            },
        }
    }

    /// How many channels of a head rotate: `head_dim · partial_rotary_factor`.
    pub fn rotary_dim(&self) -> usize {
        (self.head_dim as f64 * self.partial_rotary_factor) as usize
    }

    /// The factor on attention scores: `1/√query_pre_attn_scalar` (Gemma) or `1/√head_dim`.
    pub fn attention_scale(&self) -> f64 {
        1.0 / self
            .query_pre_attn_scalar
            .unwrap_or(self.head_dim as f64)
            .sqrt()
    }

    /// Gemma's embedding scale √width, rounded to f32 as transformers rounds it to the weights'
    /// dtype; 1 elsewhere.
    pub fn embedding_scale(&self) -> f32 {
        if self.family.is_gemma() {
            (self.hidden_size as f64).sqrt() as f32
        } else {
            1.0
        }
    }

    /// The shape of `slot`'s weight as both file formats store it (Hugging Face layout,
    /// outermost first: linear weights `[out, in]`, embedding and head `[vocab, width]`).
    pub fn tensor_shape(&self, slot: crate::family::Slot) -> Vec<usize> {
        use crate::family::Slot;
        let (c, f, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        match slot {
            Slot::Embedding | Slot::Head => vec![v, c],
            Slot::FinalNorm
            | Slot::AttnNorm
            | Slot::AttnOutNorm
            | Slot::MlpNorm
            | Slot::MlpOutNorm => vec![c],
            Slot::QNorm | Slot::KNorm => vec![self.head_dim],
            Slot::Q => vec![q, c],
            Slot::K | Slot::V => vec![kv, c],
            Slot::Qkv => vec![q + 2 * kv, c],
            Slot::O => vec![c, q],
            Slot::Gate | Slot::Up => vec![f, c],
            Slot::GateUp => vec![2 * f, c],
            Slot::Down => vec![c, f],
        }
    }

    /// Number of query heads that share one key/value head.
    pub fn group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Checks that the numbers fit together; `path` names the source in the error.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let fail = |field: &str, problem: String| ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ] {
            if value == 0 {
                return Err(fail(field, "must be positive".into()));
            }
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(fail(
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(fail(
                "head_dim",
                format!(
                    "{} is odd; rotary embeddings need an even width",
                    self.head_dim
                ),
            ));
        }
        // A tiny ε keeps the norm finite; an infinite or huge one flattens every activation.
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0 && self.rms_norm_eps < 1.0) {
            return Err(fail(
                "rms_norm_eps",
                format!("{} is not in (0, 1)", self.rms_norm_eps),
            ));
        }
        let rotary_dim = self.rotary_dim();
        if !(self.partial_rotary_factor > 0.0 && self.partial_rotary_factor <= 1.0)
            || rotary_dim == 0
            || !rotary_dim.is_multiple_of(2)
        {
            return Err(fail(
                "partial_rotary_factor",
                format!(
                    "{} of head_dim {} is not an even number of channels",
                    self.partial_rotary_factor, self.head_dim
                ),
            ));
        }
        for sliding in [false, true] {
            self.rope(sliding)
                .validate(rotary_dim)
                .map_err(|(field, problem)| fail(&field, problem))?;
        }
        if self.sliding_window == Some(0) {
            return Err(fail("sliding_window", "must be positive".into()));
        }
        if let Some(layers) = &self.sliding_layers
            && layers.len() != self.num_hidden_layers
        {
            return Err(fail(
                "layer_types",
                format!(
                    "{} entries for {} layers",
                    layers.len(),
                    self.num_hidden_layers
                ),
            ));
        }
        for (field, value) in [
            ("query_pre_attn_scalar", self.query_pre_attn_scalar),
            ("attn_logit_softcapping", self.attn_logit_softcapping),
            ("final_logit_softcapping", self.final_logit_softcapping),
            ("rope_local_base_freq", self.rope_local_theta),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(fail(field, format!("{v} is not a positive number")));
            }
        }
        crate::guard::check_products(self, path)
    }

    /// Reads a Hugging Face `config.json`, as transformers 4 writes it (`rope_theta` at the top
    /// level) or as transformers 5 writes it (`rope_parameters.rope_theta`); `head_dim` is taken
    /// when present and derived from `hidden_size / num_attention_heads` otherwise.
    pub fn from_hf_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(crate::error::io_error(path))?;
        let value: Value = serde_json::from_str(&text).map_err(|cause| ModelError::Json {
            path: path.to_path_buf(),
            cause,
        })?;
        Self::from_hf_json(&value, path)
    }

    /// Reads a parsed `config.json`; `path` names the source in errors.
    pub fn from_hf_json(value: &Value, path: &Path) -> Result<Self> {
        let fail = |field: &str, problem: &str| ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem: problem.to_string(),
        };
        let object = value
            .as_object()
            .ok_or_else(|| fail("(top level)", "expected a json object"))?;
        let usize_field = |field: &str| -> Result<Option<usize>> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .map(Some)
                    .ok_or_else(|| fail(field, "expected a non-negative integer")),
            }
        };
        let required = |field: &str| -> Result<usize> {
            usize_field(field)?.ok_or_else(|| fail(field, "missing"))
        };
        let number = |field: &str| -> Result<Option<f64>> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| fail(field, "expected a number")),
            }
        };
        let family = family_of(object).map_err(|(f, p)| fail(&f, &p))?;
        // Qwen2's q/k/v biases are implied by the family; an explicit flag asking for more
        // biases than the family has (Llama's `attention_bias` also biases o_proj) is refused.
        for flag in ["attention_bias", "mlp_bias"] {
            if object.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(fail(flag, "biases are not supported"));
            }
        }
        let hidden_activation = activation(object, family).map_err(|(f, p)| fail(&f, &p))?;
        let hidden_size = required("hidden_size")?;
        let num_attention_heads = required("num_attention_heads")?;
        let num_hidden_layers = required("num_hidden_layers")?;
        let num_key_value_heads =
            usize_field("num_key_value_heads")?.unwrap_or(num_attention_heads);
        let head_dim = match usize_field("head_dim")? {
            Some(d) => d,
            None => {
                if num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
                    return Err(fail(
                        "head_dim",
                        "missing, and hidden_size is not a multiple of num_attention_heads",
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        let rope = rope_of(object, family).map_err(|(f, p)| fail(&f, &p))?;
        let (sliding_window, sliding_layers) =
            sliding_of(object, family, num_hidden_layers).map_err(|(f, p)| fail(&f, &p))?;
        let rms_norm_eps = number("rms_norm_eps")?.unwrap_or(1e-6);
        let tie_word_embeddings = match object.get("tie_word_embeddings") {
            // transformers' PretrainedConfig default.
            None | Some(Value::Null) => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| fail("tie_word_embeddings", "expected true or false"))?,
        };
        let token_ids = |field: &str| -> Result<Vec<u32>> {
            let id = |v: &Value| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| fail(field, "expected token ids below 2³²"))
            };
            match object.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items.iter().map(id).collect(),
                Some(v) => Ok(vec![id(v)?]),
            }
        };
        // Gemma 2's class defaults when the keys are absent (an explicit null turns them off).
        let softcap = |field: &str, gemma2_default: f64| -> Result<Option<f64>> {
            match object.get(field) {
                None if family == Family::Gemma2 => Ok(Some(gemma2_default)),
                _ => number(field),
            }
        };
        let partial_rotary_factor = match number("partial_rotary_factor")? {
            Some(f) => f,
            None => rope.partial_rotary_factor.unwrap_or(1.0),
        };
        let config = Self {
            family,
            vocab_size: required("vocab_size")?,
            hidden_size,
            intermediate_size: required("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta: rope.global.theta,
            tie_word_embeddings,
            max_position_embeddings: usize_field("max_position_embeddings")?.unwrap_or(2048),
            bos_token_id: token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: token_ids("eos_token_id")?,
            sliding_window,
            sliding_layers,
            rope_scaling: rope.global.scaling,
            rope_local_theta: rope.local_theta,
            partial_rotary_factor,
            hidden_activation,
            query_pre_attn_scalar: if family.is_gemma() {
                Some(number("query_pre_attn_scalar")?.unwrap_or(head_dim as f64))
            } else {
                None
            },
            attn_logit_softcapping: softcap("attn_logit_softcapping", 50.0)?,
            final_logit_softcapping: softcap("final_logit_softcapping", 30.0)?,
        };
        if !family.is_gemma() {
            for field in ["attn_logit_softcapping", "final_logit_softcapping"] {
                if number(field)?.is_some() {
                    return Err(fail(
                        field,
                        &format!("soft-capping is not part of the {family} family"),
                    ));
                }
            }
        }
        config.validate(path)?;
        Ok(config)
    }

    /// The `config.json` that transformers (4 and 5) loads as this family's `*ForCausalLM`.
    ///
    /// The rotary base is written at the top level (transformers 4) and under
    /// `rope_parameters` (transformers 5); Gemma 3's per-layer-type rotary parameters are written
    /// both ways too. Fails only for llama.cpp rotary divisors that match no `llama3` scaling.
    pub fn to_hf_json(&self) -> std::result::Result<Value, String> {
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let global = hf_rope(
            &self.rope(false),
            self.rotary_dim(),
            self.max_position_embeddings,
        )?;
        let rope_parameters = match self.rope_local_theta {
            Some(_) => json!({
                "full_attention": global,
                "sliding_attention": hf_rope(&self.rope(true), self.rotary_dim(), self.max_position_embeddings)?,
            }),
            None => global.clone(),
        };
        let mut config = json!({
            "architectures": [self.family.architecture()],
            "model_type": self.family.model_type(),
            "attention_dropout": 0.0,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": rope_parameters,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            // Inside the vocabulary (Phi3Config's default 32000 is not, for small vocabularies,
            // and transformers then refuses the embedding).
            "pad_token_id": self.pad_token_id(),
            "torch_dtype": "float32",
            "dtype": "float32",
            "use_cache": true,
        });
        let object = config.as_object_mut().expect("a json object");
        let mut set = |key: &str, value: Value| {
            object.insert(key.to_string(), value);
        };
        if self.rope_local_theta.is_none() {
            // transformers 4 reads the scaling from `rope_scaling` (`rope_type` inside).
            let mut scaling = global;
            if let Some(o) = scaling.as_object_mut() {
                o.remove("rope_theta");
            }
            let is_default = scaling.get("rope_type") == Some(&json!("default"));
            set(
                "rope_scaling",
                if is_default { Value::Null } else { scaling },
            );
        }
        let activation = self.hidden_activation.name();
        let layer_types = |layers: usize| -> Value {
            (0..layers)
                .map(|i| {
                    if self.is_sliding(i) {
                        "sliding_attention"
                    } else {
                        "full_attention"
                    }
                })
                .collect()
        };
        match self.family {
            Family::Llama => {
                set("hidden_act", json!(activation));
                set("attention_bias", json!(false));
                set("mlp_bias", json!(false));
            }
            Family::Mistral => {
                set("hidden_act", json!(activation));
                set("sliding_window", json!(self.sliding_window));
            }
            Family::Qwen2 | Family::Qwen3 => {
                set("hidden_act", json!(activation));
                set("use_sliding_window", json!(false));
                set("sliding_window", Value::Null);
                set("max_window_layers", json!(self.num_hidden_layers));
                if self.family == Family::Qwen3 {
                    set("attention_bias", json!(false));
                }
            }
            Family::Gemma2 | Family::Gemma3 => {
                set("hidden_activation", json!(activation));
                set("hidden_act", json!(activation));
                set("attention_bias", json!(false));
                // transformers validates it as an integer.
                let scalar = self.query_pre_attn_scalar.map(|q| {
                    if q.fract() == 0.0 && q < 1e15 {
                        json!(q as u64)
                    } else {
                        json!(q)
                    }
                });
                set("query_pre_attn_scalar", json!(scalar));
                set("attn_logit_softcapping", json!(self.attn_logit_softcapping));
                set(
                    "final_logit_softcapping",
                    json!(self.final_logit_softcapping),
                );
                set("sliding_window", json!(self.sliding_window));
                set("layer_types", layer_types(self.num_hidden_layers));
                if let Some(local) = self.rope_local_theta {
                    set("rope_local_base_freq", json!(local));
                }
            }
            Family::Phi3 => {
                set("hidden_act", json!(activation));
                set("partial_rotary_factor", json!(self.partial_rotary_factor));
                set("sliding_window", json!(self.sliding_window));
                if let RopeScaling::LongRope { original_max, .. } = &self.rope_scaling {
                    set("original_max_position_embeddings", json!(original_max));
                }
            }
        }
        Ok(config)
    }
}

/// The rope parameters transformers 5 writes for `rope` (partial rotary factor inside for
/// Phi-3); llama.cpp divisors are written as the `llama3` scaling that produces them.
fn hf_rope(
    rope: &Rope,
    rotary_dim: usize,
    max_positions: usize,
) -> std::result::Result<Value, String> {
    let rope = match &rope.scaling {
        RopeScaling::Divisors(divisors) => Rope {
            theta: rope.theta,
            scaling: llama3_matching(rope.theta, rotary_dim, divisors).ok_or_else(|| {
                "rope_freqs.weight: these rotary divisors match no llama3 rope scaling, so they have no config.json spelling".to_string()
            })?,
        },
        _ => rope.clone(),
    };
    let _ = max_positions;
    Ok(rope.to_hf_json().expect("divisors were replaced"))
}

/// The `llama3` parameters whose divisors (as llama.cpp's converter computes them) are
/// `divisors`, among the usual ones (low 1 or 2, high 2 to 8, original context a power of two).
fn llama3_matching(theta: f64, dim: usize, divisors: &[f32]) -> Option<RopeScaling> {
    let factor = divisors.iter().copied().fold(1.0f32, f32::max) as f64;
    let freqs: Vec<f64> = (0..dim / 2)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / dim as f64))
        .collect();
    for shift in 4..=20 {
        let original = 1usize << shift;
        for low in [1.0, 2.0] {
            for high in [2.0, 4.0, 8.0] {
                if high <= low {
                    continue;
                }
                let old = original as f64;
                let fits = freqs.iter().zip(divisors).all(|(&f, &d)| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    let want = if wavelen < old / high {
                        1.0
                    } else if wavelen > old / low {
                        factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    ((d as f64 - want) / want).abs() < 1e-4
                });
                if fits {
                    return Some(RopeScaling::Llama3 {
                        factor,
                        low_freq_factor: low,
                        high_freq_factor: high,
                        original_max: original,
                    });
                }
            }
        }
    }
    None
}

/// The family from `model_type` and `architectures`, which must agree; multimodal, mixture-of-
/// experts and other architectures are refused by name.
fn family_of(object: &Map<String, Value>) -> std::result::Result<Family, (String, String)> {
    let architectures: Vec<&str> = match object.get("architectures") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().ok_or_else(|| {
                    (
                        "architectures".to_string(),
                        "expected class names".to_string(),
                    )
                })
            })
            .collect::<std::result::Result<_, _>>()?,
        Some(_) => {
            return Err((
                "architectures".into(),
                "expected a list of class names".into(),
            ));
        }
    };
    for name in &architectures {
        if let Some(why) = crate::family::refused_architecture(name) {
            return Err(("architectures".into(), format!("{name}: {why}")));
        }
    }
    let from_arch: Vec<Family> = architectures
        .iter()
        .map(|name| {
            Family::from_architecture(name).ok_or_else(|| {
                (
                    "architectures".to_string(),
                    format!(
                        "{name} is not supported (supported: {})",
                        Family::ALL.map(Family::architecture).join(", ")
                    ),
                )
            })
        })
        .collect::<std::result::Result<_, _>>()?;
    if let [first, rest @ ..] = from_arch.as_slice()
        && let Some(other) = rest.iter().find(|f| *f != first)
    {
        return Err((
            "architectures".into(),
            format!(
                "names two families ({} and {})",
                first.architecture(),
                other.architecture()
            ),
        ));
    }
    let family = match object.get("model_type") {
        // Old Llama checkpoints predate the key.
        None | Some(Value::Null) => from_arch.first().copied().unwrap_or(Family::Llama),
        Some(Value::String(model_type)) => {
            if model_type == "gemma3" {
                return Err((
                    "model_type".into(),
                    "gemma3 is the multimodal Gemma 3 checkpoint, which is not supported; a text-only Gemma3ForCausalLM (model_type gemma3_text) is".into(),
                ));
            }
            if let Some(why) = crate::family::refused_architecture(model_type) {
                return Err(("model_type".into(), format!("{model_type}: {why}")));
            }
            Family::from_model_type(model_type).ok_or_else(|| {
                (
                    "model_type".to_string(),
                    format!(
                        "{model_type} is not supported (supported: {})",
                        Family::supported()
                    ),
                )
            })?
        }
        Some(_) => return Err(("model_type".into(), "expected a string".into())),
    };
    if let Some(arch) = from_arch.first()
        && *arch != family
    {
        return Err((
            "architectures".into(),
            format!(
                "{} contradicts model_type {}",
                arch.architecture(),
                family.model_type()
            ),
        ));
    }
    Ok(family)
}

/// The MLP activation: `hidden_activation` (Gemma) or `hidden_act`.
fn activation(
    object: &Map<String, Value>,
    family: Family,
) -> std::result::Result<Activation, (String, String)> {
    let key = if family.is_gemma() && object.contains_key("hidden_activation") {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let default = if family.is_gemma() {
        Activation::GeluTanh
    } else {
        Activation::Silu
    };
    match object.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(name)) => Activation::from_name(name).ok_or_else(|| {
            (
                key.to_string(),
                format!("{name} is not supported (silu, gelu_pytorch_tanh)"),
            )
        }),
        Some(_) => Err((key.into(), "expected a string".into())),
    }
}

/// A `(field, problem)` error of one of the parsing helpers below.
type FieldResult<T> = std::result::Result<T, (String, String)>;

/// The rotary parameters a `config.json` gives.
struct HfRope {
    /// The global layers' base and scaling.
    global: Rope,
    /// Gemma 3's base on sliding layers.
    local_theta: Option<f64>,
    /// `partial_rotary_factor` inside `rope_parameters` (Phi-3 under transformers 5).
    partial_rotary_factor: Option<f64>,
}

/// The rotary parameters, from transformers 5's `rope_parameters` (flat, or per layer type) or
/// transformers 4's `rope_theta` / `rope_scaling` / `rope_local_base_freq`.
fn rope_of(object: &Map<String, Value>, family: Family) -> FieldResult<HfRope> {
    let top_theta = match object.get("rope_theta") {
        // transformers' default.
        None | Some(Value::Null) => 10_000.0,
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ("rope_theta".to_string(), "expected a number".to_string()))?,
    };
    let object_at =
        |key: &str| -> std::result::Result<Option<&Map<String, Value>>, (String, String)> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(o)) => Ok(Some(o)),
                Some(_) => Err((key.to_string(), "expected an object".to_string())),
            }
        };
    let partial =
        |params: &Map<String, Value>| params.get("partial_rotary_factor").and_then(Value::as_f64);
    let local_default = match object.get("rope_local_base_freq") {
        None | Some(Value::Null) => (family == Family::Gemma3).then_some(10_000.0),
        Some(v) => Some(v.as_f64().ok_or_else(|| {
            (
                "rope_local_base_freq".to_string(),
                "expected a number".to_string(),
            )
        })?),
    };
    if let Some(params) = object_at("rope_parameters")? {
        let per_layer =
            params.contains_key("full_attention") || params.contains_key("sliding_attention");
        if per_layer {
            let entry =
                |key: &str| -> std::result::Result<Option<&Map<String, Value>>, (String, String)> {
                    match params.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::Object(o)) => Ok(Some(o)),
                        Some(_) => Err((
                            format!("rope_parameters.{key}"),
                            "expected an object".into(),
                        )),
                    }
                };
            let full = entry("full_attention")?;
            let global =
                Rope::from_hf_json(full, top_theta, object, "rope_parameters.full_attention")?;
            let local = match entry("sliding_attention")? {
                Some(sliding) => {
                    let rope = Rope::from_hf_json(
                        Some(sliding),
                        local_default.unwrap_or(top_theta),
                        object,
                        "rope_parameters.sliding_attention",
                    )?;
                    if rope.scaling != RopeScaling::None {
                        return Err((
                            "rope_parameters.sliding_attention.rope_type".into(),
                            "scaled rotary embeddings on sliding layers are not supported".into(),
                        ));
                    }
                    Some(rope.theta)
                }
                None => local_default,
            };
            return Ok(HfRope {
                global,
                local_theta: local,
                partial_rotary_factor: full.and_then(partial),
            });
        }
        let rope = Rope::from_hf_json(Some(params), top_theta, object, "rope_parameters")?;
        return Ok(HfRope {
            global: rope,
            local_theta: local_default,
            partial_rotary_factor: partial(params),
        });
    }
    let scaling = object_at("rope_scaling")?;
    let rope = Rope::from_hf_json(scaling, top_theta, object, "rope_scaling")?;
    Ok(HfRope {
        global: rope,
        local_theta: local_default,
        partial_rotary_factor: None,
    })
}

/// The sliding window and which layers use it: Mistral's and Phi-3's window applies to every
/// layer; Gemma's to the layers `layer_types` names (else Gemma 2's alternation, or Gemma 3's
/// `sliding_window_pattern`); Qwen's per-layer schedule (`use_sliding_window`) is refused.
fn sliding_of(
    object: &Map<String, Value>,
    family: Family,
    layers: usize,
) -> FieldResult<(Option<usize>, Option<Vec<bool>>)> {
    let window = match object.get("sliding_window") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().map(|n| n as usize).ok_or_else(|| {
            (
                "sliding_window".to_string(),
                "expected a positive integer or null".to_string(),
            )
        })?),
    };
    match family {
        Family::Mistral | Family::Phi3 => Ok((window, None)),
        Family::Qwen2 | Family::Qwen3 => {
            if object.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
                return Err((
                    "use_sliding_window".into(),
                    "sliding-window attention is not supported for qwen models".into(),
                ));
            }
            Ok((None, None))
        }
        Family::Llama => Ok((None, None)),
        Family::Gemma2 | Family::Gemma3 => {
            let Some(window) = window else {
                return Ok((None, None));
            };
            let types = match object.get("layer_types") {
                None | Some(Value::Null) => None,
                Some(Value::Array(items)) => Some(
                    items
                        .iter()
                        .map(|v| match v.as_str() {
                            Some("sliding_attention") => Ok(true),
                            Some("full_attention") => Ok(false),
                            other => Err((
                                "layer_types".to_string(),
                                format!("{other:?} is not sliding_attention or full_attention"),
                            )),
                        })
                        .collect::<std::result::Result<Vec<_>, _>>()?,
                ),
                Some(_) => return Err(("layer_types".into(), "expected a list".into())),
            };
            let sliding = match types {
                Some(types) => types,
                None if family == Family::Gemma2 => (0..layers).map(|i| i % 2 == 0).collect(),
                None => {
                    let pattern = object
                        .get("sliding_window_pattern")
                        .or_else(|| object.get("_sliding_window_pattern"))
                        .and_then(Value::as_u64)
                        .unwrap_or(6)
                        .max(1) as usize;
                    (0..layers).map(|i| (i + 1) % pattern != 0).collect()
                }
            };
            Ok((Some(window), Some(sliding)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Result<ModelConfig> {
        ModelConfig::from_hf_json(&value, Path::new("config.json"))
    }

    fn base() -> Value {
        json!({
            "model_type": "llama", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 96,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": [2, 3]
        })
    }

    #[test]
    fn transformers_4_layout_reads_top_level_rope_theta_and_derives_head_dim() {
        let mut v = base();
        v["rope_theta"] = json!(50000.0);
        let c = parse(v).unwrap();
        assert_eq!(c.rope_theta, 50000.0);
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.eos_token_ids, vec![2, 3]);
        assert_eq!(c.bos_token_id, Some(1));
        assert!(!c.tie_word_embeddings);
    }

    #[test]
    fn transformers_5_layout_reads_rope_parameters_and_explicit_head_dim() {
        let mut v = base();
        v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 123.0});
        v["head_dim"] = json!(8);
        let c = parse(v).unwrap();
        assert_eq!(c.rope_theta, 123.0);
        assert_eq!(c.head_dim, 8);
    }

    #[test]
    fn written_config_reads_back_identically() {
        let c = ModelConfig::smollm2_135m();
        let back = parse(c.to_hf_json().unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_fields_name_the_field() {
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "mrope", "factor": 8.0});
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type"), "{e}");
        // llama3 without its original context names the missing key.
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0});
        let e = parse(v).unwrap_err().to_string();
        assert!(
            e.contains("rope_scaling.original_max_position_embeddings: missing"),
            "{e}"
        );
        // ε out of range (defect: an infinite ε flattened every activation).
        for eps in [json!(1e300), json!(0.0), json!(-1.0)] {
            let mut v = base();
            v["rms_norm_eps"] = eps;
            let e = parse(v).unwrap_err().to_string();
            assert!(e.contains("rms_norm_eps"), "{e}");
        }
        // Two families in `architectures`, or one that contradicts model_type.
        let mut v = base();
        v["architectures"] = json!(["LlamaForCausalLM", "Qwen2ForCausalLM"]);
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("architectures: names two families"), "{e}");
        let mut v = base();
        v["architectures"] = json!(["Qwen2ForCausalLM"]);
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("contradicts model_type llama"), "{e}");
        // Multimodal and mixture-of-experts checkpoints are refused by name.
        let mut v = base();
        v["model_type"] = json!("gemma3");
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("multimodal"), "{e}");
        let mut v = base();
        v["model_type"] = json!("mixtral");
        v["architectures"] = json!(["MixtralForCausalLM"]);
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("mixture-of-experts"), "{e}");

        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        let e = parse(v).unwrap_err().to_string();
        assert!(e.starts_with("config.json: num_key_value_heads"), "{e}");

        let mut v = base();
        v.as_object_mut().unwrap().remove("hidden_size");
        let e = parse(v).unwrap_err().to_string();
        assert_eq!(e, "config.json: hidden_size: missing");
    }
}
