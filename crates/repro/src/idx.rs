//! The IDX file format of MNIST and Fashion-MNIST, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header — two zero bytes, a type byte (0x08 for unsigned bytes,
//! the only type these data sets use), the number of dimensions `d` — then `d` u32 sizes, then
//! the values in row-major order. A gzip file is recognised by its own magic bytes (1f 8b),
//! whatever its name. Every malformed file gets a one-line error naming the file and what is
//! wrong: the magic number, the type, or how many bytes the header promised and how many there
//! are.
//!
//! ```
//! use softalign_repro::idx::{IdxArray, parse_idx};
//! let bytes = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
//! let array = parse_idx(&bytes, "inline".as_ref()).unwrap();
//! assert_eq!(array, IdxArray { dims: vec![2, 3], data: vec![1, 2, 3, 4, 5, 6] });
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ReproError;

/// The type byte of unsigned 8-bit data.
const TYPE_U8: u8 = 0x08;
/// The first two bytes of a gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// An array of unsigned bytes read from an IDX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes of the dimensions, outermost first (e.g. `[60000, 28, 28]`).
    pub dims: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The number of items along the first dimension (images or labels).
    pub fn len(&self) -> usize {
        self.dims.first().copied().unwrap_or(0)
    }

    /// Whether the array holds no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per item: the product of the dimensions after the first (1 for labels).
    pub fn item_size(&self) -> usize {
        self.dims.iter().skip(1).product()
    }
}

/// Reads an IDX file, decompressing it first if it is gzip.
pub fn read_idx(path: &Path) -> Result<IdxArray, ReproError> {
    let io = |source| ReproError::Io {
        path: path.to_path_buf(),
        cause: source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if raw.starts_with(&GZIP_MAGIC) {
        let mut bytes = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut bytes)
            .map_err(|e| format_error(path, format!("gzip stream is corrupt or truncated: {e}")))?;
        parse_idx(&bytes, path)
    } else {
        parse_idx(&raw, path)
    }
}

/// Parses the bytes of an (uncompressed) IDX file; `path` names it in errors.
pub fn parse_idx(bytes: &[u8], path: &Path) -> Result<IdxArray, ReproError> {
    if bytes.len() < 4 {
        return Err(format_error(
            path,
            format!(
                "truncated: {} bytes, shorter than the 4-byte magic number",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format_error(
            path,
            format!(
                "wrong magic number {:02x} {:02x} {:02x} {:02x}: not an IDX file (expected 00 00 08 0d)",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    if bytes[2] != TYPE_U8 {
        return Err(format_error(
            path,
            format!(
                "magic number: data type 0x{:02x} is not supported (only 0x08, unsigned bytes)",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    if rank == 0 {
        return Err(format_error(
            path,
            "magic number: zero dimensions".to_string(),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(format_error(
            path,
            format!(
                "truncated header: {} bytes, {rank} dimensions need {header}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| format_error(path, format!("dimensions {dims:?} overflow")))?;
    let found = bytes.len() - header;
    if found < expected {
        return Err(format_error(
            path,
            format!("truncated: dimensions {dims:?} need {expected} data bytes, found {found}"),
        ));
    }
    if found > expected {
        return Err(format_error(
            path,
            format!(
                "{} trailing bytes after the {expected} data bytes of dimensions {dims:?}",
                found - expected
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Encodes an array as IDX bytes (unsigned-byte type), the inverse of [`parse_idx`].
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut bytes = vec![0, 0, TYPE_U8, array.dims.len() as u8];
    for &d in &array.dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(&array.data);
    bytes
}

fn format_error(path: &Path, message: String) -> ReproError {
    ReproError::Format {
        path: PathBuf::from(path),
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn images() -> IdxArray {
        IdxArray {
            dims: vec![3, 2, 2],
            data: (0..12).map(|i| i * 20).collect(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("softalign-idx-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn message(result: Result<IdxArray, ReproError>) -> String {
        result.expect_err("the file is malformed").to_string()
    }

    #[test]
    fn reads_a_plain_file_it_wrote() {
        let path = temp_dir("plain").join("images-idx3-ubyte");
        std::fs::write(&path, encode_idx(&images())).unwrap();
        let array = read_idx(&path).unwrap();
        assert_eq!(array, images());
        assert_eq!((array.len(), array.item_size()), (3, 4));
    }

    #[test]
    fn reads_a_gzip_file_it_wrote_whatever_its_name() {
        let path = temp_dir("gzip").join("labels-no-gz-suffix");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let labels = IdxArray {
            dims: vec![5],
            data: vec![7, 2, 1, 0, 4],
        };
        encoder.write_all(&encode_idx(&labels)).unwrap();
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&path).unwrap(), labels);
    }

    #[test]
    fn wrong_magic_is_named() {
        let mut bytes = encode_idx(&images());
        bytes[0] = 0x50; // "PK…": a zip file, say
        let text = message(parse_idx(&bytes, Path::new("x.idx")));
        assert!(
            text.starts_with("x.idx: wrong magic number 50 00 08 03"),
            "{text}"
        );
        let mut bytes = encode_idx(&images());
        bytes[2] = 0x0d; // float data
        let text = message(parse_idx(&bytes, Path::new("x.idx")));
        assert!(text.contains("data type 0x0d is not supported"), "{text}");
    }

    #[test]
    fn truncated_data_and_header_are_named_with_sizes() {
        let bytes = encode_idx(&images());
        let text = message(parse_idx(&bytes[..bytes.len() - 5], Path::new("t.idx")));
        assert_eq!(
            text,
            "t.idx: truncated: dimensions [3, 2, 2] need 12 data bytes, found 7"
        );
        let text = message(parse_idx(&bytes[..9], Path::new("t.idx")));
        assert_eq!(
            text,
            "t.idx: truncated header: 9 bytes, 3 dimensions need 16"
        );
        let text = message(parse_idx(&bytes[..2], Path::new("t.idx")));
        assert!(text.contains("truncated: 2 bytes"), "{text}");
        let mut long = bytes.clone();
        long.push(0);
        assert!(message(parse_idx(&long, Path::new("t.idx"))).contains("1 trailing bytes"));
    }

    #[test]
    fn truncated_gzip_is_named() {
        let path = temp_dir("gzip-cut").join("cut.gz");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&encode_idx(&images())).unwrap();
        let compressed = encoder.finish().unwrap();
        std::fs::write(&path, &compressed[..compressed.len() / 2]).unwrap();
        let text = message(read_idx(&path));
        assert!(
            text.contains("cut.gz: gzip stream is corrupt or truncated"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let text = message(read_idx(Path::new("/nonexistent/train-images-idx3-ubyte")));
        assert!(
            text.starts_with("/nonexistent/train-images-idx3-ubyte: "),
            "{text}"
        );
    }
}
