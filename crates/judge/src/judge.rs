//! The AI-feedback judge (GDPO paper §4.1): a language model reads the context and two outputs
//! and its log-probabilities of answering `(1)` and `(2)` give a soft preference label.
//!
//! `score(k) = log p_judge("(k)" | prompt)`, summed over the answer's tokens; the one-order
//! probability is `exp(score(1)) / (exp(score(1)) + exp(score(2)))`. The pair is judged in both
//! orders and the two probabilities that the *first-given* output is preferred are averaged,
//! which cancels the judge's position bias to first order.
//!
//! Tokenization: the answer is appended to the prompt text and the whole text encoded, so the
//! answer's tokens are exactly those the judge's tokenizer would produce there (a BPE merges
//! `": "` and `"("` differently from `":"` and `" ("`). The tokens the two continuations share
//! with the bare prompt form the context; everything after it is scored for each answer. Tokens
//! both answers share contribute equally to both scores and cancel in the softmax.

use rayon::prelude::*;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};
use softalign_data::{Prompt, Role};
use softalign_model::{CausalLm, ChatMessage, KvCache, Pretrained, TextTokenizer};
use softalign_pref::response_logps;
use softalign_train::SequenceBatch;

use crate::error::{JudgeError, Result, setting};
use crate::template::JudgeTemplate;

/// The two answers the judge chooses between.
pub const ANSWERS: [&str; 2] = ["(1)", "(2)"];

/// How the judge reads pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSettings {
    /// Tokens of the context kept (its end: the question being answered) [default 384].
    pub max_context_tokens: usize,
    /// Tokens of each output kept (its start) [default 256].
    pub max_output_tokens: usize,
    /// Render the prompt with the judge's chat template when it has one [default true].
    pub chat: bool,
    /// Pairs judged per forward pass. 1 runs each judge prompt once through a KV cache and
    /// continues it with each answer (the least work); more pads prompts + answers into one
    /// batch (more work per pair, fewer passes).
    pub batch_size: usize,
}

impl Default for JudgeSettings {
    fn default() -> Self {
        Self {
            max_context_tokens: 384,
            max_output_tokens: 256,
            chat: true,
            batch_size: 1,
        }
    }
}

impl JudgeSettings {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_context_tokens == 0 {
            return Err(setting("max-context-tokens", "must be at least 1"));
        }
        if self.max_output_tokens == 0 {
            return Err(setting("max-output-tokens", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(setting("batch-size", "must be at least 1"));
        }
        Ok(())
    }
}

/// The verdict on one pair (first, second), every probability that of `first ≻ second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// With `first` shown as output (1): `softmax(score)[0]`.
    pub p_order_ab: f64,
    /// With `first` shown as output (2) (the swapped prompt): `softmax(score)[1]`.
    pub p_order_ba: f64,
    /// The average of the two: the soft label p̂_AI.
    pub p: f64,
}

impl Judgement {
    /// The verdict from the answer scores of both orders: `scores_ab` with `first` as (1),
    /// `scores_ba` with `first` as (2).
    ///
    /// ```
    /// use softalign_judge::Judgement;
    /// // The judge always prefers whichever output is shown first (pure position bias):
    /// // 0.8 in one order, 0.2 in the other; the average carries no preference.
    /// let ln = f64::ln;
    /// let j = Judgement::from_scores([ln(0.8), ln(0.2)], [ln(0.8), ln(0.2)]);
    /// assert!((j.p_order_ab - 0.8).abs() < 1e-12 && (j.p_order_ba - 0.2).abs() < 1e-12);
    /// assert!((j.p - 0.5).abs() < 1e-12);
    /// ```
    pub fn from_scores(scores_ab: [f64; 2], scores_ba: [f64; 2]) -> Self {
        let p_order_ab = first_probability(scores_ab);
        let p_order_ba = 1.0 - first_probability(scores_ba);
        Self {
            p_order_ab,
            p_order_ba,
            p: 0.5 * (p_order_ab + p_order_ba),
        }
    }

    /// The same verdict seen from the other output: every probability `p → 1 − p`, and the two
    /// orders trade places.
    pub fn swapped(self) -> Self {
        Self {
            p_order_ab: 1.0 - self.p_order_ba,
            p_order_ba: 1.0 - self.p_order_ab,
            p: 1.0 - self.p,
        }
    }
}

/// `exp(s₀) / (exp(s₀) + exp(s₁))`, computed as `σ(s₀ − s₁)`.
fn first_probability(scores: [f64; 2]) -> f64 {
    softalign_pref::sigmoid(scores[0] - scores[1])
}

/// One pair to judge.
#[derive(Debug, Clone, Copy)]
pub struct JudgeItem<'a> {
    /// The context both outputs answer.
    pub context: &'a Prompt,
    /// The output whose preference probability is reported.
    pub first: &'a str,
    /// The other output.
    pub second: &'a str,
    /// Where the pair came from (for errors).
    pub line: usize,
}

/// A judge model with its tokenizer, template and settings.
#[derive(Debug)]
pub struct Judge {
    model: CausalLm,
    tokenizer: TextTokenizer,
    template: JudgeTemplate,
    settings: JudgeSettings,
    chat: bool,
    bos_prefix: Vec<u32>,
}

impl Judge {
    /// A judge from a loaded model (moved to inference mode).
    pub fn new(
        pretrained: Pretrained,
        template: JudgeTemplate,
        settings: JudgeSettings,
    ) -> Result<Self> {
        settings.validate()?;
        let chat = settings.chat && pretrained.tokenizer.chat_template().is_some();
        let bos_prefix = pretrained.tokenizer.encode("")?;
        Ok(Self {
            model: pretrained.model.valid(),
            tokenizer: pretrained.tokenizer,
            template,
            settings,
            chat,
            bos_prefix,
        })
    }

    /// Whether prompts go through the judge's chat template.
    pub fn uses_chat_template(&self) -> bool {
        self.chat
    }

    /// The settings.
    pub fn settings(&self) -> &JudgeSettings {
        &self.settings
    }

    /// Text of `ids` without the tokenizer's BOS, cut to `limit` tokens at its start
    /// (`keep_end`) or its end; a cut is marked with `[…]`.
    fn truncate(&self, text: &str, limit: usize, keep_end: bool) -> Result<String> {
        let mut ids = self.tokenizer.encode(text)?;
        if !self.bos_prefix.is_empty() && ids.starts_with(&self.bos_prefix) {
            ids.drain(..self.bos_prefix.len());
        }
        if ids.len() <= limit {
            return Ok(text.to_string());
        }
        let kept = if keep_end {
            &ids[ids.len() - limit..]
        } else {
            &ids[..limit]
        };
        let piece = self.tokenizer.decode(kept, true)?;
        let piece = piece.trim_matches('\u{fffd}');
        Ok(if keep_end {
            format!("[…]{piece}")
        } else {
            format!("{piece}[…]")
        })
    }

    /// The context as the judge reads it: plain text, or a conversation as `User: …` /
    /// `Assistant: …` paragraphs; cut to its last `max_context_tokens` tokens.
    pub fn context_text(&self, context: &Prompt) -> Result<String> {
        let text = match context {
            Prompt::Text(text) => text.clone(),
            Prompt::Chat(messages) => messages
                .iter()
                .map(|m| {
                    let who = match m.role {
                        Role::System => "System",
                        Role::User => "User",
                        Role::Assistant => "Assistant",
                        Role::Tool => "Tool",
                    };
                    format!("{who}: {}", m.content)
                })
                .collect::<Vec<_>>()
                .join("\n\n"),
        };
        self.truncate(&text, self.settings.max_context_tokens, true)
    }

    /// The full judge prompt (before the answer) for `first` as output (1) and `second` as (2);
    /// `context` as returned by [`Judge::context_text`].
    pub fn prompt_text(&self, context: &str, first: &str, second: &str) -> Result<String> {
        let first = self.truncate(first, self.settings.max_output_tokens, false)?;
        let second = self.truncate(second, self.settings.max_output_tokens, false)?;
        let rendered = self.template.render(context, &first, &second);
        if !self.chat {
            return Ok(rendered.plain());
        }
        let messages = [ChatMessage::new("user", rendered.user.clone())];
        match &rendered.assistant_lead {
            Some(lead) => {
                let mut text = self.tokenizer.apply_chat_template(&messages, true)?;
                text.push_str(lead);
                Ok(text)
            }
            None => Ok(self.tokenizer.apply_chat_template(&messages, true)?),
        }
    }

    /// Ids of a judge prompt: a chat-rendered one without a second BOS (its template wrote one).
    fn encode_prompt(&self, text: &str) -> Result<Vec<u32>> {
        Ok(if self.chat {
            self.tokenizer.encode_chat(text)?
        } else {
            self.tokenizer.encode(text)?
        })
    }

    /// The shared context ids and each answer's ids after it (see the module documentation).
    fn split_answers(&self, prompt: &str) -> Result<(Vec<u32>, [Vec<u32>; 2])> {
        let bare = self.encode_prompt(prompt)?;
        let full = [
            self.encode_prompt(&format!("{prompt}{}", ANSWERS[0]))?,
            self.encode_prompt(&format!("{prompt}{}", ANSWERS[1]))?,
        ];
        let common = |a: &[u32], b: &[u32]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
        let shared = common(&full[0], &bare).min(common(&full[1], &bare));
        let context = full[0][..shared].to_vec();
        let answers = [full[0][shared..].to_vec(), full[1][shared..].to_vec()];
        Ok((context, answers))
    }

    /// `[score(1), score(2)]` of one judge prompt.
    pub fn answer_scores(&self, prompt: &str) -> Result<[f64; 2]> {
        let (context, answers) = self.split_answers(prompt)?;
        if context.is_empty() {
            return Err(setting(
                "template",
                "the judge prompt shares no token with its answers",
            ));
        }
        let device = self.model.embed_tokens.val().device();
        let row = |ids: &[u32]| {
            let ids: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
            let len = ids.len();
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, len]), &device)
        };
        let host = |t: Tensor<2>| -> Vec<f32> {
            t.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 logits")
        };
        let mut cache = KvCache::new(&self.model);
        let after_context = host(self.model.forward_cached(row(&context), &mut cache));
        let mut scores = [0.0; 2];
        for (k, answer) in answers.iter().enumerate() {
            let mut cache = cache.clone();
            let mut logits = after_context.clone();
            for (i, &token) in answer.iter().enumerate() {
                scores[k] += log_softmax_at(&logits, token as usize);
                if i + 1 < answer.len() {
                    logits = host(self.model.forward_cached(row(&[token]), &mut cache));
                }
            }
        }
        Ok(scores)
    }

    /// `[score(1), score(2)]` of several judge prompts in padded batches of full sequences.
    fn batched_scores(&self, prompts: &[String]) -> Result<Vec<[f64; 2]>> {
        let device = self.model.embed_tokens.val().device();
        let mut rows = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            let (context, answers) = self.split_answers(prompt)?;
            if context.is_empty() {
                return Err(setting(
                    "template",
                    "the judge prompt shares no token with its answers",
                ));
            }
            let [a, b] = answers;
            rows.push((context, a, b));
        }
        let sequences = rows
            .iter()
            .flat_map(|(c, a, b)| [(c.as_slice(), a.as_slice()), (c.as_slice(), b.as_slice())]);
        let pad = self.model.config.pad_token_id();
        let batch = SequenceBatch::new(sequences, pad);
        let tokens = batch.token_tensor(&device);
        let token_logps = self.model.next_token_logps(tokens);
        let logps: Vec<f64> = response_logps(token_logps, batch.mask_tensor(&device))
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("f64 log-probabilities");
        Ok(logps.chunks(2).map(|s| [s[0], s[1]]).collect())
    }

    /// Judges `items` in both orders; `path` names the data file in errors.
    pub fn judge(&self, items: &[JudgeItem<'_>], path: &Path) -> Result<Vec<Judgement>> {
        let mut prompts = Vec::with_capacity(2 * items.len());
        for item in items {
            let context = self.context_text(item.context)?;
            prompts.push(self.prompt_text(&context, item.first, item.second)?);
            prompts.push(self.prompt_text(&context, item.second, item.first)?);
        }
        let scores = if self.settings.batch_size == 1 {
            // Each prompt (both orders of each pair) on its own KV cache, one per thread.
            prompts
                .par_iter()
                .map(|p| self.answer_scores(p))
                .collect::<Result<Vec<_>>>()?
        } else {
            self.batched_scores(&prompts)?
        };
        items
            .iter()
            .zip(scores.chunks(2))
            .map(|(item, s)| {
                for pair in s {
                    if !pair.iter().all(|v| v.is_finite()) {
                        return Err(JudgeError::NonFinite {
                            path: path.to_path_buf(),
                            line: item.line,
                            scores: *pair,
                        });
                    }
                }
                Ok(Judgement::from_scores(s[0], s[1]))
            })
            .collect()
    }
}

/// `log softmax(logits)[index]`, in f64.
fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits[index] as f64 - max - sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_averaged_when_they_disagree() {
        let ln = f64::ln;
        // First order: the judge prefers output (1) = first with 0.9. Swapped order: it prefers
        // output (1) = second with 0.7, i.e. P(first ≻ second) = 0.3 there.
        let j = Judgement::from_scores([ln(0.9), ln(0.1)], [ln(0.7), ln(0.3)]);
        assert!((j.p_order_ab - 0.9).abs() < 1e-12);
        assert!((j.p_order_ba - 0.3).abs() < 1e-12);
        assert!((j.p - 0.6).abs() < 1e-12);
        let s = j.swapped();
        assert!((s.p - 0.4).abs() < 1e-12);
        assert!((s.p_order_ab - 0.7).abs() < 1e-12 && (s.p_order_ba - 0.1).abs() < 1e-12);
    }

    #[test]
    fn scores_need_not_be_normalised() {
        // Only the difference of the scores matters.
        let a = Judgement::from_scores([-3.0, -5.0], [-1.0, -1.5]);
        let b = Judgement::from_scores([-30.0, -32.0], [0.0, -0.5]);
        assert!((a.p - b.p).abs() < 1e-12);
    }

    #[test]
    fn log_softmax_is_normalised() {
        let logits = [1.0f32, 2.0, 3.0, -40.0];
        let total: f64 = (0..4).map(|i| log_softmax_at(&logits, i).exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
}
