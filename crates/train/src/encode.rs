//! Turning text examples into token ids with the model's own tokenizer and chat template.
//!
//! The prompt is rendered by the model's own chat template with the assistant's generation prompt
//! at its end (or used as plain text), and encoded as `transformers`' `apply_chat_template(…,
//! tokenize=True)` encodes it: the template writes the BOS, the tokenizer adds none. Each response
//! is the assistant's turn: its text encoded on its own and followed by the token the template
//! ends an assistant turn with (`<|im_end|>` for ChatML, `<|eot_id|>` for Llama 3,
//! `<end_of_turn>` for Gemma, `<|end|>` for Phi-3, `</s>` for Mistral) or the model's EOS. The
//! prompt and response ids are concatenated, as TRL does, and cut by the [`Truncation`] policy.

use std::path::{Path, PathBuf};

use softalign_data::{PreferencePair, Prompt};
use softalign_model::{ChatMessage, ModelConfig, TextTokenizer};

use crate::error::{Result, TrainError, setting};
use crate::sequence::{EncodedExample, EncodedPair, Truncation};

/// How prompts are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptTemplate {
    /// The chat template when the tokenizer ships one, else plain text.
    Auto,
    /// Always the chat template (ChatML when the tokenizer ships none).
    Chat,
    /// Plain text: a conversation's messages are joined by blank lines.
    Plain,
}

impl std::str::FromStr for PromptTemplate {
    type Err = TrainError;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "auto" => Ok(Self::Auto),
            "chat" => Ok(Self::Chat),
            "plain" => Ok(Self::Plain),
            other => Err(setting(
                "template",
                format!("unknown template {other:?} (expected auto, chat or plain)"),
            )),
        }
    }
}

/// Encodes examples for one model.
#[derive(Debug)]
pub struct Encoder<'a> {
    tokenizer: &'a TextTokenizer,
    chat: bool,
    end_id: u32,
    bos_prefix: Vec<u32>,
    truncation: Truncation,
    /// Bytes of text that surely hold more than `max_length` tokens (see [`text_bound`]).
    text_bound: usize,
    source: PathBuf,
    /// Examples cut by the truncation policy so far.
    pub truncated: usize,
}

impl<'a> Encoder<'a> {
    /// An encoder for `tokenizer` and `config`'s special tokens; `source` names the data file in
    /// errors.
    pub fn new(
        tokenizer: &'a TextTokenizer,
        config: &ModelConfig,
        template: PromptTemplate,
        truncation: Truncation,
        source: &Path,
    ) -> Result<Self> {
        truncation.validate()?;
        let chat = match template {
            PromptTemplate::Auto => tokenizer.chat_template().is_some(),
            PromptTemplate::Chat => true,
            PromptTemplate::Plain => false,
        };
        let end_id = if chat {
            tokenizer.end_of_turn_ids().first().copied()
        } else {
            None
        }
        .or_else(|| config.eos_token_ids.first().copied())
        .ok_or_else(|| {
            setting(
                "model",
                "the model has no end-of-sequence token to end responses with",
            )
        })?;
        // What the tokenizer's post-processor puts before any text (a BOS, for some models).
        let bos_prefix = tokenizer.encode("")?;
        Ok(Self {
            tokenizer,
            chat,
            end_id,
            bos_prefix,
            text_bound: text_bound(tokenizer, truncation.max_length),
            truncation,
            source: source.to_path_buf(),
            truncated: 0,
        })
    }

    /// Whether prompts go through the chat template.
    pub fn uses_chat_template(&self) -> bool {
        self.chat
    }

    /// The prompt's ids: a chat prompt with the BOS its template writes, plain text with the BOS
    /// the tokenizer adds (if any).
    pub fn prompt_ids(&self, prompt: &Prompt) -> Result<Vec<u32>> {
        if self.chat {
            let messages: Vec<ChatMessage> = prompt
                .to_messages()
                .into_iter()
                .map(|m| ChatMessage::new(m.role.as_str(), tail(&m.content, self.text_bound)))
                .collect();
            let text = self.tokenizer.apply_chat_template(&messages, true)?;
            return Ok(self.tokenizer.encode_chat(&text)?);
        }
        let text = match prompt {
            Prompt::Text(text) => tail(text, self.text_bound).to_string(),
            Prompt::Chat(messages) => messages
                .iter()
                .map(|m| tail(&m.content, self.text_bound))
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        Ok(self.tokenizer.encode(&text)?)
    }

    /// A response's ids: the text without the tokenizer's BOS, then the end token.
    pub fn response_ids(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(head(text, self.text_bound))?;
        if !self.bos_prefix.is_empty() && ids.starts_with(&self.bos_prefix) {
            ids.drain(..self.bos_prefix.len());
        }
        ids.push(self.end_id);
        Ok(ids)
    }

    /// A prompt that cannot be encoded (a chat template refusing the conversation, as Gemma's
    /// does for a system turn), named by its record.
    fn prompt_error(&self, error: TrainError, line: usize) -> TrainError {
        TrainError::Record {
            path: self.source.clone(),
            line,
            field: "prompt",
            problem: error.to_string(),
        }
    }

    fn check_prompt(&self, prompt: &[u32], line: usize) -> Result<()> {
        if prompt.is_empty() {
            return Err(TrainError::Record {
                path: self.source.clone(),
                line,
                field: "prompt",
                problem: "encodes to no tokens".into(),
            });
        }
        Ok(())
    }

    /// Encodes and truncates a preference pair.
    pub fn pair(&mut self, pair: &PreferencePair) -> Result<EncodedPair> {
        let mut prompt = self
            .prompt_ids(&pair.prompt)
            .map_err(|e| self.prompt_error(e, pair.source_line))?;
        self.check_prompt(&prompt, pair.source_line)?;
        let mut chosen = self.response_ids(&pair.chosen)?;
        let mut rejected = self.response_ids(&pair.rejected)?;
        if self
            .truncation
            .apply(&mut prompt, &mut [&mut chosen, &mut rejected])
        {
            self.truncated += 1;
        }
        Ok(EncodedPair {
            prompt,
            chosen,
            rejected,
            soft_label: pair.soft_label,
            source_line: pair.source_line,
        })
    }

    /// Encodes and truncates a supervised example.
    pub fn example(
        &mut self,
        prompt: &Prompt,
        response: &str,
        line: usize,
    ) -> Result<EncodedExample> {
        let mut prompt = self
            .prompt_ids(prompt)
            .map_err(|e| self.prompt_error(e, line))?;
        self.check_prompt(&prompt, line)?;
        let mut response = self.response_ids(response)?;
        if self.truncation.apply(&mut prompt, &mut [&mut response]) {
            self.truncated += 1;
        }
        Ok(EncodedExample {
            prompt,
            response,
            source_line: line,
        })
    }
}

/// Bytes of text that encode to more than `max_length` tokens whatever they hold: no token spans
/// more bytes than the longest entry of the vocabulary (at least 4, a UTF-8 character that is
/// unknown to it), so `(max_length + 8) × longest` bytes give more tokens than truncation keeps.
/// Texts are cut to this before tokenizing: a 50 MB response would otherwise take gigabytes
/// and tens of seconds to encode, only to be cut to `max_length` tokens.
fn text_bound(tokenizer: &TextTokenizer, max_length: usize) -> usize {
    let longest = tokenizer
        .inner()
        .get_vocab(true)
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(4);
    max_length.saturating_add(8).saturating_mul(longest)
}

/// The first at most `bound` bytes of `text`, cut at a character boundary (a response keeps its
/// start under truncation).
fn head(text: &str, bound: usize) -> &str {
    if text.len() <= bound {
        return text;
    }
    let mut end = bound;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The last at most `bound` bytes of `text`, cut at a character boundary (a prompt keeps its
/// end under truncation).
fn tail(text: &str, bound: usize) -> &str {
    if text.len() <= bound {
        return text;
    }
    let mut start = text.len() - bound;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_tail_cut_at_character_boundaries() {
        assert_eq!(head("héllo", 2), "h");
        assert_eq!(head("héllo", 3), "hé");
        assert_eq!(tail("héllo", 4), "llo");
        assert_eq!(tail("héllo", 5), "éllo");
        assert_eq!(head("ab", 10), "ab");
    }
}
