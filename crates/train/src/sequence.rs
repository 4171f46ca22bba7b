//! Token sequences for training: encoded examples, the truncation policy, and padded batches.
//!
//! A training sequence is `prompt ++ response`; only response tokens count in the loss. Batches
//! are right-padded: under the causal mask, padding after a sequence cannot change the logits of
//! the tokens before it, and padded positions are left out of the response mask.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::error::{Result, setting};

/// A preference pair as token ids: `chosen` is preferred with probability `soft_label ≥ 0.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPair {
    /// Prompt tokens (chat template applied, generation prompt included).
    pub prompt: Vec<u32>,
    /// Tokens of the preferred response, ending with the end-of-turn token.
    pub chosen: Vec<u32>,
    /// Tokens of the other response.
    pub rejected: Vec<u32>,
    /// `p̂ = P(chosen ≻ rejected)`, in [0.5, 1].
    pub soft_label: f64,
    /// Line (or record number) of the pair in its data file; 0 for generated data.
    pub source_line: usize,
}

/// A supervised example as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedExample {
    /// Prompt tokens.
    pub prompt: Vec<u32>,
    /// Response tokens, ending with the end-of-turn token.
    pub response: Vec<u32>,
    /// Line of the example in its data file; 0 for generated data.
    pub source_line: usize,
}

/// How long sequences are cut to fit `max_length` tokens (prompt + response).
///
/// The policy, applied per example (for a pair, with the longer of its two responses):
/// 1. when prompt + response is too long, the prompt loses tokens from the **left** (its start),
///    keeping at least its last `max_prompt_length` tokens when that is what it takes;
/// 2. then the response loses tokens from the **right** (its end) until the sum fits.
///
/// So the end of the prompt (the question being answered) and the start of the response survive.
///
/// ```
/// use softalign_train::Truncation;
/// let t = Truncation { max_length: 6, max_prompt_length: 2 };
/// let (mut prompt, mut response) = (vec![1, 2, 3, 4], vec![5, 6, 7, 8, 9]);
/// t.apply(&mut prompt, &mut [&mut response]);
/// assert_eq!(prompt, vec![3, 4]);
/// assert_eq!(response, vec![5, 6, 7, 8]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Most tokens of prompt + response.
    pub max_length: usize,
    /// Tokens of the prompt kept at least when the prompt is cut (clamped to `max_length − 1`).
    pub max_prompt_length: usize,
}

impl Truncation {
    /// Checks that a sequence can hold a prompt token and a response token.
    pub fn validate(&self) -> Result<()> {
        if self.max_length < 2 {
            return Err(setting(
                "max-length",
                format!("must be at least 2, got {}", self.max_length),
            ));
        }
        if self.max_prompt_length == 0 || self.max_prompt_length >= self.max_length {
            return Err(setting(
                "max-prompt-length",
                format!(
                    "must be at least 1 and below max-length ({}), got {}",
                    self.max_length, self.max_prompt_length
                ),
            ));
        }
        Ok(())
    }

    /// Cuts `prompt` and `responses` in place by the policy above; returns whether anything was cut.
    pub fn apply(&self, prompt: &mut Vec<u32>, responses: &mut [&mut Vec<u32>]) -> bool {
        let longest = responses.iter().map(|r| r.len()).max().unwrap_or(0);
        let mut cut = false;
        if prompt.len() + longest > self.max_length {
            let keep_prompt = self
                .max_length
                .saturating_sub(longest)
                .max(self.max_prompt_length.min(self.max_length - 1))
                .min(prompt.len());
            if keep_prompt < prompt.len() {
                prompt.drain(..prompt.len() - keep_prompt);
                cut = true;
            }
        }
        let room = self.max_length - prompt.len();
        for response in responses.iter_mut() {
            if response.len() > room {
                response.truncate(room);
                cut = true;
            }
        }
        cut
    }
}

/// Right-padded token ids and response masks of a batch of `prompt ++ response` sequences.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceBatch {
    /// Row-major token ids, `rows × width`.
    pub tokens: Vec<i64>,
    /// Row-major response mask (true on response tokens), `rows × width`.
    pub response_mask: Vec<bool>,
    /// Number of sequences.
    pub rows: usize,
    /// Length of the longest sequence.
    pub width: usize,
}

impl SequenceBatch {
    /// Packs `(prompt, response)` sequences, padding with `pad_id` on the right.
    pub fn new<'a>(
        sequences: impl IntoIterator<Item = (&'a [u32], &'a [u32])>,
        pad_id: u32,
    ) -> Self {
        let sequences: Vec<_> = sequences.into_iter().collect();
        let rows = sequences.len();
        let width = sequences
            .iter()
            .map(|(p, r)| p.len() + r.len())
            .max()
            .unwrap_or(0)
            .max(2);
        let mut tokens = vec![i64::from(pad_id); rows * width];
        let mut response_mask = vec![false; rows * width];
        for (row, (prompt, response)) in sequences.iter().enumerate() {
            let start = row * width;
            for (i, &id) in prompt.iter().chain(response.iter()).enumerate() {
                tokens[start + i] = i64::from(id);
            }
            for i in prompt.len()..prompt.len() + response.len() {
                response_mask[start + i] = true;
            }
        }
        Self {
            tokens,
            response_mask,
            rows,
            width,
        }
    }

    /// The token ids as a `[rows, width]` tensor.
    pub fn token_tensor(&self, device: &Device) -> Tensor<2, Int> {
        Tensor::from_data(
            TensorData::new(self.tokens.clone(), [self.rows, self.width]),
            device,
        )
    }

    /// The response mask as a `[rows, width]` tensor.
    pub fn mask_tensor(&self, device: &Device) -> Tensor<2, Bool> {
        Tensor::from_data(
            TensorData::new(self.response_mask.clone(), [self.rows, self.width]),
            device,
        )
    }

    /// Number of response tokens.
    pub fn response_tokens(&self) -> usize {
        self.response_mask.iter().filter(|&&m| m).count()
    }
}
