//! Where things are in a GGUF file, computed with checked arithmetic: every count, alignment,
//! offset and size comes from the file itself, so each is checked against the file's length
//! before it sizes an allocation or indexes the bytes. A value that would overflow, wrap around
//! or point past the end is a format error, never a panic or a read of the wrong bytes.

use std::ops::Range;

use super::{GgufTensorInfo, GgufValue};

/// Fewest bytes one tensor-directory entry takes: name length (8), rank (4), one dimension (8),
/// type (4), offset (8).
pub(super) const MIN_TENSOR_ENTRY_BYTES: u64 = 32;
/// Fewest bytes one metadata entry takes: key length (8), value type (4), a one-byte value.
pub(super) const MIN_METADATA_ENTRY_BYTES: u64 = 13;
/// Largest `general.alignment` accepted (llama.cpp writes 32; anything past 1 MiB is forged).
const MAX_ALIGNMENT: u64 = 1 << 20;

/// Fewest bytes one array element of value type `kind` takes (strings: their 8-byte length).
pub(super) fn min_value_bytes(kind: u32) -> u64 {
    match kind {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        // Nested arrays and unknown types are refused when the first element is read.
        _ => 1,
    }
}

/// Checks that `count` items of at least `min_bytes` each fit in the `remaining` bytes.
pub(super) fn check_count(count: u64, min_bytes: u64, remaining: usize) -> Result<usize, String> {
    match count.checked_mul(min_bytes) {
        Some(total) if total <= remaining as u64 => Ok(count as usize),
        _ => Err(format!(
            "count {count} cannot fit in the {remaining} bytes left in the file"
        )),
    }
}

/// The data section's alignment: `general.alignment` (a power of two, at most 1 MiB) or 32.
pub(super) fn alignment(value: Option<&GgufValue>) -> Result<u64, String> {
    let Some(value) = value else {
        return Ok(super::DEFAULT_ALIGNMENT);
    };
    match value.as_u64() {
        Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => Ok(a),
        _ => Err(format!(
            "metadata general.alignment: {value:?} is not a power of two up to {MAX_ALIGNMENT}"
        )),
    }
}

/// The first byte of the data section: the end of the directory rounded up to `alignment`.
pub(super) fn data_start(
    directory_end: usize,
    alignment: u64,
    file_len: usize,
) -> Result<usize, String> {
    (directory_end as u64)
        .checked_next_multiple_of(alignment)
        .filter(|&start| start <= file_len as u64)
        .map(|start| start as usize)
        .ok_or_else(|| {
            format!("the data section (aligned to {alignment}) starts past the end of the file")
        })
}

/// The byte range of one tensor's data, checked against the block size and the file's length.
pub(super) fn tensor_extent(
    info: &GgufTensorInfo,
    data_start: usize,
    file_len: usize,
) -> Result<Range<usize>, String> {
    let (per_block, block_bytes) = info.kind.block();
    let inner = info.dims[0];
    if !inner.is_multiple_of(per_block) {
        return Err(format!(
            "tensor {}: innermost dimension {inner} is not a multiple of the {} block size {per_block}",
            info.name,
            info.kind.name()
        ));
    }
    let too_big = || {
        format!(
            "tensor {}: dimensions {:?} of type {} do not fit in the file ({file_len} bytes)",
            info.name,
            info.dims,
            info.kind.name()
        )
    };
    let size = info
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .map(|count| count / per_block)
        .and_then(|blocks| blocks.checked_mul(block_bytes))
        .ok_or_else(too_big)?;
    let start = (data_start as u64).checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(size as u64));
    match (start, end) {
        (Some(start), Some(end)) if end <= file_len as u64 => Ok(start as usize..end as usize),
        (Some(start), Some(end)) => Err(format!(
            "tensor {}: data at bytes {start}..{end} runs past the end of the file ({file_len} bytes; truncated?)",
            info.name
        )),
        _ => Err(format!(
            "tensor {}: data at offset {} (+{size} bytes) after the data start {data_start} runs past the end of the file ({file_len} bytes)",
            info.name, info.offset
        )),
    }
}

/// Rows of the embedding (`token_embd.weight` is `[rows, width]` in ggml order `[width, rows]`).
pub(super) fn embedding_rows(info: &GgufTensorInfo) -> Result<usize, String> {
    match info.dims.as_slice() {
        [_, rows] => Ok(*rows),
        dims => Err(format!(
            "tensor {}: dimensions {dims:?}, expected a matrix [width, vocabulary]",
            info.name
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::GgmlType;
    use super::*;

    fn info(dims: Vec<usize>, offset: u64) -> GgufTensorInfo {
        GgufTensorInfo {
            name: "t".into(),
            dims,
            kind: GgmlType::F32,
            offset,
        }
    }

    #[test]
    fn extents_that_wrap_or_overflow_are_refused() {
        assert_eq!(tensor_extent(&info(vec![2, 2], 0), 64, 80), Ok(64..80));
        assert!(tensor_extent(&info(vec![2, 2], u64::MAX - 7), 64, 80).is_err());
        assert!(tensor_extent(&info(vec![usize::MAX, 2], 0), 64, 80).is_err());
        assert!(tensor_extent(&info(vec![2, 2], 1), 64, 80).is_err());
    }

    #[test]
    fn block_format_extents_are_whole_blocks_per_row() {
        let typed = |kind, dims: Vec<usize>| GgufTensorInfo {
            kind,
            ..info(dims, 0)
        };
        // Three rows of two Q6_K super-blocks (210 bytes each), three of sixteen Q5_0 blocks (22).
        assert_eq!(
            tensor_extent(&typed(GgmlType::Q6K, vec![512, 3]), 64, 64 + 1260),
            Ok(64..64 + 1260)
        );
        assert_eq!(
            tensor_extent(&typed(GgmlType::Q5_0, vec![512, 3]), 64, 64 + 1056),
            Ok(64..64 + 1056)
        );
        assert!(tensor_extent(&typed(GgmlType::Q6K, vec![512, 3]), 64, 64 + 1259).is_err());
        assert!(tensor_extent(&typed(GgmlType::Q4K, vec![128, 3]), 64, 1 << 20).is_err());
        assert!(
            tensor_extent(
                &typed(GgmlType::Iq4Xs, vec![256, usize::MAX / 2]),
                64,
                1 << 20
            )
            .is_err()
        );
    }

    #[test]
    fn alignment_must_be_a_small_power_of_two() {
        assert_eq!(alignment(None), Ok(32));
        assert_eq!(alignment(Some(&GgufValue::Uint(64))), Ok(64));
        for bad in [0, 3, u64::MAX, 1 << 40] {
            assert!(alignment(Some(&GgufValue::Uint(bad))).is_err(), "{bad}");
        }
        assert!(data_start(100, 1 << 20, 200).is_err());
        assert_eq!(data_start(100, 32, 200), Ok(128));
    }

    #[test]
    fn counts_are_bounded_by_the_bytes_left() {
        assert_eq!(check_count(3, 32, 96), Ok(3));
        assert!(check_count(4, 32, 96).is_err());
        assert!(check_count(u64::MAX, 32, 96).is_err());
    }
}
