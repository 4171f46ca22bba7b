//! The fused CPU kernels against the composed tensor path they replace: values and gradients
//! agree to 1e-5, across chunk boundaries, with a non-uniform upstream gradient.

use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use softalign_model::fused::head_token_logps;
use softalign_model::fused::logps::CHUNK_ROWS;
use softalign_model::token_logps;

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (x, y)) in got.iter().zip(want).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
            "{what}[{i}]: fused {x} vs composed {y}"
        );
    }
}

/// The composed path: whole `[rows, vocab]` logits, then `token_logps`.
fn composed(hidden: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let rows = targets.dims()[0];
    let logits = hidden.matmul(weight.transpose()).unsqueeze::<3>();
    token_logps(logits, targets.reshape([1, rows])).reshape([rows])
}

/// Rows spanning two and a half chunks; logits spread wide enough that the softmax is far from
/// uniform; targets cover the whole vocabulary.
fn case(device: &Device) -> (Tensor<2>, Tensor<2>, Tensor<1, Int>, Tensor<1>) {
    let (rows, width, vocab) = (2 * CHUNK_ROWS + CHUNK_ROWS / 2, 12, 97);
    device.seed(3);
    let hidden = Tensor::<2>::random([rows, width], Distribution::Normal(0.0, 1.0), device);
    let weight = Tensor::<2>::random([vocab, width], Distribution::Normal(0.0, 0.8), device);
    let targets: Vec<i64> = (0..rows).map(|r| ((r * 31 + 7) % vocab) as i64).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(targets, [rows]), device);
    let upstream: Vec<f32> = (0..rows).map(|r| 0.2 + (r % 11) as f32 * 0.15).collect();
    let upstream = Tensor::<1>::from_data(TensorData::new(upstream, [rows]), device);
    (hidden, weight, targets, upstream)
}

#[test]
fn head_token_logps_match_the_composed_path_in_value_and_gradient() {
    let device = Device::default().autodiff();
    let (hidden, weight, targets, upstream) = case(&device);
    let mut runs = Vec::new();
    for fused in [true, false] {
        let h = Tensor::<2>::from_data(hidden.clone().into_data(), &device).require_grad();
        let w = Tensor::<2>::from_data(weight.clone().into_data(), &device).require_grad();
        let logps = if fused {
            head_token_logps(h.clone(), w.clone(), targets.clone())
        } else {
            composed(h.clone(), w.clone(), targets.clone())
        };
        let value = values(logps.clone());
        let grads = (logps * upstream.clone()).sum().backward();
        runs.push((
            value,
            values(h.grad(&grads).expect("hidden gradient")),
            values(w.grad(&grads).expect("weight gradient")),
        ));
    }
    let (fused, composed) = (&runs[0], &runs[1]);
    assert_close("log-probability", &fused.0, &composed.0);
    assert_close("hidden gradient", &fused.1, &composed.1);
    assert_close("weight gradient", &fused.2, &composed.2);
}

#[test]
fn head_token_logps_without_autodiff_match_the_composed_path() {
    let device = Device::default();
    let (hidden, weight, targets, _) = case(&device);
    let fused = values(head_token_logps(
        hidden.clone(),
        weight.clone(),
        targets.clone(),
    ));
    assert_close(
        "log-probability",
        &fused,
        &values(composed(hidden, weight, targets)),
    );
}

/// An untied head is stored `[width, vocab]` and passed transposed: its gradient arrives in its
/// own layout.
#[test]
fn head_token_logps_differentiate_a_transposed_head() {
    let device = Device::default().autodiff();
    let (hidden, weight, targets, upstream) = case(&device);
    let stored = Tensor::<2>::from_data(weight.transpose().into_data(), &device).require_grad();
    let logps = head_token_logps(hidden.clone(), stored.clone().transpose(), targets.clone());
    let grads = (logps * upstream.clone()).sum().backward();
    let got = values(stored.grad(&grads).expect("head gradient"));
    let stored2 = Tensor::<2>::from_data(stored.clone().into_data(), &device).require_grad();
    let logps = composed(hidden, stored2.clone().transpose(), targets);
    let grads = (logps * upstream).sum().backward();
    assert_close(
        "head gradient",
        &got,
        &values(stored2.grad(&grads).unwrap()),
    );
}

/// Runs `f` on fresh tracked copies of `inputs` through the fused kernel and through `composed`,
/// back-propagates `Σ upstream ⊙ output` through both and compares outputs and gradients.
fn compare_with_composed<const N: usize>(
    what: &str,
    inputs: [Tensor<2>; N],
    upstream: Tensor<2>,
    fused: impl Fn(&[Tensor<2>; N]) -> Tensor<2>,
    composed: impl Fn(&[Tensor<2>; N]) -> Tensor<2>,
) {
    let device = upstream.device();
    let mut runs = Vec::new();
    for path in [&fused as &dyn Fn(&[Tensor<2>; N]) -> Tensor<2>, &composed] {
        let tracked: [Tensor<2>; N] = inputs
            .clone()
            .map(|t| Tensor::from_data(t.into_data(), &device).require_grad());
        let output = path(&tracked);
        let value = values(output.clone());
        let grads = (output * upstream.clone()).sum().backward();
        let gradients: Vec<Vec<f32>> = tracked
            .iter()
            .map(|t| values(t.grad(&grads).expect("every input has a gradient")))
            .collect();
        runs.push((value, gradients));
    }
    assert_close(&format!("{what} value"), &runs[0].0, &runs[1].0);
    for (i, (got, want)) in runs[0].1.iter().zip(&runs[1].1).enumerate() {
        assert_close(&format!("{what} gradient of input {i}"), got, want);
    }
}

fn random(shape: [usize; 2], std: f64, device: &Device) -> Tensor<2> {
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

#[test]
fn rms_norm_matches_the_composed_path_in_value_and_gradient() {
    use softalign_model::fused::rms_norm;
    let device = Device::default().autodiff();
    device.seed(5);
    let (rows, width, eps) = (37, 24, 1e-5);
    // The gain as a [1, width] matrix so both inputs go through one helper; reshaped per path.
    let inputs = [
        random([rows, width], 1.5, &device),
        random([1, width], 0.7, &device) + 1.0,
    ];
    compare_with_composed(
        "rms_norm",
        inputs,
        random([rows, width], 1.0, &device),
        |[x, w]| rms_norm(x, &w.clone().reshape([width]), eps).expect("the CPU backend is Flex"),
        |[x, w]| {
            let inverse_rms = (x.clone().square().mean_dim(1) + eps).sqrt().recip();
            x.clone() * inverse_rms * w.clone()
        },
    );
}

#[test]
fn swiglu_matches_the_composed_path_in_value_and_gradient() {
    use burn::tensor::activation::silu;
    use softalign_model::fused::swiglu;
    let device = Device::default().autodiff();
    device.seed(6);
    // More elements than one parallel task holds, and gate values well into both tails.
    let shape = [41, 1000];
    compare_with_composed(
        "swiglu",
        [random(shape, 3.0, &device), random(shape, 1.0, &device)],
        random(shape, 1.0, &device),
        |[gate, up]| swiglu(gate, up).expect("the CPU backend is Flex"),
        |[gate, up]| silu(gate.clone()) * up.clone(),
    );
}

#[test]
fn attention_matches_the_composed_path_in_value_and_gradient() {
    use burn::tensor::activation::softmax;
    use softalign_model::fused::causal_attention;
    let device = Device::default().autodiff();
    device.seed(7);
    // Grouped-query layout: 2 sequences, 2 key/value heads of 3 queries each, 37 positions,
    // head size 8; causally masked (−∞ above the diagonal); more score elements than one
    // parallel task of the softmax holds; scores large enough to need the max shift.
    let (batch, kv, group, time, dim) = (2, 2, 3, 37, 8);
    let bias: Vec<f32> = (0..time * time)
        .map(|i| {
            if i % time > i / time {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    let bias = Tensor::<2>::from_data(TensorData::new(bias, [time, time]), &device);
    let queries = [batch, kv, group, time, dim];
    let keys = [batch, kv, 1, time, dim];
    let rows = |shape: [usize; 5]| shape[..4].iter().product::<usize>();
    let inputs = [
        random([rows(queries), dim], 2.0, &device),
        random([rows(keys), dim], 2.0, &device),
        random([rows(keys), dim], 1.0, &device),
    ];
    let split = |[q, k, v]: &[Tensor<2>; 3]| {
        (
            q.clone().reshape(queries),
            k.clone().reshape(keys),
            v.clone().reshape(keys),
        )
    };
    compare_with_composed(
        "attention",
        inputs,
        random([rows(queries), dim], 1.0, &device),
        |inputs| {
            let (q, k, v) = split(inputs);
            causal_attention(&q, &k, &v, &bias)
                .expect("the CPU backend is Flex")
                .reshape([rows(queries), dim])
        },
        |inputs| {
            let (q, k, v) = split(inputs);
            let scores = q.matmul(k.swap_dims(3, 4)) + bias.clone().unsqueeze::<5>();
            softmax(scores, 4).matmul(v).reshape([rows(queries), dim])
        },
    );
}
