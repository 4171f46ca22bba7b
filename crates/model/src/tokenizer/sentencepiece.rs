//! SentencePiece vocabularies from GGUF files (`tokenizer.ggml.model = llama`: Llama 2, Mistral,
//! Gemma, Phi-3), rebuilt as transformers 5.25 rebuilds them
//! (`integrations/gguf/gguf_tokenizer_mapping.py`: `sentencepiece_tokenizer`, `gemma_tokenizer`,
//! `phi3_tokenizer`, `add_gguf_special_tokens`, and `generate_merges`):
//!
//! - a BPE model with byte fallback (`<0xNN>` pieces) whose merges are recovered from the
//!   vocabulary: every split of a piece into two pieces is a merge, ranked by the piece's score
//!   (Gemma: by its position in the file, which is its merge order), then by the lengths of the
//!   halves, longest first;
//! - spaces written as `▁`, with a `▁` before the text when the file's `add_space_prefix` says so
//!   (llama.cpp's default), stripped again when decoding;
//! - control tokens as special added tokens, user-defined ones as plain added tokens, both matched
//!   whole in the text; byte-fallback bytes joined back into UTF-8 when decoding.
//!
//! Where transformers appends a token the file lacks (its tokenizer classes' default names, such
//! as `<mask>` for Gemma), nothing is appended: such an id would lie outside the model's
//! embedding.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::gguf_vocab::{GgufVocabulary, added_token, token_type};

/// transformers' SentencePiece builders, chosen by `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// `LlamaTokenizer`: a `Metaspace` pre-tokenizer, merges ranked by score.
    Llama,
    /// Llama's model, but the `▁` prefix and spaces come from a normalizer, so every text
    /// between added tokens gets its own prefix.
    Phi3,
    /// `GemmaTokenizer`: spaces replaced by a normalizer, merges ranked by position, whitespace
    /// tokens stored with real spaces respelled with `▁`.
    Gemma,
}

impl Variant {
    fn of(architecture: Option<&str>) -> Self {
        match architecture {
            Some("gemma" | "gemma2" | "gemma3") => Variant::Gemma,
            Some("phi3") => Variant::Phi3,
            _ => Variant::Llama,
        }
    }

    /// The token names the transformers class treats as special whenever the vocabulary has
    /// them, whatever the file's ids say.
    fn default_special_tokens(self) -> &'static [&'static str] {
        match self {
            Variant::Llama | Variant::Phi3 => &["<unk>", "<s>", "</s>"],
            Variant::Gemma => &["<unk>", "<bos>", "<eos>", "<pad>", "<mask>"],
        }
    }
}

/// The `tokenizer.json` document of a SentencePiece vocabulary.
pub(super) fn tokenizer_json(vocabulary: &GgufVocabulary) -> Result<Value, String> {
    let variant = Variant::of(vocabulary.architecture.as_deref());
    if variant != Variant::Gemma && vocabulary.scores.is_empty() {
        return Err(
            "tokenizer.ggml.scores: missing (a sentencepiece vocabulary ranks its merges by them)"
                .into(),
        );
    }
    let pieces: Vec<String> = vocabulary
        .tokens
        .iter()
        .map(|token| match variant {
            Variant::Gemma => gemma_spelling(token),
            _ => token.clone(),
        })
        .collect();
    // As a Python dict built from the list: a repeated piece keeps its first place in the
    // iteration order and the id (and score) of its last occurrence.
    let mut ids: HashMap<&str, u32> = HashMap::with_capacity(pieces.len());
    let mut order: Vec<&str> = Vec::with_capacity(pieces.len());
    for (id, piece) in pieces.iter().enumerate() {
        if ids.insert(piece, id as u32).is_none() {
            order.push(piece);
        }
    }
    let rank = |piece: &str| -> f64 {
        let id = ids[piece];
        match variant {
            Variant::Gemma => -(id as f64),
            // -0.0 and 0.0 rank alike, as Python compares them; NaN ranks last.
            _ => match vocabulary.scores[id as usize] {
                s if s.is_nan() => f64::NEG_INFINITY,
                s => s as f64 + 0.0,
            },
        }
    };
    let merges: Vec<Value> = recover_merges(&ids, &order, rank)
        .into_iter()
        .map(|(left, right)| json!([left, right]))
        .collect();
    let vocab: serde_json::Map<String, Value> = ids
        .iter()
        .map(|(&piece, &id)| (piece.to_string(), json!(id)))
        .collect();
    let added_tokens = added_tokens(vocabulary, variant, &ids)?;
    let prefix = vocabulary.add_space_prefix;
    let spaces = json!({"type": "Replace", "pattern": {"String": " "}, "content": "▁"});
    let normalizer = match (variant, prefix) {
        (Variant::Llama, _) => Value::Null,
        (_, true) => json!({"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, spaces]}),
        (_, false) => spaces,
    };
    let pre_tokenizer = match variant {
        Variant::Llama => json!({"type": "Metaspace", "replacement": "▁",
                                 "prepend_scheme": if prefix { "first" } else { "never" },
                                 "split": false}),
        Variant::Phi3 => Value::Null,
        Variant::Gemma => json!({"type": "Split", "pattern": {"String": " "},
                                 "behavior": "MergedWithPrevious", "invert": false}),
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": "▁"}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    // GemmaTokenizer names `<unk>` as its unknown token; LlamaTokenizer's GGUF model has none
    // (a piece with neither a vocabulary entry nor byte tokens is dropped).
    let unk_token = match variant {
        Variant::Gemma => json!("<unk>"),
        _ => Value::Null,
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": vocabulary.template_post_processor()?,
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {"type": "BPE", "dropout": null, "unk_token": unk_token,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    }))
}

/// Gemma's files store a token of two or more spaces with real spaces where its tokenizer looks
/// for `▁`: such a token (spaces and other whitespace only, at least one space) becomes one `▁`
/// per character.
fn gemma_spelling(token: &str) -> String {
    // Python's `str.isspace`: Unicode White_Space and the four separators U+001C..U+001F.
    let python_space = |c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c);
    if token.contains(' ') && token.chars().all(python_space) {
        "▁".repeat(token.chars().count())
    } else {
        token.to_string()
    }
}

/// transformers' `generate_merges`: for each piece in `order`, every split into two pieces of
/// the vocabulary (ordered by the halves' ids), then all of them ranked by `rank` of the whole
/// piece, the left half's length and the right half's length (in characters), highest first;
/// ties keep their order.
fn recover_merges<'a>(
    ids: &HashMap<&'a str, u32>,
    order: &[&'a str],
    rank: impl Fn(&str) -> f64,
) -> Vec<(&'a str, &'a str)> {
    struct Merge<'a> {
        left: &'a str,
        right: &'a str,
        ids: (u32, u32),
        rank: f64,
        lengths: (usize, usize),
    }
    let mut merges: Vec<Merge<'a>> = Vec::new();
    for &piece in order {
        let piece_rank = rank(piece);
        let first = merges.len();
        let mut left_len = 0;
        let total = piece.chars().count();
        for (at, _) in piece.char_indices().skip(1) {
            left_len += 1;
            let (left, right) = piece.split_at(at);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                merges.push(Merge {
                    left,
                    right,
                    ids: (l, r),
                    rank: piece_rank,
                    lengths: (left_len, total - left_len),
                });
            }
        }
        merges[first..].sort_by_key(|m| m.ids);
    }
    merges.sort_by(|a, b| b.rank.total_cmp(&a.rank).then(b.lengths.cmp(&a.lengths)));
    merges.into_iter().map(|m| (m.left, m.right)).collect()
}

/// The added tokens, as transformers ends up with them: the class's default special names, the
/// control tokens (special), the user-defined tokens (not special), and the file's BOS, EOS,
/// unknown and padding tokens (special); each only when the vocabulary has it, the first role a
/// token gets being the one it keeps.
fn added_tokens(
    vocabulary: &GgufVocabulary,
    variant: Variant,
    ids: &HashMap<&str, u32>,
) -> Result<Vec<Value>, String> {
    let mut added: BTreeMap<u32, (&str, bool)> = BTreeMap::new();
    let mut add = |content: &str, special: bool| {
        if let Some((&content, &id)) = ids.get_key_value(content) {
            added.entry(id).or_insert((content, special));
        }
    };
    for name in variant.default_special_tokens() {
        add(name, true);
    }
    for kind in [token_type::CONTROL, token_type::USER_DEFINED] {
        for (id, token) in vocabulary.tokens.iter().enumerate() {
            if vocabulary.token_type(id) == kind {
                add(token, kind == token_type::CONTROL);
            }
        }
    }
    for (key, id) in [
        ("bos_token_id", vocabulary.bos_token_id),
        ("eos_token_id", vocabulary.eos_token_id),
        ("unknown_token_id", vocabulary.unknown_token_id),
        ("padding_token_id", vocabulary.padding_token_id),
    ] {
        if let Some((name, _)) = vocabulary.special_token(key, id)? {
            add(&name, true);
        }
    }
    Ok(added
        .into_iter()
        .map(|(id, (content, special))| added_token(id, content, special))
        .collect())
}

#[cfg(test)]
mod tests;
