#!/usr/bin/env python3
# Golden data for softalign's GGUF block decoders (crates/model/src/gguf/quants.rs), from gguf-py's
# reference implementation `gguf/quants.py` (the PyPI package, not llama-cpp-python's vendored copy).
#
#   python3 -m venv /tmp/venv-quants && /tmp/venv-quants/bin/pip install gguf==0.19.0 numpy==2.4.6
#   /tmp/venv-quants/bin/python scripts/golden/quants.py      # writes crates/model/tests/data/quants/
#
# (Python 3.11.7; gguf 0.19.0 pulled numpy 2.4.6, PyYAML 6.0.4, requests 2.34.2, tqdm 4.70.1.)
#
# One JSON file per format, each with cases of whole blocks:
# - "random bytes": every byte random (seeded), except the f16 scale fields, which are set to
#   finite values of moderate size (2^-10 to 4 in magnitude, either sign; one a subnormal f16),
#   so that no NaN or infinity appears and every bit pattern of the packed values is exercised;
# - "quantized": gguf-py's `quantize` of smooth random data, for the formats it can quantize
#   (q4_0, q4_1, q5_0, q5_1, q8_0; gguf-py 0.19.0 only dequantizes the K-quants and IQ4).
# Each case holds the block bytes (`bytes`, hex) and gguf-py's `dequantize` of them as float32
# (`values`, hex of little-endian f32), which the Rust tests require bit for bit.

import json
import os
import zlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "model", "tests", "data", "quants")

# Byte offsets of the f16 fields (scales, minimums) inside one block of each format, from
# ggml-common.h's block structs.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
    T.IQ4_NL: [0],
    T.IQ4_XS: [0],
}


def moderate_f16(rng, n):
    """n finite f16 values, magnitudes 2^-10 to 4, random signs; the second one subnormal."""
    magnitude = 2.0 ** rng.uniform(-10, 2, size=n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    values = (sign * magnitude).astype(np.float16)
    if n > 1:
        values[1] = np.frombuffer(np.uint16(rng.integers(1, 0x400)).tobytes(), np.float16)[0]
    assert np.isfinite(values).all()
    return values


def random_blocks(qtype, rng, n_blocks):
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    fields = F16_FIELDS[qtype]
    scales = moderate_f16(rng, n_blocks * len(fields)).reshape(n_blocks, len(fields))
    for i, at in enumerate(fields):
        blocks[:, at:at + 2] = scales[:, i:i + 1].view(np.uint8)
    return blocks


def smooth_rows(rng, rows, cols):
    """A random walk plus a few sinusoids per row: weights-like, with outliers now and then."""
    walk = np.cumsum(rng.normal(0.0, 0.05, size=(rows, cols)), axis=1)
    t = np.arange(cols) / cols
    waves = sum(rng.normal(0, 0.3) * np.sin(2 * np.pi * (k + 1) * t + rng.uniform(0, 6)) for k in range(3))
    spikes = (rng.random((rows, cols)) < 0.02) * rng.normal(0, 2.0, size=(rows, cols))
    return (walk + waves + spikes).astype(np.float32)


def case(source, qtype, raw):
    """raw: uint8 array of shape (rows, bytes per row)."""
    values = quants.dequantize(raw, qtype)
    assert values.dtype == np.float32 and np.isfinite(values).all(), qtype.name
    return {
        "source": source,
        "bytes": raw.tobytes().hex(),
        "values": values.astype("<f4").tobytes().hex(),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for qtype in F16_FIELDS:
        name = qtype.name.lower()
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        n_blocks = 4 if block_size == 256 else 8
        cases = [case("random bytes, f16 fields finite", qtype, random_blocks(qtype, rng, n_blocks))]
        data = smooth_rows(rng, 2, n_blocks // 2 * block_size)
        try:
            raw = quants.quantize(data, qtype)
        except NotImplementedError:
            raw = None
        if raw is not None:
            cases.append(case("gguf-py quantize of smooth random data", qtype, raw))
        doc = {
            "type": name,
            "id": int(qtype),
            "block_values": block_size,
            "block_bytes": type_size,
            "generator": "scripts/golden/quants.py, gguf-py 0.19.0 gguf/quants.py",
            "cases": cases,
        }
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(name, [c["source"] for c in cases])


if __name__ == "__main__":
    main()
