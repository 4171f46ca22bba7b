//! The model's own tokenizer (Hugging Face `tokenizers`), read from `tokenizer.json` or rebuilt
//! from a GGUF vocabulary, with the chat template.
//!
//! Text is encoded exactly as the model's tokenizer encodes it: special tokens (BOS) come only
//! from the tokenizer's post-processor, which for GGUF files is built from `add_bos_token`.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::error::{ModelError, Result, io_error};

mod gguf_vocab;
mod sentencepiece;

pub use gguf_vocab::GgufVocabulary;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl ChatMessage {
    /// A turn with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// The conversation formats this crate renders (the Jinja templates that checkpoints ship are
/// recognised, not interpreted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatFormat {
    /// ChatML (`<|im_start|>role\ncontent<|im_end|>\n`), as SmolLM2 and Qwen use, with the
    /// system turn the template inserts when the conversation has none.
    ChatMl {
        /// System prompt added when the first message is not a system message.
        default_system: Option<String>,
    },
    /// Zephyr (`<|role|>\ncontent</s>\n`), as TinyLlama-Chat uses.
    Zephyr,
}

impl ChatFormat {
    /// Recognises the format of a Jinja chat template; `None` when it is neither ChatML nor Zephyr.
    pub fn detect(template: &str) -> Option<Self> {
        if template.contains("<|im_start|>") {
            return Some(ChatFormat::ChatMl {
                default_system: default_system_prompt(template),
            });
        }
        if template.contains("<|user|>") && template.contains("<|assistant|>") {
            return Some(ChatFormat::Zephyr);
        }
        None
    }
}

/// The literal system prompt in `'<|im_start|>system\n…<|im_end|>` of a ChatML template that
/// inserts one when the conversation lacks a system turn.
fn default_system_prompt(template: &str) -> Option<String> {
    if !template.contains("messages[0]['role'] != 'system'") {
        return None;
    }
    for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
        if let Some(start) = template.find(opener) {
            let rest = &template[start + opener.len()..];
            let end = rest.find("<|im_end|>")?;
            let text = &rest[..end];
            if text.contains("{{") || text.contains('\'') {
                return None;
            }
            return Some(text.replace("\\n", "\n"));
        }
    }
    None
}

/// A tokenizer with the facts about special tokens and chat format that generation needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json`, and `tokenizer_config.json` beside it when present (chat template,
    /// BOS and EOS token names).
    pub fn from_file(path: &Path) -> Result<Self> {
        // Parsed as JSON first, then built from the value: tokenizers' own reader panics on some
        // malformed documents (its decoder helper `expect`s), but never on a JSON value.
        let text = std::fs::read_to_string(path).map_err(io_error(path))?;
        let document: Value = serde_json::from_str(&text).map_err(|cause| ModelError::Json {
            path: path.to_path_buf(),
            cause,
        })?;
        let inner: tokenizers::Tokenizer =
            serde_json::from_value(document).map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        let mut tokenizer = Self {
            inner,
            source: path.to_path_buf(),
            chat_template: None,
            bos_token: None,
            eos_token: None,
        };
        let config_path = path.with_file_name("tokenizer_config.json");
        if config_path.exists() {
            let text = std::fs::read_to_string(&config_path).map_err(io_error(&config_path))?;
            let config: Value = serde_json::from_str(&text).map_err(|cause| ModelError::Json {
                path: config_path.clone(),
                cause,
            })?;
            tokenizer.chat_template = match config.get("chat_template") {
                Some(Value::String(t)) => Some(t.clone()),
                // A list of named templates: take the default one.
                Some(Value::Array(named)) => named
                    .iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                    .and_then(|t| t.get("template"))
                    .and_then(Value::as_str)
                    .map(str::to_string),
                _ => None,
            };
            let token_name = |field: &str| match config.get(field) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => {
                    o.get("content").and_then(Value::as_str).map(String::from)
                }
                _ => None,
            };
            tokenizer.bos_token = token_name("bos_token");
            tokenizer.eos_token = token_name("eos_token");
        }
        if tokenizer.chat_template.is_none() {
            let jinja = path.with_file_name("chat_template.jinja");
            if jinja.exists() {
                tokenizer.chat_template =
                    Some(std::fs::read_to_string(&jinja).map_err(io_error(&jinja))?);
            }
        }
        Ok(tokenizer)
    }

    /// Builds a tokenizer from a `tokenizer.json` document held in memory; `source` names it in
    /// errors.
    pub fn from_json(
        document: &Value,
        source: &Path,
        chat_template: Option<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self> {
        let inner: tokenizers::Tokenizer =
            serde_json::from_value(document.clone()).map_err(|e| ModelError::Tokenizer {
                path: source.to_path_buf(),
                problem: e.to_string(),
            })?;
        Ok(Self {
            inner,
            source: source.to_path_buf(),
            chat_template,
            bos_token,
            eos_token,
        })
    }

    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// The file the tokenizer came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The Jinja chat template the checkpoint ships, if any.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    fn error(&self, problem: impl ToString) -> ModelError {
        ModelError::Tokenizer {
            path: self.source.clone(),
            problem: problem.to_string(),
        }
    }

    /// Token ids of `text`, with the special tokens the tokenizer's post-processor adds (a BOS
    /// only where the model's tokenizer adds one). Special-token strings in the text, such as
    /// `<|im_start|>`, become their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.inner.encode(text, true).map_err(|e| self.error(e))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`; special tokens are dropped when `skip_special_tokens`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.error(e))
    }

    /// The id of a token string.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of tokens, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The chat format: recognised from the shipped template, ChatML when there is none.
    pub fn chat_format(&self) -> Result<ChatFormat> {
        match &self.chat_template {
            None => Ok(ChatFormat::ChatMl {
                default_system: None,
            }),
            Some(template) => ChatFormat::detect(template).ok_or_else(|| {
                self.error("chat template is neither chatml nor zephyr; not supported")
            }),
        }
    }

    /// Renders a conversation as the model's chat template does; with `add_generation_prompt`
    /// the text ends with the opening of an assistant turn.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let mut text = String::new();
        match self.chat_format()? {
            ChatFormat::ChatMl { default_system } => {
                if let Some(system) = default_system
                    && messages.first().is_none_or(|m| m.role != "system")
                {
                    text.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
                }
                for m in messages {
                    text.push_str(&format!(
                        "<|im_start|>{}\n{}<|im_end|>\n",
                        m.role, m.content
                    ));
                }
                if add_generation_prompt {
                    text.push_str("<|im_start|>assistant\n");
                }
            }
            ChatFormat::Zephyr => {
                let eos = self.eos_token.clone().unwrap_or_else(|| "</s>".into());
                for m in messages {
                    text.push_str(&format!("<|{}|>\n{}{eos}\n", m.role, m.content));
                }
                if add_generation_prompt {
                    text.push_str("<|assistant|>\n");
                }
            }
        }
        Ok(text)
    }

    /// Token ids that end an assistant turn in this chat format (besides the model's EOS).
    pub fn end_of_turn_ids(&self) -> Vec<u32> {
        let mut ids = Vec::new();
        let names = ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"];
        for name in names.iter().copied().chain(self.eos_token.as_deref()) {
            if let Some(id) = self.token_id(name)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// Writes `tokenizer.json` and a `tokenizer_config.json` (chat template, BOS/EOS names) into
    /// `folder`, each atomically.
    pub fn save(&self, folder: &Path) -> Result<()> {
        let path = folder.join("tokenizer.json");
        let document = self.inner.to_string(true).map_err(|e| self.error(e))?;
        crate::weights::write_atomic(&path, document.as_bytes())?;
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "chat_template": self.chat_template,
            "clean_up_tokenization_spaces": false,
            "model_max_length": 1_000_000_000_000_000i64,
        });
        let config_path = folder.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).expect("json value serialises");
        crate::weights::write_atomic(&config_path, text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    /// A byte-level vocabulary: the 256 byte symbols, two merges, and two control tokens.
    fn tiny_vocabulary(add_bos: bool) -> GgufVocabulary {
        let mut tokens = vec!["<|endoftext|>".to_string(), "<|im_start|>".to_string()];
        let mut types = vec![3, 3];
        // GPT-2's byte → printable-char table for the printable ASCII range is the identity,
        // and a space maps to 'Ġ'.
        for b in 33u8..=126 {
            tokens.push((b as char).to_string());
            types.push(1);
        }
        tokens.push("Ġ".into());
        types.push(1);
        tokens.push("he".into());
        types.push(1);
        tokens.push("Ġhe".into());
        types.push(1);
        GgufVocabulary {
            model: "gpt2".into(),
            pre: Some("smollm".into()),
            tokens,
            token_types: types,
            merges: vec!["h e".into(), "Ġ he".into()],
            bos_token_id: Some(1),
            eos_token_id: Some(0),
            add_bos_token: add_bos,
            chat_template: Some(SMOLLM_TEMPLATE.into()),
            ..Default::default()
        }
    }

    #[test]
    fn gguf_vocabulary_becomes_a_byte_level_bpe_tokenizer() {
        let tok = tiny_vocabulary(false)
            .to_tokenizer(Path::new("x.gguf"))
            .unwrap();
        let id = |t: &str| tok.token_id(t).unwrap();
        assert_eq!(tok.encode("he he").unwrap(), vec![id("he"), id("Ġhe")]);
        // Digits are split one by one (the smollm pre-tokenizer).
        assert_eq!(tok.encode("12").unwrap(), vec![id("1"), id("2")]);
        // Control tokens in text are single ids; no BOS is added.
        assert_eq!(tok.encode("<|im_start|>he").unwrap(), vec![1, id("he")]);
        assert_eq!(
            tok.decode(&[1, id("he"), id("Ġhe")], true).unwrap(),
            "he he"
        );
        assert_eq!(tok.decode(&[1, id("he")], false).unwrap(), "<|im_start|>he");
    }

    #[test]
    fn add_bos_token_puts_bos_first() {
        let tok = tiny_vocabulary(true)
            .to_tokenizer(Path::new("x.gguf"))
            .unwrap();
        assert_eq!(
            tok.encode("he").unwrap(),
            vec![1, tok.token_id("he").unwrap()]
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_refused_with_the_file_name() {
        let mut v = tiny_vocabulary(false);
        v.pre = Some("mystery".into());
        let e = v.to_tokenizer(Path::new("m.gguf")).unwrap_err().to_string();
        assert_eq!(
            e,
            "m.gguf: tokenizer: pre-tokenizer mystery is not supported"
        );
    }

    #[test]
    fn chatml_template_with_default_system_prompt() {
        let tok = tiny_vocabulary(false)
            .to_tokenizer(Path::new("x.gguf"))
            .unwrap();
        let text = tok
            .apply_chat_template(&[ChatMessage::new("user", "Hi")], true)
            .unwrap();
        assert_eq!(
            text,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_system = tok
            .apply_chat_template(
                &[
                    ChatMessage::new("system", "Be brief."),
                    ChatMessage::new("user", "Hi"),
                ],
                false,
            )
            .unwrap();
        assert_eq!(
            with_system,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn zephyr_template_is_recognised() {
        let t = "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' }}{% endif %}{% endfor %}";
        assert_eq!(ChatFormat::detect(t), Some(ChatFormat::Zephyr));
        assert_eq!(ChatFormat::detect("{{ messages }}"), None);
    }
}
