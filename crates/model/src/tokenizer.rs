//! The model's own tokenizer (Hugging Face `tokenizers`), read from `tokenizer.json` or rebuilt
//! from a GGUF vocabulary, with the chat template.
//!
//! Text is encoded exactly as the model's tokenizer encodes it: special tokens (BOS) come only
//! from the tokenizer's post-processor, which for GGUF files is built from `add_bos_token`.
//! Conversations are rendered by the checkpoint's own Jinja chat template
//! ([`crate::chat_template`]), or as ChatML when the checkpoint ships none.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::chat_template::{ChatTemplate, TemplateTokens};
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

/// A tokenizer with the facts about special tokens and chat format that generation needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    source: PathBuf,
    chat_template: Option<ChatTemplate>,
    tokens: TemplateTokens,
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
    /// Reads `tokenizer.json`, and beside it the chat template and the BOS and EOS token names as
    /// `transformers` finds them: the template from `chat_template.jinja` when present, else from
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of `{name, template}` whose
    /// `default` is used); `bos_token` and `eos_token` from `tokenizer_config.json` (a string or an
    /// `{"content": …}` object), else from `special_tokens_map.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        // Parsed as JSON first, then built from the value: tokenizers' own reader panics on some
        // malformed documents (its decoder helper `expect`s), but never on a JSON value.
        let document = read_json(path)?;
        let inner: tokenizers::Tokenizer =
            serde_json::from_value(document).map_err(|e| ModelError::Tokenizer {
                path: path.to_path_buf(),
                problem: e.to_string(),
            })?;
        let mut tokenizer = Self {
            inner,
            source: path.to_path_buf(),
            chat_template: None,
            tokens: TemplateTokens::default(),
        };
        for name in ["tokenizer_config.json", "special_tokens_map.json"] {
            let config_path = path.with_file_name(name);
            if !config_path.exists() {
                continue;
            }
            let config = read_json(&config_path)?;
            let token_name = |field: &str| match config.get(field) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(o)) => {
                    o.get("content").and_then(Value::as_str).map(String::from)
                }
                _ => None,
            };
            let tokens = &mut tokenizer.tokens;
            tokens.bos_token = tokens.bos_token.take().or_else(|| token_name("bos_token"));
            tokens.eos_token = tokens.eos_token.take().or_else(|| token_name("eos_token"));
            if name == "tokenizer_config.json" {
                tokenizer.chat_template = config_template(&config, &config_path)?;
            }
        }
        let jinja = path.with_file_name("chat_template.jinja");
        if jinja.exists() {
            let text = std::fs::read_to_string(&jinja).map_err(io_error(&jinja))?;
            tokenizer.chat_template = Some(ChatTemplate::new(text, &jinja, "template"));
        }
        Ok(tokenizer)
    }

    /// Builds a tokenizer from a `tokenizer.json` document held in memory; `source` names it in
    /// errors (a GGUF file's template is reported as its `tokenizer.chat_template`).
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
        let is_gguf = source
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let field = if is_gguf {
            "tokenizer.chat_template"
        } else {
            "chat_template"
        };
        Ok(Self {
            inner,
            source: source.to_path_buf(),
            chat_template: chat_template.map(|text| ChatTemplate::new(text, source, field)),
            tokens: TemplateTokens {
                bos_token,
                eos_token,
            },
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
        self.chat_template.as_ref().map(ChatTemplate::source)
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

    /// Token ids of a conversation rendered by [`TextTokenizer::apply_chat_template`] (perhaps
    /// followed by text of the caller's). The checkpoint's template writes its special tokens
    /// itself (`{{ bos_token }}` included), so, as `transformers`' `apply_chat_template(…,
    /// tokenize=True)` does, the post-processor adds none: no second BOS. The built-in ChatML of a
    /// tokenizer without a template has no BOS of its own and is encoded as plain text is.
    pub fn encode_chat(&self, rendered: &str) -> Result<Vec<u32>> {
        let add_special_tokens = self.chat_template.is_none();
        let encoding = self
            .inner
            .encode(rendered, add_special_tokens)
            .map_err(|e| self.error(e))?;
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

    /// Renders a conversation as `transformers`' `apply_chat_template(messages,
    /// add_generation_prompt=…, tokenize=False)` does with the checkpoint's own template; with
    /// `add_generation_prompt` the text ends with the opening of an assistant turn. A tokenizer
    /// without a template renders ChatML (`<|im_start|>role\ncontent<|im_end|>\n`, and
    /// `<|im_start|>assistant\n` as the generation prompt), where `transformers` would refuse.
    /// Encode the result with [`TextTokenizer::encode_chat`].
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        if let Some(template) = &self.chat_template {
            return template.render(messages, add_generation_prompt, &self.tokens);
        }
        let mut text = String::new();
        for m in messages {
            text.push_str(&format!(
                "<|im_start|>{}\n{}<|im_end|>\n",
                m.role, m.content
            ));
        }
        if add_generation_prompt {
            text.push_str("<|im_start|>assistant\n");
        }
        Ok(text)
    }

    /// Token ids that end an assistant turn, the one the chat template writes after an
    /// assistant's reply first (`<|eot_id|>` for Llama 3, `<end_of_turn>` for Gemma, `<|end|>`
    /// for Phi-3, `<|im_end|>` for ChatML, `</s>` for Mistral), then the well-known end-of-turn
    /// tokens the vocabulary has, then the EOS token. Responses are ended with the first.
    pub fn end_of_turn_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.template_turn_end().into_iter().collect();
        let names = [
            "<|im_end|>",
            "<|endoftext|>",
            "</s>",
            "<|eot_id|>",
            "<end_of_turn>",
            "<|end|>",
        ];
        for name in names
            .iter()
            .copied()
            .chain(self.tokens.eos_token.as_deref())
        {
            if let Some(id) = self.token_id(name)
                && !ids.contains(&id)
            {
                ids.push(id);
            }
        }
        ids
    }

    /// The special token the template writes right after an assistant's reply, found by
    /// rendering a two-turn probe conversation.
    fn template_turn_end(&self) -> Option<u32> {
        let template = self.chat_template.as_ref()?;
        const REPLY: &str = "softalign-probe-reply";
        let probe = [
            ChatMessage::new("user", "softalign-probe-question"),
            ChatMessage::new("assistant", REPLY),
        ];
        let text = template.render(&probe, false, &self.tokens).ok()?;
        let after = &text[text.rfind(REPLY)? + REPLY.len()..];
        let first = *self.inner.encode(after, false).ok()?.get_ids().first()?;
        let added = self.inner.get_added_tokens_decoder();
        added
            .get(&first)
            .is_some_and(|t| t.special)
            .then_some(first)
    }

    /// Writes `tokenizer.json`, a `tokenizer_config.json` (chat template, BOS/EOS names) and the
    /// template again as `chat_template.jinja` (the file `transformers` ≥ 4.43 reads first and
    /// writes itself) into `folder`, each atomically. A tokenizer without a template removes a
    /// `chat_template.jinja` left in `folder`, which would otherwise be read back as its template.
    pub fn save(&self, folder: &Path) -> Result<()> {
        let path = folder.join("tokenizer.json");
        let document = self.inner.to_string(true).map_err(|e| self.error(e))?;
        crate::weights::write_atomic(&path, document.as_bytes())?;
        let config = json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.tokens.bos_token,
            "eos_token": self.tokens.eos_token,
            "chat_template": self.chat_template(),
            "clean_up_tokenization_spaces": false,
            "model_max_length": 1_000_000_000_000_000i64,
        });
        let config_path = folder.join("tokenizer_config.json");
        let text = serde_json::to_string_pretty(&config).expect("json value serialises");
        crate::weights::write_atomic(&config_path, text.as_bytes())?;
        let jinja = folder.join("chat_template.jinja");
        match self.chat_template() {
            Some(template) => crate::weights::write_atomic(&jinja, template.as_bytes()),
            None if jinja.exists() => std::fs::remove_file(&jinja).map_err(io_error(&jinja)),
            None => Ok(()),
        }
    }
}

/// A JSON file's value.
fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    serde_json::from_str(&text).map_err(|cause| ModelError::Json {
        path: path.to_path_buf(),
        cause,
    })
}

/// `tokenizer_config.json`'s `chat_template`: a string, or a list of named templates whose
/// `default` one is used.
fn config_template(config: &Value, path: &Path) -> Result<Option<ChatTemplate>> {
    let problem = |problem: &str| ModelError::Config {
        path: path.to_path_buf(),
        field: "chat_template".into(),
        problem: problem.into(),
    };
    match config.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(ChatTemplate::new(
            text.as_str(),
            path,
            "chat_template",
        ))),
        Some(Value::Array(named)) => {
            let default = named
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .ok_or_else(|| problem("a list of named templates without a \"default\" one"))?;
            let text = default
                .get("template")
                .and_then(Value::as_str)
                .ok_or_else(|| problem("the \"default\" entry has no template string"))?;
            Ok(Some(ChatTemplate::new(text, path, "chat_template")))
        }
        Some(_) => Err(problem(
            "expected a string or a list of {name, template} objects",
        )),
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
    fn template_bos_is_not_doubled_and_turns_end_with_the_templates_token() {
        let mut vocabulary = tiny_vocabulary(true);
        vocabulary.chat_template = Some(
            "{{ bos_token }}{% for m in messages %}{{ m.role }}:{{ m.content }}{{ eos_token }}{% endfor %}"
                .into(),
        );
        let tok = vocabulary.to_tokenizer(Path::new("x.gguf")).unwrap();
        let text = tok
            .apply_chat_template(&[ChatMessage::new("user", "he")], false)
            .unwrap();
        assert_eq!(text, "<|im_start|>user:he<|endoftext|>");
        // The template wrote the BOS; the post-processor (add_bos_token) adds no second one.
        let ids = tok.encode_chat(&text).unwrap();
        assert_eq!(ids.iter().filter(|&&id| id == 1).count(), 1);
        assert_eq!(ids[0], 1);
        assert_eq!(tok.encode(&text).unwrap()[..2], [1, 1]);
        // The token after the assistant's reply in the probe is the EOS here.
        assert_eq!(tok.end_of_turn_ids()[0], 0);
    }

    #[test]
    fn template_errors_name_the_gguf_field() {
        let mut vocabulary = tiny_vocabulary(false);
        vocabulary.chat_template = Some("{{ raise_exception('no') }}".into());
        let tok = vocabulary.to_tokenizer(Path::new("m.gguf")).unwrap();
        let e = tok.apply_chat_template(&[], true).unwrap_err().to_string();
        assert_eq!(
            e,
            "m.gguf: tokenizer.chat_template: no (raised by the template, line 1)"
        );
    }
}
