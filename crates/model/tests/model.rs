//! Properties of the decoder on tiny random configurations: every parameter gets a gradient,
//! the mask is causal, batching does not mix sequences, and the KV-cache path agrees with the
//! full forward pass under grouped-query attention.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Gradients, Int, Tensor, TensorData};
use common::parameter_gradients;
use softalign_model::{CausalLm, KvCache, ModelConfig, next_token_logps};

fn tiny(tied: bool) -> ModelConfig {
    ModelConfig {
        family: softalign_model::Family::Llama,
        vocab_size: 40,
        hidden_size: 24,
        intermediate_size: 36,
        num_hidden_layers: 2,
        num_attention_heads: 6,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: tied,
        max_position_embeddings: 64,
        bos_token_id: None,
        eos_token_ids: vec![],
        sliding_window: None,
        ..ModelConfig::llama_defaults()
    }
}

fn tokens(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
    let width = rows[0].len();
    let data: Vec<i64> = rows.concat();
    Tensor::from_data(TensorData::new(data, [rows.len(), width]), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

struct GradientCheck<'a> {
    grads: &'a Gradients,
    visited: usize,
    missing: Vec<String>,
    path: Vec<String>,
}

impl ModuleVisitor for GradientCheck<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.visited += 1;
        let nonzero = param
            .val()
            .grad(self.grads)
            .map(|g| g.abs().sum().into_scalar::<f32>() > 0.0);
        if nonzero != Some(true) {
            self.missing.push(self.path.join("."));
        }
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    for tied in [true, false] {
        let device = Device::default().autodiff();
        device.seed(1);
        let model = CausalLm::init(&tiny(tied), &device);
        let input = tokens(&[&[1, 5, 9, 2, 7, 3], &[4, 4, 8, 0, 1, 39]], &device);
        let loss = -next_token_logps(model.forward(input.clone()), input).mean();
        let grads = loss.backward();
        let mut check = GradientCheck {
            grads: &grads,
            visited: 0,
            missing: vec![],
            path: vec![],
        };
        model.visit(&mut check);
        // 9 per block, embedding, final norm, and the head when untied.
        assert_eq!(check.visited, 2 * 9 + 2 + usize::from(!tied));
        assert!(
            check.missing.is_empty(),
            "no gradient for {:?}",
            check.missing
        );
    }
}

#[test]
fn gradient_matches_a_finite_difference() {
    // d loss / d (final norm gain[3]) by autodiff against a central difference.
    let device = Device::default().autodiff();
    device.seed(2);
    let config = tiny(false);
    let model = CausalLm::init(&config, &device);
    let input = tokens(&[&[1, 5, 9, 2, 7, 3]], &device);
    let loss_of = |m: &CausalLm| -> f64 {
        let l = -next_token_logps(m.forward(input.clone()), input.clone()).sum();
        l.into_scalar::<f32>() as f64
    };
    let loss = -next_token_logps(model.forward(input.clone()), input.clone()).sum();
    let grads = loss.backward();
    let analytic = values(model.norm.weight.val().grad(&grads).unwrap())[3] as f64;
    let h = 1e-2;
    let shifted = |delta: f32| {
        let mut m = model.valid();
        let mut gain = values(m.norm.weight.val());
        gain[3] += delta;
        m.norm.weight = Param::from_data(
            TensorData::new(gain, [config.hidden_size]),
            &Device::default(),
        );
        loss_of(&m)
    };
    let numeric = (shifted(h as f32) - shifted(-h as f32)) / (2.0 * h);
    assert!(
        (analytic - numeric).abs() <= 2e-2 * numeric.abs().max(1.0),
        "autodiff {analytic}, finite difference {numeric}"
    );
}

#[test]
fn logits_are_causal_and_sequences_independent() {
    let device = Device::default();
    device.seed(3);
    let model = CausalLm::init(&tiny(true), &device);
    let a = values(model.forward(tokens(&[&[1, 2, 3, 4, 5]], &device)));
    let b = values(model.forward(tokens(&[&[1, 2, 3, 9, 9]], &device)));
    let v = 40;
    // The first three positions cannot see the changed tokens.
    for i in 0..3 * v {
        assert!((a[i] - b[i]).abs() < 1e-5, "position {} changed", i / v);
    }
    assert!((3 * v..5 * v).any(|i| (a[i] - b[i]).abs() > 1e-4));
    // A batch of two gives each row's own logits.
    let batch = values(model.forward(tokens(&[&[1, 2, 3, 4, 5], &[1, 2, 3, 9, 9]], &device)));
    for (i, (x, y)) in batch.iter().zip(a.iter().chain(b.iter())).enumerate() {
        assert!((x - y).abs() < 1e-5, "element {i}: {x} vs {y}");
    }
}

#[test]
fn cached_decoding_agrees_with_the_full_pass() {
    let device = Device::default();
    device.seed(4);
    let model = CausalLm::init(&tiny(false), &device);
    let ids = [3i64, 1, 4, 1, 5, 9, 2, 6];
    let full = values(model.forward(tokens(&[&ids], &device)));
    let mut cache = KvCache::new(&model);
    let mut at = 0;
    for chunk in [3usize, 1, 2, 1, 1] {
        let logits =
            values(model.forward_cached(tokens(&[&ids[at..at + chunk]], &device), &mut cache));
        at += chunk;
        let want = &full[(at - 1) * 40..at * 40];
        for (x, y) in logits.iter().zip(want) {
            assert!((x - y).abs() < 1e-5, "after {at} tokens: {x} vs {y}");
        }
    }
}

#[test]
fn token_logps_match_log_softmax_in_value_and_gradient() {
    use burn::tensor::activation::{log_softmax, softmax};
    use softalign_model::token_logps;
    let (b, t, v) = (2, 3, 7);
    let raw: Vec<f32> = (0..b * t * v)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.9)
        .collect();
    let targets = [0i64, 6, 3, 2, 2, 5];
    for autodiff in [false, true] {
        let device = if autodiff {
            Device::default().autodiff()
        } else {
            Device::default()
        };
        let logits = Tensor::<3>::from_data(TensorData::new(raw.clone(), [b, t, v]), &device);
        let logits = if autodiff {
            logits.require_grad()
        } else {
            logits
        };
        let target =
            Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [b, t]), &device);
        let got = token_logps(logits.clone(), target.clone());
        let want = log_softmax(logits.clone(), 2).gather(2, target.clone().unsqueeze_dim::<3>(2));
        for (x, y) in values(got.clone()).iter().zip(values(want)) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        if autodiff {
            let grads = got.sum().backward();
            let grad = values(logits.grad(&grads).unwrap());
            // d Σ logp / d logits = onehot(target) − softmax(logits).
            let p = values(softmax(logits.inner(), 2));
            for (i, g) in grad.iter().enumerate() {
                let onehot = f32::from(targets[i / v] as usize == i % v);
                assert!((g - (onehot - p[i])).abs() < 1e-5, "element {i}: {g}");
            }
        }
    }
}

#[test]
fn model_next_token_logps_match_the_full_logits_path_in_value_and_gradient() {
    let device = Device::default().autodiff();
    for tied in [true, false] {
        device.seed(7);
        let model = CausalLm::init(&tiny(tied), &device);
        let input = tokens(&[&[3, 14, 15, 9, 26, 5], &[35, 8, 9, 7, 9, 3]], &device);
        let weights = Tensor::<2>::from_data(
            TensorData::new((0..10).map(|i| 0.3 + 0.1 * i as f32).collect(), [2, 5]),
            &device,
        );
        let mut per_path = Vec::new();
        for fused in [false, true] {
            let logps = if fused {
                model.next_token_logps(input.clone())
            } else {
                next_token_logps(model.forward(input.clone()), input.clone())
            };
            assert_eq!(logps.dims(), [2, 5]);
            let value = values(logps.clone());
            let grads = (logps * weights.clone()).sum().backward();
            per_path.push((value, parameter_gradients(&model, &grads)));
        }
        let (full, fused) = (&per_path[0], &per_path[1]);
        for (x, y) in full.0.iter().zip(&fused.0) {
            assert!((x - y).abs() < 1e-5, "log-prob {x} vs {y}");
        }
        assert_eq!(full.1.len(), fused.1.len());
        for (a, b) in full.1.iter().zip(&fused.1) {
            for (x, y) in a.iter().zip(b) {
                assert!(
                    (x - y).abs() < 1e-5 * (1.0 + x.abs()),
                    "gradient {x} vs {y}"
                );
            }
        }
    }
}

#[test]
fn fused_inference_attention_matches_the_differentiable_path() {
    // Untracked tensors take the backend's fused causal kernel; tracked ones the explicit
    // masked-softmax path that autodiff differentiates. Both must give the same logits,
    // with grouped-query heads, a batch, and a cache offset.
    let tracked_device = Device::default().autodiff();
    tracked_device.seed(5);
    let tracked = CausalLm::init(&tiny(false), &tracked_device);
    let model = tracked.valid();
    let plain = Device::default();
    let ids: &[&[i64]] = &[&[3, 1, 4, 1, 5, 9, 2, 6], &[2, 7, 1, 8, 2, 8, 1, 8]];
    let fused = values(model.forward(tokens(ids, &plain)));
    let logits = tracked.forward(tokens(ids, &tracked_device));
    assert!(logits.is_tracked());
    let explicit = values(logits);
    assert_eq!(fused.len(), explicit.len());
    for (i, (x, y)) in fused.iter().zip(&explicit).enumerate() {
        assert!(
            (x - y).abs() < 1e-5,
            "element {i}: fused {x} vs explicit {y}"
        );
    }
    // Decoding with a cache (queries offset from the keys) through the fused kernel.
    let mut cache = KvCache::new(&model);
    let _ = model.forward_cached(tokens(&[&ids[0][..5]], &plain), &mut cache);
    let next = values(model.forward_cached(tokens(&[&ids[0][5..7]], &plain), &mut cache));
    for (x, y) in next.iter().zip(&explicit[6 * 40..7 * 40]) {
        assert!((x - y).abs() < 1e-5, "cached: fused {x} vs explicit {y}");
    }
}
