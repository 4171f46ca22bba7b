//! SentencePiece vocabularies read from GGUF files must tokenize exactly as transformers does when
//! it reads the same file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, transformers
//! 5.25): the same ids with and without special tokens, and the same decoded strings.
//!
//! The golden data comes from scripts/golden/spm_ids.py:
//!   `spm_ids.py tiny`   → tests/data/spm/tiny_{llama,phi3,gemma3}.gguf and tiny_ids.json: a small
//!                         SentencePiece BPE model (byte fallback, control and user-defined tokens)
//!                         written as llama.cpp writes one, under three architectures;
//!   `spm_ids.py gemma3` → tests/data/spm/gemma3_270m_ids.json, from the real Gemma 3 270M file
//!                         (scripts/fetch-gemma3.sh; that test is skipped, with a note, when the file
//!                         is absent).

mod common;

use common::token_ids;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;
use softalign_model::{GgufFile, TextTokenizer};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/spm")
        .join(name)
}

fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(data(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Checks every case of one golden file entry; returns how many texts were compared.
fn assert_matches_transformers(tokenizer: &TextTokenizer, expected: &Value) -> usize {
    let file = expected["file"].as_str().unwrap();
    assert_eq!(
        tokenizer.vocab_size() as u64,
        expected["vocab_size"].as_u64().unwrap(),
        "{file}: vocabulary size"
    );
    let cases = expected["cases"].as_array().unwrap();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let encoded = tokenizer.encode(text).unwrap();
        assert_eq!(
            encoded,
            token_ids(&case["encode"]),
            "{file}: encode {text:?}"
        );
        let plain = tokenizer.inner().encode(text, false).unwrap();
        assert_eq!(
            plain.get_ids(),
            token_ids(&case["encode_plain"]),
            "{file}: encode {text:?} without special tokens"
        );
        assert_eq!(
            tokenizer.decode(&encoded, false).unwrap(),
            case["decode"].as_str().unwrap(),
            "{file}: decode {text:?}"
        );
        assert_eq!(
            tokenizer.decode(&encoded, true).unwrap(),
            case["decode_skip"].as_str().unwrap(),
            "{file}: decode {text:?} skipping special tokens"
        );
    }
    cases.len()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-spm-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn tiny_sentencepiece_ggufs_tokenize_as_transformers_does() {
    let golden = golden("tiny_ids.json");
    let files = golden["files"].as_array().unwrap();
    assert_eq!(files.len(), 3);
    for expected in files {
        let path = data(expected["file"].as_str().unwrap());
        let tokenizer = GgufFile::read(&path)
            .unwrap()
            .vocabulary()
            .unwrap()
            .to_tokenizer(&path)
            .unwrap();
        assert_eq!(assert_matches_transformers(&tokenizer, expected), 21);
    }
}

#[test]
fn a_saved_sentencepiece_tokenizer_reloads_with_the_same_ids() {
    let golden = golden("tiny_ids.json");
    for expected in golden["files"].as_array().unwrap() {
        let name = expected["file"].as_str().unwrap();
        let path = data(name);
        let tokenizer = GgufFile::read(&path)
            .unwrap()
            .vocabulary()
            .unwrap()
            .to_tokenizer(&path)
            .unwrap();
        let folder = scratch(name.trim_end_matches(".gguf"));
        tokenizer.save(&folder).unwrap();
        let reloaded = TextTokenizer::from_file(&folder.join("tokenizer.json")).unwrap();
        assert_matches_transformers(&reloaded, expected);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}

#[test]
fn reading_only_the_metadata_gives_the_whole_files_metadata() {
    let path = data("tiny_gemma3.gguf");
    let whole = GgufFile::read(&path).unwrap();
    let header = GgufFile::read_metadata(&path).unwrap();
    assert_eq!(header.version, whole.version);
    assert_eq!(header.metadata, whole.metadata);
    assert!(header.tensors.is_empty());
}

#[test]
fn absent_flags_take_llama_cpps_defaults() {
    let mut file = GgufFile::read(&data("tiny_llama.gguf")).unwrap();
    // The tiny llama file has no add_space_prefix key: SentencePiece's default, a prefix space.
    assert!(
        !file
            .metadata
            .contains_key("tokenizer.ggml.add_space_prefix")
    );
    let vocabulary = file.vocabulary().unwrap();
    assert!(vocabulary.add_space_prefix && vocabulary.add_bos_token && !vocabulary.add_eos_token);
    // Without add_bos_token a SentencePiece vocabulary still adds BOS, as llama.cpp does.
    file.metadata.remove("tokenizer.ggml.add_bos_token");
    let tokenizer = file.vocabulary().unwrap().to_tokenizer(&file.path).unwrap();
    assert_eq!(tokenizer.encode("").unwrap(), [1]);
    // The Gemma file says add_space_prefix = false.
    let gemma = GgufFile::read(&data("tiny_gemma3.gguf")).unwrap();
    assert!(!gemma.vocabulary().unwrap().add_space_prefix);
}

#[test]
fn gemma3_270m_tokenizes_as_transformers_does() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/gemma-3-270m-q4_k_m.gguf");
    if !path.exists() {
        eprintln!(
            "note: skipped: {} is absent (run scripts/fetch-gemma3.sh)",
            path.display()
        );
        return;
    }
    let start = Instant::now();
    let vocabulary = GgufFile::read_metadata(&path)
        .unwrap()
        .vocabulary()
        .unwrap();
    let read = start.elapsed();
    assert_eq!(vocabulary.tokens.len(), 262_144);
    let tokenizer = vocabulary.to_tokenizer(&path).unwrap();
    eprintln!(
        "gemma 3 270m: metadata read in {:.2} s, tokenizer built in {:.2} s",
        read.as_secs_f64(),
        (start.elapsed() - read).as_secs_f64()
    );
    let golden = golden("gemma3_270m_ids.json");
    let expected = &golden["files"][0];
    assert_eq!(assert_matches_transformers(&tokenizer, expected), 21);

    let folder = scratch("gemma3");
    tokenizer.save(&folder).unwrap();
    let reloaded = TextTokenizer::from_file(&folder.join("tokenizer.json")).unwrap();
    assert_matches_transformers(&reloaded, expected);
    std::fs::remove_dir_all(&folder).unwrap();
}
