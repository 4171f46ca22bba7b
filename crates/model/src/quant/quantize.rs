//! f32 → ggml block formats, for `--quantize` (a Hugging Face model's frozen weights) and the
//! benchmarks' random 7B-shape bases.
//!
//! Q8_0 and Q4_0 are ggml's reference quantizers (`quantize_row_q8_0_ref`,
//! `quantize_row_q4_0_ref`). Q4_K uses each sub-block's range: per 32 values a scale
//! `(max − min)/15` and an offset `−min` (with `min ≤ 0`), both rounded to 6 bits of the
//! super-block's f16 `d` and `dmin`, then each value to the nearest of its 16 levels. It is
//! simpler than llama.cpp's iterative `make_qkx2_quants` (which searches for the scale that
//! minimises the squared error), so its error is somewhat larger, but the blocks are the same
//! format and decode with the same code.

use half::f16;

use super::{QuantizedMatrix, SharedBytes};
use crate::gguf::quants::{GgmlType, Q4_0_BYTES, Q4_K_BYTES, Q8_0_BYTES, QK, QK_K};

/// The formats [`quantize`] writes.
pub const QUANTIZE_TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4K, GgmlType::Q4_0];

/// Quantizes `values`, row-major `[rows, cols]`, to `kind` (one of [`QUANTIZE_TYPES`]); `cols`
/// must be a whole number of the format's blocks.
pub fn quantize(
    kind: GgmlType,
    values: &[f32],
    rows: usize,
    cols: usize,
) -> Result<QuantizedMatrix, String> {
    assert_eq!(values.len(), rows * cols, "values are [rows, cols]");
    let (per_block, block_bytes) = kind.block();
    if !QUANTIZE_TYPES.contains(&kind) {
        return Err(format!("cannot quantize to {}", kind.name()));
    }
    if cols == 0 || !cols.is_multiple_of(per_block) {
        return Err(format!(
            "{cols} columns are not a whole number of {} blocks of {per_block}",
            kind.name()
        ));
    }
    let mut bytes = vec![0u8; values.len() / per_block * block_bytes];
    {
        use rayon::prelude::*;
        let encode = match kind {
            GgmlType::Q8_0 => encode_blocks::<Q8_0_BYTES, QK>(q8_0),
            GgmlType::Q4_0 => encode_blocks::<Q4_0_BYTES, QK>(q4_0),
            _ => encode_blocks::<Q4_K_BYTES, QK_K>(q4_k),
        };
        bytes
            .par_chunks_mut(cols / per_block * block_bytes)
            .zip(values.par_chunks(cols))
            .for_each(|(out, row)| encode(row, out));
    }
    QuantizedMatrix::new(kind, rows, cols, SharedBytes::from_vec(bytes))
}

type RowEncoder = Box<dyn Fn(&[f32], &mut [u8]) + Send + Sync>;

fn encode_blocks<const BYTES: usize, const VALUES: usize>(
    encode: fn(&[f32; VALUES], &mut [u8; BYTES]),
) -> RowEncoder {
    Box::new(move |row, out| {
        let (values, _) = row.as_chunks::<VALUES>();
        let (blocks, _) = out.as_chunks_mut::<BYTES>();
        for (values, block) in values.iter().zip(blocks) {
            encode(values, block);
        }
    })
}

fn put_f16(out: &mut [u8], value: f32) {
    out[..2].copy_from_slice(&f16::from_f32(value).to_bits().to_le_bytes());
}

/// ggml's `quantize_row_q8_0_ref`: `d = max|x|/127`, `q = round(x/d)`.
fn q8_0(x: &[f32; QK], out: &mut [u8; Q8_0_BYTES]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    for (q, &v) in out[2..].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

/// ggml's `quantize_row_q4_0_ref`: the value of largest magnitude maps to −8.
fn q4_0(x: &[f32; QK], out: &mut [u8; Q4_0_BYTES]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    let level = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for j in 0..QK / 2 {
        out[2 + j] = level(x[j]) | (level(x[j + QK / 2]) << 4);
    }
}

/// Q4_K: per sub-block of 32 a 6-bit scale and offset of the super-block's `d` and `dmin`.
fn q4_k(x: &[f32; QK_K], out: &mut [u8; Q4_K_BYTES]) {
    let mut scales = [0.0f32; 8];
    let mut offsets = [0.0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let min = sub.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
        let max = sub.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        scales[j] = (max - min) / 15.0;
        offsets[j] = -min;
    }
    let max_scale = scales.iter().fold(0.0f32, |m, &v| m.max(v));
    let max_offset = offsets.iter().fold(0.0f32, |m, &v| m.max(v));
    // The f16 factors as the decoder will read them back.
    let d = f16::from_f32(max_scale / 63.0).to_f32();
    let dmin = f16::from_f32(max_offset / 63.0).to_f32();
    let six_bits = |v: f32, unit: f32| -> u8 {
        if unit > 0.0 {
            (v / unit).round().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = std::array::from_fn(|j| six_bits(scales[j], d));
    let m: [u8; 8] = std::array::from_fn(|j| six_bits(offsets[j], dmin));
    put_f16(&mut out[0..2], d);
    put_f16(&mut out[2..4], dmin);
    // ggml's `get_scale_min_k4` packing, inverted.
    let packed = &mut out[4..16];
    packed.fill(0);
    for j in 0..8 {
        if j < 4 {
            packed[j] = sc[j];
            packed[j + 4] = m[j];
        } else {
            packed[j + 4] = (sc[j] & 0x0f) | ((m[j] & 0x0f) << 4);
            packed[j - 4] |= (sc[j] >> 4) << 6;
            packed[j] |= (m[j] >> 4) << 6;
        }
    }
    let mut q = [0u8; QK_K];
    for (j, (sub, q)) in x.chunks_exact(32).zip(q.chunks_exact_mut(32)).enumerate() {
        let step = d * sc[j] as f32;
        let offset = dmin * m[j] as f32;
        for (q, &v) in q.iter_mut().zip(sub) {
            *q = if step > 0.0 {
                ((v + offset) / step).round().clamp(0.0, 15.0) as u8
            } else {
                0
            };
        }
    }
    let qs = &mut out[16..];
    for (bytes, q) in qs.chunks_exact_mut(32).zip(q.chunks_exact(64)) {
        for l in 0..32 {
            bytes[l] = q[l] | (q[l + 32] << 4);
        }
    }
}
