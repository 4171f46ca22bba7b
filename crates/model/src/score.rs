//! Per-token log-probabilities of texts under a model: for perplexity checks and for comparing
//! a model (or a loader) with a reference implementation token by token.

use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use crate::Pretrained;
use crate::error::Result;

/// The score of one text: `token_logps[i]` is `log p(input_ids[i + 1] | input_ids[..= i])`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextScore {
    /// The text as given.
    pub text: String,
    /// Number of tokens it encodes to (no special tokens added).
    pub tokens: usize,
    /// The token ids.
    pub input_ids: Vec<u32>,
    /// Log-probability of each token after the first, `tokens − 1` values.
    pub token_logps: Vec<f64>,
    /// Their sum.
    pub sum_logp: f64,
    /// `exp(−sum_logp / (tokens − 1))`; `None` when the text has fewer than two tokens (nothing
    /// is predicted).
    pub perplexity: Option<f64>,
}

/// Scores `text`, encoded with no added special tokens (as the golden files and transformers'
/// `tokenizer(text, add_special_tokens=False)` do), in one forward pass.
pub fn score_text(pretrained: &Pretrained, text: &str) -> Result<TextScore> {
    let input_ids = pretrained.tokenizer.encode(text)?;
    let token_logps: Vec<f64> = if input_ids.len() < 2 {
        Vec::new()
    } else {
        let device = pretrained.model.embed_tokens.val().device();
        let ids: Vec<i64> = input_ids.iter().map(|&t| t as i64).collect();
        let tokens =
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, input_ids.len()]), &device);
        pretrained
            .model
            .next_token_logps(tokens)
            .into_data()
            .iter::<f32>()
            .map(f64::from)
            .collect()
    };
    let sum_logp: f64 = token_logps.iter().sum();
    let perplexity =
        (!token_logps.is_empty()).then(|| (-sum_logp / token_logps.len() as f64).exp());
    Ok(TextScore {
        text: text.to_string(),
        tokens: input_ids.len(),
        input_ids,
        token_logps,
        sum_logp,
        perplexity,
    })
}
