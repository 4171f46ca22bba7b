//! The decoder of every supported family (Llama, Mistral, Qwen2, Qwen3) as one burn module.
//!
//! Linear weights are stored as `[in, out]` so that a layer is one `x · W` matmul; the Hugging Face
//! `[out, in]` layout is restored when weights are saved (see [`crate::weights`]). The hidden
//! state stays a `[batch · time, width]` matrix between blocks, and attention runs on all heads
//! at once as batched matmuls over strided views (key/value heads are broadcast to their query
//! groups by the matmul, never copied or looped over).

use burn::module::{
    Content, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor, Param,
};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::module::{attention, embedding};
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Distribution, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::config::{Activation, ModelConfig};
use crate::family::Slot;
use crate::fused::{head_token_logps, rms_norm, swiglu};
use crate::lora::LoraAdapter;
use crate::quant::{QuantizedMatrix, quantized_linear};
use crate::rope::RotaryFrequencies;

/// Root-mean-square normalisation with a learned gain: `x / √(mean(x²) + ε) · w`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// Per-channel gain, `[width]`.
    pub weight: Param<Tensor<1>>,
    /// ε added to the mean square.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalises each row of `x: [rows, width]` (one fused pass on the CPU backend).
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        if let Some(normalised) = rms_norm(&x, &self.weight.val(), self.eps) {
            return normalised;
        }
        self.forward_last_dim(x)
    }

    /// Normalises `x` over its last dimension with composed operations, at any rank (Qwen3's
    /// per-head query/key norms run on `[batch, time, heads, head_dim]`).
    pub fn forward_last_dim<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let inverse_rms = (x.clone().square().mean_dim(D - 1) + self.eps)
            .sqrt()
            .recip();
        x * inverse_rms * self.weight.val().unsqueeze::<D>()
    }
}

/// The weight of a [`Linear`] layer.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// f32 `[in, out]` (the transpose of Hugging Face's `[out, in]`): trainable, or frozen.
    Dense(Param<Tensor<2>>),
    /// Frozen, in a ggml block format, `[out, in]` as the file holds it (see [`crate::quant`]).
    Quantized(QuantizedMatrix),
}

impl LinearWeight {
    /// `(in, out)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            LinearWeight::Dense(weight) => {
                let [input, output] = weight.lazy_shape().dims();
                (input, output)
            }
            LinearWeight::Quantized(matrix) => {
                let [output, input] = matrix.shape();
                (input, output)
            }
        }
    }

    /// The f32 values `[in, out]` on `device` (a quantized weight de-quantized as ggml does).
    pub fn to_dense(&self, device: &Device) -> Tensor<2> {
        match self {
            LinearWeight::Dense(weight) => weight.val(),
            LinearWeight::Quantized(matrix) => {
                Tensor::<2>::from_data(TensorData::new(matrix.dequantize(), matrix.shape()), device)
                    .transpose()
            }
        }
    }

    /// The f32 parameter, if the weight is dense.
    pub fn dense(&self) -> Option<&Param<Tensor<2>>> {
        match self {
            LinearWeight::Dense(weight) => Some(weight),
            LinearWeight::Quantized(_) => None,
        }
    }

    /// The quantized matrix, if the weight is kept quantized.
    pub fn quantized(&self) -> Option<&QuantizedMatrix> {
        match self {
            LinearWeight::Quantized(matrix) => Some(matrix),
            LinearWeight::Dense(_) => None,
        }
    }
}

// By hand rather than derived: a dense weight is visited as the `weight` parameter itself (no
// variant name in its path, so checkpoints and parameter names are those of a plain `Param`),
// and a quantized one holds no parameter at all: optimizers, gradients and device moves never see
// it.
impl Module for LinearWeight {
    fn collect_devices(&self, devices: Vec<Device>) -> Vec<Device> {
        match self {
            LinearWeight::Dense(weight) => weight.collect_devices(devices),
            LinearWeight::Quantized(_) => devices,
        }
    }

    fn fork(self, device: &Device) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(weight.fork(device)),
            quantized => quantized,
        }
    }

    fn to_device(self, device: &Device) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(weight.to_device(device)),
            quantized => quantized,
        }
    }

    fn train(self) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(weight.train()),
            quantized => quantized,
        }
    }

    fn valid(&self) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(weight.valid()),
            quantized => quantized.clone(),
        }
    }

    fn materialize(self) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(weight.materialize()),
            quantized => quantized,
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        if let LinearWeight::Dense(weight) = self {
            weight.visit(visitor);
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        match self {
            LinearWeight::Dense(weight) => LinearWeight::Dense(Module::map(weight, mapper)),
            quantized => quantized,
        }
    }
}

impl ModuleDisplayDefault for LinearWeight {
    fn content(&self, content: Content) -> Option<Content> {
        match self {
            LinearWeight::Dense(weight) => weight.content(content),
            LinearWeight::Quantized(matrix) => {
                content.add_single(&format!("{matrix:?}")).optional()
            }
        }
    }
}

impl ModuleDisplay for LinearWeight {}

/// A dense layer `x · W + b` with `W` stored `[in, out]` (one matmul, no transpose) or kept
/// quantized `[out, in]`, an optional bias `[out]` (Qwen2's q/k/v projections), plus an optional
/// LoRA adapter whose low-rank update is added to the output (see [`crate::lora`]).
#[derive(Module, Debug)]
pub struct Linear {
    /// The weight.
    pub weight: LinearWeight,
    /// The bias, `[out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// A LoRA adapter: `+ (α/r)·(x·A)·B`.
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    /// A layer with the given weight and bias.
    pub fn new(weight: LinearWeight, bias: Option<Param<Tensor<1>>>) -> Self {
        Self {
            weight,
            bias,
            lora: None,
        }
    }

    /// `x: [rows, in]` → `[rows, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let update = self.lora.as_ref().map(|lora| lora.forward(x.clone()));
        let y = match &self.weight {
            LinearWeight::Dense(weight) => x.matmul(weight.val()),
            LinearWeight::Quantized(matrix) => quantized_linear(x, matrix),
        };
        let y = match &self.bias {
            Some(bias) => y + bias.val().unsqueeze::<2>(),
            None => y,
        };
        match update {
            Some(update) => y + update,
            None => y,
        }
    }

    /// `(in, out)`.
    pub fn shape(&self) -> (usize, usize) {
        self.weight.shape()
    }
}

/// Grouped-query self-attention with rotary position embeddings (Hugging Face half-split
/// "rotate_half" layout, over the first `rotary_dim` channels of each head).
#[derive(Module, Debug)]
pub struct Attention {
    /// The query, key and value projections: `[q_proj, k_proj, v_proj]` (`[width, heads ·
    /// head_dim]`, `[width, kv_heads · head_dim]` twice), or Phi-3's one fused `qkv_proj`
    /// whose output is `[q; k; v]`.
    pub qkv: Vec<Linear>,
    /// Output projection, `[heads · head_dim, width]`.
    pub o_proj: Linear,
    /// Per-head norm of the queries, `[head_dim]`, applied before the rotation (Qwen3, Gemma 3).
    pub q_norm: Option<RmsNorm>,
    /// Per-head norm of the keys, `[head_dim]`, applied before the rotation (Qwen3, Gemma 3).
    pub k_norm: Option<RmsNorm>,
    /// Number of query heads.
    pub num_heads: usize,
    /// Number of key/value heads.
    pub num_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// The factor on the scores (`1/√head_dim`, Gemma's `1/√query_pre_attn_scalar`).
    pub scale: f64,
    /// Gemma 2's soft cap on the scores (`cap·tanh(s/cap)`); 0: none.
    pub softcap: f64,
    /// Whether this layer attends through the sliding window (and its rotary tables).
    #[module(skip)]
    pub sliding: bool,
}

/// Rotary tables for a run of positions: `cos` and `sin` of shape
/// `[1, time, 1, rotary_dim / 2]` (they broadcast over `[batch, time, heads, head_dim]`; the
/// attention factor of YaRN / LongRoPE is in them), and the additive causal mask of the queries
/// over all keys, `[time, past + time]` (0 where visible, −∞ where not; with a sliding window a
/// query sees only the `window` latest keys, itself included).
pub(crate) struct Rotary {
    cos: Tensor<4>,
    sin: Tensor<4>,
    causal_bias: Tensor<2>,
    /// Whether attention of untracked tensors may run the backend's fused causal kernel: the
    /// mask is the plain causal one (so the kernel computes the same up to rounding), and the
    /// pass need not reproduce the explicit path's values bit for bit (see
    /// [`Rotary::without_fused_kernel`]).
    fused_kernel: bool,
}

impl Rotary {
    /// Tables for positions `start .. start + len`, computed in f32 the way transformers does
    /// (angle = position · inv_freq, then cos and sin times the attention factor).
    fn new(
        frequencies: &RotaryFrequencies,
        window: Option<usize>,
        start: usize,
        len: usize,
        device: &Device,
    ) -> Self {
        let half = frequencies.inv_freq.len();
        let factor = frequencies.attention_factor;
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for position in start..start + len {
            for &f in &frequencies.inv_freq {
                let angle = position as f32 * f;
                if factor == 1.0 {
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                } else {
                    cos.push(angle.cos() * factor);
                    sin.push(angle.sin() * factor);
                }
            }
        }
        let table =
            |values| Tensor::<4>::from_data(TensorData::new(values, [1, len, 1, half]), device);
        let keys = start + len;
        // transformers' sliding mask: key j is visible from query q when q − window < j ≤ q.
        let window = window.unwrap_or(usize::MAX);
        let bias: Vec<f32> = (0..len)
            .flat_map(|i| {
                let query = start + i;
                (0..keys).map(move |j| {
                    if j <= query && query - j < window {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Self {
            cos: table(cos),
            sin: table(sin),
            causal_bias: Tensor::from_data(TensorData::new(bias, [len, keys]), device),
            fused_kernel: window >= keys,
        }
    }

    /// The same tables, with attention always on the explicit masked-softmax path, whose values
    /// the tracked (autodiff) pass computes too: gradient checkpointing runs the blocks untracked
    /// first and recomputes them tracked later, and the two passes must agree bit for bit.
    pub(crate) fn without_fused_kernel(mut self) -> Self {
        self.fused_kernel = false;
        self
    }

    /// Rotates `x: [batch, time, heads, head_dim]` and multiplies it by `scale`: within the
    /// first `rotary_dim` channels the first half of each head pairs with the second half
    /// (`(x·cos + rotate_half(x)·sin)·scale`; the scale goes into the small tables, not over
    /// `x`); the remaining channels (Phi-3's partial rotary) pass through, scaled.
    fn apply(&self, x: Tensor<4>, scale: f64) -> Tensor<4> {
        let [.., head_dim] = x.dims();
        let half = self.cos.dims()[3];
        let (cos, sin) = if scale == 1.0 {
            (self.cos.clone(), self.sin.clone())
        } else {
            (self.cos.clone() * scale, self.sin.clone() * scale)
        };
        let rotary_dim = 2 * half;
        let (rotated, passed) = if rotary_dim == head_dim {
            (x, None)
        } else {
            let passed = x.clone().narrow(3, rotary_dim, head_dim - rotary_dim);
            let passed = if scale == 1.0 { passed } else { passed * scale };
            (x.narrow(3, 0, rotary_dim), Some(passed))
        };
        let x1 = rotated.clone().narrow(3, 0, half);
        let x2 = rotated.narrow(3, half, half);
        let first = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let second = x2 * cos + x1 * sin;
        match passed {
            None => Tensor::cat(vec![first, second], 3),
            Some(passed) => Tensor::cat(vec![first, second, passed], 3),
        }
    }
}

/// The rotary tables of a pass: one set for global layers and, when the model has sliding
/// layers with their own window or rotary base, one for those.
pub(crate) struct Rotaries {
    full: Rotary,
    sliding: Option<Rotary>,
}

impl Rotaries {
    /// The tables of a layer that slides or not.
    pub(crate) fn for_layer(&self, sliding: bool) -> &Rotary {
        match (&self.sliding, sliding) {
            (Some(tables), true) => tables,
            _ => &self.full,
        }
    }

    /// Every table on the explicit attention path (see [`Rotary::without_fused_kernel`]).
    pub(crate) fn without_fused_kernel(self) -> Self {
        Self {
            full: self.full.without_fused_kernel(),
            sliding: self.sliding.map(Rotary::without_fused_kernel),
        }
    }
}

impl Attention {
    /// The query, key and value projections of `x`, `[rows, heads · d]`, `[rows, kv · d]` twice.
    fn project(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        match self.qkv.as_slice() {
            [q, k, v] => (q.forward(x.clone()), k.forward(x.clone()), v.forward(x)),
            [fused] => {
                let (q, kv) = (
                    self.num_heads * self.head_dim,
                    self.num_kv_heads * self.head_dim,
                );
                let y = fused.forward(x);
                (
                    y.clone().narrow(1, 0, q),
                    y.clone().narrow(1, q, kv),
                    y.narrow(1, q + kv, kv),
                )
            }
            other => unreachable!("{} q/k/v projections", other.len()),
        }
    }

    /// `x: [batch · time, width]` → `[batch · time, width]`. With a cache, the new keys and values
    /// are appended to it and the queries attend to everything cached.
    ///
    /// Heads stay in the `[batch, time, heads, head_dim]` layout of the projections through the
    /// rotation; attention then runs on strided views, queries as
    /// `[batch, kv_heads, group, time, head_dim]` against keys and values
    /// `[batch, kv_heads, 1, time, head_dim]`, so each key/value head is broadcast to its query
    /// group by the matmul itself instead of being copied `group` times.
    fn forward(
        &self,
        x: Tensor<2>,
        batch: usize,
        time: usize,
        rotaries: &Rotaries,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<2> {
        let rotary = rotaries.for_layer(self.sliding);
        let (h, kv, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let group = h / kv;
        let heads = |t: Tensor<2>, n: usize| t.reshape([batch, time, n, d]);
        let norm = |t: Tensor<4>, norm: &Option<RmsNorm>| match norm {
            Some(norm) => norm.forward_last_dim(t),
            None => t,
        };
        let (q, k, v) = self.project(x);
        let q = norm(heads(q, h), &self.q_norm);
        let k = norm(heads(k, kv), &self.k_norm);
        let mut k = rotary.apply(k, 1.0).swap_dims(1, 2);
        let mut v = heads(v, kv).swap_dims(1, 2);
        if let Some(cache) = cache {
            if let Some((past_k, past_v)) = cache.take() {
                k = Tensor::cat(vec![past_k, k], 2);
                v = Tensor::cat(vec![past_v, v], 2);
            }
            *cache = Some((k.clone(), v.clone()));
        }
        let default_scale = 1.0 / (d as f64).sqrt();
        if rotary.fused_kernel
            && self.softcap == 0.0
            && !(q.is_tracked() || k.is_tracked() || v.is_tracked())
        {
            // Nothing to differentiate (reference model, judging, generation): the backend's
            // fused kernel, which shares each key/value head with its query group itself, scales
            // the scores and never materialises the masked score tensor.
            let scale = (self.scale != default_scale).then_some(self.scale);
            let context = causal_attention(rotary.apply(q, 1.0).swap_dims(1, 2), k, v, scale)
                .swap_dims(1, 2)
                .reshape([batch * time, h * d]);
            return self.o_proj.forward(context);
        }
        // The score scale rides on the query rotation (a quarter of the elements of the
        // scores, and no extra pass). [batch, time, kv, group, d] → [batch, kv, group, time, d]
        // (a view).
        let q = rotary
            .apply(q, self.scale)
            .reshape([batch, time, kv, group, d])
            .permute([0, 2, 3, 1, 4]);
        let k = k.unsqueeze_dim::<5>(2);
        let v = v.unsqueeze_dim::<5>(2);
        let bias = || rotary.causal_bias.clone().unsqueeze::<5>();
        let context = if self.softcap > 0.0 {
            // Gemma 2: cap·tanh(scores/cap) before the mask.
            let cap = self.softcap;
            let scores = (q.matmul(k.swap_dims(3, 4)) / cap).tanh() * cap;
            softmax(scores + bias(), 4).matmul(v)
        } else {
            // On the CPU one operation that recomputes the probabilities in the backward pass
            // instead of keeping them.
            crate::fused::causal_attention(&q, &k, &v, &rotary.causal_bias)
                .unwrap_or_else(|| softmax(q.matmul(k.swap_dims(3, 4)) + bias(), 4).matmul(v))
        }
        .permute([0, 3, 1, 2, 4])
        .reshape([batch * time, h * d]);
        self.o_proj.forward(context)
    }
}

/// Causal scaled-dot-product attention of untracked tensors through the backend's fused kernel:
/// `q: [batch, heads, time, head_dim]` against `k, v: [batch, kv_heads, past + time, head_dim]`,
/// query `i` seeing keys `0 ..= past + i`. Same values as the explicit path of
/// [`Attention::forward`] up to float rounding; on an autodiff device the kernel runs on the
/// inner tensors (the autodiff backend would otherwise decompose it).
fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, scale: Option<f64>) -> Tensor<4> {
    // Only Flex's kernel shares a key/value head with its query group; elsewhere burn's
    // attention wants as many key/value heads as query heads, so each is repeated `group` times.
    let group = q.dims()[1] / k.dims()[1];
    let (k, v) = if group > 1 && !crate::device::is_cpu(&q.device()) {
        (repeat_heads(k, group), repeat_heads(v, group))
    } else {
        (k, v)
    };
    let options = AttentionModuleOptions {
        scale,
        softcap: None,
        is_causal: true,
    };
    if q.is_autodiff() {
        Tensor::from_inner(attention(
            q.inner(),
            k.inner(),
            v.inner(),
            None,
            None,
            options,
        ))
    } else {
        attention(q, k, v, None, None, options)
    }
}

/// `[batch, kv_heads, time, head_dim]` → `[batch, kv_heads · group, time, head_dim]`, each head
/// repeated `group` times in place (head `h` of the result is head `h / group` of `x`), as
/// transformers' `repeat_kv` does.
fn repeat_heads(x: Tensor<4>, group: usize) -> Tensor<4> {
    let [batch, heads, time, dim] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([batch, heads, group, time, dim])
        .reshape([batch, heads * group, time, dim])
}

/// The gated feed-forward block: `down(act(x · gate) ⊙ (x · up))` (SwiGLU with SiLU, GeGLU with
/// the tanh GELU).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `[gate_proj, up_proj]` (`[width, ffn]` each), or Phi-3's one fused `gate_up_proj` whose
    /// output is `[gate; up]`.
    pub gate_up: Vec<Linear>,
    /// Down projection, `[ffn, width]`.
    pub down_proj: Linear,
    /// The gate's activation.
    #[module(skip)]
    pub activation: Activation,
}

impl Mlp {
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let (gate, up) = match self.gate_up.as_slice() {
            [gate, up] => (gate.forward(x.clone()), up.forward(x)),
            [fused] => {
                let y = fused.forward(x);
                let ffn = y.dims()[1] / 2;
                (y.clone().narrow(1, 0, ffn), y.narrow(1, ffn, ffn))
            }
            other => unreachable!("{} gate/up projections", other.len()),
        };
        let hidden = match self.activation {
            Activation::Silu => swiglu(&gate, &up).unwrap_or_else(|| silu(gate) * up),
            Activation::GeluTanh => gelu_tanh(gate) * up,
        };
        self.down_proj.forward(hidden)
    }
}

/// GELU with the tanh approximation (PyTorch's `gelu(approximate="tanh")`):
/// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let inner =
        (x.clone() + x.clone().powi_scalar(3) * 0.044715) * (2.0 / std::f64::consts::PI).sqrt();
    x * (inner.tanh() + 1.0) * 0.5
}

/// One pre-norm decoder block. Gemma adds a norm on the output of attention and of the MLP
/// before each residual add.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Norm before attention.
    pub attn_norm: RmsNorm,
    /// Self-attention.
    pub self_attn: Attention,
    /// Gemma's norm of the attention output.
    pub attn_out_norm: Option<RmsNorm>,
    /// Norm before the MLP.
    pub mlp_norm: RmsNorm,
    /// Feed-forward block.
    pub mlp: Mlp,
    /// Gemma's norm of the MLP output.
    pub mlp_out_norm: Option<RmsNorm>,
}

impl DecoderLayer {
    /// The linear layer in `slot` (Phi-3's fused layers sit where the first split one would).
    pub fn linear(&self, slot: Slot) -> Option<&Linear> {
        let (a, m) = (&self.self_attn, &self.mlp);
        match slot {
            Slot::Q | Slot::Qkv => a.qkv.first(),
            Slot::K => a.qkv.get(1),
            Slot::V => a.qkv.get(2),
            Slot::O => Some(&a.o_proj),
            Slot::Gate | Slot::GateUp => m.gate_up.first(),
            Slot::Up => m.gate_up.get(1),
            Slot::Down => Some(&m.down_proj),
            _ => None,
        }
    }

    /// Mutable access to the linear layer in `slot`.
    pub fn linear_mut(&mut self, slot: Slot) -> Option<&mut Linear> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        match slot {
            Slot::Q | Slot::Qkv => a.qkv.first_mut(),
            Slot::K => a.qkv.get_mut(1),
            Slot::V => a.qkv.get_mut(2),
            Slot::O => Some(&mut a.o_proj),
            Slot::Gate | Slot::GateUp => m.gate_up.first_mut(),
            Slot::Up => m.gate_up.get_mut(1),
            Slot::Down => Some(&mut m.down_proj),
            _ => None,
        }
    }

    /// Every linear layer in forward order (the order of the linear rows of the family's
    /// table: q, k, v or the fused qkv; o; gate, up or the fused gate_up; down).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        a.qkv
            .iter_mut()
            .chain(std::iter::once(&mut a.o_proj))
            .chain(m.gate_up.iter_mut())
            .chain(std::iter::once(&mut m.down_proj))
            .collect()
    }

    /// Every linear layer in forward order, as [`DecoderLayer::linears_mut`].
    pub fn linears(&self) -> Vec<&Linear> {
        let (a, m) = (&self.self_attn, &self.mlp);
        a.qkv
            .iter()
            .chain(std::iter::once(&a.o_proj))
            .chain(m.gate_up.iter())
            .chain(std::iter::once(&m.down_proj))
            .collect()
    }

    /// The norm in `slot`.
    pub fn norm(&self, slot: Slot) -> Option<&RmsNorm> {
        match slot {
            Slot::AttnNorm => Some(&self.attn_norm),
            Slot::AttnOutNorm => self.attn_out_norm.as_ref(),
            Slot::MlpNorm => Some(&self.mlp_norm),
            Slot::MlpOutNorm => self.mlp_out_norm.as_ref(),
            Slot::QNorm => self.self_attn.q_norm.as_ref(),
            Slot::KNorm => self.self_attn.k_norm.as_ref(),
            _ => None,
        }
    }

    /// `x: [batch · time, width]` → the block's output, same shape: `x + attention(norm(x))`,
    /// then `+ mlp(norm(·))` (each branch normed again on Gemma).
    pub(crate) fn forward(
        &self,
        x: Tensor<2>,
        batch: usize,
        time: usize,
        rotaries: &Rotaries,
        cache: Option<&mut LayerCache>,
    ) -> Tensor<2> {
        let out_norm = |norm: &Option<RmsNorm>, y: Tensor<2>| match norm {
            Some(norm) => norm.forward(y),
            None => y,
        };
        let attended = self.self_attn.forward(
            self.attn_norm.forward(x.clone()),
            batch,
            time,
            rotaries,
            cache,
        );
        let x = x + out_norm(&self.attn_out_norm, attended);
        x.clone()
            + out_norm(
                &self.mlp_out_norm,
                self.mlp.forward(self.mlp_norm.forward(x)),
            )
    }
}

type LayerCache = Option<(Tensor<4>, Tensor<4>)>;

/// Keys and values of the positions seen so far, one entry per block, for incremental decoding.
#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<LayerCache>,
    len: usize,
}

impl KvCache {
    /// An empty cache for `model`.
    pub fn new(model: &CausalLm) -> Self {
        Self {
            layers: vec![None; model.layers.len()],
            len: 0,
        }
    }

    /// Number of positions cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A causal language model of any supported [`crate::config::Family`]: `LlamaForCausalLM`,
/// `MistralForCausalLM`, `Qwen2ForCausalLM` or `Qwen3ForCausalLM`, as one type whose config
/// switches on the family's differences (q/k/v biases, q/k norms, sliding window).
#[derive(Module, Debug)]
pub struct CausalLm {
    /// Token embedding, `[vocab, width]`.
    pub embed_tokens: Param<Tensor<2>>,
    /// Decoder blocks.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RmsNorm,
    /// Output head `[width, vocab]` when not tied to the embedding.
    pub lm_head: Option<Param<Tensor<2>>>,
    /// The shape and hyper-parameters.
    #[module(skip)]
    pub config: ModelConfig,
    /// Whether [`CausalLm::next_token_logps_gradients`] recomputes each block in the backward
    /// pass instead of keeping its activations (see [`crate::checkpointing`]).
    #[module(skip)]
    pub(crate) gradient_checkpointing: bool,
}

impl CausalLm {
    /// A randomly initialised model (normal, σ = 0.02, as transformers initialises Llama; norm
    /// gains one, biases zero). Seed the device (`device.seed(s)`) for a reproducible draw.
    pub fn init(config: &ModelConfig, device: &Device) -> Self {
        Self::assemble(config, &mut RandomParams(device)).expect("random parameters cannot fail")
    }

    /// Builds the model slot by slot from `params`, in the order of the family's table: each
    /// block's linear layers (`[in, out]`), their biases, its norms; then the embedding, final
    /// norm and untied head.
    pub(crate) fn assemble(
        config: &ModelConfig,
        params: &mut impl ParamSource,
    ) -> crate::Result<Self> {
        let (c, f) = (config.hidden_size, config.intermediate_size);
        let (q, kv) = (
            config.num_attention_heads * config.head_dim,
            config.num_key_value_heads * config.head_dim,
        );
        let family = config.family;
        let rows = family.block_tensors();
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for layer in 0..config.num_hidden_layers {
            let at = Some(layer);
            let mut linear = |slot: Slot, input: usize, output: usize| -> crate::Result<Linear> {
                let weight = params.linear(slot, at, [input, output])?;
                let bias = match (family.qkv_bias(), slot) {
                    (true, Slot::Q | Slot::K | Slot::V) => {
                        Some(params.vector(slot, at, true, output)?)
                    }
                    _ => None,
                };
                Ok(Linear::new(weight, bias))
            };
            let mut qkv = Vec::new();
            let mut gate_up = Vec::new();
            let (mut o_proj, mut down_proj) = (None, None);
            for row in rows.iter().filter(|r| r.slot.is_linear()) {
                match row.slot {
                    Slot::Q => qkv.push(linear(Slot::Q, c, q)?),
                    Slot::K => qkv.push(linear(Slot::K, c, kv)?),
                    Slot::V => qkv.push(linear(Slot::V, c, kv)?),
                    Slot::Qkv => qkv.push(linear(Slot::Qkv, c, q + 2 * kv)?),
                    Slot::O => o_proj = Some(linear(Slot::O, q, c)?),
                    Slot::Gate => gate_up.push(linear(Slot::Gate, c, f)?),
                    Slot::Up => gate_up.push(linear(Slot::Up, c, f)?),
                    Slot::GateUp => gate_up.push(linear(Slot::GateUp, c, 2 * f)?),
                    Slot::Down => down_proj = Some(linear(Slot::Down, f, c)?),
                    other => unreachable!("{other:?} is not linear"),
                }
            }
            let mut norm = |slot: Slot, width: usize| -> crate::Result<Option<RmsNorm>> {
                if family.block_tensor(slot).is_none() {
                    return Ok(None);
                }
                Ok(Some(RmsNorm {
                    weight: params.vector(slot, at, false, width)?,
                    eps: config.rms_norm_eps,
                }))
            };
            let d = config.head_dim;
            let self_attn = Attention {
                qkv,
                o_proj: o_proj.expect("every family has o_proj"),
                q_norm: norm(Slot::QNorm, d)?,
                k_norm: norm(Slot::KNorm, d)?,
                num_heads: config.num_attention_heads,
                num_kv_heads: config.num_key_value_heads,
                head_dim: d,
                scale: config.attention_scale(),
                softcap: config.attn_logit_softcapping.unwrap_or(0.0),
                sliding: config.is_sliding(layer),
            };
            layers.push(DecoderLayer {
                attn_norm: norm(Slot::AttnNorm, c)?.expect("every family has an input norm"),
                self_attn,
                attn_out_norm: norm(Slot::AttnOutNorm, c)?,
                mlp_norm: norm(Slot::MlpNorm, c)?.expect("every family has an MLP norm"),
                mlp: Mlp {
                    gate_up,
                    down_proj: down_proj.expect("every family has down_proj"),
                    activation: config.hidden_activation,
                },
                mlp_out_norm: norm(Slot::MlpOutNorm, c)?,
            });
        }
        let embed_tokens = params.matrix(Slot::Embedding, None, [config.vocab_size, c])?;
        let norm = RmsNorm {
            weight: params.vector(Slot::FinalNorm, None, false, c)?,
            eps: config.rms_norm_eps,
        };
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(params.matrix(Slot::Head, None, [c, config.vocab_size])?)
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            lm_head,
            config: config.clone(),
            gradient_checkpointing: false,
        })
    }

    /// The model with every quantized linear weight de-quantized to a trainable f32 parameter on
    /// `device` (full fine-tuning trains them; LoRA keeps the base quantized).
    pub fn dequantize_linears(mut self, device: &Device) -> Self {
        for layer in &mut self.layers {
            for linear in layer.linears_mut() {
                if linear.weight.quantized().is_some() {
                    let dense = linear.weight.to_dense(device);
                    linear.weight = LinearWeight::Dense(Param::from_tensor(dense));
                }
            }
        }
        self
    }

    /// The linear weights kept quantized: how many, and their bytes (shared with the file they
    /// came from, not copies).
    pub fn quantized_weights(&self) -> (usize, usize) {
        self.layers
            .iter()
            .flat_map(|layer| layer.linears())
            .filter_map(|linear| linear.weight.quantized())
            .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.bytes().len()))
    }

    /// Next-token logits at every position of `tokens: [batch, time]` under a causal mask:
    /// `[batch, time, vocab]`. This is the training path (differentiable on an autodiff device).
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        let [batch, time] = tokens.dims();
        let hidden = self.hidden_states(tokens, 0, None);
        self.head(hidden)
            .reshape([batch, time, self.config.vocab_size])
    }

    /// Log-probability of every token after the first given the ones before it,
    /// `tokens: [batch, time]` → `[batch, time − 1]`: the same values as
    /// `next_token_logps(self.forward(tokens.clone()), tokens)`, but the output head runs only on
    /// the `time − 1` positions that predict a token, and on the CPU backend in chunks of rows
    /// ([`crate::fused::head_token_logps`]): no `[tokens, vocab]` logits of the whole batch.
    pub fn next_token_logps(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [batch, time] = tokens.dims();
        let rotary = self.rotary(0, time, &tokens.device());
        let mut x = self.embed(tokens.clone());
        for layer in &self.layers {
            x = layer.forward(x, batch, time, &rotary, None);
        }
        self.final_token_logps(x, tokens)
    }

    /// The final norm and the output head on `last`, the last block's output
    /// `[batch · time, width]` of `tokens: [batch, time]`: the log-probability of every token
    /// after the first, `[batch, time − 1]`.
    pub(crate) fn final_token_logps(&self, last: Tensor<2>, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [batch, time] = tokens.dims();
        let width = self.config.hidden_size;
        let rows = batch * (time - 1);
        let hidden = self
            .norm
            .forward(last)
            .reshape([batch, time, width])
            .narrow(1, 0, time - 1)
            .reshape([rows, width]);
        let targets = tokens.narrow(1, 1, time - 1);
        if self.config.final_logit_softcapping.is_some() {
            // The capped logits are not a plain matmul: the composed path.
            let vocab = self.config.vocab_size;
            let logits = self.head(hidden).reshape([batch, time - 1, vocab]);
            return token_logps(logits, targets);
        }
        head_token_logps(hidden, self.head_weight(), targets.reshape([rows]))
            .reshape([batch, time - 1])
    }

    /// Feeds `tokens: [batch, time]` after the positions already in `cache`, appends their keys
    /// and values to it, and returns the logits of the last position, `[batch, vocab]`.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<2> {
        let [batch, time] = tokens.dims();
        let start = cache.len;
        let hidden = self.hidden_states(tokens, start, Some(&mut cache.layers));
        cache.len += time;
        let width = self.config.hidden_size;
        let last = hidden
            .reshape([batch, time, width])
            .narrow(1, time - 1, 1)
            .reshape([batch, width]);
        self.head(last)
    }

    /// Final-norm hidden states, `[batch · time, width]`.
    fn hidden_states(
        &self,
        tokens: Tensor<2, Int>,
        start: usize,
        mut cache: Option<&mut Vec<LayerCache>>,
    ) -> Tensor<2> {
        let [batch, time] = tokens.dims();
        let rotary = self.rotary(start, time, &tokens.device());
        let mut x = self.embed(tokens);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c[i]);
            x = layer.forward(x, batch, time, &rotary, layer_cache);
        }
        self.norm.forward(x)
    }

    /// Rotary tables and masks for positions `start .. start + time` on `device`: one set for
    /// the global layers and, when some layers slide, one for those.
    pub(crate) fn rotary(&self, start: usize, time: usize, device: &Device) -> Rotaries {
        let config = &self.config;
        let dim = config.rotary_dim();
        let seq_len = start + time;
        let tables = |sliding: bool| {
            let frequencies =
                config
                    .rope(sliding)
                    .frequencies(dim, seq_len, config.max_position_embeddings);
            let window = if sliding { config.sliding_window } else { None };
            Rotary::new(&frequencies, window, start, time, device)
        };
        let any_sliding = (0..config.num_hidden_layers).any(|i| config.is_sliding(i));
        let all_sliding = (0..config.num_hidden_layers).all(|i| config.is_sliding(i));
        if all_sliding {
            return Rotaries {
                full: tables(true),
                sliding: None,
            };
        }
        Rotaries {
            full: tables(false),
            sliding: any_sliding.then(|| tables(true)),
        }
    }

    /// The embeddings of `tokens: [batch, time]`, `[batch · time, width]`.
    pub(crate) fn embed(&self, tokens: Tensor<2, Int>) -> Tensor<2> {
        let [batch, time] = tokens.dims();
        let x = embedding(self.embed_tokens.val(), tokens)
            .reshape([batch * time, self.config.hidden_size]);
        match self.config.embedding_scale() {
            1.0 => x,
            scale => x * scale,
        }
    }

    /// The output head in the embedding layout, `[vocab, width]` (a transposed view when untied).
    fn head_weight(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.val().transpose(),
            None => self.embed_tokens.val(),
        }
    }

    /// Output head on `[rows, width]` hidden states → `[rows, vocab]` logits.
    fn head(&self, hidden: Tensor<2>) -> Tensor<2> {
        let logits = match &self.lm_head {
            Some(head) => hidden.matmul(head.val()),
            None => hidden.matmul(self.embed_tokens.val().transpose()),
        };
        match self.config.final_logit_softcapping {
            // Gemma 2: cap·tanh(logits/cap).
            Some(cap) => (logits / cap).tanh() * cap,
            None => logits,
        }
    }
}

/// Log-probability of each target token under `logits`: `logits: [batch, time, vocab]`,
/// `targets: [batch, time]` → `[batch, time]`, i.e. `logit[target] − logsumexp(logits)`.
///
/// The value is computed on the plain (non-autodiff) tensors: the normaliser comes from the
/// backend's fused softmax (SIMD, row-parallel on flex), never from an element-wise `exp` pass:
/// with `p = softmax(x)`, `logsumexp(x) = max(x) − ln max(p)`, and `max(p) ≥ 1 / vocab` cannot
/// underflow. On a tracked autodiff tensor the result is given its exact gradient
/// `onehot(target) − softmax(x)` through the surrogate `Σ x·(onehot − p)` (value cancelled,
/// gradient kept), so the vocabulary-sized work in the backward pass is one multiply.
///
/// For next-token scoring pass `logits` of positions `0 .. n−1` and targets `tokens[1 ..]`; see
/// [`next_token_logps`] and [`CausalLm::next_token_logps`].
pub fn token_logps(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<2> {
    let plain = logits.clone().inner();
    let targets = targets.inner().unsqueeze_dim::<3>(2);
    let probs = softmax(plain.clone(), 2);
    let log_norm = plain.clone().max_dim(2) - probs.clone().max_dim(2).log();
    let value = (plain.gather(2, targets.clone()) - log_norm).squeeze_dim::<2>(2);
    if !logits.is_tracked() {
        return if logits.is_autodiff() {
            Tensor::from_inner(value)
        } else {
            value
        };
    }
    let [batch, time, _] = logits.dims();
    let ones = Tensor::<3>::ones([batch, time, 1], &probs.device());
    let weights = probs.neg().scatter(2, targets, ones, IndexingUpdateOp::Add);
    let surrogate = (logits * Tensor::from_inner(weights))
        .sum_dim(2)
        .squeeze_dim::<2>(2);
    surrogate.clone() - surrogate.detach() + Tensor::from_inner(value)
}

/// Log-probability of every token after the first given the ones before it:
/// `logits: [batch, time, vocab]` of `tokens: [batch, time]` → `[batch, time − 1]`.
pub fn next_token_logps(logits: Tensor<3>, tokens: Tensor<2, Int>) -> Tensor<2> {
    let [batch, time, vocab] = logits.dims();
    let predicted = logits.narrow(1, 0, time - 1);
    let targets = tokens.narrow(1, 1, time - 1);
    debug_assert_eq!(predicted.dims(), [batch, time - 1, vocab]);
    token_logps(predicted, targets)
}

/// Where [`CausalLm::assemble`] gets each parameter: `slot` of block `layer` (`None` outside
/// the blocks), in the model's layout (linear weights `[in, out]`).
pub(crate) trait ParamSource {
    /// A linear layer's weight, `[in, out]` when dense: by default the f32 [`Self::matrix`].
    fn linear(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        shape: [usize; 2],
    ) -> crate::Result<LinearWeight> {
        Ok(LinearWeight::Dense(self.matrix(slot, layer, shape)?))
    }
    /// A matrix: a linear weight `[in, out]`, the embedding `[vocab, width]` or the head
    /// `[width, vocab]`.
    fn matrix(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        shape: [usize; 2],
    ) -> crate::Result<Param<Tensor<2>>>;
    /// A vector: a norm gain, or (with `bias`) the bias of linear `slot`.
    fn vector(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        bias: bool,
        len: usize,
    ) -> crate::Result<Param<Tensor<1>>>;
}

/// Fresh parameters: normal(0, 0.02) matrices, unit norm gains (Gemma's stored `1 + w` with
/// `w = 0`), zero biases.
struct RandomParams<'a>(&'a Device);

impl ParamSource for RandomParams<'_> {
    fn matrix(
        &mut self,
        _: Slot,
        _: Option<usize>,
        shape: [usize; 2],
    ) -> crate::Result<Param<Tensor<2>>> {
        Ok(Param::from_tensor(Tensor::random(
            shape,
            Distribution::Normal(0.0, 0.02),
            self.0,
        )))
    }

    fn vector(
        &mut self,
        _: Slot,
        _: Option<usize>,
        bias: bool,
        len: usize,
    ) -> crate::Result<Param<Tensor<1>>> {
        Ok(Param::from_tensor(if bias {
            Tensor::zeros([len], self.0)
        } else {
            Tensor::ones([len], self.0)
        }))
    }
}
