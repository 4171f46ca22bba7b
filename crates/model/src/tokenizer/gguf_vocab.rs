//! A GGUF file's tokenizer metadata (llama.cpp's `tokenizer.ggml.*` keys) turned into the
//! `tokenizer.json` that transformers builds when it reads the same file
//! (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`, `integrations/gguf` in transformers
//! 5.25): byte-level BPE for `tokenizer.ggml.model = gpt2`, SentencePiece (in
//! [`super::sentencepiece`]) for `llama`. Other tokenizer models are refused.

use std::path::Path;

use serde_json::{Value, json};

use super::TextTokenizer;
use crate::error::{ModelError, Result};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub(super) mod token_type {
    /// An ordinary piece.
    pub const NORMAL: i32 = 1;
    /// A control token (`<bos>`, `<start_of_turn>`): special, matched whole in text.
    pub const CONTROL: i32 = 3;
    /// A user-defined token (`<think>`, Gemma's newline runs): matched whole, not special.
    pub const USER_DEFINED: i32 = 4;
}

/// The pieces of a GGUF file's tokenizer metadata, with llama.cpp's defaults filled in for the
/// flags the file leaves out (see [`crate::GgufFile::vocabulary`]).
#[derive(Debug, Clone, Default)]
pub struct GgufVocabulary {
    /// `general.architecture`: picks transformers' SentencePiece variant (Gemma and Phi-3 differ
    /// from Llama and Mistral).
    pub architecture: Option<String>,
    /// `tokenizer.ggml.model`: `gpt2` for byte-level BPE, `llama` for SentencePiece.
    pub model: String,
    /// `tokenizer.ggml.pre`, the pre-tokenizer name llama.cpp uses.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores`: SentencePiece piece scores, higher merges first (empty when
    /// absent).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte (`<0xNN>`).
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`, `"left right"` (byte-level BPE only).
    pub merges: Vec<String>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_token_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_token_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown_token_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding_token_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`: BOS starts every encoded text.
    pub add_bos_token: bool,
    /// `tokenizer.ggml.add_eos_token`: EOS ends every encoded text.
    pub add_eos_token: bool,
    /// `tokenizer.ggml.add_space_prefix`: SentencePiece's dummy prefix, a `▁` before the text.
    pub add_space_prefix: bool,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

/// llama.cpp's `tokenizer.ggml.pre` names → the equivalent Hugging Face pre-tokenizer.
fn pre_tokenizer(pre: Option<&str>) -> std::result::Result<(Value, bool), String> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    match pre.unwrap_or("default") {
        "default" | "gpt2" | "gpt-2" | "olmo" | "jais" => Ok((byte_level(true), false)),
        // llama.cpp splits digits one by one, then applies the GPT-2 pattern.
        "smollm" | "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "command-r" => {
            Ok((
                json!({"type": "Sequence", "pretokenizers": [
                    {"type": "Digits", "individual_digits": true},
                    byte_level(true),
                ]}),
                false,
            ))
        }
        "llama3" | "llama-v3" | "llama-bpe" | "smaug-bpe" => Ok((
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
            true,
        )),
        other => Err(format!("pre-tokenizer {other} is not supported")),
    }
}

const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl GgufVocabulary {
    /// The tokenizer these tables describe, as a `tokenizer.json` document: byte-level BPE for
    /// `gpt2`, SentencePiece (BPE with byte fallback, merges recovered from the scores) for
    /// `llama`.
    pub fn to_tokenizer_json(&self, source: &Path) -> Result<Value> {
        let fail = |problem: String| ModelError::Tokenizer {
            path: source.to_path_buf(),
            problem,
        };
        self.check_lengths().map_err(fail)?;
        match self.model.as_str() {
            "gpt2" => self.byte_level_json().map_err(fail),
            "llama" => super::sentencepiece::tokenizer_json(self).map_err(fail),
            other => Err(fail(format!(
                "tokenizer.ggml.model {other} is not supported (supported: gpt2, llama)"
            ))),
        }
    }

    /// The tokenizer these tables describe.
    pub fn to_tokenizer(&self, source: &Path) -> Result<TextTokenizer> {
        let document = self.to_tokenizer_json(source)?;
        TextTokenizer::from_json(
            &document,
            source,
            self.chat_template.clone(),
            self.token_name(self.bos_token_id),
            self.token_name(self.eos_token_id),
        )
    }

    /// The token with id `id`, if the id is given and in range.
    pub(super) fn token_name(&self, id: Option<u32>) -> Option<String> {
        id.and_then(|i| self.tokens.get(i as usize).cloned())
    }

    /// The per-token tables must each have one entry per token (or be absent).
    fn check_lengths(&self) -> std::result::Result<(), String> {
        let n = self.tokens.len();
        for (key, len) in [
            ("tokenizer.ggml.token_type", self.token_types.len()),
            ("tokenizer.ggml.scores", self.scores.len()),
        ] {
            if len != 0 && len != n {
                return Err(format!("{key} has {len} entries for {n} tokens"));
            }
        }
        Ok(())
    }

    /// The type of token `id` (normal when the file gives no types).
    pub(super) fn token_type(&self, id: usize) -> i32 {
        self.token_types
            .get(id)
            .copied()
            .unwrap_or(token_type::NORMAL)
    }

    /// A special-token id from the metadata (`tokenizer.ggml.{key}`), checked against the
    /// vocabulary: its token string.
    pub(super) fn special_token(
        &self,
        key: &str,
        id: Option<u32>,
    ) -> std::result::Result<Option<(String, u32)>, String> {
        match id {
            None => Ok(None),
            Some(id) => match self.tokens.get(id as usize) {
                Some(name) => Ok(Some((name.clone(), id))),
                None => Err(format!("tokenizer.ggml.{key} {id} is out of range")),
            },
        }
    }

    /// transformers' post-processor (`update_post_processor`): BOS first and EOS last where the
    /// file asks for them.
    pub(super) fn template_post_processor(&self) -> std::result::Result<Value, String> {
        let bos = match self.add_bos_token {
            true => self.special_token("bos_token_id", self.bos_token_id)?,
            false => None,
        };
        let eos = match self.add_eos_token {
            true => self.special_token("eos_token_id", self.eos_token_id)?,
            false => None,
        };
        let special = |(name, _): &(String, u32), type_id: u32| json!({"SpecialToken": {"id": name, "type_id": type_id}});
        let sequence = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
        let mut single = Vec::new();
        single.extend(bos.iter().map(|t| special(t, 0)));
        single.push(sequence("A", 0));
        single.extend(eos.iter().map(|t| special(t, 0)));
        let mut pair = single.clone();
        pair.extend(bos.iter().map(|t| special(t, 1)));
        pair.push(sequence("B", 1));
        pair.extend(eos.iter().map(|t| special(t, 1)));
        let special_tokens: serde_json::Map<String, Value> = bos
            .iter()
            .chain(eos.iter())
            .map(|(name, id)| {
                (
                    name.clone(),
                    json!({"id": name, "ids": [id], "tokens": [name]}),
                )
            })
            .collect();
        Ok(
            json!({"type": "TemplateProcessing", "single": single, "pair": pair,
                  "special_tokens": special_tokens}),
        )
    }

    /// The byte-level BPE tokenizer these tables describe.
    fn byte_level_json(&self) -> std::result::Result<Value, String> {
        let (pre_tokenizer, ignore_merges) = pre_tokenizer(self.pre.as_deref())?;
        let vocab: serde_json::Map<String, Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), json!(id)))
            .collect();
        let added_tokens: Vec<Value> = self
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(id, token)| {
                let kind = self.token_type(id);
                (kind == token_type::CONTROL || kind == token_type::USER_DEFINED)
                    .then(|| added_token(id as u32, token, kind == token_type::CONTROL))
            })
            .collect();
        let post_processor = if self.add_bos_token && self.bos_token_id.is_some()
            || self.add_eos_token && self.eos_token_id.is_some()
        {
            self.template_post_processor()?
        } else {
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true})
        };
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                      "ignore_merges": ignore_merges, "vocab": vocab, "merges": self.merges},
        }))
    }
}

/// One `added_tokens` entry as transformers writes it for a GGUF token: matched whole in the raw
/// text (not normalized), never stripped.
pub(super) fn added_token(id: u32, content: &str, special: bool) -> Value {
    json!({"id": id, "content": content, "single_word": false, "lstrip": false,
           "rstrip": false, "normalized": false, "special": special})
}
