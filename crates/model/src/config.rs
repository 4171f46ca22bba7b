//! Model shape and hyper-parameters, read from Hugging Face `config.json` (transformers 4 and 5
//! layouts) or from GGUF metadata, and written back as a `config.json` that transformers loads.

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::error::{ModelError, Result};

/// The decoder families this crate runs. They share one computation (pre-norm blocks, RMSNorm,
/// rotary embeddings, grouped-query attention, SwiGLU) and differ only in the switches below, so
/// one [`crate::CausalLm`] serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `LlamaForCausalLM` (Llama 2/3, SmolLM2, TinyLlama).
    Llama,
    /// `MistralForCausalLM`: the Llama computation, with an optional sliding attention window.
    Mistral,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): biases on the q, k and v projections.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head RMSNorm on queries and keys before the rotation, and a
    /// `head_dim` that need not be `hidden_size / num_attention_heads`.
    Qwen3,
}

impl Family {
    /// Every family, for messages and tests.
    pub const ALL: [Family; 4] = [Family::Llama, Family::Mistral, Family::Qwen2, Family::Qwen3];

    /// The family of a `config.json` `model_type`.
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.model_type() == model_type)
    }

    /// The `model_type` transformers writes for this family (also its GGUF architecture name,
    /// except that llama.cpp writes Mistral as `llama`).
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }

    /// The transformers class that loads this family.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    /// Whether the q, k and v projections carry a bias (the output projection never does).
    pub fn qkv_bias(self) -> bool {
        self == Family::Qwen2
    }

    /// Whether queries and keys get a per-head RMSNorm (`q_norm`, `k_norm`) before the rotation.
    pub fn qk_norm(self) -> bool {
        self == Family::Qwen3
    }

    /// The names of the supported `model_type`s, for error messages.
    fn supported() -> String {
        Self::ALL.map(Family::model_type).join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

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
    /// Mistral's sliding attention window: a query sees at most this many keys (itself
    /// included). `None`: full causal attention.
    pub sliding_window: Option<usize>,
}

impl ModelConfig {
    /// The id that pads batched sequences: the first end-of-sequence token, or 0. Padded positions
    /// are masked out, so any id works; an EOS id keeps the padding inside the vocabulary.
    pub fn pad_token_id(&self) -> u32 {
        self.eos_token_ids.first().copied().unwrap_or(0)
    }

    /// The SmolLM2-135M shape (30 blocks, width 576, FFN 1536, 9/3 heads, vocabulary 49,152, tied).
    pub fn smollm2_135m() -> Self {
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
        }
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
            sliding_window: None,
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
        if self.rms_norm_eps.is_nan() || self.rms_norm_eps <= 0.0 {
            return Err(fail("rms_norm_eps", "must be positive".into()));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 0.0 {
            return Err(fail("rope_theta", "must be positive".into()));
        }
        if self.sliding_window == Some(0) {
            return Err(fail("sliding_window", "must be positive".into()));
        }
        if self.sliding_window.is_some() && self.family != Family::Mistral {
            return Err(fail(
                "sliding_window",
                format!(
                    "a sliding window is only supported for mistral, not {}",
                    self.family
                ),
            ));
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
                    .map(|n| Some(n as usize))
                    .ok_or_else(|| fail(field, "expected a non-negative integer")),
            }
        };
        let required = |field: &str| -> Result<usize> {
            usize_field(field)?.ok_or_else(|| fail(field, "missing"))
        };
        let family = match object.get("model_type").and_then(Value::as_str) {
            // Old Llama checkpoints predate the key.
            None => Family::Llama,
            Some(model_type) => Family::from_model_type(model_type).ok_or_else(|| {
                fail(
                    "model_type",
                    &format!(
                        "{model_type} is not supported (supported: {})",
                        Family::supported()
                    ),
                )
            })?,
        };
        // Qwen2's q/k/v biases are implied by the family; an explicit flag asking for more
        // biases than the family has (Llama's `attention_bias` also biases o_proj) is refused.
        for flag in ["attention_bias", "mlp_bias"] {
            if object.get(flag).and_then(Value::as_bool) == Some(true) {
                return Err(fail(flag, "biases are not supported"));
            }
        }
        let sliding_window = sliding_window(object, family).map_err(|(f, p)| fail(&f, &p))?;
        if let Some(act) = object.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(fail(
                "hidden_act",
                &format!("{act} is not supported (silu only)"),
            ));
        }
        let hidden_size = required("hidden_size")?;
        let num_attention_heads = required("num_attention_heads")?;
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
        let rope_theta = rope_theta(object).map_err(|(field, problem)| fail(&field, &problem))?;
        let rms_norm_eps = match object.get("rms_norm_eps") {
            None | Some(Value::Null) => 1e-6,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| fail("rms_norm_eps", "expected a number"))?,
        };
        let tie_word_embeddings = match object.get("tie_word_embeddings") {
            // transformers' PretrainedConfig default.
            None | Some(Value::Null) => true,
            Some(v) => v
                .as_bool()
                .ok_or_else(|| fail("tie_word_embeddings", "expected true or false"))?,
        };
        let token_ids = |field: &str| -> Result<Vec<u32>> {
            match object.get(field) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_u64()
                            .map(|n| n as u32)
                            .ok_or_else(|| fail(field, "expected token ids"))
                    })
                    .collect(),
                Some(v) => v
                    .as_u64()
                    .map(|n| vec![n as u32])
                    .ok_or_else(|| fail(field, "expected a token id")),
            }
        };
        let config = Self {
            family,
            vocab_size: required("vocab_size")?,
            hidden_size,
            intermediate_size: required("intermediate_size")?,
            num_hidden_layers: required("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta,
            tie_word_embeddings,
            max_position_embeddings: usize_field("max_position_embeddings")?.unwrap_or(2048),
            bos_token_id: token_ids("bos_token_id")?.first().copied(),
            eos_token_ids: token_ids("eos_token_id")?,
            sliding_window,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// The `config.json` that transformers (4 and 5) loads as this family's `*ForCausalLM`.
    ///
    /// The rotary base is written both at the top level (transformers 4) and under
    /// `rope_parameters` (transformers 5).
    pub fn to_hf_json(&self) -> Value {
        let eos = match self.eos_token_ids.as_slice() {
            [] => Value::Null,
            [one] => json!(one),
            many => json!(many),
        };
        let mut config = json!({
            "architectures": [self.family.architecture()],
            "model_type": self.family.model_type(),
            "attention_dropout": 0.0,
            "hidden_act": "silu",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": null,
            "rope_parameters": { "rope_type": "default", "rope_theta": self.rope_theta },
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": eos,
            "torch_dtype": "float32",
            "dtype": "float32",
            "use_cache": true,
        });
        let object = config.as_object_mut().expect("a json object");
        let mut set = |key: &str, value: Value| {
            object.insert(key.to_string(), value);
        };
        match self.family {
            Family::Llama => {
                set("attention_bias", json!(false));
                set("mlp_bias", json!(false));
            }
            Family::Mistral => set("sliding_window", json!(self.sliding_window)),
            Family::Qwen2 | Family::Qwen3 => {
                set("use_sliding_window", json!(false));
                set("sliding_window", Value::Null);
                set("max_window_layers", json!(self.num_hidden_layers));
                if self.family == Family::Qwen3 {
                    set("attention_bias", json!(false));
                }
            }
        }
        config
    }
}

/// Mistral's `sliding_window` (Qwen's `use_sliding_window` must be off: its per-layer window
/// schedule is not implemented, so it is refused rather than ignored).
fn sliding_window(
    object: &Map<String, Value>,
    family: Family,
) -> std::result::Result<Option<usize>, (String, String)> {
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
        Family::Mistral => Ok(window),
        Family::Qwen2 | Family::Qwen3 => {
            if object.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
                return Err((
                    "use_sliding_window".into(),
                    "sliding-window attention is not supported for qwen models".into(),
                ));
            }
            Ok(None)
        }
        Family::Llama => Ok(None),
    }
}

/// The rotary base from either layout; rope scaling other than the default is refused rather than
/// silently ignored.
fn rope_theta(object: &Map<String, Value>) -> std::result::Result<f64, (String, String)> {
    let check_type = |field: &str, params: &Value| -> std::result::Result<(), (String, String)> {
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str);
        match kind {
            None | Some("default") => Ok(()),
            Some(other) => Err((
                format!("{field}.rope_type"),
                format!("{other} rope scaling is not supported"),
            )),
        }
    };
    if let Some(params) = object.get("rope_parameters").filter(|v| !v.is_null()) {
        check_type("rope_parameters", params)?;
        if let Some(theta) = params.get("rope_theta") {
            return theta.as_f64().ok_or_else(|| {
                (
                    "rope_parameters.rope_theta".into(),
                    "expected a number".into(),
                )
            });
        }
    }
    if let Some(params) = object.get("rope_scaling").filter(|v| !v.is_null()) {
        check_type("rope_scaling", params)?;
    }
    match object.get("rope_theta") {
        // transformers' ModelConfig default.
        None | Some(Value::Null) => Ok(10_000.0),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ("rope_theta".into(), "expected a number".into())),
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
        let back = parse(c.to_hf_json()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn bad_fields_name_the_field() {
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type"), "{e}");

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
