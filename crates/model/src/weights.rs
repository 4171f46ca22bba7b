//! Named f32 weights in the Hugging Face layout, and the conversions between them and a
//! [`CausalLm`]: safetensors in and out, and the bridge that the GGUF reader also goes through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::ModelConfig;
use crate::error::{ModelError, Result, io_error};
use crate::model::{Attention, CausalLm, DecoderLayer, Linear, Mlp, RmsNorm};

/// A dense f32 tensor on the host, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// `shape.iter().product()` values.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// The transpose of a matrix.
    pub(crate) fn transposed(&self) -> HostTensor {
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0f32; rows * cols];
        const BLOCK: usize = 32;
        for r0 in (0..rows).step_by(BLOCK) {
            for c0 in (0..cols).step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows) {
                    for c in c0..(c0 + BLOCK).min(cols) {
                        out[c * rows + r] = self.data[r * cols + c];
                    }
                }
            }
        }
        HostTensor {
            shape: vec![cols, rows],
            data: out,
        }
    }
}

/// Tensors by their Hugging Face names (`model.layers.0.self_attn.q_proj.weight`, …), linear
/// weights as `[out, in]`, plus the file they came from for error messages.
#[derive(Debug, Clone, Default)]
pub struct WeightMap {
    /// The source file or folder, named in errors.
    pub source: PathBuf,
    /// The tensors.
    pub tensors: HashMap<String, HostTensor>,
}

impl WeightMap {
    /// Removes and returns tensor `name`, checking its shape.
    pub(crate) fn take(&mut self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let tensor = self
            .tensors
            .remove(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.source.clone(),
                tensor: name.to_string(),
            })?;
        if tensor.shape != expected {
            return Err(ModelError::ShapeMismatch {
                path: self.source.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: tensor.shape,
            });
        }
        Ok(tensor)
    }

    /// Reads every tensor of one safetensors file (F32, F16 and BF16 are widened to f32).
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        let mut map = WeightMap {
            source: path.to_path_buf(),
            tensors: HashMap::new(),
        };
        map.add_safetensors(path)?;
        Ok(map)
    }

    /// Adds the tensors of one safetensors file.
    pub fn add_safetensors(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(io_error(path))?;
        let format = |problem: String| ModelError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let file = SafeTensors::deserialize(&bytes).map_err(|e| format(e.to_string()))?;
        for (name, view) in file.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|b| crate::gguf::f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16))
                    .collect(),
                other => {
                    return Err(format(format!(
                        "tensor {name}: dtype {other:?} is not supported (f32, f16, bf16)"
                    )));
                }
            };
            let tensor = HostTensor {
                shape: view.shape().to_vec(),
                data,
            };
            if self.tensors.insert(name.clone(), tensor).is_some() {
                return Err(format(format!(
                    "tensor {name} is also in another *.safetensors file of the folder"
                )));
            }
        }
        Ok(())
    }

    /// Reads a Hugging Face model folder's `*.safetensors` files (one file, or the shards).
    pub fn read_hf_folder(folder: &Path) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)
            .map_err(io_error(folder))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(ModelError::Format {
                path: folder.to_path_buf(),
                problem: "no *.safetensors file".into(),
            });
        }
        let mut map = WeightMap {
            source: folder.to_path_buf(),
            tensors: HashMap::new(),
        };
        for file in &files {
            map.add_safetensors(file)?;
        }
        if files.len() == 1 {
            map.source = files[0].clone();
        }
        Ok(map)
    }
}

fn param<const D: usize>(tensor: HostTensor, device: &Device) -> Param<Tensor<D>> {
    let shape: [usize; D] = tensor
        .shape
        .clone()
        .try_into()
        .expect("rank checked by WeightMap::take");
    Param::from_data(TensorData::new(tensor.data, shape), device)
}

pub(crate) fn host<const D: usize>(param: &Param<Tensor<D>>) -> HostTensor {
    let tensor = param.val();
    let shape = tensor.dims().to_vec();
    let data = tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data after conversion");
    HostTensor { shape, data }
}

impl CausalLm {
    /// Builds the model from Hugging Face-named weights, checking every shape against `config`.
    /// An `lm_head.weight` is required when the head is untied and ignored when it is tied.
    pub fn from_weights(
        config: &ModelConfig,
        mut weights: WeightMap,
        device: &Device,
    ) -> Result<Self> {
        config.validate(&weights.source)?;
        crate::guard::check_layers_fit(config, weights.tensors.len(), &weights.source)?;
        let (c, f, v) = (
            config.hidden_size,
            config.intermediate_size,
            config.vocab_size,
        );
        let q = config.num_attention_heads * config.head_dim;
        let kv = config.num_key_value_heads * config.head_dim;
        let family = config.family;
        // `name` without `.weight`; the bias, when the family has one there, is `name.bias`.
        let mut linear = |name: String, out: usize, input: usize, bias: bool| -> Result<Linear> {
            let weight = param(
                weights
                    .take(&format!("{name}.weight"), &[out, input])?
                    .transposed(),
                device,
            );
            let bias = if bias {
                Some(param(
                    weights.take(&format!("{name}.bias"), &[out])?,
                    device,
                ))
            } else {
                None
            };
            Ok(Linear::new(weight, bias))
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let qkv_bias = family.qkv_bias();
            let self_attn = Attention {
                q_proj: linear(format!("{p}.self_attn.q_proj"), q, c, qkv_bias)?,
                k_proj: linear(format!("{p}.self_attn.k_proj"), kv, c, qkv_bias)?,
                v_proj: linear(format!("{p}.self_attn.v_proj"), kv, c, qkv_bias)?,
                o_proj: linear(format!("{p}.self_attn.o_proj"), c, q, false)?,
                q_norm: None,
                k_norm: None,
                num_heads: config.num_attention_heads,
                num_kv_heads: config.num_key_value_heads,
                head_dim: config.head_dim,
            };
            let mlp = Mlp {
                gate_proj: linear(format!("{p}.mlp.gate_proj"), f, c, false)?,
                up_proj: linear(format!("{p}.mlp.up_proj"), f, c, false)?,
                down_proj: linear(format!("{p}.mlp.down_proj"), c, f, false)?,
            };
            layers.push((p, self_attn, mlp));
        }
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(linear("lm_head".into(), v, c, false)?.weight)
        };
        let mut norm = |name: String, width: usize| -> Result<RmsNorm> {
            Ok(RmsNorm {
                weight: param(weights.take(&name, &[width])?, device),
                eps: config.rms_norm_eps,
            })
        };
        let layers = layers
            .into_iter()
            .map(|(p, mut self_attn, mlp)| {
                if family.qk_norm() {
                    let d = config.head_dim;
                    self_attn.q_norm = Some(norm(format!("{p}.self_attn.q_norm.weight"), d)?);
                    self_attn.k_norm = Some(norm(format!("{p}.self_attn.k_norm.weight"), d)?);
                }
                Ok(DecoderLayer {
                    input_layernorm: norm(format!("{p}.input_layernorm.weight"), c)?,
                    self_attn,
                    post_attention_layernorm: norm(
                        format!("{p}.post_attention_layernorm.weight"),
                        c,
                    )?,
                    mlp,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let final_norm = norm("model.norm.weight".into(), c)?;
        let embed_tokens = param(weights.take("model.embed_tokens.weight", &[v, c])?, device);
        Ok(Self {
            embed_tokens,
            layers,
            norm: final_norm,
            lm_head,
            config: config.clone(),
            gradient_checkpointing: false,
        })
    }

    /// The weights under their Hugging Face names and layout (`[out, in]` linear weights),
    /// sorted by name.
    pub fn to_weights(&self) -> Vec<(String, HostTensor)> {
        let mut out = vec![
            (
                "model.embed_tokens.weight".to_string(),
                host(&self.embed_tokens),
            ),
            ("model.norm.weight".to_string(), host(&self.norm.weight)),
        ];
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".into(), host(head).transposed()));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            let a = &layer.self_attn;
            let m = &layer.mlp;
            for (name, linear) in [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ] {
                out.push((
                    format!("{p}.{name}.weight"),
                    host(&linear.weight).transposed(),
                ));
                if let Some(bias) = &linear.bias {
                    out.push((format!("{p}.{name}.bias"), host(bias)));
                }
            }
            for (name, norm) in [("q_norm", &a.q_norm), ("k_norm", &a.k_norm)] {
                if let Some(norm) = norm {
                    out.push((format!("{p}.self_attn.{name}.weight"), host(&norm.weight)));
                }
            }
            out.push((
                format!("{p}.input_layernorm.weight"),
                host(&layer.input_layernorm.weight),
            ));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                host(&layer.post_attention_layernorm.weight),
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// Writes `tensors` as one f32 safetensors file (`{"format": "pt"}` metadata, as transformers
/// writes), atomically: a temporary file beside `path` is renamed over it.
pub fn write_safetensors(path: &Path, tensors: &[(String, HostTensor)]) -> Result<()> {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let raw = t.data.iter().flat_map(|x| x.to_le_bytes()).collect();
            (name.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, raw, shape)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), raw)
                .map(|view| (name.clone(), view))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
    let metadata = Some(HashMap::from([("format".to_string(), "pt".to_string())]));
    let serialized = safetensors::serialize(views, metadata).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        problem: e.to_string(),
    })?;
    write_atomic(path, &serialized)
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place, so that no
/// half-written file is ever left under `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_moves_every_element() {
        let t = HostTensor {
            shape: vec![3, 37],
            data: (0..111).map(|x| x as f32).collect(),
        };
        let tt = t.transposed();
        assert_eq!(tt.shape, vec![37, 3]);
        for r in 0..3 {
            for c in 0..37 {
                assert_eq!(tt.data[c * 3 + r], t.data[r * 37 + c]);
            }
        }
        assert_eq!(tt.transposed(), t);
    }
}
