//! Helpers shared by the golden-model tests: the fixtures of `../shared/golden`, their JSON
//! fields, token tensors and logit comparisons.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use serde_json::Value;

/// A fixture folder (or file) of `../shared/golden`.
pub fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden")
        .join(name)
}

/// A JSON array of token ids.
pub fn token_ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// A JSON array of logit rows, flattened row by row.
pub fn flat_logits(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// One sequence of `ids` as a `[1, len]` tensor.
pub fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

/// The values of a float tensor.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// The largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The gradient of every float parameter of `model` in `grads`, in visiting order (each one
/// must have a gradient).
pub fn parameter_gradients(model: &softalign_model::CausalLm, grads: &Gradients) -> Vec<Vec<f32>> {
    struct Collect<'a> {
        grads: &'a Gradients,
        found: Vec<Vec<f32>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = param
                .val()
                .grad(self.grads)
                .expect("every parameter has a gradient");
            self.found.push(grad.into_data().iter::<f32>().collect());
        }
    }
    let mut collect = Collect {
        grads,
        found: Vec::new(),
    };
    model.visit(&mut collect);
    collect.found
}

/// Greedy decoding through the KV cache: the prompt in one call, then one token at a time;
/// the `n` tokens chosen.
pub fn greedy(
    model: &softalign_model::CausalLm,
    prompt: &[u32],
    n: usize,
    device: &Device,
) -> Vec<u32> {
    let mut cache = softalign_model::KvCache::new(model);
    let mut logits = model.forward_cached(tokens(prompt, device), &mut cache);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = logits
            .clone()
            .argmax(1)
            .into_data()
            .iter::<i64>()
            .next()
            .unwrap() as u32;
        out.push(next);
        logits = model.forward_cached(tokens(&[next], device), &mut cache);
    }
    out
}
