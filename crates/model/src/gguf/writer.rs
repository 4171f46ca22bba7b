//! A small GGUF writer for tests: builds files in memory so that the reader can be checked on
//! good and bad input without fixtures.

use super::{GgmlType, GgufValue};

/// Metadata and tensors to serialise.
#[derive(Default)]
pub(crate) struct GgufWriter {
    pub(crate) metadata: Vec<(String, GgufValue)>,
    /// (name, dims in ggml order, type, raw bytes).
    pub(crate) tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

fn value_type(v: &GgufValue) -> u32 {
    match v {
        GgufValue::Uint(n) if *n > u32::MAX as u64 => 10,
        GgufValue::Uint(_) => 4,
        GgufValue::Int(_) => 5,
        GgufValue::Float(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::String(_) => 8,
        GgufValue::Array(_) => 9,
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::Uint(n) if *n > u32::MAX as u64 => out.extend(n.to_le_bytes()),
        GgufValue::Uint(n) => out.extend((*n as u32).to_le_bytes()),
        GgufValue::Int(n) => out.extend((*n as i32).to_le_bytes()),
        GgufValue::Float(x) => out.extend((*x as f32).to_le_bytes()),
        GgufValue::Bool(b) => out.push(*b as u8),
        GgufValue::String(s) => put_string(out, s),
        GgufValue::Array(items) => {
            let item_type = items.first().map(value_type).unwrap_or(8);
            out.extend(item_type.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

impl GgufWriter {
    pub(crate) fn meta(&mut self, key: &str, value: GgufValue) -> &mut Self {
        self.metadata.push((key.to_string(), value));
        self
    }

    /// Adds an f32 tensor of shape `shape` (outermost first, as Hugging Face writes it).
    pub(crate) fn f32_tensor(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let dims = shape.iter().rev().copied().collect();
        self.tensors
            .push((name.to_string(), dims, GgmlType::F32, raw));
        self
    }

    /// The GGUF v3 file, data section aligned to 32 bytes.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(3u32.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            out.extend(value_type(value).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, kind, raw) in &self.tensors {
            put_string(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend((*d as u64).to_le_bytes());
            }
            out.extend(kind.id().to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + raw.len() as u64).div_ceil(32) * 32;
        }
        let data_start = out.len().div_ceil(32) * 32;
        out.resize(data_start, 0);
        for ((_, _, _, raw), at) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + at as usize, 0);
            out.extend(raw);
        }
        out
    }
}
