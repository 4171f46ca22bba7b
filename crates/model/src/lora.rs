//! LoRA: low-rank adapters on the linear projections of a [`CausalLm`], trained with the base
//! frozen, and read and written in PEFT's file format.
//!
//! An adapted layer computes `x·W + b + (α/r)·(dropout(x)·A)·B` with `A: [in, r]` and
//! `B: [r, out]`: the low-rank path, never `A·B` merged into a weight-shaped matrix, so the
//! backward pass of a frozen `W` forms no weight-shaped gradient (burn's autodiff skips the
//! gradients of untracked operands). PEFT stores `lora_A` as `[r, in]` and `lora_B` as
//! `[out, r]` (torch's `[out, in]` layout); they are transposed on the way in and out.
//!
//! The adapters live inside the model ([`crate::Linear::lora`]), so the model *with* adapters is
//! the policy and [`CausalLm::without_adapters`] is the reference of the DPO-family losses: a
//! clone whose base parameters share the policy's tensor buffers (burn tensors are reference
//! counted; a frozen parameter is never rewritten by the optimizer).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::Pretrained;
use crate::error::{ModelError, Result, io_error};
use crate::model::{CausalLm, Linear};
use crate::peft_targets::PeftTargets;
use crate::weights::{HostTensor, WeightMap, host, write_atomic, write_safetensors};

/// PEFT's names of the linear modules LoRA can adapt, over every family (Phi-3's fused
/// `qkv_proj` and `gate_up_proj` beside the split ones), in the order of a decoder block. A
/// family has the subset its table names ([`crate::Family::linear_modules`]).
pub const LORA_MODULES: [&str; 9] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
];

/// File of the adapter's configuration in a PEFT adapter folder.
pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
/// File of the adapter's weights in a PEFT adapter folder.
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";
/// The largest adapter scale `α / r` accepted. Scales in use are a few units (PEFT's default
/// α 8 at r 8 is 1); past this one the update swamps the base model's output, and near f32's
/// range it overflows and every output is NaN.
pub const MAX_LORA_SCALE: f64 = 1e4;
/// The prefix PEFT puts before the base model's own parameter names.
const PEFT_PREFIX: &str = "base_model.model.";

/// The shape of the adapters: rank, scale numerator, dropout and the adapted modules.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    /// Rank `r` (≥ 1).
    pub r: usize,
    /// `α`: the update is scaled by `α / r` (PEFT's `lora_alpha`, default 8).
    pub alpha: f64,
    /// Dropout probability on the adapter's input during training, in `[0, 1)`.
    pub dropout: f64,
    /// The adapted modules, by PEFT name (a subset of [`LORA_MODULES`], in that order).
    pub targets: Vec<String>,
}

impl LoraConfig {
    /// PEFT's defaults (`lora_alpha` 8, no dropout) at rank `r` on every linear projection.
    pub fn new(r: usize) -> Self {
        Self {
            r,
            alpha: 8.0,
            dropout: 0.0,
            targets: LORA_MODULES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `α / r`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    /// Parses a comma-separated list of PEFT module names, or `all-linear` (every projection of
    /// [`LORA_MODULES`]; the output head is never adapted, as in PEFT). The result is in the
    /// order of [`LORA_MODULES`], without repeats.
    pub fn parse_targets(text: &str) -> std::result::Result<Vec<String>, String> {
        let names: Vec<&str> = text.split(',').map(str::trim).collect();
        if names == ["all-linear"] {
            return Ok(LORA_MODULES.iter().map(|s| s.to_string()).collect());
        }
        for name in &names {
            if !LORA_MODULES.contains(name) {
                return Err(format!(
                    "unknown module {name:?} (expected all-linear or a comma-separated list of {})",
                    LORA_MODULES.join(", ")
                ));
            }
        }
        Ok(LORA_MODULES
            .iter()
            .filter(|m| names.contains(m))
            .map(|s| s.to_string())
            .collect())
    }

    /// The targets as `--lora-targets` writes them (`all-linear` when every module is adapted).
    pub fn targets_text(&self) -> String {
        if self.targets.len() == LORA_MODULES.len() {
            "all-linear".into()
        } else {
            self.targets.join(",")
        }
    }

    /// Checks the ranges: `Err((flag, problem))` names the flag at fault (`lora-alpha`).
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.r == 0 {
            return Err(("lora-r", "must be at least 1 for an adapter".into()));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err((
                "lora-alpha",
                format!("must be positive and finite, got {}", self.alpha),
            ));
        }
        if self.scale() > MAX_LORA_SCALE {
            return Err((
                "lora-alpha",
                format!(
                    "{} at rank {} scales the adapters by α/r = {:e}, past the largest sane scale {MAX_LORA_SCALE:e}",
                    self.alpha,
                    self.r,
                    self.scale()
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err((
                "lora-dropout",
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.targets.is_empty() {
            return Err(("lora-targets", "no module to adapt".into()));
        }
        Ok(())
    }
}

/// One adapter: `scale · (dropout(x)·A)·B`, `A: [in, r]`, `B: [r, out]`.
#[derive(Module, Debug)]
pub struct LoraAdapter {
    /// Down projection `A`, `[in, r]` (the transpose of PEFT's `lora_A`).
    pub a: Param<Tensor<2>>,
    /// Up projection `B`, `[r, out]` (the transpose of PEFT's `lora_B`).
    pub b: Param<Tensor<2>>,
    /// `α / r`.
    pub scale: f64,
    /// Dropout probability on the input, applied only on an autodiff device (training).
    pub dropout: f64,
}

impl LoraAdapter {
    /// PEFT's initialisation: `A` as torch's `nn.Linear(in, r)` weight (kaiming-uniform with
    /// `a = √5`, i.e. uniform in `±1/√in`), drawn from `rng`; `B` zero, so a new adapter leaves
    /// the layer's output unchanged.
    fn init(
        input: usize,
        output: usize,
        config: &LoraConfig,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let bound = 1.0 / (input as f32).sqrt();
        let a: Vec<f32> = (0..input * config.r)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Self {
            a: Param::from_data(TensorData::new(a, [input, config.r]), device),
            b: Param::from_tensor(Tensor::zeros([config.r, output], device)),
            scale: config.scale(),
            dropout: config.dropout,
        }
    }

    /// The update of `x: [rows, in]`, `[rows, out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = if self.dropout > 0.0 && x.device().is_autodiff() {
            let keep = 1.0 - self.dropout;
            let mask = x.random_like(Distribution::Bernoulli(keep));
            x * mask / keep
        } else {
            x
        };
        x.matmul(self.a.val()).matmul(self.b.val()) * self.scale
    }

    /// The rank `r`.
    pub fn rank(&self) -> usize {
        self.a.val().dims()[1]
    }

    /// The dense update `scale · A·B`, `[in, out]`.
    fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// Every adapter of a model, in the order of [`CausalLm::adapted_linears`]: the part of a LoRA
/// run that is trained, and so what its checkpoints hold.
#[derive(Module, Debug)]
pub struct LoraAdapters {
    /// The adapters, block by block, each block's in [`LORA_MODULES`] order.
    pub adapters: Vec<LoraAdapter>,
}

/// The module name PEFT matches (`q_proj` of `self_attn.q_proj`).
fn module_name(path: &'static str) -> &'static str {
    path.rsplit('.').next().expect("a non-empty path")
}

/// A linear layer of the model under its PEFT path (`model.layers.3.self_attn.q_proj`) and its
/// module name (`q_proj`).
pub struct NamedLinear<'a> {
    /// The Hugging Face path of the module, without `.weight`.
    pub path: String,
    /// The module's name, one of [`LORA_MODULES`].
    pub module: &'static str,
    /// The layer.
    pub linear: &'a Linear,
}

impl CausalLm {
    /// Every adaptable linear layer, block by block, in the order of the family's table.
    pub fn linears(&self) -> Vec<NamedLinear<'_>> {
        let rows: Vec<_> = self
            .config
            .family
            .block_tensors()
            .into_iter()
            .filter(|r| r.slot.is_linear())
            .collect();
        let mut out = Vec::with_capacity(self.layers.len() * rows.len());
        for (i, layer) in self.layers.iter().enumerate() {
            for row in &rows {
                let linear = layer.linear(row.slot).expect("the table's linears exist");
                out.push(NamedLinear {
                    path: format!("model.layers.{i}.{}", row.hf),
                    module: module_name(row.hf),
                    linear,
                });
            }
        }
        out
    }

    /// Mutable access to every adaptable linear layer, in the order of [`CausalLm::linears`].
    fn linears_mut(&mut self) -> Vec<&mut Linear> {
        self.layers
            .iter_mut()
            .flat_map(crate::model::DecoderLayer::linears_mut)
            .collect()
    }

    /// Adds fresh adapters (PEFT's initialisation, drawn from `seed`) to the layers `config`
    /// targets and freezes every base parameter, so that only the adapters get gradients and
    /// optimizer state. The model's outputs are unchanged (`B = 0`).
    pub fn with_lora(self, config: &LoraConfig, seed: u64) -> Self {
        let mut model = self.no_grad();
        let device = model.embed_tokens.val().device();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let modules: Vec<&'static str> = model.linears().iter().map(|l| l.module).collect();
        for (linear, module) in model.linears_mut().into_iter().zip(modules) {
            if config.targets.iter().any(|t| t == module) {
                let (input, output) = linear.shape();
                linear.lora = Some(LoraAdapter::init(input, output, config, &mut rng, &device));
            }
        }
        model
    }

    /// Whether any layer carries an adapter.
    pub fn has_adapters(&self) -> bool {
        self.linears().iter().any(|l| l.linear.lora.is_some())
    }

    /// The configuration of the model's adapters (rank, α, dropout, targets), `None` without.
    pub fn lora_config(&self) -> Option<LoraConfig> {
        let linears = self.linears();
        let first = linears.iter().find_map(|l| l.linear.lora.as_ref())?;
        let r = first.rank();
        let targets = if linears.iter().all(|l| l.linear.lora.is_some()) {
            // Every linear layer: `all-linear`, whatever the family's names.
            LORA_MODULES.iter().map(|s| s.to_string()).collect()
        } else {
            LORA_MODULES
                .iter()
                .filter(|m| {
                    linears
                        .iter()
                        .any(|l| l.module == **m && l.linear.lora.is_some())
                })
                .map(|s| s.to_string())
                .collect()
        };
        Some(LoraConfig {
            r,
            alpha: first.scale * r as f64,
            dropout: first.dropout,
            targets,
        })
    }

    /// The same network with every adapter switched off: the base model. Its parameters are the
    /// policy's own (same tensors, same buffers), so this costs no second copy of the weights.
    pub fn without_adapters(&self) -> Self {
        let mut base = self.clone();
        for linear in base.linears_mut() {
            linear.lora = None;
        }
        base
    }

    /// The model's adapters (clones sharing their tensors and parameter ids).
    pub fn adapters(&self) -> LoraAdapters {
        LoraAdapters {
            adapters: self
                .linears()
                .into_iter()
                .filter_map(|l| l.linear.lora.clone())
                .collect(),
        }
    }

    /// Puts `adapters` (as [`CausalLm::adapters`] returned them, e.g. loaded from a
    /// checkpoint) back into the layers that carry adapters, in order.
    pub fn set_adapters(mut self, adapters: LoraAdapters) -> Self {
        let mut incoming = adapters.adapters.into_iter();
        for linear in self.linears_mut() {
            if linear.lora.is_some() {
                linear.lora = incoming.next();
            }
        }
        self
    }

    /// Folds every adapter into its layer's weight (`W + (α/r)·A·B`, PEFT's `merge_and_unload`)
    /// and removes it: a plain model that computes what the adapted one did.
    pub fn merge_adapters(mut self) -> Self {
        for linear in self.linears_mut() {
            if let Some(adapter) = linear.lora.take() {
                let delta = adapter.delta();
                let merged = linear.weight.to_dense(&delta.device()) + delta;
                linear.weight =
                    crate::model::LinearWeight::Dense(Param::from_tensor(merged.detach()));
            }
        }
        self
    }

    /// A fingerprint of the base weights (the model without its adapters): a 64-bit FNV-1a hash
    /// of the family and of every base parameter's shape and a strided sample of up to 4096 of
    /// its values (for a weight kept quantized: its format, shape and a strided sample of up to
    /// 4096 of its bytes), as hex. A checkpoint of a LoRA run records it, so that a resume onto
    /// another base is refused. Parameters are read one at a time (no second copy of the model).
    pub fn base_fingerprint(&self) -> String {
        let mut visitor = Fingerprint(Fnv::default());
        visitor.0.write(self.config.family.model_type().as_bytes());
        self.without_adapters().visit(&mut visitor);
        for layer in &self.layers {
            for linear in layer.linears() {
                if let Some(matrix) = linear.weight.quantized() {
                    visitor.0.write(matrix.kind().name().as_bytes());
                    for dim in matrix.shape() {
                        visitor.0.write(&(dim as u64).to_le_bytes());
                    }
                    let bytes = matrix.bytes();
                    let stride = (bytes.len() / 4096).max(1);
                    for byte in bytes.iter().step_by(stride) {
                        visitor.0.write(&[*byte]);
                    }
                }
            }
        }
        format!("{:016x}", (visitor.0).0)
    }
}

/// Hashes the parameters it visits into an [`Fnv`].
struct Fingerprint(Fnv);

impl ModuleVisitor for Fingerprint {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        for dim in tensor.dims() {
            self.0.write(&(dim as u64).to_le_bytes());
        }
        let data = tensor.into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("f32 after conversion");
        let stride = (values.len() / 4096).max(1);
        for value in values.iter().step_by(stride) {
            self.0.write(&value.to_bits().to_le_bytes());
        }
    }
}

/// 64-bit FNV-1a: stable across builds and platforms, unlike `std`'s hasher.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn adapter_error(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.to_path_buf(),
        field: field.into(),
        problem: problem.into(),
    }
}

/// Writes the model's adapters as PEFT's `save_pretrained` does into `folder`:
/// `adapter_config.json` and `adapter_model.safetensors` (f32, `base_model.model.<module>.lora_A.weight`
/// `[r, in]` and `…lora_B.weight` `[out, r]`). The folder is replaced whole or not at all
/// (`softalign_durable::replace_dir_atomic`). `base_model` goes into `base_model_name_or_path`.
pub fn save_adapter(model: &CausalLm, folder: &Path, base_model: &str) -> Result<()> {
    let config = model.lora_config().ok_or_else(|| ModelError::Format {
        path: folder.to_path_buf(),
        problem: "the model has no adapter to save".into(),
    })?;
    let mut tensors = Vec::new();
    for named in model.linears() {
        if let Some(adapter) = &named.linear.lora {
            let key = format!("{PEFT_PREFIX}{}", named.path);
            tensors.push((
                format!("{key}.lora_A.weight"),
                host(&adapter.a).transposed(),
            ));
            tensors.push((
                format!("{key}.lora_B.weight"),
                host(&adapter.b).transposed(),
            ));
        }
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let text = serde_json::to_string_pretty(&peft_config_json(&config, base_model))
        .expect("json value serialises");
    softalign_durable::replace_dir_atomic(folder, |partial| {
        write_safetensors(&partial.join(ADAPTER_WEIGHTS_FILE), &tensors)?;
        write_atomic(&partial.join(ADAPTER_CONFIG_FILE), text.as_bytes())
    })
}

/// The `adapter_config.json` PEFT 0.21 writes for a plain LoRA of a causal LM.
fn peft_config_json(config: &LoraConfig, base_model: &str) -> Value {
    // PEFT types `lora_alpha` as an int and writes `8`, not `8.0`, for whole values.
    let alpha = if config.alpha.fract() == 0.0 && config.alpha.abs() < 1e15 {
        json!(config.alpha as i64)
    } else {
        json!(config.alpha)
    };
    json!({
        "alpha_pattern": {},
        "auto_mapping": null,
        "base_model_name_or_path": base_model,
        "bias": "none",
        "eva_config": null,
        "exclude_modules": null,
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "layer_replication": null,
        "layers_pattern": null,
        "layers_to_transform": null,
        "loftq_config": {},
        "lora_alpha": alpha,
        "lora_bias": false,
        "lora_dropout": config.dropout,
        "megatron_config": null,
        "megatron_core": "megatron.core",
        "modules_to_save": null,
        "peft_type": "LORA",
        "r": config.r,
        "rank_pattern": {},
        "revision": null,
        "target_modules": config.targets,
        "task_type": "CAUSAL_LM",
        "trainable_token_indices": null,
        "use_dora": false,
        "use_rslora": false,
    })
}

/// Reads and checks a PEFT `adapter_config.json`: a plain LoRA (no DoRA, rsLoRA, LoRA bias,
/// per-module rank or α, extra trained modules, or layer selection) on module names this model
/// has. Each refusal names the key.
pub fn read_adapter_config(folder: &Path) -> Result<LoraConfig> {
    read_adapter(folder).map(|(config, _)| config)
}

/// [`read_adapter_config`], with the per-path matching of `target_modules` / `exclude_modules`
/// that decides which layers the adapter adapts.
fn read_adapter(folder: &Path) -> Result<(LoraConfig, PeftTargets)> {
    let path = folder.join(ADAPTER_CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let value: Value = serde_json::from_str(&text).map_err(|cause| ModelError::Json {
        path: path.clone(),
        cause,
    })?;
    let bad = |field: &str, problem: String| adapter_error(&path, field, problem);
    let get = |field: &str| value.get(field).filter(|v| !v.is_null());
    match get("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => {
            return Err(bad(
                "peft_type",
                format!("{other:?} is not supported (LORA only)"),
            ));
        }
    }
    let truthy = |field: &str| get(field).is_some_and(|v| v != &json!(false));
    for field in [
        "use_dora",
        "use_rslora",
        "lora_bias",
        "fan_in_fan_out",
        "use_qalora",
    ] {
        if truthy(field) {
            return Err(bad(field, "is not supported (only plain LoRA is)".into()));
        }
    }
    if let Some(bias) = get("bias").and_then(Value::as_str)
        && bias != "none"
    {
        return Err(bad(
            "bias",
            format!("{bias:?} is not supported (\"none\" only)"),
        ));
    }
    for field in ["rank_pattern", "alpha_pattern"] {
        if get(field).is_some_and(|v| v.as_object().is_none_or(|o| !o.is_empty())) {
            return Err(bad(
                field,
                "per-module ranks or alphas are not supported".into(),
            ));
        }
    }
    for field in [
        "modules_to_save",
        "layers_to_transform",
        "layer_replication",
        "trainable_token_indices",
        "target_parameters",
    ] {
        if get(field).is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
            return Err(bad(field, "is not supported".into()));
        }
    }
    let r = get("r")
        .and_then(Value::as_u64)
        .filter(|&r| r > 0)
        .ok_or_else(|| bad("r", "must be a positive integer".into()))? as usize;
    let alpha = get("lora_alpha")
        .and_then(Value::as_f64)
        .ok_or_else(|| bad("lora_alpha", "must be a number".into()))?;
    let dropout = get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    // Which layers are adapted is decided per module path by `PeftTargets`; this is the
    // summary by module name (a regular expression or `all-linear` may reach any).
    let matcher = PeftTargets::from_config(&value).map_err(|(key, problem)| bad(key, problem))?;
    let targets = match get("target_modules") {
        Some(Value::String(_)) => LoraConfig::parse_targets("all-linear"),
        Some(Value::Array(items)) => {
            let names: Option<Vec<&str>> = items
                .iter()
                .map(|v| v.as_str().map(|s| s.rsplit('.').next().unwrap_or(s)))
                .collect();
            let names =
                names.ok_or_else(|| bad("target_modules", "must be a list of names".into()))?;
            LoraConfig::parse_targets(&names.join(","))
        }
        _ => Err("must be a list of module names or \"all-linear\"".into()),
    }
    .map_err(|problem| bad("target_modules", problem))?;
    let config = LoraConfig {
        r,
        alpha,
        dropout,
        targets,
    };
    config.validate().map_err(|(flag, problem)| {
        let key = match flag {
            "lora-r" => "r",
            "lora-alpha" => "lora_alpha",
            "lora-dropout" => "lora_dropout",
            "lora-targets" => "target_modules",
            other => other,
        };
        bad(key, problem)
    })?;
    Ok((config, matcher))
}

/// Loads the PEFT adapter in `folder` onto `model` (a base without adapters), checking every
/// tensor's name and shape against the base, and freezes the base: the result trains only the
/// adapter (to continue training it) and computes what PEFT computes with it.
///
/// This is the loader behind `--adapter` of every command.
pub fn load_adapter(model: CausalLm, folder: &Path) -> Result<CausalLm> {
    if model.has_adapters() {
        return Err(adapter_error(
            folder,
            "adapter",
            "the model already carries an adapter",
        ));
    }
    let (config, targets) = read_adapter(folder)?;
    let weights_path = folder.join(ADAPTER_WEIGHTS_FILE);
    let mut weights = WeightMap::read_safetensors(&weights_path)?;
    let mut model = model.no_grad();
    let device = model.embed_tokens.val().device();
    let names: Vec<(String, &'static str)> = model
        .linears()
        .into_iter()
        .map(|l| (l.path, l.module))
        .collect();
    for (linear, (path, _module)) in model.linears_mut().into_iter().zip(names) {
        if !targets.adapts(&path) {
            continue;
        }
        let (input, output) = linear.shape();
        let key = format!("{PEFT_PREFIX}{path}");
        let a = take(
            &mut weights,
            &format!("{key}.lora_A.weight"),
            &[config.r, input],
        )?;
        let b = take(
            &mut weights,
            &format!("{key}.lora_B.weight"),
            &[output, config.r],
        )?;
        linear.lora = Some(LoraAdapter {
            a: param(a.transposed(), &device),
            b: param(b.transposed(), &device),
            scale: config.scale(),
            dropout: config.dropout,
        });
    }
    let mut left: Vec<&String> = weights.tensors.keys().collect();
    left.sort();
    if let Some(extra) = left.first() {
        return Err(adapter_error(
            &weights_path,
            extra.as_str(),
            "does not fit the base model (no such adapted module in it, or not in target_modules)",
        ));
    }
    Ok(model)
}

/// [`crate::load_pretrained`], then, with `adapter`, [`load_adapter`] onto the model: what
/// `--model PATH [--adapter DIR]` of every command loads.
pub fn load_pretrained_with_adapter(
    path: &Path,
    adapter: Option<&Path>,
    device: &Device,
) -> Result<Pretrained> {
    load_pretrained_with_adapter_as(path, adapter, device, crate::WeightFormat::Native)
}

/// [`load_pretrained_with_adapter`], the base's linear weights held as `format` says (a
/// quantized base under the adapters is QLoRA).
pub fn load_pretrained_with_adapter_as(
    path: &Path,
    adapter: Option<&Path>,
    device: &Device,
    format: crate::WeightFormat,
) -> Result<Pretrained> {
    let mut loaded = crate::load_pretrained_as(path, device, format)?;
    if let Some(folder) = adapter {
        loaded.model = load_adapter(loaded.model, folder)?;
    }
    Ok(loaded)
}

/// Removes tensor `name` of shape `shape` from the adapter's weights, refusing one that holds a
/// NaN or an infinity (it would turn every output NaN, or a finite wrong value).
fn take(weights: &mut WeightMap, name: &str, shape: &[usize]) -> Result<HostTensor> {
    let tensor = weights.take(name, shape)?;
    if let Some(index) = tensor.data.iter().position(|x| !x.is_finite()) {
        return Err(adapter_error(
            &weights.source,
            name,
            format!(
                "holds a non-finite value ({} at flat index {index})",
                tensor.data[index]
            ),
        ));
    }
    Ok(tensor)
}

fn param(tensor: HostTensor, device: &Device) -> Param<Tensor<2>> {
    let shape = [tensor.shape[0], tensor.shape[1]];
    Param::from_data(TensorData::new(tensor.data, shape), device)
}
