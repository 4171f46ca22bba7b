# Golden token ids for SentencePiece vocabularies read from GGUF files (crates/model/tests/spm.rs).
#
# pip versions: transformers==5.25.0 tokenizers==0.23.3 gguf==0.19.0 sentencepiece==0.2.3 protobuf==7.36.2
#               numpy==2.4.6 torch==2.15.0 (transformers' GGUF reader imports torch; no tensor is read)
# Commands (from the repository root):
#   python3 -m venv /work/venv-spm && /work/venv-spm/bin/pip install transformers==5.25.0 gguf==0.19.0 \
#       sentencepiece==0.2.3 protobuf==7.36.2 torch==2.15.0
#   /work/venv-spm/bin/python scripts/golden/spm_ids.py tiny
#       → crates/model/tests/data/spm/tiny_llama.gguf, tiny_phi3.gguf, tiny_gemma3.gguf, tiny_ids.json
#   /work/venv-spm/bin/python scripts/golden/spm_ids.py gemma3 .cache/models/gemma-3-270m-q4_k_m.gguf
#       → crates/model/tests/data/spm/gemma3_270m_ids.json (the file comes from scripts/fetch-gemma3.sh)
#   /work/venv-spm/bin/python scripts/golden/spm_ids.py saved FOLDER GOLDEN_JSON [INDEX]
#       checks that a tokenizer.json + tokenizer_config.json that softalign saved (TextTokenizer::save, or a
#       save_pretrained output of a model loaded from one of these GGUF files) loads in transformers and gives
#       the golden ids and strings of entry INDEX (default 0) of GOLDEN_JSON; prints the mismatches, exits 1 on any
#
# `tiny` trains a small SentencePiece BPE model (byte fallback, control and user-defined symbols) on the text
# below and writes its vocabulary into two small GGUF files the way llama.cpp's converter does (tokens, scores,
# token types, special ids): one of architecture `llama` (no `add_space_prefix` key, so llama.cpp's default, a
# prefix space) and one of architecture `gemma3` (`add_space_prefix` false, Gemma's whitespace and newline tokens).
# Both then go through transformers' own GGUF tokenizer loader (`AutoTokenizer.from_pretrained(dir,
# gguf_file=...)`), whose ids and decoded strings are the reference. Each case records
#   encode: tokenizer.encode(text)                               (special tokens added: BOS where the file asks)
#   encode_plain: tokenizer.encode(text, add_special_tokens=False)
#   decode: tokenizer.decode(encode)                             (special tokens kept)
#   decode_skip: tokenizer.decode(encode, skip_special_tokens=True)
# and, so that a saved tokenizer can be checked too, the same file's tokenizer saved with save_pretrained and
# loaded back must give the same ids (asserted here).
import json
import os
import sys
import tempfile

import gguf
import numpy as np
import sentencepiece as spm
from transformers import AutoTokenizer

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "model", "tests", "data", "spm")

# Training text for the tiny vocabulary: a few languages, so its pieces cover more than ASCII; anything else
# (emoji, CJK outside these lines) falls back to byte tokens.
CORPUS = """\
The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs on.
Soft labels give the preference loss a target between zero and one.
A tokenizer turns text into pieces, and pieces into numbers that the model reads.
Training the model on these pairs moves it toward the chosen answer and away from the rejected one.
Le renard brun saute par-dessus le chien paresseux. Ça a été une très belle journée à Genève.
Où est la bibliothèque ? Elle est là-bas, près de l'église et du café.
Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße und Mädchen.
Быстрая коричневая лиса прыгает через ленивую собаку. Привет, как дела?
El zorro marrón salta sobre el perro perezoso. ¿Dónde está la estación?
敏捷的棕色狐狸跳过了懒狗。今天天气很好。
素早い茶色の狐がのろまな犬を飛び越える。こんにちは、世界。
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000.
def main():
    return tokenize(text, add_special_tokens=True)
"""

# Strings the tokenizers are checked on: scripts, emoji (a ZWJ family and a flag), digits, whitespace runs,
# leading and trailing spaces, special and user-defined tokens written in the text, and the empty string.
TEXTS = [
    "",
    "Hello world",
    "The capital of France is Paris. The capital of Germany is Berlin.",
    " leading space",
    "trailing space ",
    "   three leading spaces and two trailing  ",
    "runs  of   spaces    here",
    "tabs\tand\t\ttabs",
    "line one\nline two\n\nline four\n\n\n",
    "\n starts with a newline",
    "Ça a été une très belle journée à Genève, n'est-ce pas ?",
    "Größe, Straße und Übermäßigkeit",
    "Быстрая коричневая лиса, привет!",
    "敏捷的棕色狐狸跳过了懒狗。",
    "素早い茶色の狐がのろまな犬を飛び越える。",
    "مرحبا بالعالم، كيف حالك؟",
    "emoji 😀👍🏽 and a family 👨‍👩‍👧‍👦 and a flag 🇫🇷",
    "digits 0123456789 and 3.14159265358979 and 1,000,000,000 and 12345678901234567890",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "code: def f(x):\n    return x ** 2  # square",
    "mixed <think>inner</think> tags and <unk> written out",
]


def train_tiny_model(folder):
    """A SentencePiece BPE model of a few hundred pieces, with byte fallback and extra symbols."""
    corpus = os.path.join(folder, "corpus.txt")
    with open(corpus, "w", encoding="utf-8") as f:
        f.write(CORPUS)
    prefix = os.path.join(folder, "tiny")
    spm.SentencePieceTrainer.train(
        input=corpus,
        model_prefix=prefix,
        model_type="bpe",
        vocab_size=560,
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        control_symbols=["<start_of_turn>", "<end_of_turn>", "<pad>"],
        user_defined_symbols=["<think>", "</think>"],
        split_digits=True,
        num_threads=1,
        minloglevel=2,
    )
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def sentencepiece_vocabulary(processor):
    """(tokens, scores, token types) as llama.cpp's converter writes them from a tokenizer.model."""
    tokens, scores, types = [], [], []
    for i in range(processor.vocab_size()):
        tokens.append(processor.id_to_piece(i))
        scores.append(processor.get_score(i))
        if processor.is_unknown(i):
            kind = gguf.TokenType.UNKNOWN
        elif processor.is_control(i):
            kind = gguf.TokenType.CONTROL
        elif processor.is_unused(i):
            kind = gguf.TokenType.UNUSED
        elif processor.is_byte(i):
            kind = gguf.TokenType.BYTE
        elif tokens[-1] in ("<think>", "</think>"):
            kind = gguf.TokenType.USER_DEFINED
        else:
            kind = gguf.TokenType.NORMAL
        types.append(int(kind))
    return tokens, scores, types


def gemma_style(tokens, scores, types):
    """The same pieces in Gemma's layout: its special tokens first (`<pad>` 0, `<eos>` 1, `<bos>` 2, `<unk>` 3,
    `<mask>` 4, all control), then the turn markers, then user-defined newline runs and multi-space tokens
    (stored with real spaces, as Gemma's files store them), then the byte and normal pieces. Gemma's merges
    follow this order, not the scores."""
    head = [
        ("<pad>", gguf.TokenType.CONTROL),
        ("<eos>", gguf.TokenType.CONTROL),
        ("<bos>", gguf.TokenType.CONTROL),
        ("<unk>", gguf.TokenType.CONTROL),
        ("<mask>", gguf.TokenType.CONTROL),
        ("[multimodal]", gguf.TokenType.USER_DEFINED),
        ("<start_of_turn>", gguf.TokenType.CONTROL),
        ("<end_of_turn>", gguf.TokenType.CONTROL),
        ("\n", gguf.TokenType.USER_DEFINED),
        ("\n\n", gguf.TokenType.USER_DEFINED),
        ("\n\n\n", gguf.TokenType.USER_DEFINED),
        ("  ", gguf.TokenType.USER_DEFINED),
        ("   ", gguf.TokenType.USER_DEFINED),
        ("    ", gguf.TokenType.USER_DEFINED),
        ("<think>", gguf.TokenType.USER_DEFINED),
        ("</think>", gguf.TokenType.USER_DEFINED),
    ]
    kept = [(t, s, k) for t, s, k in zip(tokens, scores, types)
            if k in (gguf.TokenType.NORMAL, gguf.TokenType.BYTE)]
    return ([t for t, _ in head] + [t for t, _, _ in kept],
            [-1000.0] * len(head) + [s for _, s, _ in kept],
            [int(k) for _, k in head] + [k for _, _, k in kept])


def write_gguf(path, architecture, tokens, scores, types, ids, add_space_prefix):
    """A GGUF file with the vocabulary and the few architecture keys transformers needs to build a config;
    it has no tensors."""
    writer = gguf.GGUFWriter(path, architecture)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["eos"])
    writer.add_unk_token_id(ids["unk"])
    writer.add_pad_token_id(ids["pad"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if add_space_prefix is not None:
        writer.add_add_space_prefix(add_space_prefix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def golden_cases(folder, file_name, texts):
    """transformers' ids and decoded strings for `texts`, checked against a save_pretrained round trip."""
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    cases = []
    for text in texts:
        ids = tokenizer.encode(text)
        cases.append(
            {
                "text": text,
                "encode": ids,
                "encode_plain": tokenizer.encode(text, add_special_tokens=False),
                "decode": tokenizer.decode(ids),
                "decode_skip": tokenizer.decode(ids, skip_special_tokens=True),
            }
        )
    with tempfile.TemporaryDirectory() as saved:
        tokenizer.save_pretrained(saved)
        reloaded = AutoTokenizer.from_pretrained(saved)
        for case in cases:
            assert reloaded.encode(case["text"]) == case["encode"], case["text"]
    return {
        "file": file_name,
        "class": type(tokenizer).__name__,
        "vocab_size": len(tokenizer),
        "cases": cases,
    }


def tiny():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        processor = train_tiny_model(work)
    tokens, scores, types = sentencepiece_vocabulary(processor)
    ids = {name: tokens.index(token) for name, token in
           [("unk", "<unk>"), ("bos", "<s>"), ("eos", "</s>"), ("pad", "<pad>")]}
    write_gguf(os.path.join(OUT, "tiny_llama.gguf"), "llama", tokens, scores, types, ids, None)
    write_gguf(os.path.join(OUT, "tiny_phi3.gguf"), "phi3", tokens, scores, types, ids, None)
    g_tokens, g_scores, g_types = gemma_style(tokens, scores, types)
    g_ids = {"pad": 0, "eos": 1, "bos": 2, "unk": 3}
    write_gguf(os.path.join(OUT, "tiny_gemma3.gguf"), "gemma3", g_tokens, g_scores, g_types, g_ids, False)
    golden = {
        "generator": "scripts/golden/spm_ids.py tiny",
        "files": [golden_cases(OUT, name, TEXTS) for name in ("tiny_llama.gguf", "tiny_phi3.gguf", "tiny_gemma3.gguf")],
    }
    with open(os.path.join(OUT, "tiny_ids.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")


def gemma3(path):
    folder, name = os.path.split(os.path.abspath(path))
    golden = {
        "generator": "scripts/golden/spm_ids.py gemma3 .cache/models/gemma-3-270m-q4_k_m.gguf",
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "files": [golden_cases(folder, name, TEXTS)],
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "gemma3_270m_ids.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")


def saved(folder, golden_json, index):
    expected = json.load(open(golden_json, encoding="utf-8"))["files"][index]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    mismatches = 0
    for case in expected["cases"]:
        got = {
            "encode": tokenizer.encode(case["text"]),
            "encode_plain": tokenizer.encode(case["text"], add_special_tokens=False),
            "decode": tokenizer.decode(case["encode"]),
            "decode_skip": tokenizer.decode(case["encode"], skip_special_tokens=True),
        }
        for field, value in got.items():
            if value != case[field]:
                mismatches += 1
                print(f"{case['text']!r}: {field} {value!r}, expected {case[field]!r}")
    print(f"{folder}: {len(expected['cases'])} texts, {mismatches} mismatches against {expected['file']}")
    return mismatches == 0


if __name__ == "__main__":
    np.random.seed(0)
    if sys.argv[1:2] == ["tiny"]:
        tiny()
    elif sys.argv[1:2] == ["gemma3"] and len(sys.argv) == 3:
        gemma3(sys.argv[2])
    elif sys.argv[1:2] == ["saved"] and len(sys.argv) in (4, 5):
        sys.exit(0 if saved(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) == 5 else 0) else 1)
    else:
        sys.exit("usage: spm_ids.py tiny | spm_ids.py gemma3 PATH | spm_ids.py saved FOLDER GOLDEN_JSON [INDEX]")
