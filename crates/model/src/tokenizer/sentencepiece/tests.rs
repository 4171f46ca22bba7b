use std::path::Path;

use super::*;
use crate::tokenizer::TextTokenizer;

/// A SentencePiece vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte pieces, a control and a
/// user-defined token, then pieces for "hi there" with scores that rank longer pieces lower.
fn tiny(architecture: &str, add_space_prefix: bool) -> GgufVocabulary {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    tokens.extend(["<start_of_turn>".to_string(), "<think>".to_string()]);
    types.extend([3, 4]);
    let pieces = [
        "▁", "h", "i", "t", "e", "r", "▁h", "hi", "▁hi", "▁t", "he", "▁the", "re", "▁there",
    ];
    tokens.extend(pieces.iter().map(|p| p.to_string()));
    types.extend(pieces.iter().map(|_| 1));
    let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
    GgufVocabulary {
        architecture: Some(architecture.into()),
        model: "llama".into(),
        tokens,
        scores,
        token_types: types,
        bos_token_id: Some(1),
        eos_token_id: Some(2),
        unknown_token_id: Some(0),
        add_bos_token: true,
        add_space_prefix,
        ..Default::default()
    }
}

fn build(v: &GgufVocabulary) -> TextTokenizer {
    v.to_tokenizer(Path::new("t.gguf")).unwrap()
}

fn pieces(tok: &TextTokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter()
        .map(|&id| tok.inner().id_to_token(id).unwrap())
        .collect()
}

#[test]
fn merges_rank_by_score_then_by_the_longer_left_half() {
    let tokens = ["a", "b", "c", "ab", "bc", "abc"];
    let ids: HashMap<&str, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as u32))
        .collect();
    let score = |t: &str| -(ids[t] as f64);
    // "abc" splits as a|bc and ab|c, tied on score: the longer left half comes first.
    assert_eq!(
        recover_merges(&ids, &tokens, score),
        vec![("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]
    );
    // Scores, not positions, rank a llama vocabulary's merges.
    let reversed = |t: &str| match t {
        "bc" => -1.0,
        "ab" => -2.0,
        _ => -3.0,
    };
    assert_eq!(
        recover_merges(&ids, &tokens, reversed)[..2],
        [("b", "c"), ("a", "b")]
    );
}

#[test]
fn gemma_ranks_merges_by_position_not_score() {
    let mut v = tiny("gemma3", false);
    // Scores that would merge "r"+"e" before "h"+"e" ("there" → "t","he","re") if they counted.
    let at = |p: &str| v.tokens.iter().position(|t| t == p).unwrap();
    let (he, re) = (at("he"), at("re"));
    v.scores[he] = -1000.0;
    v.scores[re] = 0.0;
    let tok = build(&v);
    let document = v.to_tokenizer_json(Path::new("t.gguf")).unwrap();
    let merges = document["model"]["merges"].as_array().unwrap();
    let position = |l: &str, r: &str| merges.iter().position(|m| m == &json!([l, r])).unwrap();
    assert!(position("h", "e") < position("r", "e"));
    assert_eq!(pieces(&tok, &tok.encode("hi").unwrap()), ["<s>", "hi"]);
}

#[test]
fn gemma_respells_whitespace_tokens() {
    assert_eq!(gemma_spelling("  "), "▁▁");
    assert_eq!(gemma_spelling(" \n\t"), "▁▁▁");
    assert_eq!(gemma_spelling("\n\n"), "\n\n");
    assert_eq!(gemma_spelling("a "), "a ");
}

#[test]
fn space_prefix_follows_the_file_and_decoding_removes_it() {
    let with = build(&tiny("llama", true));
    let ids = with.encode("hi there").unwrap();
    assert_eq!(pieces(&with, &ids), ["<s>", "▁hi", "▁there"]);
    assert_eq!(with.decode(&ids, true).unwrap(), "hi there");

    let without = build(&tiny("llama", false));
    let ids = without.encode("hi there").unwrap();
    assert_eq!(pieces(&without, &ids), ["<s>", "hi", "▁there"]);
    assert_eq!(without.decode(&ids, true).unwrap(), "hi there");
    assert_eq!(without.decode(&ids, false).unwrap(), "<s>hi there");
}

#[test]
fn unknown_characters_fall_back_to_bytes_and_decode_back() {
    let tok = build(&tiny("llama", true));
    let ids = tok.encode("hé").unwrap();
    assert_eq!(pieces(&tok, &ids), ["<s>", "▁h", "<0xC3>", "<0xA9>"]);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hé");
}

#[test]
fn control_and_user_defined_tokens_stay_whole() {
    let tok = build(&tiny("phi3", true));
    let ids = tok.encode("<start_of_turn>hi<think>").unwrap();
    assert_eq!(
        pieces(&tok, &ids),
        ["<s>", "<start_of_turn>", "▁hi", "<think>"]
    );
    // Control tokens are special and dropped when asked; user-defined ones are text.
    assert_eq!(tok.decode(&ids, true).unwrap(), "hi<think>");
}

#[test]
fn add_eos_token_ends_the_text_with_eos() {
    let mut v = tiny("llama", true);
    v.add_bos_token = false;
    v.add_eos_token = true;
    let tok = build(&v);
    assert_eq!(pieces(&tok, &tok.encode("hi").unwrap()), ["▁hi", "</s>"]);
}

#[test]
fn bad_tables_are_refused_with_the_key() {
    let refuse = |v: GgufVocabulary| v.to_tokenizer(Path::new("m.gguf")).unwrap_err().to_string();
    let mut v = tiny("llama", true);
    v.scores.clear();
    assert_eq!(
        refuse(v),
        "m.gguf: tokenizer: tokenizer.ggml.scores: missing (a sentencepiece vocabulary ranks its merges by them)"
    );
    let mut v = tiny("llama", true);
    v.scores.pop();
    assert_eq!(
        refuse(v),
        "m.gguf: tokenizer: tokenizer.ggml.scores has 274 entries for 275 tokens"
    );
    let mut v = tiny("llama", true);
    v.bos_token_id = Some(9999);
    assert_eq!(
        refuse(v),
        "m.gguf: tokenizer: tokenizer.ggml.bos_token_id 9999 is out of range"
    );
    for model in ["bert", "t5", "rwkv"] {
        let mut v = tiny("llama", true);
        v.model = model.into();
        assert_eq!(
            refuse(v),
            format!(
                "m.gguf: tokenizer: tokenizer.ggml.model {model} is not supported (supported: gpt2, llama)"
            )
        );
    }
}
