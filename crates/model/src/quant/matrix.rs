//! A frozen weight matrix kept in a ggml block format: the bytes as the GGUF file holds them
//! (shared with the memory-mapped file, not copied) or as [`super::quantize`] wrote them.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use crate::gguf::quants::{GgmlType, dequantize_row};

/// Bytes shared by every matrix cut from one buffer (a memory-mapped GGUF file, or an owned
/// vector), so that a matrix is a cheap handle.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} shared bytes", self.range.len())
    }
}

impl SharedBytes {
    /// All of `owner`'s bytes.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        let len = (*owner).as_ref().len();
        Self {
            owner,
            range: 0..len,
        }
    }

    /// An owned buffer.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        Self::new(Arc::new(bytes))
    }

    /// The bytes `range` of this view (relative to its start).
    ///
    /// # Panics
    /// When `range` reaches past the end of the view.
    pub fn slice(&self, range: Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= self.range.len());
        Self {
            owner: Arc::clone(&self.owner),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

/// A `[rows, cols]` matrix (a linear layer's `[out, in]` weight, Hugging Face's layout and
/// ggml's) stored row by row in the blocks of one ggml type. Each row is a whole number of
/// blocks, so a row, or a run of rows, decodes on its own.
#[derive(Clone)]
pub struct QuantizedMatrix {
    kind: GgmlType,
    rows: usize,
    cols: usize,
    bytes: SharedBytes,
}

impl fmt::Debug for QuantizedMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}, {}]", self.kind.name(), self.rows, self.cols)
    }
}

impl QuantizedMatrix {
    /// A matrix over `bytes`, checked: `kind` is a block format, `cols` a whole number of its
    /// blocks, and `bytes` exactly `rows` rows long.
    pub fn new(
        kind: GgmlType,
        rows: usize,
        cols: usize,
        bytes: SharedBytes,
    ) -> Result<Self, String> {
        if !kind.is_block_format() {
            return Err(format!("{} is not a block format", kind.name()));
        }
        let (per_block, _) = kind.block();
        if cols == 0 || !cols.is_multiple_of(per_block) {
            return Err(format!(
                "{cols} columns are not a whole number of {} blocks of {per_block}",
                kind.name()
            ));
        }
        let want = rows
            .checked_mul(kind.row_bytes(cols))
            .ok_or_else(|| format!("{rows} × {cols} overflows"))?;
        let have = bytes.as_slice().len();
        if have != want {
            return Err(format!(
                "{have} bytes for a {} matrix of {rows} × {cols}, which takes {want}",
                kind.name()
            ));
        }
        Ok(Self {
            kind,
            rows,
            cols,
            bytes,
        })
    }

    /// The block format.
    pub fn kind(&self) -> GgmlType {
        self.kind
    }

    /// `[rows, cols]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }

    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.kind.row_bytes(self.cols)
    }

    /// All the rows' bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// The bytes of rows `range`.
    pub fn rows_bytes(&self, range: Range<usize>) -> &[u8] {
        let per_row = self.row_bytes();
        &self.bytes()[range.start * per_row..range.end * per_row]
    }

    /// The f32 values, row-major `[rows, cols]`: exactly ggml's `dequantize_row_*`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.rows * self.cols];
        let per_row = self.row_bytes();
        out.par_chunks_mut(self.cols)
            .zip(self.bytes().par_chunks(per_row))
            .for_each(|(values, raw)| dequantize_row(self.kind, raw, values));
        out
    }

    /// The first row holding a non-finite value once decoded (a NaN or infinite scale), found
    /// without keeping the decoded values.
    pub fn first_non_finite_row(&self) -> Option<usize> {
        let per_row = self.row_bytes();
        self.bytes()
            .par_chunks(per_row)
            .enumerate()
            .map_init(
                || vec![0.0f32; self.cols],
                |values, (row, raw)| {
                    dequantize_row(self.kind, raw, values);
                    values.iter().any(|v| !v.is_finite()).then_some(row)
                },
            )
            .flatten()
            .min()
    }

    /// The same matrix with its rows reordered: row `i` of the result is row `order[i]` of
    /// this one (llama.cpp's rotary permutation of Q/K rows, undone). The bytes are copied.
    pub fn permute_rows(&self, order: &[usize]) -> Self {
        assert_eq!(order.len(), self.rows, "one source row per row");
        let per_row = self.row_bytes();
        let mut bytes = Vec::with_capacity(self.bytes().len());
        for &from in order {
            bytes.extend_from_slice(&self.bytes()[from * per_row..(from + 1) * per_row]);
        }
        Self {
            bytes: SharedBytes::from_vec(bytes),
            ..self.clone()
        }
    }
}
