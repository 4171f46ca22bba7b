//! ggml's block formats, one decoder per format, each bit-exact to ggml's `dequantize_row_*`
//! (`ggml/src/ggml-quants.c`): the same integer unpacking and the same f32 operations in the
//! same order. (Each value is rounded once, by its last operation: the products of an f16 scale
//! and the formats' small integers before it fit in f32's 24-bit significand, so they are exact,
//! and reordering them or fusing `d·q − m` into a multiply-add would change no bit. What must
//! match ggml is the unpacking.)
//!
//! [`GgmlType`] names the supported types (ggml ids, names, block sizes). A block holds [`QK`]
//! values (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL) or a super-block of [`QK_K`] values split into
//! sub-blocks of 16 or 32 that share 4- to 8-bit scales (the K-quants and IQ4_XS). Each decoder
//! takes one block's bytes and writes its values, so a kernel that keeps the weights quantised
//! can decode a block at a time; [`dequantize_row`] decodes a run of whole blocks of any
//! supported type, and [`dequantize`] a whole tensor, in parallel. The golden tests in
//! `crates/model/tests/gguf_quants.rs` check every decoder against gguf-py's reference.

use super::f16_at;

/// The ggml tensor types this reader dequantises (block layouts below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    Bf16,
    /// Blocks of 32: f16 scale `d`, 16 bytes of 4-bit values; `x = (q − 8)·d`.
    Q4_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 16 bytes of 4-bit values; `x = q·d + m`.
    Q4_1,
    /// Blocks of 32: f16 scale `d`, 5-bit values; `x = (q − 16)·d`.
    Q5_0,
    /// Blocks of 32: f16 scale `d`, f16 minimum `m`, 5-bit values; `x = q·d + m`.
    Q5_1,
    /// Blocks of 32: f16 scale `d`, 32 signed bytes; `x = q·d`.
    Q8_0,
    /// Super-blocks of 256: 2-bit values, 4-bit scales and minimums per 16.
    Q2K,
    /// Super-blocks of 256: 3-bit values, 6-bit scales per 16.
    Q3K,
    /// Super-blocks of 256: 4-bit values, 6-bit scales and minimums per 32.
    Q4K,
    /// Super-blocks of 256: 5-bit values, 6-bit scales and minimums per 32.
    Q5K,
    /// Super-blocks of 256: 6-bit values, 8-bit scales per 16.
    Q6K,
    /// Blocks of 32: f16 scale `d`, 4-bit indices into a non-uniform grid.
    Iq4Nl,
    /// Super-blocks of 256: IQ4_NL's grid with 6-bit scales per 32.
    Iq4Xs,
}

impl GgmlType {
    /// Every supported type, in ggml id order.
    pub const ALL: [GgmlType; 15] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::Iq4Nl,
        GgmlType::Iq4Xs,
        GgmlType::Bf16,
    ];

    /// The type with ggml id `id`, or a message naming an unsupported or unknown type.
    pub(super) fn from_id(id: u32) -> std::result::Result<Self, String> {
        // ggml's type names by id (`ggml_type`), lower-cased; 4, 5, 31-33 and 36-38 were removed
        // from ggml.
        #[rustfmt::skip]
        const NAMES: [&str; 42] = [
            "f32", "f16", "q4_0", "q4_1", "q4_2", "q4_3", "q5_0", "q5_1", "q8_0", "q8_1", "q2_k",
            "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
            "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "i8", "i16", "i32", "i64", "f64", "iq1_m",
            "bf16", "q4_0_4_4", "q4_0_4_8", "q4_0_8_8", "tq1_0", "tq2_0", "iq4_nl_4_4",
            "iq4_nl_4_8", "iq4_nl_8_8", "mxfp4", "nvfp4", "q1_0",
        ];
        if let Some(kind) = Self::ALL.into_iter().find(|t| t.id() == id) {
            return Ok(kind);
        }
        Err(match NAMES.get(id as usize) {
            Some(name) => {
                let supported: Vec<&str> = Self::ALL.iter().map(|t| t.name()).collect();
                format!(
                    "type {name} (id {id}) is not supported (supported: {})",
                    supported.join(", ")
                )
            }
            None => format!("unknown tensor type {id}"),
        })
    }

    /// The ggml id.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::Iq4Nl => 20,
            GgmlType::Iq4Xs => 23,
            GgmlType::Bf16 => 30,
        }
    }

    /// The ggml type name, lower-cased (`q4_k`, `iq4_nl`, …).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "f32",
            GgmlType::F16 => "f16",
            GgmlType::Q4_0 => "q4_0",
            GgmlType::Q4_1 => "q4_1",
            GgmlType::Q5_0 => "q5_0",
            GgmlType::Q5_1 => "q5_1",
            GgmlType::Q8_0 => "q8_0",
            GgmlType::Q2K => "q2_k",
            GgmlType::Q3K => "q3_k",
            GgmlType::Q4K => "q4_k",
            GgmlType::Q5K => "q5_k",
            GgmlType::Q6K => "q6_k",
            GgmlType::Iq4Nl => "iq4_nl",
            GgmlType::Iq4Xs => "iq4_xs",
            GgmlType::Bf16 => "bf16",
        }
    }

    /// Whether values come in blocks sharing scales (every type but F32, F16 and BF16): the
    /// formats a frozen weight is kept in (`crate::quant`).
    pub fn is_block_format(self) -> bool {
        !matches!(self, GgmlType::F32 | GgmlType::F16 | GgmlType::Bf16)
    }

    /// Bytes of a row of `cols` values (a whole number of blocks).
    pub fn row_bytes(self, cols: usize) -> usize {
        let (per_block, bytes) = self.block();
        cols / per_block * bytes
    }

    /// (values per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::Bf16 => (1, 2),
            GgmlType::Q4_0 => (QK, Q4_0_BYTES),
            GgmlType::Q4_1 => (QK, Q4_1_BYTES),
            GgmlType::Q5_0 => (QK, Q5_0_BYTES),
            GgmlType::Q5_1 => (QK, Q5_1_BYTES),
            GgmlType::Q8_0 => (QK, Q8_0_BYTES),
            GgmlType::Q2K => (QK_K, Q2_K_BYTES),
            GgmlType::Q3K => (QK_K, Q3_K_BYTES),
            GgmlType::Q4K => (QK_K, Q4_K_BYTES),
            GgmlType::Q5K => (QK_K, Q5_K_BYTES),
            GgmlType::Q6K => (QK_K, Q6_K_BYTES),
            GgmlType::Iq4Nl => (QK, IQ4_NL_BYTES),
            GgmlType::Iq4Xs => (QK_K, IQ4_XS_BYTES),
        }
    }
}

/// Values one task of [`dequantize`] decodes: enough that scheduling costs little beside the
/// work, few enough that a large tensor spreads over every core.
const VALUES_PER_TASK: usize = 1 << 16;

/// Dequantises `raw` bytes of type `kind` (a whole number of blocks; a trailing partial block is
/// ignored) to f32, in parallel over runs of whole blocks. A row is a whole number of blocks, so
/// this is the row-by-row result whatever the thread count; the output is the only allocation.
pub fn dequantize(kind: GgmlType, raw: &[u8]) -> Vec<f32> {
    use rayon::prelude::*;
    let (per_block, block_bytes) = kind.block();
    let blocks = raw.len() / block_bytes;
    let mut out = vec![0.0f32; blocks * per_block];
    let blocks_per_task = (VALUES_PER_TASK / per_block).max(1);
    out.par_chunks_mut(blocks_per_task * per_block)
        .zip(raw[..blocks * block_bytes].par_chunks(blocks_per_task * block_bytes))
        .for_each(|(values, bytes)| dequantize_row(kind, bytes, values));
    out
}

/// Values per block of the 32-value formats (Q4_0 … Q8_0, IQ4_NL).
pub const QK: usize = 32;
/// Values per super-block of the K-quants and IQ4_XS.
pub const QK_K: usize = 256;

/// Bytes per Q4_0 block: f16 `d`, 16 bytes of nibbles.
pub const Q4_0_BYTES: usize = 2 + QK / 2;
/// Bytes per Q4_1 block: f16 `d`, f16 `m`, 16 bytes of nibbles.
pub const Q4_1_BYTES: usize = 4 + QK / 2;
/// Bytes per Q5_0 block: f16 `d`, 32 fifth bits, 16 bytes of nibbles.
pub const Q5_0_BYTES: usize = 2 + 4 + QK / 2;
/// Bytes per Q5_1 block: f16 `d`, f16 `m`, 32 fifth bits, 16 bytes of nibbles.
pub const Q5_1_BYTES: usize = 4 + 4 + QK / 2;
/// Bytes per Q8_0 block: f16 `d`, 32 signed bytes.
pub const Q8_0_BYTES: usize = 2 + QK;
/// Bytes per Q2_K super-block: 16 scale/min bytes, 64 bytes of 2-bit values, f16 `d`, f16 `dmin`.
pub const Q2_K_BYTES: usize = QK_K / 16 + QK_K / 4 + 4;
/// Bytes per Q3_K super-block: 32 bytes of high bits, 64 of 2-bit values, 12 of 6-bit scales,
/// f16 `d`.
pub const Q3_K_BYTES: usize = QK_K / 8 + QK_K / 4 + 12 + 2;
/// Bytes per Q4_K super-block: f16 `d`, f16 `dmin`, 12 bytes of 6-bit scales and minimums, 128
/// bytes of nibbles.
pub const Q4_K_BYTES: usize = 4 + 12 + QK_K / 2;
/// Bytes per Q5_K super-block: as Q4_K with 32 bytes of fifth bits before the nibbles.
pub const Q5_K_BYTES: usize = 4 + 12 + QK_K / 8 + QK_K / 2;
/// Bytes per Q6_K super-block: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 signed
/// scales, f16 `d`.
pub const Q6_K_BYTES: usize = QK_K / 2 + QK_K / 4 + QK_K / 16 + 2;
/// Bytes per IQ4_NL block: f16 `d`, 16 bytes of indices into [`IQ4_NL_VALUES`].
pub const IQ4_NL_BYTES: usize = 2 + QK / 2;
/// Bytes per IQ4_XS super-block: f16 `d`, u16 of high scale bits, 4 bytes of low scale bits, 128
/// bytes of indices into [`IQ4_NL_VALUES`].
pub const IQ4_XS_BYTES: usize = 2 + 2 + QK_K / 64 + QK_K / 2;

/// The 16 levels of IQ4_NL and IQ4_XS (`kvalues_iq4nl`), a non-uniform 4-bit grid.
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Q4_0: `x = (q − 8)·d`; byte j holds value j (low nibble) and value j + 16 (high nibble).
#[inline]
pub fn q4_0(block: &[u8; Q4_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let (low, high) = out.split_at_mut(QK / 2);
    for ((&q, lo), hi) in block[2..].iter().zip(low).zip(high) {
        *lo = ((q & 0x0f) as i32 - 8) as f32 * d;
        *hi = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: `x = q·d + m`, nibbles laid out as in [`q4_0`].
#[inline]
pub fn q4_1(block: &[u8; Q4_1_BYTES], out: &mut [f32; QK]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    let (low, high) = out.split_at_mut(QK / 2);
    for ((&q, lo), hi) in block[4..].iter().zip(low).zip(high) {
        *lo = (q & 0x0f) as f32 * d + m;
        *hi = (q >> 4) as f32 * d + m;
    }
}

/// The 5-bit values j and j + 16 of a Q5 block: nibbles as in [`q4_0`], bit 4 of value i in bit
/// i of the little-endian u32 `qh`.
#[inline]
fn five_bit_pair(q: u8, qh: u32, j: usize) -> (u32, u32) {
    let high_0 = ((qh >> j) << 4) & 0x10;
    let high_1 = (qh >> (j + 12)) & 0x10;
    ((q & 0x0f) as u32 | high_0, (q >> 4) as u32 | high_1)
}

/// Q5_0: `x = (q − 16)·d` with 5-bit `q`.
#[inline]
pub fn q5_0(block: &[u8; Q5_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    for (j, &q) in block[6..].iter().enumerate() {
        let (x0, x1) = five_bit_pair(q, qh, j);
        out[j] = (x0 as i32 - 16) as f32 * d;
        out[j + QK / 2] = (x1 as i32 - 16) as f32 * d;
    }
}

/// Q5_1: `x = q·d + m` with 5-bit `q`.
#[inline]
pub fn q5_1(block: &[u8; Q5_1_BYTES], out: &mut [f32; QK]) {
    let (d, m) = (f16_at(block, 0), f16_at(block, 2));
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    for (j, &q) in block[8..].iter().enumerate() {
        let (x0, x1) = five_bit_pair(q, qh, j);
        out[j] = x0 as f32 * d + m;
        out[j + QK / 2] = x1 as f32 * d + m;
    }
}

/// Q8_0: `x = q·d` with signed 8-bit `q`.
#[inline]
pub fn q8_0(block: &[u8; Q8_0_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    for (x, &q) in out.iter_mut().zip(&block[2..]) {
        *x = q as i8 as f32 * d;
    }
}

/// IQ4_NL: `x = d·IQ4_NL_VALUES[q]`, indices laid out as the nibbles of [`q4_0`].
#[inline]
pub fn iq4_nl(block: &[u8; IQ4_NL_BYTES], out: &mut [f32; QK]) {
    let d = f16_at(block, 0);
    let (low, high) = out.split_at_mut(QK / 2);
    for ((&q, lo), hi) in block[2..].iter().zip(low).zip(high) {
        *lo = d * IQ4_NL_VALUES[(q & 0x0f) as usize] as f32;
        *hi = d * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
    }
}

/// Q2_K: 16 sub-blocks of 16; sub-block s has scale byte `scales[s]` (low nibble scales `d`,
/// high nibble scales `dmin`) and `x = (d·sc)·q − dmin·m` with 2-bit `q`. Each 128 values take
/// 32 bytes of `qs`, bit pair 2j of byte l holding value 32j + l.
#[inline]
pub fn q2_k(block: &[u8; Q2_K_BYTES], out: &mut [f32; QK_K]) {
    let (scales, rest) = block.split_at(QK_K / 16);
    let qs = &rest[..QK_K / 4];
    let (d, min) = (f16_at(block, 80), f16_at(block, 82));
    for (s, (&sc, y)) in scales.iter().zip(out.chunks_exact_mut(16)).enumerate() {
        let (dl, ml) = (d * (sc & 0x0f) as f32, min * (sc >> 4) as f32);
        let shift = 2 * ((s % 8) / 2);
        let start = 32 * (s / 8) + 16 * (s % 2);
        for (x, &q) in y.iter_mut().zip(&qs[start..start + 16]) {
            *x = dl * ((q >> shift) & 3) as f32 - ml;
        }
    }
}

/// The 16 signed 6-bit scales of a Q3_K super-block: the low nibbles of bytes 0..8 then their
/// high nibbles, each topped with a 2-bit pair of bytes 8..12, minus 32.
#[inline]
fn q3_k_scales(packed: &[u8]) -> [i32; 16] {
    std::array::from_fn(|s| {
        let low = if s < 8 {
            packed[s] & 0x0f
        } else {
            packed[s - 8] >> 4
        };
        let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        (low | (high << 4)) as i32 - 32
    })
}

/// Q3_K: 16 sub-blocks of 16, `x = (d·sc)·q` with signed 6-bit `sc` and 3-bit `q`: two bits as in
/// [`q2_k`], and 4 subtracted unless bit (value / 32) of `hmask[value % 32]` is set.
#[inline]
pub fn q3_k(block: &[u8; Q3_K_BYTES], out: &mut [f32; QK_K]) {
    let (hmask, rest) = block.split_at(QK_K / 8);
    let (qs, rest) = rest.split_at(QK_K / 4);
    let scales = q3_k_scales(&rest[..12]);
    let d = f16_at(block, 108);
    for (s, (&sc, y)) in scales.iter().zip(out.chunks_exact_mut(16)).enumerate() {
        let dl = d * sc as f32;
        let shift = 2 * ((s % 8) / 2);
        let start = 32 * (s / 8) + 16 * (s % 2);
        let bit = 1u8 << (s / 2);
        for (l, x) in (start..start + 16).zip(y) {
            let low = ((qs[l] >> shift) & 3) as i32;
            let offset = if hmask[l % 32] & bit != 0 { 0 } else { 4 };
            *x = dl * (low - offset) as f32;
        }
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K or Q5_K super-block
/// (`get_scale_min_k4`): sub-blocks 0..4 in the low six bits of bytes j and j + 4, sub-blocks
/// 4..8 in the nibbles of byte j + 4 topped with the top two bits of bytes j − 4 and j.
#[inline]
fn scale_min_k4(j: usize, packed: &[u8]) -> (u8, u8) {
    if j < 4 {
        (packed[j] & 63, packed[j + 4] & 63)
    } else {
        (
            (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
            (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
        )
    }
}

/// The (scale, minimum) pairs `(d·sc, dmin·m)` of the two sub-blocks of 32 that the 64 values
/// from `pair`·64 span in a Q4_K or Q5_K super-block.
#[inline]
fn k4_factors(block: &[u8], pair: usize) -> [(f32, f32); 2] {
    let (d, min) = (f16_at(block, 0), f16_at(block, 2));
    let packed = &block[4..16];
    [2 * pair, 2 * pair + 1].map(|j| {
        let (sc, m) = scale_min_k4(j, packed);
        (d * sc as f32, min * m as f32)
    })
}

/// Q4_K: 8 sub-blocks of 32, `x = (d·sc)·q − dmin·m` with 6-bit `sc`, `m` and 4-bit `q`. Each 64
/// values take 32 bytes: the low nibbles are the first 32 values, the high nibbles the next.
#[inline]
pub fn q4_k(block: &[u8; Q4_K_BYTES], out: &mut [f32; QK_K]) {
    let qs = &block[16..];
    for (pair, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let [(d1, m1), (d2, m2)] = k4_factors(block, pair);
        let (low, high) = y.split_at_mut(32);
        for ((&q, lo), hi) in q.iter().zip(low).zip(high) {
            *lo = d1 * (q & 0x0f) as f32 - m1;
            *hi = d2 * (q >> 4) as f32 - m2;
        }
    }
}

/// Q5_K: as [`q4_k`] with 5-bit `q`: bit 4 of value 32s + l is bit s of `qh[l]`.
#[inline]
pub fn q5_k(block: &[u8; Q5_K_BYTES], out: &mut [f32; QK_K]) {
    let qh = &block[16..48];
    let qs = &block[48..];
    for (pair, (q, y)) in qs
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(64))
        .enumerate()
    {
        let [(d1, m1), (d2, m2)] = k4_factors(block, pair);
        let (bit1, bit2) = (1u8 << (2 * pair), 2u8 << (2 * pair));
        let (low, high) = y.split_at_mut(32);
        for (((&q, &h), lo), hi) in q.iter().zip(qh).zip(low).zip(high) {
            let fifth1 = if h & bit1 != 0 { 16 } else { 0 };
            let fifth2 = if h & bit2 != 0 { 16 } else { 0 };
            *lo = d1 * ((q & 0x0f) + fifth1) as f32 - m1;
            *hi = d2 * ((q >> 4) + fifth2) as f32 - m2;
        }
    }
}

/// Q6_K: 16 sub-blocks of 16, `x = (d·sc)·(q − 32)` with signed 8-bit `sc` and 6-bit `q`. Each
/// 128 values take 64 bytes of `ql` and 32 of `qh`: value 32k + l has the low (k < 2) or high
/// nibble of `ql[l + 32·(k % 2)]` and bits 2k, 2k + 1 of `qh[l]`.
#[inline]
pub fn q6_k(block: &[u8; Q6_K_BYTES], out: &mut [f32; QK_K]) {
    let (ql, rest) = block.split_at(QK_K / 2);
    let (qh, rest) = rest.split_at(QK_K / 4);
    let scales = &rest[..QK_K / 16];
    let d = f16_at(block, 208);
    for (half, y) in out.chunks_exact_mut(128).enumerate() {
        let (ql, qh) = (
            &ql[64 * half..64 * half + 64],
            &qh[32 * half..32 * half + 32],
        );
        let sc = &scales[8 * half..8 * half + 8];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0f) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, q) in q.into_iter().enumerate() {
                y[l + 32 * k] = d * sc[is + 2 * k] as i8 as f32 * (q as i32 - 32) as f32;
            }
        }
    }
}

/// IQ4_XS: 8 sub-blocks of 32, `x = (d·(ls − 32))·IQ4_NL_VALUES[q]` with 6-bit `ls` (its low
/// nibble in `scales_l`, its top two bits in the u16 `scales_h`); indices as in [`iq4_nl`].
#[inline]
pub fn iq4_xs(block: &[u8; IQ4_XS_BYTES], out: &mut [f32; QK_K]) {
    let d = f16_at(block, 0);
    let scales_h = u16::from_le_bytes([block[2], block[3]]);
    let scales_l = &block[4..8];
    let qs = &block[8..];
    for (ib, (q, y)) in qs
        .chunks_exact(16)
        .zip(out.chunks_exact_mut(32))
        .enumerate()
    {
        let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f;
        let high = ((scales_h >> (2 * ib)) & 3) as u8;
        let dl = d * ((low | (high << 4)) as i32 - 32) as f32;
        let (lo_half, hi_half) = y.split_at_mut(16);
        for ((&q, lo), hi) in q.iter().zip(lo_half).zip(hi_half) {
            *lo = dl * IQ4_NL_VALUES[(q & 0x0f) as usize] as f32;
            *hi = dl * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
        }
    }
}

/// Decodes every whole block of `raw` with `decode` into the matching values of `out`.
fn each_block<const BYTES: usize, const VALUES: usize>(
    raw: &[u8],
    out: &mut [f32],
    decode: impl Fn(&[u8; BYTES], &mut [f32; VALUES]),
) {
    let (blocks, _) = raw.as_chunks::<BYTES>();
    let (values, _) = out.as_chunks_mut::<VALUES>();
    for (block, values) in blocks.iter().zip(values) {
        decode(block, values);
    }
}

/// Decodes `raw`, whole blocks of `kind`, into `out`, which holds their values (blocks × values
/// per block; the shorter of the two bounds the work).
pub fn dequantize_row(kind: GgmlType, raw: &[u8], out: &mut [f32]) {
    match kind {
        GgmlType::F32 => each_block(raw, out, |b: &[u8; 4], x: &mut [f32; 1]| {
            x[0] = f32::from_le_bytes(*b);
        }),
        GgmlType::F16 => each_block(raw, out, |b: &[u8; 2], x: &mut [f32; 1]| {
            x[0] = f16_at(b, 0);
        }),
        GgmlType::Bf16 => each_block(raw, out, |b: &[u8; 2], x: &mut [f32; 1]| {
            x[0] = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
        }),
        GgmlType::Q4_0 => each_block(raw, out, q4_0),
        GgmlType::Q4_1 => each_block(raw, out, q4_1),
        GgmlType::Q5_0 => each_block(raw, out, q5_0),
        GgmlType::Q5_1 => each_block(raw, out, q5_1),
        GgmlType::Q8_0 => each_block(raw, out, q8_0),
        GgmlType::Q2K => each_block(raw, out, q2_k),
        GgmlType::Q3K => each_block(raw, out, q3_k),
        GgmlType::Q4K => each_block(raw, out, q4_k),
        GgmlType::Q5K => each_block(raw, out, q5_k),
        GgmlType::Q6K => each_block(raw, out, q6_k),
        GgmlType::Iq4Nl => each_block(raw, out, iq4_nl),
        GgmlType::Iq4Xs => each_block(raw, out, iq4_xs),
    }
}
