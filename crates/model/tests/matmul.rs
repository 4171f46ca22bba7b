//! Matrix products on the CPU backend equal a float64 reference to float32 rounding, whichever
//! kernels `gemm` picked at run time for this CPU (AVX-512 under the `x86-v4` feature when
//! `avx512f` is detected, AVX2+FMA otherwise). Shapes are those of the model's projections, odd
//! sizes that leave partial register tiles, and a transposed operand (the tied head).

use burn::tensor::{Device, Distribution, Tensor};

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// `a · b` in f64, with the bound `Σ |a_ik · b_kj|` that f32 rounding error scales with.
fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, 0.0); m * n];
    for i in 0..m {
        for j in 0..n {
            let (mut sum, mut scale) = (0.0f64, 0.0f64);
            for l in 0..k {
                let p = f64::from(a[i * k + l]) * f64::from(b[l * n + j]);
                sum += p;
                scale += p.abs();
            }
            out[i * n + j] = (sum, scale);
        }
    }
    out
}

#[test]
fn matmul_equals_the_float64_reference_to_rounding() {
    let device = Device::default();
    device.seed(11);
    for (m, k, n, transposed) in [
        (64, 576, 192, false),
        (37, 576, 1536, false),
        (29, 1536, 576, false),
        (13, 576, 1001, true),
        (1, 7, 3, false),
    ] {
        let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), &device);
        let b = if transposed {
            Tensor::<2>::random([n, k], Distribution::Normal(0.0, 1.0), &device).transpose()
        } else {
            Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), &device)
        };
        let got = values(a.clone().matmul(b.clone()));
        let want = reference(&values(a), &values(b), m, k, n);
        for (index, (&x, &(y, scale))) in got.iter().zip(&want).enumerate() {
            // f32 accumulation over k terms: error below k · ε · Σ|terms| with ε = 2⁻²⁴;
            // a wrong kernel (a dropped or doubled term) is off by whole terms.
            let bound = k as f64 * f64::from(f32::EPSILON) * scale;
            assert!(
                (f64::from(x) - y).abs() <= bound,
                "{m}×{k}×{n} (transposed {transposed}) [{index}]: {x} vs {y} (bound {bound:e})"
            );
        }
    }
}
