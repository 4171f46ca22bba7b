//! Named f32 weights in the Hugging Face layout, and the conversions between them and a
//! [`CausalLm`]: safetensors in and out, and the bridge that the GGUF reader also goes through.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::config::{Family, ModelConfig};
use crate::error::{ModelError, Result, io_error};
use crate::family::Slot;
use crate::gguf::quants::GgmlType;
use crate::model::{CausalLm, LinearWeight, ParamSource};
use crate::quant::QuantizedMatrix;

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
    /// Whether Gemma's norm gains already include the `+ 1` (llama.cpp's convention) rather
    /// than being transformers' `w`.
    pub norms_include_one: bool,
    /// Linear weights kept in a block format (`[out, in]`), by the same names.
    pub quantized: HashMap<String, QuantizedMatrix>,
    /// The format the f32 linear weights of `tensors` are quantized to as the model takes them
    /// (`--quantize`); `None` keeps them f32.
    pub quantize_to: Option<GgmlType>,
}

impl WeightMap {
    /// Removes and returns linear weight `name`, `[out, in]`: a quantized matrix if the map
    /// holds one (or quantizes the f32 tensor to [`WeightMap::quantize_to`]), else `None`, and
    /// the f32 tensor stays for [`WeightMap::take`].
    pub(crate) fn take_quantized(
        &mut self,
        name: &str,
        expected: [usize; 2],
    ) -> Result<Option<QuantizedMatrix>> {
        let source = self.source.clone();
        let bad = |problem: String| ModelError::Format {
            path: source.clone(),
            problem: format!("tensor {name}: {problem}"),
        };
        let matrix = match (self.quantized.remove(name), self.quantize_to) {
            (Some(matrix), _) => matrix,
            // A width that is not a whole number of the format's blocks stays f32 (as llama.cpp
            // falls back to another type for such tensors).
            (None, Some(kind))
                if self.tensors.contains_key(name)
                    && expected[1].is_multiple_of(kind.block().0) =>
            {
                let tensor = self.take(name, &expected)?;
                crate::quant::quantize(kind, &tensor.data, expected[0], expected[1]).map_err(bad)?
            }
            (None, _) => return Ok(None),
        };
        if matrix.shape() != expected {
            return Err(ModelError::ShapeMismatch {
                path: self.source.clone(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                found: matrix.shape().to_vec(),
            });
        }
        if let Some(row) = matrix.first_non_finite_row() {
            return Err(bad(format!("non-finite value in row {row}")));
        }
        Ok(Some(matrix))
    }

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
        // A NaN would be swallowed by the attention softmax and give finite, wrong scores.
        if let Some(at) = tensor.data.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Format {
                path: self.source.clone(),
                problem: format!(
                    "tensor {name}: non-finite value {} at index {at}",
                    tensor.data[at]
                ),
            });
        }
        Ok(tensor)
    }

    /// Reads every tensor of one safetensors file (F32, F16 and BF16 are widened to f32).
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        let mut map = WeightMap {
            source: path.to_path_buf(),
            ..Default::default()
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
            ..Default::default()
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

/// A linear weight as Hugging Face stores it, `[out, in]` f32 (a quantized one de-quantized).
fn host_linear(weight: &LinearWeight) -> HostTensor {
    match weight {
        LinearWeight::Dense(param) => host(param).transposed(),
        LinearWeight::Quantized(matrix) => HostTensor {
            shape: matrix.shape().to_vec(),
            data: matrix.dequantize(),
        },
    }
}

/// The Hugging Face name of `slot` in block `layer` (`None`: outside the blocks) of `family`,
/// without the `.weight` / `.bias` suffix.
pub fn hf_name(family: Family, slot: Slot, layer: Option<usize>) -> String {
    match layer {
        Some(i) => {
            let row = family
                .block_tensor(slot)
                .unwrap_or_else(|| panic!("{family} has no {slot:?}"));
            format!("model.layers.{i}.{}", row.hf)
        }
        None => {
            let row = family
                .model_tensors()
                .iter()
                .find(|r| r.slot == slot)
                .unwrap_or_else(|| panic!("no model-level {slot:?}"));
            row.hf.to_string()
        }
    }
}

/// Parameters taken from a [`WeightMap`] by their Hugging Face names (linear weights
/// transposed to `[in, out]`; Gemma's norm gains `w` stored as `1 + w`, unless the map holds
/// them so already).
struct MapParams<'a> {
    weights: &'a mut WeightMap,
    family: Family,
    device: &'a Device,
}

impl ParamSource for MapParams<'_> {
    fn linear(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        shape: [usize; 2],
    ) -> Result<LinearWeight> {
        let name = format!("{}.weight", hf_name(self.family, slot, layer));
        match self.weights.take_quantized(&name, [shape[1], shape[0]])? {
            Some(matrix) if crate::device::is_cpu(self.device) => {
                Ok(LinearWeight::Quantized(matrix))
            }
            // No GPU kernels for the block formats yet: de-quantized for other devices.
            Some(matrix) => Ok(LinearWeight::Dense(param(
                HostTensor {
                    shape: vec![shape[1], shape[0]],
                    data: matrix.dequantize(),
                }
                .transposed(),
                self.device,
            ))),
            None => Ok(LinearWeight::Dense(self.matrix(slot, layer, shape)?)),
        }
    }

    fn matrix(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        shape: [usize; 2],
    ) -> Result<Param<Tensor<2>>> {
        let name = format!("{}.weight", hf_name(self.family, slot, layer));
        let tensor = if slot == Slot::Embedding {
            self.weights.take(&name, &shape)?
        } else {
            // [in, out] in the model, [out, in] on disk.
            self.weights
                .take(&name, &[shape[1], shape[0]])?
                .transposed()
        };
        Ok(param(tensor, self.device))
    }

    fn vector(
        &mut self,
        slot: Slot,
        layer: Option<usize>,
        bias: bool,
        len: usize,
    ) -> Result<Param<Tensor<1>>> {
        let suffix = if bias { "bias" } else { "weight" };
        let name = format!("{}.{suffix}", hf_name(self.family, slot, layer));
        let mut tensor = self.weights.take(&name, &[len])?;
        if self.family.is_gemma() && slot.is_norm() && !self.weights.norms_include_one {
            // transformers computes x·(1 + w) in f32; the model keeps the sum.
            tensor.data.iter_mut().for_each(|w| *w += 1.0);
        }
        Ok(param(tensor, self.device))
    }
}

impl CausalLm {
    /// Builds the model from Hugging Face-named weights, checking every shape against `config`.
    /// An `lm_head.weight` is required when the head is untied and refused when it is tied
    /// (unless it equals the embedding, as some exports write it); any other tensor the model
    /// does not use is refused by name.
    pub fn from_weights(
        config: &ModelConfig,
        mut weights: WeightMap,
        device: &Device,
    ) -> Result<Self> {
        config.validate(&weights.source)?;
        crate::guard::check_layers_fit(config, weights.tensors.len(), &weights.source)?;
        let model = Self::assemble(
            config,
            &mut MapParams {
                weights: &mut weights,
                family: config.family,
                device,
            },
        )?;
        if config.tie_word_embeddings
            && let Some(head) = weights.tensors.remove("lm_head.weight")
        {
            // Exports of tied models sometimes write the head too: take it only when it is
            // the embedding.
            if head != host(&model.embed_tokens) {
                return Err(ModelError::Config {
                    path: weights.source.clone(),
                    field: "tie_word_embeddings".into(),
                    problem: "true, but lm_head.weight differs from the embedding".into(),
                });
            }
        }
        // Buffers transformers never reads back (rotary tables of old exports).
        weights
            .tensors
            .retain(|name, _| !name.ends_with("rotary_emb.inv_freq"));
        let mut left: Vec<&String> = weights
            .tensors
            .keys()
            .chain(weights.quantized.keys())
            .collect();
        left.sort();
        if let Some(stray) = left.first() {
            return Err(ModelError::Format {
                path: weights.source.clone(),
                problem: format!(
                    "tensor {stray} is not used by a {} model with this configuration ({} unused tensors)",
                    config.family,
                    left.len()
                ),
            });
        }
        Ok(model)
    }

    /// The weights under their Hugging Face names and layout (`[out, in]` linear weights,
    /// Gemma's norm gains as `w`, not `1 + w`), sorted by name.
    pub fn to_weights(&self) -> Vec<(String, HostTensor)> {
        let family = self.config.family;
        let norm_gain = |norm: &crate::model::RmsNorm| {
            let mut tensor = host(&norm.weight);
            if family.is_gemma() {
                tensor.data.iter_mut().for_each(|w| *w -= 1.0);
            }
            tensor
        };
        let mut out = vec![
            (
                format!("{}.weight", hf_name(family, Slot::Embedding, None)),
                host(&self.embed_tokens),
            ),
            (
                format!("{}.weight", hf_name(family, Slot::FinalNorm, None)),
                norm_gain(&self.norm),
            ),
        ];
        if let Some(head) = &self.lm_head {
            out.push((
                format!("{}.weight", hf_name(family, Slot::Head, None)),
                host(head).transposed(),
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            for row in family.block_tensors() {
                let name = hf_name(family, row.slot, Some(i));
                if let Some(linear) = layer.linear(row.slot) {
                    out.push((format!("{name}.weight"), host_linear(&linear.weight)));
                    if let Some(bias) = &linear.bias {
                        out.push((format!("{name}.bias"), host(bias)));
                    }
                } else if let Some(norm) = layer.norm(row.slot) {
                    out.push((format!("{name}.weight"), norm_gain(norm)));
                }
            }
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

/// Writes `bytes` to `path` whole or not at all (`softalign_durable::write_file_atomic`: a
/// temporary beside it, synced, renamed into place).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(softalign_durable::write_file_atomic(path, bytes)?)
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
