//! CPU kernels for `y = x·Wᵀ` and `dx = dy·W` with `W` a [`QuantizedMatrix`] `[out, in]`.
//!
//! **Numerics.** The activations stay f32 and every weight is decoded to exactly the f32 value
//! ggml's `dequantize_row_*` gives it (the decoders of [`crate::gguf::quants`]), in registers or
//! in a cache-sized tile, never for the whole matrix. So the result is the de-quantized f32
//! product up to the order of the f32 additions: within `1e-5 · Σ|wᵢ·xᵢ|` of it (the tests'
//! bound, `crates/model/tests/quant_kernels.rs`). (llama.cpp instead rounds the activations to
//! 8-bit blocks and multiplies integers; that is faster per weight but adds an error of about
//! 1/256 of each activation block's range, which a gradient check would see.)
//!
//! **Paths.** A few rows (decoding: one token per sequence) take the matrix-vector path: each
//! thread takes a run of weight rows, decodes one block at a time into registers and multiplies
//! it into every input row, so the weights stream through once at the memory bus. More rows
//! (prefill, training) take the matrix-matrix path: a tile of weight rows is decoded into a
//! buffer that stays in cache and multiplied by the `gemm` crate's f32 micro-kernel. The
//! backward pass (`dx = dy·W`) tiles `W` by columns the same way.
//!
//! **Instruction sets.** The matrix-vector loop and the tile decoder are compiled three times,
//! for AVX-512, AVX2 + FMA and the x86-64 baseline (SSE2), and chosen at run time by
//! [`Isa::detected`] (`SOFTALIGN_QUANT_ISA=baseline|avx2|avx512` forces one). Each lane adds in
//! the same order on every path, so the three give bit-identical results.

use std::sync::OnceLock;

use rayon::prelude::*;

use super::QuantizedMatrix;
use crate::gguf::quants::{self, GgmlType, QK, QK_K};

/// Input rows up to which the matrix-vector path is taken.
pub const MATVEC_MAX_ROWS: usize = 8;
/// f32 lanes each input row accumulates in (one AVX-512 register, two AVX2 ones).
const LANES: usize = 16;
/// Weight rows per matrix-vector task.
const ROWS_PER_TASK: usize = 32;
/// Bytes of decoded weights per matrix-matrix tile: a tile stays in the L2 cache.
const TILE_BYTES: usize = 512 * 1024;

/// An instruction set the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// The x86-64 baseline (SSE2), or whatever the target guarantees elsewhere.
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, BW, VL, DQ).
    Avx512,
}

impl Isa {
    /// The instruction sets this processor runs, the baseline first.
    pub fn available() -> Vec<Isa> {
        let mut isas = vec![Isa::Baseline];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                isas.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
            {
                isas.push(Isa::Avx512);
            }
        }
        isas
    }

    /// The widest available set, unless `SOFTALIGN_QUANT_ISA` names another available one.
    pub fn detected() -> Isa {
        static CHOSEN: OnceLock<Isa> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let available = Isa::available();
            let forced = std::env::var("SOFTALIGN_QUANT_ISA").ok().and_then(|name| {
                available
                    .iter()
                    .copied()
                    .find(|isa| isa.name() == name.trim())
            });
            forced.unwrap_or(*available.last().expect("the baseline is always available"))
        })
    }

    /// `baseline`, `avx2` or `avx512`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Runs `$body` compiled for `$isa`: the body is a call of an `#[inline(always)]` function,
/// inlined into a function carrying the instruction set's target features.
macro_rules! on_isa {
    ($isa:expr, $f:path[$($arg:expr),* $(,)?]) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn avx2<R>(f: impl FnOnce() -> R) -> R { f() }
            #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
            fn avx512<R>(f: impl FnOnce() -> R) -> R { f() }
            match $isa {
                // SAFETY: `Isa::available` lists a set only when the processor has it.
                Isa::Avx512 => unsafe { avx512(#[inline(always)] || $f($($arg),*)) },
                Isa::Avx2 => unsafe { avx2(#[inline(always)] || $f($($arg),*)) },
                Isa::Baseline => $f($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $isa;
            $f($($arg),*)
        }
    }};
}

/// Calls `$f::<BYTES, VALUES, _>(args…, decoder)` with the block decoder of `$kind`.
macro_rules! with_decoder {
    ($kind:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $kind {
            GgmlType::Q4_0 => $f::<{ quants::Q4_0_BYTES }, QK, _>($($arg,)* quants::q4_0),
            GgmlType::Q4_1 => $f::<{ quants::Q4_1_BYTES }, QK, _>($($arg,)* quants::q4_1),
            GgmlType::Q5_0 => $f::<{ quants::Q5_0_BYTES }, QK, _>($($arg,)* quants::q5_0),
            GgmlType::Q5_1 => $f::<{ quants::Q5_1_BYTES }, QK, _>($($arg,)* quants::q5_1),
            GgmlType::Q8_0 => $f::<{ quants::Q8_0_BYTES }, QK, _>($($arg,)* quants::q8_0),
            GgmlType::Iq4Nl => $f::<{ quants::IQ4_NL_BYTES }, QK, _>($($arg,)* quants::iq4_nl),
            GgmlType::Q2K => $f::<{ quants::Q2_K_BYTES }, QK_K, _>($($arg,)* quants::q2_k),
            GgmlType::Q3K => $f::<{ quants::Q3_K_BYTES }, QK_K, _>($($arg,)* quants::q3_k),
            GgmlType::Q4K => $f::<{ quants::Q4_K_BYTES }, QK_K, _>($($arg,)* quants::q4_k),
            GgmlType::Q5K => $f::<{ quants::Q5_K_BYTES }, QK_K, _>($($arg,)* quants::q5_k),
            GgmlType::Q6K => $f::<{ quants::Q6_K_BYTES }, QK_K, _>($($arg,)* quants::q6_k),
            GgmlType::Iq4Xs => $f::<{ quants::IQ4_XS_BYTES }, QK_K, _>($($arg,)* quants::iq4_xs),
            GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16 => {
                unreachable!("a QuantizedMatrix holds a block format")
            }
        }
    };
}

/// `y = x·Wᵀ` for `x: [rows, in]` (row-major) → `[rows, out]`, on the detected instruction set.
pub fn matmul(weight: &QuantizedMatrix, x: &[f32], rows: usize) -> Vec<f32> {
    matmul_on(Isa::detected(), weight, x, rows)
}

/// `dx = dy·W` for `dy: [rows, out]` → `[rows, in]`, on the detected instruction set.
pub fn matmul_transposed(weight: &QuantizedMatrix, dy: &[f32], rows: usize) -> Vec<f32> {
    matmul_transposed_on(Isa::detected(), weight, dy, rows)
}

/// [`matmul`] on a chosen instruction set (which must be [`Isa::available`]).
pub fn matmul_on(isa: Isa, weight: &QuantizedMatrix, x: &[f32], rows: usize) -> Vec<f32> {
    let [out, cols] = weight.shape();
    assert_eq!(x.len(), rows * cols, "x is [rows, in]");
    assert!(Isa::available().contains(&isa), "{isa:?} is not available");
    if rows <= MATVEC_MAX_ROWS {
        matvec(isa, weight, x, rows)
    } else {
        let mut y = vec![0.0f32; rows * out];
        tiled_forward(isa, weight, x, rows, &mut y);
        y
    }
}

/// [`matmul_transposed`] on a chosen instruction set (which must be [`Isa::available`]).
pub fn matmul_transposed_on(
    isa: Isa,
    weight: &QuantizedMatrix,
    dy: &[f32],
    rows: usize,
) -> Vec<f32> {
    let [out, cols] = weight.shape();
    assert_eq!(dy.len(), rows * out, "dy is [rows, out]");
    assert!(Isa::available().contains(&isa), "{isa:?} is not available");
    let mut dx = vec![0.0f32; rows * cols];
    tiled_backward(isa, weight, dy, rows, &mut dx);
    dx
}

/// The matrix-vector path: parallel over runs of weight rows, each decoded a block at a time.
fn matvec(isa: Isa, weight: &QuantizedMatrix, x: &[f32], rows: usize) -> Vec<f32> {
    let [out, cols] = weight.shape();
    let kind = weight.kind();
    let per_row = weight.row_bytes();
    // Computed transposed, `[out, rows]`, so each task writes one contiguous run.
    let mut yt = vec![0.0f32; out * rows];
    yt.par_chunks_mut(ROWS_PER_TASK * rows)
        .zip(weight.bytes().par_chunks(ROWS_PER_TASK * per_row))
        .for_each(|(yt, w)| {
            on_isa!(isa, dot_rows[kind, w, per_row, x, rows, cols, yt]);
        });
    if rows == 1 {
        return yt;
    }
    let mut y = vec![0.0f32; rows * out];
    for (o, values) in yt.chunks_exact(rows).enumerate() {
        for (r, &v) in values.iter().enumerate() {
            y[r * out + o] = v;
        }
    }
    y
}

#[inline(always)]
fn dot_rows(
    kind: GgmlType,
    w: &[u8],
    per_row: usize,
    x: &[f32],
    rows: usize,
    cols: usize,
    yt: &mut [f32],
) {
    with_decoder!(kind, dot_rows_of(w, per_row, x, rows, cols, yt))
}

/// For each weight row of `w`: `yt[o·rows + r] = Σᵢ W[o, i]·x[r, i]`, decoding each block once.
#[inline(always)]
fn dot_rows_of<const BYTES: usize, const VALUES: usize, D>(
    w: &[u8],
    per_row: usize,
    x: &[f32],
    rows: usize,
    cols: usize,
    yt: &mut [f32],
    decode: D,
) where
    D: Fn(&[u8; BYTES], &mut [f32; VALUES]),
{
    let mut block_values = [0.0f32; VALUES];
    let mut acc = [[0.0f32; LANES]; MATVEC_MAX_ROWS];
    for (w_row, y) in w.chunks_exact(per_row).zip(yt.chunks_exact_mut(rows)) {
        acc[..rows].fill([0.0; LANES]);
        let (blocks, _) = w_row.as_chunks::<BYTES>();
        for (b, block) in blocks.iter().enumerate() {
            decode(block, &mut block_values);
            let (w16, _) = block_values.as_chunks::<LANES>();
            for (r, acc) in acc[..rows].iter_mut().enumerate() {
                let start = r * cols + b * VALUES;
                let (x16, _) = x[start..start + VALUES].as_chunks::<LANES>();
                for (w16, x16) in w16.iter().zip(x16) {
                    for lane in 0..LANES {
                        acc[lane] += w16[lane] * x16[lane];
                    }
                }
            }
        }
        for (y, acc) in y.iter_mut().zip(&acc[..rows]) {
            *y = sum_lanes(acc);
        }
    }
}

/// The lanes' sum, pairwise in a fixed order.
#[inline(always)]
fn sum_lanes(acc: &[f32; LANES]) -> f32 {
    let mut v = *acc;
    let mut width = LANES / 2;
    while width > 0 {
        for lane in 0..width {
            v[lane] += v[lane + width];
        }
        width /= 2;
    }
    v[0]
}

/// Decodes whole blocks of `raw` into `out` on `isa`.
fn decode_on(isa: Isa, kind: GgmlType, raw: &[u8], out: &mut [f32]) {
    on_isa!(isa, quants::dequantize_row[kind, raw, out]);
}

/// A raw pointer that tasks writing disjoint parts of one buffer share.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: every task writes a disjoint set of elements (see the callers).
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y[rows, out] = x[rows, in]·Wᵀ`, one task per tile of weight rows.
fn tiled_forward(isa: Isa, weight: &QuantizedMatrix, x: &[f32], rows: usize, y: &mut [f32]) {
    let [out, cols] = weight.shape();
    let tile = (TILE_BYTES / (4 * cols)).clamp(16, out.max(16));
    let y_out = SharedOut(y.as_mut_ptr());
    (0..out.div_ceil(tile))
        .into_par_iter()
        .for_each_init(Vec::new, |decoded: &mut Vec<f32>, t| {
            let (o0, o1) = (t * tile, ((t + 1) * tile).min(out));
            let n = o1 - o0;
            decoded.resize(n * cols, 0.0);
            decode_on(isa, weight.kind(), weight.rows_bytes(o0..o1), decoded);
            // SAFETY: `x` is `[rows, cols]`, `decoded` is `[n, cols]` read as its transpose
            // (`cols × n`, column stride `cols`), and the destination is columns `o0..o1` of
            // `y: [rows, out]`, which no other task writes.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    cols,
                    y_out.get().add(o0),
                    1,
                    out as isize,
                    false,
                    x.as_ptr(),
                    1,
                    cols as isize,
                    decoded.as_ptr(),
                    cols as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
}

/// `dx[rows, in] = dy[rows, out]·W`, one task per tile of whole-block columns of `W`.
fn tiled_backward(isa: Isa, weight: &QuantizedMatrix, dy: &[f32], rows: usize, dx: &mut [f32]) {
    let [out, cols] = weight.shape();
    let (per_block, block_bytes) = weight.kind().block();
    let blocks = cols / per_block;
    let blocks_per_tile = (TILE_BYTES / (4 * out * per_block)).clamp(1, blocks);
    let per_row = weight.row_bytes();
    let dx_out = SharedOut(dx.as_mut_ptr());
    (0..blocks.div_ceil(blocks_per_tile))
        .into_par_iter()
        .for_each_init(Vec::new, |decoded: &mut Vec<f32>, t| {
            let (b0, b1) = (t * blocks_per_tile, ((t + 1) * blocks_per_tile).min(blocks));
            let width = (b1 - b0) * per_block;
            decoded.resize(out * width, 0.0);
            for (o, values) in decoded.chunks_exact_mut(width).enumerate() {
                let row = &weight.bytes()[o * per_row..(o + 1) * per_row];
                decode_on(
                    isa,
                    weight.kind(),
                    &row[b0 * block_bytes..b1 * block_bytes],
                    values,
                );
            }
            // SAFETY: `dy` is `[rows, out]`, `decoded` is `W[:, c0..c1]` as `[out, width]`,
            // and the destination is columns `c0..c1` of `dx: [rows, cols]`, which no other
            // task writes.
            unsafe {
                gemm::gemm(
                    rows,
                    width,
                    out,
                    dx_out.get().add(b0 * per_block),
                    1,
                    cols as isize,
                    false,
                    dy.as_ptr(),
                    1,
                    out as isize,
                    decoded.as_ptr(),
                    1,
                    width as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
}
