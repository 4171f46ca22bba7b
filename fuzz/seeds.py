#!/usr/bin/env python3
"""Writes the hand-made seeds of the fuzz corpora into fuzz/corpus/TARGET/ (the checkpoint seed
is written by `cargo test --release -p softalign --test fuzz_corpus -- --ignored`).

Every seed is a small valid input, so that mutations start from inputs that reach deep into the
parsers: a tiny Llama GGUF (F32 and F16 tensors, a byte-level vocabulary), two more whose tensors
cover every quantised format the reader decodes (the K-quants, IQ4_XS and BF16 in one with rows of
256, the 32-value formats in another), the same model as a Hugging Face folder, one data file per preference format, a TOML config and an IDX file."""

import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEPARATOR = b"\n@@@@\n"
HIDDEN, FFN, HEADS, KV_HEADS, HEAD_DIM = 8, 12, 2, 1, 4
TOKENS = ["<|endoftext|>", "a", "b", "Ġ", "ab"]
VOCAB = len(TOKENS)


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def values(n, scale=0.05):
    return [((i * 37) % 17 - 8) * scale for i in range(n)]


def tensors_hf(hidden=HIDDEN, ffn=FFN, heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM):
    """Hugging Face names and shapes (outermost first) of the tiny Llama."""
    q, kv = heads * head_dim, kv_heads * head_dim
    out = [("model.embed_tokens.weight", [VOCAB, hidden]), ("model.norm.weight", [hidden])]
    p = "model.layers.0."
    out += [
        (p + "input_layernorm.weight", [hidden]),
        (p + "post_attention_layernorm.weight", [hidden]),
        (p + "self_attn.q_proj.weight", [q, hidden]),
        (p + "self_attn.k_proj.weight", [kv, hidden]),
        (p + "self_attn.v_proj.weight", [kv, hidden]),
        (p + "self_attn.o_proj.weight", [hidden, q]),
        (p + "mlp.gate_proj.weight", [ffn, hidden]),
        (p + "mlp.up_proj.weight", [ffn, hidden]),
        (p + "mlp.down_proj.weight", [hidden, ffn]),
    ]
    return out


# ggml type name: (id, values per block, bytes per block, byte offsets of the block's f16 scales),
# from ggml-common.h's block structs.
GGML_TYPES = {
    "f32": (0, 1, 4, []),
    "f16": (1, 1, 2, []),
    "bf16": (30, 1, 2, []),
    "q4_0": (2, 32, 18, [0]),
    "q4_1": (3, 32, 20, [0, 2]),
    "q5_0": (6, 32, 22, [0]),
    "q5_1": (7, 32, 24, [0, 2]),
    "q8_0": (8, 32, 34, [0]),
    "q2_k": (10, 256, 84, [80, 82]),
    "q3_k": (11, 256, 110, [108]),
    "q4_k": (12, 256, 144, [0, 2]),
    "q5_k": (13, 256, 176, [0, 2]),
    "q6_k": (14, 256, 210, [208]),
    "iq4_nl": (20, 32, 18, [0]),
    "iq4_xs": (23, 256, 136, [0]),
}


def tensor_data(kind, n):
    """n values of type `kind`: floats as `values`, quantised blocks as scrambled bytes with small
    finite f16 scales of alternating sign."""
    if kind == "f32":
        return struct.pack(f"<{n}f", *values(n))
    if kind == "f16":
        return struct.pack(f"<{n}e", *values(n))
    if kind == "bf16":
        return b"".join(struct.pack("<f", x)[2:] for x in values(n))
    _, per_block, block_bytes, scales = GGML_TYPES[kind]
    out = b""
    for b in range(n // per_block):
        block = bytearray((i * 73 + b * 151 + 11) % 256 for i in range(block_bytes))
        for k, at in enumerate(scales):
            block[at:at + 2] = struct.pack("<e", (-1) ** b * 0.004 * (k + 1))
        out += block
    return out


GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "model.layers.0.input_layernorm.weight": "blk.0.attn_norm.weight",
    "model.layers.0.post_attention_layernorm.weight": "blk.0.ffn_norm.weight",
    "model.layers.0.self_attn.q_proj.weight": "blk.0.attn_q.weight",
    "model.layers.0.self_attn.k_proj.weight": "blk.0.attn_k.weight",
    "model.layers.0.self_attn.v_proj.weight": "blk.0.attn_v.weight",
    "model.layers.0.self_attn.o_proj.weight": "blk.0.attn_output.weight",
    "model.layers.0.mlp.gate_proj.weight": "blk.0.ffn_gate.weight",
    "model.layers.0.mlp.up_proj.weight": "blk.0.ffn_up.weight",
    "model.layers.0.mlp.down_proj.weight": "blk.0.ffn_down.weight",
}


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_value(v):
    """(type id, bytes) of a metadata value."""
    if isinstance(v, bool):
        return 7, struct.pack("<B", v)
    if isinstance(v, int):
        return 4, struct.pack("<I", v)
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, gguf_string(v)
    kind = gguf_value(v[0])[0]
    body = b"".join(gguf_value(x)[1] for x in v)
    return 9, struct.pack("<IQ", kind, len(v)) + body


def gguf(types=None, hidden=HIDDEN, ffn=FFN, heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM):
    """The tiny Llama as GGUF; `types` maps GGUF tensor names to ggml types (default: F16 for the
    MLP, F32 for the rest)."""
    meta = {
        "general.architecture": "llama",
        "llama.embedding_length": hidden,
        "llama.feed_forward_length": ffn,
        "llama.block_count": 1,
        "llama.attention.head_count": heads,
        "llama.attention.head_count_kv": kv_heads,
        "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": 1e-5,
        "llama.context_length": 64,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.tokens": TOKENS,
        "tokenizer.ggml.token_type": [3, 1, 1, 1, 1],
        "tokenizer.ggml.merges": ["a b"],
        "tokenizer.ggml.eos_token_id": 0,
    }
    if heads * head_dim != hidden:
        meta["llama.attention.key_length"] = head_dim
    out = b"GGUF" + struct.pack("<IQQ", 3, len(GGUF_NAMES), len(meta))
    for key, value in meta.items():
        kind, body = gguf_value(value)
        out += gguf_string(key) + struct.pack("<I", kind) + body
    data, offset = b"", 0
    for name, shape in tensors_hf(hidden, ffn, heads, kv_heads, head_dim):
        n = 1
        for d in shape:
            n *= d
        gguf_name = GGUF_NAMES[name]
        kind = (types or {}).get(gguf_name, "f16" if "mlp" in name else "f32")
        raw = tensor_data(kind, n)
        dims = list(reversed(shape))
        out += gguf_string(gguf_name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", GGML_TYPES[kind][0], offset)
        padded = raw + b"\0" * (-len(raw) % 32)
        data += padded
        offset += len(padded)
    out += b"\0" * (-len(out) % 32)
    return out + data


# Rows of 256 (hidden size 256, one head of width 2, two intermediate units): each K-quant,
# IQ4_XS and BF16 once, the 2-wide matrices as F16.
K_QUANT_TYPES = {
    "token_embd.weight": "q6_k",
    "output_norm.weight": "q3_k",
    "blk.0.attn_norm.weight": "iq4_xs",
    "blk.0.ffn_norm.weight": "q2_k",
    "blk.0.attn_q.weight": "q4_k",
    "blk.0.attn_k.weight": "q5_k",
    "blk.0.attn_v.weight": "q6_k",
    "blk.0.attn_output.weight": "f16",
    "blk.0.ffn_gate.weight": "q2_k",
    "blk.0.ffn_up.weight": "q3_k",
    "blk.0.ffn_down.weight": "bf16",
}

# Rows of 32 (hidden size 32, one head of width 32, 32 intermediate units): the 32-value formats.
BLOCK_32_TYPES = {
    "token_embd.weight": "q5_0",
    "output_norm.weight": "q5_1",
    "blk.0.attn_norm.weight": "iq4_nl",
    "blk.0.ffn_norm.weight": "q8_0",
    "blk.0.attn_q.weight": "q5_1",
    "blk.0.attn_k.weight": "iq4_nl",
    "blk.0.attn_v.weight": "q5_0",
    "blk.0.attn_output.weight": "q4_0",
    "blk.0.ffn_gate.weight": "q4_1",
    "blk.0.ffn_up.weight": "q8_0",
    "blk.0.ffn_down.weight": "iq4_nl",
}


def safetensors():
    header, data = {}, b""
    for name, shape in tensors_hf():
        n = 1
        for d in shape:
            n *= d
        raw = struct.pack(f"<{n}f", *values(n))
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text)) + text + data


def hf_folder():
    config = {
        "model_type": "llama", "vocab_size": VOCAB, "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": 1, "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0,
    }
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 0, "content": TOKENS[0], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None, "pre_tokenizer": byte_level, "post_processor": None,
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(TOKENS)}, "merges": ["a b"]},
    }
    return json.dumps(config).encode() + SEPARATOR + json.dumps(tokenizer).encode() + SEPARATOR + safetensors()


PREFERENCE = {
    0: '{"prompt": "2+2?", "chosen": "4", "rejected": "5", "p_chosen": 0.8}\n{"prompt": "x", "chosen": "y", "rejected": "z"}\n',
    1: '[{"prompt": "2+2?", "chosen": "4", "rejected": "5", "p_chosen": 0.3}]',
    2: '{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "go"}]}\n',
    3: '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: hello", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: go away"}\n',
    4: '{"history": "q?", "human_ref_A": "a", "human_ref_B": "b", "score_A": 10, "score_B": 3, "labels": 1}\n',
    5: '{"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}], "score_chosen": 8.0, "score_rejected": 6.5}\n',
    6: '{"prompt": "q", "chosen": "a", "rejected": "b", "votes_chosen": 3, "votes_rejected": 1}\n',
    7: '[{"conversations": [{"from": "human", "value": "hi"}], "chosen": {"from": "gpt", "value": "hello"}, "rejected": {"from": "gpt", "value": "go"}}]',
}

TOML = """model = "m"
data = "d.jsonl"
out = "runs/x"
loss = "gdpo"
beta = 0.3
learning-rate = 1e-6
batch-size = 4
grad-accum = 2
max-grad-norm = 1.0
seed = 7
skip-invalid = true
"""


def main():
    write("gguf", "seed-tiny-llama.gguf", gguf())
    write("gguf", "seed-tiny-llama-k-quants.gguf", gguf(K_QUANT_TYPES, hidden=256, ffn=2, heads=1, kv_heads=1, head_dim=2))
    write("gguf", "seed-tiny-llama-32-blocks.gguf", gguf(BLOCK_32_TYPES, hidden=32, ffn=32, heads=1, kv_heads=1, head_dim=32))
    write("hf_folder", "seed-tiny-llama", hf_folder())
    for selector, text in PREFERENCE.items():
        write("preference_data", f"seed-format-{selector}", bytes([selector]) + text.encode())
    write("toml_config", "seed-run.toml", TOML)
    write("idx", "seed-u8-2x2x2", struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 2, 2) + bytes(range(8)))
    write("idx", "seed-f32-3", struct.pack(">BBBBI", 0, 0, 0x0D, 1, 3) + struct.pack(">3f", 1.0, -2.5, 0.0))


if __name__ == "__main__":
    main()
