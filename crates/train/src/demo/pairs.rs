//! Preference pairs for the demo: two responses sampled from the SFT model per prompt, labelled by
//! Bradley–Terry on the true reward, `p̂ = σ(κ·(r(y₁) − r(y₂)))`.

use rand::Rng;
use softalign_model::{CausalLm, GenerationConfig, Sampling, TextTokenizer, generate};
use softalign_pref::{orient_pair, sigmoid};

use super::task::{EOS_ID, Prompt, prompt_text, true_reward};
use crate::error::Result;
use crate::sequence::EncodedPair;

/// κ, the Bradley–Terry scale on the true reward. A one-digit difference in quality (reward gap
/// 1/3) gives p̂ = σ(0.5) ≈ 0.62; two digits ≈ 0.73; three ≈ 0.82: modestly confident labels.
pub const LABEL_SCALE: f64 = 1.5;

/// The Bradley–Terry probability that a response of reward `first` is preferred to one of reward
/// `second`: `σ(κ (first − second))`.
///
/// ```
/// use softalign_train::demo::pairs::bradley_terry;
/// assert_eq!(bradley_terry(-1.0, -1.0), 0.5);
/// assert!((bradley_terry(0.0, -1.0 / 3.0) - 0.6225).abs() < 1e-4);
/// assert!((bradley_terry(-1.0, 0.0) + bradley_terry(0.0, -1.0) - 1.0).abs() < 1e-12);
/// ```
pub fn bradley_terry(first: f64, second: f64) -> f64 {
    sigmoid(LABEL_SCALE * (first - second))
}

/// A labelled pair of responses to one prompt, before tokenization.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPair {
    /// The prompt.
    pub prompt: Prompt,
    /// The preferred response (p̂ ≥ 0.5).
    pub chosen: String,
    /// The other response.
    pub rejected: String,
    /// Bradley–Terry probability that `chosen` is preferred, in [0.5, 1).
    pub soft_label: f64,
}

/// Labels two responses by Bradley–Terry on the true reward and orients them so the preferred one
/// comes first. `None` when their true rewards are equal (identical responses, or equally good
/// ones: p̂ = ½ carries no preference, and binarizing it would hand DPO a coin flip).
pub fn label_pair(prompt: &Prompt, first: String, second: String) -> Option<LabelledPair> {
    let (r1, r2) = (true_reward(prompt, &first), true_reward(prompt, &second));
    if r1 == r2 {
        return None;
    }
    let p = bradley_terry(r1, r2);
    let oriented = orient_pair(first, second, p).expect("a Bradley–Terry probability is in [0, 1]");
    Some(LabelledPair {
        prompt: *prompt,
        chosen: oriented.chosen,
        rejected: oriented.rejected,
        soft_label: oriented.soft_label,
    })
}

/// A response sampled from `model` at temperature 1 (or greedy), as text without the EOS.
pub fn sample_response(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompt: &Prompt,
    sampling: Sampling,
    seed: u64,
) -> Result<String> {
    let ids = tokenizer.encode(&prompt_text(prompt))?;
    let config = GenerationConfig {
        max_new_tokens: 6,
        sampling,
        seed,
        stop_tokens: vec![EOS_ID],
    };
    let tokens = generate(model, &ids, &config, |_| Ok(true))?;
    Ok(tokenizer.decode(&tokens, true)?)
}

/// Two sampled responses per prompt, labelled; identical samples are dropped.
pub fn sample_pairs(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompts: &[Prompt],
    rng: &mut impl Rng,
) -> Result<Vec<LabelledPair>> {
    let sampling = Sampling::Sample {
        temperature: 1.0,
        top_p: 1.0,
        top_k: None,
    };
    let mut pairs = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let first = sample_response(model, tokenizer, prompt, sampling, rng.random())?;
        let second = sample_response(model, tokenizer, prompt, sampling, rng.random())?;
        pairs.extend(label_pair(prompt, first, second));
    }
    Ok(pairs)
}

/// Token ids of a labelled pair: the prompt, and each response followed by EOS.
pub fn encode_pair(tokenizer: &TextTokenizer, pair: &LabelledPair) -> Result<EncodedPair> {
    let response = |text: &str| -> Result<Vec<u32>> {
        let mut ids = tokenizer.encode(text)?;
        ids.push(EOS_ID);
        Ok(ids)
    };
    Ok(EncodedPair {
        prompt: tokenizer.encode(&prompt_text(&pair.prompt))?,
        chosen: response(&pair.chosen)?,
        rejected: response(&pair.rejected)?,
        soft_label: pair.soft_label,
        source_line: 0,
    })
}
