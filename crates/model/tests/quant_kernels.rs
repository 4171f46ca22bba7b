//! The quantized-weight kernels against the de-quantized f32 computation, for every block format,
//! every path (matrix-vector, matrix-matrix, transposed) and every instruction set this processor
//! runs; the quantizers by their round-trip error; the backend operation's gradient.
//!
//! The reference is the product of the de-quantized weights (`QuantizedMatrix::dequantize`, bit-
//! exact to ggml: `tests/gguf_quants.rs`) computed in f64. The kernels decode the same values and
//! differ only in the order of f32 additions, so they must agree within `1e-5 · Σ|wᵢ·xᵢ|`.

use burn::tensor::{Device, Distribution, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use softalign_model::gguf::quants::GgmlType;
use softalign_model::quant::kernels::{Isa, MATVEC_MAX_ROWS, matmul_on, matmul_transposed_on};
use softalign_model::quant::{
    QUANTIZE_TYPES, QuantizedMatrix, SharedBytes, quantize, quantized_linear,
};

/// Every block format, with the byte offsets of its f16 scales (set to sane values so that the
/// random bytes decode to finite weights).
const FORMATS: [(GgmlType, &[usize]); 12] = [
    (GgmlType::Q4_0, &[0]),
    (GgmlType::Q4_1, &[0, 2]),
    (GgmlType::Q5_0, &[0]),
    (GgmlType::Q5_1, &[0, 2]),
    (GgmlType::Q8_0, &[0]),
    (GgmlType::Iq4Nl, &[0]),
    (GgmlType::Q2K, &[80, 82]),
    (GgmlType::Q3K, &[108]),
    (GgmlType::Q4K, &[0, 2]),
    (GgmlType::Q5K, &[0, 2]),
    (GgmlType::Q6K, &[208]),
    (GgmlType::Iq4Xs, &[0]),
];

/// A matrix of random blocks of `kind` with f16 scales in ±[0.001, 0.05].
fn random_matrix(
    kind: GgmlType,
    scales: &[usize],
    rows: usize,
    cols: usize,
    seed: u64,
) -> QuantizedMatrix {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (_, block_bytes) = kind.block();
    let mut bytes = vec![0u8; rows * kind.row_bytes(cols)];
    rng.fill(bytes.as_mut_slice());
    for block in bytes.chunks_exact_mut(block_bytes) {
        for &at in scales {
            let magnitude: f32 = rng.random_range(0.001..0.05);
            let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let bits = half::f16::from_f32(sign * magnitude).to_bits();
            block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    QuantizedMatrix::new(kind, rows, cols, SharedBytes::from_vec(bytes)).unwrap()
}

fn random_values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `a: [m, k]` · `b: [k, n]` in f64, and `Σ|aᵢ·bᵢ|` per output (the rounding scale).
fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0f64; m * n];
    let mut scale = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                let product = av * b[p * n + j] as f64;
                out[i * n + j] += product;
                scale[i * n + j] += product.abs();
            }
        }
    }
    (out, scale)
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

fn assert_within(what: &str, got: &[f32], want: &(Vec<f64>, Vec<f64>)) {
    assert_eq!(got.len(), want.0.len(), "{what}: length");
    for (i, ((&g, &w), &scale)) in got.iter().zip(&want.0).zip(&want.1).enumerate() {
        let bound = 1e-5 * scale + 1e-30;
        assert!(
            (g as f64 - w).abs() <= bound,
            "{what}: element {i} is {g}, the de-quantized product {w} (bound {bound:e})"
        );
    }
}

/// 300 outputs × 512 inputs: the matrix-vector path's tasks end inside the matrix, the forward
/// tiles (256 rows) and backward tiles (13 blocks of 32) too.
const OUT: usize = 300;
const IN: usize = 512;

#[test]
fn every_format_and_path_equals_the_dequantized_product_on_every_instruction_set() {
    let isas = Isa::available();
    for (f, &(kind, scales)) in FORMATS.iter().enumerate() {
        let matrix = random_matrix(kind, scales, OUT, IN, 7 + f as u64);
        let dense = matrix.dequantize(); // [OUT, IN]
        let dense_t = transpose(&dense, OUT, IN); // [IN, OUT]
        for rows in [1, 3, MATVEC_MAX_ROWS, MATVEC_MAX_ROWS + 1, 40] {
            let x = random_values(rows * IN, 100 + rows as u64);
            let want = reference(&x, &dense_t, rows, IN, OUT);
            let mut first: Option<Vec<f32>> = None;
            for &isa in &isas {
                let y = matmul_on(isa, &matrix, &x, rows);
                assert_within(
                    &format!("{} forward, {rows} rows, {isa:?}", kind.name()),
                    &y,
                    &want,
                );
                // One lane order on every instruction set: the same bits.
                if rows <= MATVEC_MAX_ROWS {
                    match &first {
                        None => first = Some(y),
                        Some(first) => assert!(
                            first
                                .iter()
                                .zip(&y)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{} matrix-vector on {isa:?} differs from {:?}",
                            kind.name(),
                            isas[0]
                        ),
                    }
                }
            }
        }
        for rows in [1, 17] {
            let dy = random_values(rows * OUT, 200 + rows as u64);
            let want = reference(&dy, &dense, rows, OUT, IN);
            for &isa in &isas {
                let dx = matmul_transposed_on(isa, &matrix, &dy, rows);
                assert_within(
                    &format!("{} transposed, {rows} rows, {isa:?}", kind.name()),
                    &dx,
                    &want,
                );
            }
        }
    }
}

#[test]
fn a_wrong_block_offset_in_the_kernel_input_is_caught() {
    // The check the test above relies on has teeth: shifting one row's bytes by a block (what a
    // wrong row stride in a kernel would read) moves the product far outside the bound.
    let (kind, scales) = FORMATS[8]; // Q4_K
    let matrix = random_matrix(kind, scales, 4, IN, 1);
    let mut shifted = matrix.bytes().to_vec();
    let block = kind.block().1;
    shifted.copy_within(block..2 * block, 0);
    let wrong = QuantizedMatrix::new(kind, 4, IN, SharedBytes::from_vec(shifted)).unwrap();
    let x = random_values(IN, 3);
    let want = reference(&x, &transpose(&matrix.dequantize(), 4, IN), 1, IN, 4);
    let got = matmul_on(Isa::Baseline, &wrong, &x, 1);
    let outside = got
        .iter()
        .zip(&want.0)
        .zip(&want.1)
        .any(|((&g, &w), &s)| (g as f64 - w).abs() > 1e-5 * s);
    assert!(outside, "a mis-read block went unnoticed");
}

#[test]
fn quantizers_round_trip_within_their_step() {
    let rows = 16;
    let values: Vec<f32> = random_values(rows * IN, 11)
        .iter()
        .map(|v| v * 0.3)
        .collect();
    for kind in QUANTIZE_TYPES {
        let matrix = quantize(kind, &values, rows, IN).unwrap();
        assert_eq!(matrix.shape(), [rows, IN]);
        assert_eq!(matrix.bytes().len(), rows * kind.row_bytes(IN));
        let back = matrix.dequantize();
        // The worst error allowed: half a step of 8-bit codes, a full step of 4-bit ones (the
        // 6-bit scales of Q4_K round the step too), over the range of one block.
        let range = 0.6f32;
        let bound = match kind {
            GgmlType::Q8_0 => range / 254.0 * 1.1,
            _ => range / 15.0 * 1.2,
        };
        let worst = values
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= bound,
            "{}: worst error {worst} > {bound}",
            kind.name()
        );
        let rms = (values
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
            / values.len() as f32)
            .sqrt();
        assert!(rms < bound / 2.0, "{}: rms error {rms}", kind.name());
    }
    assert!(quantize(GgmlType::Q4K, &values[..rows * 100], rows, 100).is_err());
    assert!(quantize(GgmlType::Q6K, &values, rows, IN).is_err());
}

#[test]
fn the_backend_operation_matches_the_dense_layer_in_value_and_gradient() {
    let device = Device::default().autodiff();
    let (kind, scales) = FORMATS[10]; // Q6_K
    let matrix = random_matrix(kind, scales, 64, IN, 5);
    let dense_t = Tensor::<2>::from_data(
        TensorData::new(transpose(&matrix.dequantize(), 64, IN), [IN, 64]),
        &device,
    );
    let x = Tensor::<2>::random([24, IN], Distribution::Normal(0.0, 1.0), &device);
    let upstream = Tensor::<2>::random([24, 64], Distribution::Normal(0.0, 1.0), &device);
    let mut runs = Vec::new();
    for quantized in [true, false] {
        let x = Tensor::<2>::from_data(x.clone().into_data(), &device).require_grad();
        let y = if quantized {
            quantized_linear(x.clone(), &matrix)
        } else {
            x.clone().matmul(dense_t.clone())
        };
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let dx = x.grad(&grads).expect("x has a gradient");
        runs.push((
            y.into_data().try_to_vec::<f32>().unwrap(),
            dx.into_data().try_to_vec::<f32>().unwrap(),
        ));
    }
    for (what, got, want) in [
        ("value", &runs[0].0, &runs[1].0),
        ("gradient", &runs[0].1, &runs[1].1),
    ] {
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() <= 1e-5 * scale, "{what}: {g} vs {w}");
        }
    }
}
