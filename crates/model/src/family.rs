//! The decoder families, and for each one the table of its tensors: the one place where a
//! family's Hugging Face names, GGUF names and roles are written down. Loading
//! ([`crate::weights`]), saving, the GGUF map ([`crate::gguf`]), LoRA's adaptable modules and
//! PEFT's keys ([`crate::lora`]) all read [`Family::block_tensors`] and
//! [`Family::model_tensors`].
//!
//! Adding a family is: a [`Family`] variant, its switches below, its table rows, its
//! `config.json` / GGUF keys in [`crate::config`] and [`crate::gguf`], and a golden fixture.

/// The decoder families this crate runs. They share one computation (pre-norm blocks, RMSNorm,
/// rotary embeddings, grouped-query attention, gated MLP) and differ in the switches below, so
/// one [`crate::CausalLm`] serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `LlamaForCausalLM` (Llama 2/3/3.1/3.2/3.3, SmolLM2, TinyLlama).
    Llama,
    /// `MistralForCausalLM`: the Llama computation, with an optional sliding attention window.
    Mistral,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): biases on the q, k and v projections.
    Qwen2,
    /// `Qwen3ForCausalLM`: per-head RMSNorm on queries and keys before the rotation, and a
    /// `head_dim` that need not be `hidden_size / num_attention_heads`.
    Qwen3,
    /// `Gemma2ForCausalLM`: four norms per block computing `x·(1 + w)`, GeGLU (tanh GELU),
    /// scaled embeddings, sliding and global layers, attention and final-logit soft-capping.
    Gemma2,
    /// `Gemma3ForCausalLM` (text): Gemma 2's block with per-head q/k norms instead of
    /// soft-capping, and its own rotary base on sliding layers.
    Gemma3,
    /// `Phi3ForCausalLM` (Phi-3, Phi-3.5, Phi-4-mini): fused `qkv_proj` and `gate_up_proj`,
    /// partial rotary embeddings, LongRoPE.
    Phi3,
}

/// What a tensor is to the model. Linear slots are stored `[in, out]` in the model and
/// `[out, in]` in both file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Token embedding `[vocab, width]`.
    Embedding,
    /// The norm after the last block.
    FinalNorm,
    /// The untied output head.
    Head,
    /// Norm of the block's input, before attention.
    AttnNorm,
    /// Gemma's norm of the attention output, before the residual add.
    AttnOutNorm,
    /// Norm before the MLP (Llama's `post_attention_layernorm`, Gemma's
    /// `pre_feedforward_layernorm`).
    MlpNorm,
    /// Gemma's norm of the MLP output, before the residual add.
    MlpOutNorm,
    /// Per-head norm of the queries.
    QNorm,
    /// Per-head norm of the keys.
    KNorm,
    /// Query projection.
    Q,
    /// Key projection.
    K,
    /// Value projection.
    V,
    /// Fused `[q; k; v]` projection.
    Qkv,
    /// Attention output projection.
    O,
    /// MLP gate projection.
    Gate,
    /// MLP up projection.
    Up,
    /// Fused `[gate; up]` projection.
    GateUp,
    /// MLP down projection.
    Down,
}

impl Slot {
    /// Whether the slot is a linear layer (LoRA can adapt it).
    pub fn is_linear(self) -> bool {
        matches!(
            self,
            Slot::Q
                | Slot::K
                | Slot::V
                | Slot::Qkv
                | Slot::O
                | Slot::Gate
                | Slot::Up
                | Slot::GateUp
                | Slot::Down
        )
    }

    /// Whether the slot is a norm gain.
    pub fn is_norm(self) -> bool {
        matches!(
            self,
            Slot::FinalNorm
                | Slot::AttnNorm
                | Slot::AttnOutNorm
                | Slot::MlpNorm
                | Slot::MlpOutNorm
                | Slot::QNorm
                | Slot::KNorm
        )
    }
}

/// One row of a family's table: a slot, its Hugging Face module path (below
/// `model.layers.N.` for block tensors) and its GGUF name (below `blk.N.`), both without the
/// `.weight` / `.bias` suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorName {
    /// The role.
    pub slot: Slot,
    /// Hugging Face module path (`self_attn.q_proj`).
    pub hf: &'static str,
    /// GGUF tensor stem (`attn_q`).
    pub gguf: &'static str,
}

const fn row(slot: Slot, hf: &'static str, gguf: &'static str) -> TensorName {
    TensorName { slot, hf, gguf }
}

const MODEL_TENSORS: [TensorName; 3] = [
    row(Slot::Embedding, "model.embed_tokens", "token_embd"),
    row(Slot::FinalNorm, "model.norm", "output_norm"),
    row(Slot::Head, "lm_head", "output"),
];

/// Llama, Mistral, Qwen2, Qwen3: split projections, two norms (linears in block order).
const LLAMA_BLOCK: [TensorName; 9] = [
    row(Slot::AttnNorm, "input_layernorm", "attn_norm"),
    row(Slot::MlpNorm, "post_attention_layernorm", "ffn_norm"),
    row(Slot::Q, "self_attn.q_proj", "attn_q"),
    row(Slot::K, "self_attn.k_proj", "attn_k"),
    row(Slot::V, "self_attn.v_proj", "attn_v"),
    row(Slot::O, "self_attn.o_proj", "attn_output"),
    row(Slot::Gate, "mlp.gate_proj", "ffn_gate"),
    row(Slot::Up, "mlp.up_proj", "ffn_up"),
    row(Slot::Down, "mlp.down_proj", "ffn_down"),
];

const QK_NORMS: [TensorName; 2] = [
    row(Slot::QNorm, "self_attn.q_norm", "attn_q_norm"),
    row(Slot::KNorm, "self_attn.k_norm", "attn_k_norm"),
];

/// Gemma 2 and 3: four norms (llama.cpp's `ffn_norm` is Gemma's pre-feed-forward norm).
const GEMMA_BLOCK: [TensorName; 11] = [
    row(Slot::AttnNorm, "input_layernorm", "attn_norm"),
    row(
        Slot::AttnOutNorm,
        "post_attention_layernorm",
        "post_attention_norm",
    ),
    row(Slot::MlpNorm, "pre_feedforward_layernorm", "ffn_norm"),
    row(
        Slot::MlpOutNorm,
        "post_feedforward_layernorm",
        "post_ffw_norm",
    ),
    row(Slot::Q, "self_attn.q_proj", "attn_q"),
    row(Slot::K, "self_attn.k_proj", "attn_k"),
    row(Slot::V, "self_attn.v_proj", "attn_v"),
    row(Slot::O, "self_attn.o_proj", "attn_output"),
    row(Slot::Gate, "mlp.gate_proj", "ffn_gate"),
    row(Slot::Up, "mlp.up_proj", "ffn_up"),
    row(Slot::Down, "mlp.down_proj", "ffn_down"),
];

/// Phi-3: fused projections, kept fused in both formats (llama.cpp's `ffn_up` holds
/// `[gate; up]`).
const PHI3_BLOCK: [TensorName; 6] = [
    row(Slot::AttnNorm, "input_layernorm", "attn_norm"),
    row(Slot::MlpNorm, "post_attention_layernorm", "ffn_norm"),
    row(Slot::Qkv, "self_attn.qkv_proj", "attn_qkv"),
    row(Slot::O, "self_attn.o_proj", "attn_output"),
    row(Slot::GateUp, "mlp.gate_up_proj", "ffn_up"),
    row(Slot::Down, "mlp.down_proj", "ffn_down"),
];

impl Family {
    /// Every family, for messages and tests.
    pub const ALL: [Family; 7] = [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Gemma2,
        Family::Gemma3,
        Family::Phi3,
    ];

    /// The family of a `config.json` `model_type` (Gemma 3's text model is `gemma3_text`).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.model_type() == model_type)
    }

    /// The family of a transformers class name in `architectures`.
    pub fn from_architecture(architecture: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.architecture() == architecture)
    }

    /// The `model_type` transformers writes for this family.
    pub fn model_type(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3_text",
            Family::Phi3 => "phi3",
        }
    }

    /// The GGUF `general.architecture` llama.cpp writes (Mistral is written as `llama`).
    pub fn gguf_architecture(self) -> &'static str {
        match self {
            Family::Llama | Family::Mistral => "llama",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Gemma2 => "gemma2",
            Family::Gemma3 => "gemma3",
            Family::Phi3 => "phi3",
        }
    }

    /// The family of a GGUF `general.architecture`.
    pub fn from_gguf_architecture(arch: &str) -> Option<Self> {
        match arch {
            "llama" => Some(Family::Llama),
            "qwen2" => Some(Family::Qwen2),
            "qwen3" => Some(Family::Qwen3),
            "gemma2" => Some(Family::Gemma2),
            "gemma3" => Some(Family::Gemma3),
            "phi3" => Some(Family::Phi3),
            _ => None,
        }
    }

    /// The transformers class that loads this family.
    pub fn architecture(self) -> &'static str {
        match self {
            Family::Llama => "LlamaForCausalLM",
            Family::Mistral => "MistralForCausalLM",
            Family::Qwen2 => "Qwen2ForCausalLM",
            Family::Qwen3 => "Qwen3ForCausalLM",
            Family::Gemma2 => "Gemma2ForCausalLM",
            Family::Gemma3 => "Gemma3ForCausalLM",
            Family::Phi3 => "Phi3ForCausalLM",
        }
    }

    /// Whether the q, k and v projections carry a bias (the output projection never does).
    pub fn qkv_bias(self) -> bool {
        self == Family::Qwen2
    }

    /// Whether queries and keys get a per-head RMSNorm (`q_norm`, `k_norm`) before the rotation.
    pub fn qk_norm(self) -> bool {
        matches!(self, Family::Qwen3 | Family::Gemma3)
    }

    /// Whether the family is Gemma's: norms compute `x·(1 + w)` (the model stores `1 + w`),
    /// embeddings are multiplied by √width, four norms per block.
    pub fn is_gemma(self) -> bool {
        matches!(self, Family::Gemma2 | Family::Gemma3)
    }

    /// Whether llama.cpp's converter interleaves the Q/K rows of this family for its rotary
    /// layout (architecture `llama` only; the others use the half-split "NeoX" layout).
    pub fn gguf_permutes_qk(self) -> bool {
        matches!(self, Family::Llama | Family::Mistral)
    }

    /// The rows of one decoder block, linear layers in forward order.
    pub fn block_tensors(self) -> Vec<TensorName> {
        let mut rows: Vec<TensorName> = match self {
            Family::Llama | Family::Mistral | Family::Qwen2 | Family::Qwen3 => LLAMA_BLOCK.to_vec(),
            Family::Gemma2 | Family::Gemma3 => GEMMA_BLOCK.to_vec(),
            Family::Phi3 => PHI3_BLOCK.to_vec(),
        };
        if self.qk_norm() {
            rows.extend(QK_NORMS);
        }
        rows
    }

    /// The rows outside the blocks (embedding, final norm, untied head).
    pub fn model_tensors(self) -> &'static [TensorName] {
        &MODEL_TENSORS
    }

    /// The row of `slot` in a block.
    pub fn block_tensor(self, slot: Slot) -> Option<TensorName> {
        self.block_tensors().into_iter().find(|t| t.slot == slot)
    }

    /// The adaptable linear layers of a block as `(parent, module)` in forward order
    /// (`("self_attn", "q_proj")`): the names PEFT gives them.
    pub fn linear_modules(self) -> Vec<(&'static str, &'static str)> {
        self.block_tensors()
            .into_iter()
            .filter(|t| t.slot.is_linear())
            .map(|t| t.hf.split_once('.').expect("linear paths have a parent"))
            .collect()
    }

    /// The names of the supported `model_type`s, for error messages.
    pub fn supported() -> String {
        Self::ALL.map(Family::model_type).join(", ")
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.model_type())
    }
}

/// Architectures that are refused by name, with what they are, so that a user learns why
/// rather than reading a list of what is taken.
pub fn refused_architecture(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let table: [(&str, &str); 9] = [
        ("mixtral", "mixture-of-experts models are not supported"),
        ("moe", "mixture-of-experts models are not supported"),
        (
            "deepseek",
            "DeepSeek's multi-head latent attention is not supported",
        ),
        ("gemma3n", "Gemma 3n is not supported"),
        (
            "gemma3forconditionalgeneration",
            "multimodal Gemma 3 checkpoints are not supported; load a text-only Gemma3ForCausalLM",
        ),
        ("llava", "multimodal models are not supported"),
        ("vision", "multimodal models are not supported"),
        ("qwen2_5_vl", "multimodal models are not supported"),
        ("qwen2vl", "multimodal models are not supported"),
    ];
    table
        .into_iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, why)| why)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_has_one_row_per_slot_and_unique_names() {
        for family in Family::ALL {
            let rows = family.block_tensors();
            for (i, a) in rows.iter().enumerate() {
                for b in &rows[i + 1..] {
                    assert_ne!(a.slot, b.slot, "{family}");
                    assert_ne!(a.hf, b.hf, "{family}");
                    assert_ne!(a.gguf, b.gguf, "{family}");
                }
            }
            assert_eq!(Family::from_model_type(family.model_type()), Some(family));
            assert_eq!(
                Family::from_architecture(family.architecture()),
                Some(family)
            );
        }
    }

    #[test]
    fn linear_modules_follow_the_forward_order() {
        assert_eq!(
            Family::Phi3.linear_modules(),
            [
                ("self_attn", "qkv_proj"),
                ("self_attn", "o_proj"),
                ("mlp", "gate_up_proj"),
                ("mlp", "down_proj")
            ]
        );
        assert_eq!(Family::Llama.linear_modules().len(), 7);
    }
}
