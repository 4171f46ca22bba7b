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
    let sampled = sample_unlabelled(model, tokenizer, prompts, rng)?;
    Ok(sampled
        .into_iter()
        .filter_map(|p| label_pair(&p.prompt, p.first, p.second))
        .collect())
}

/// Two responses to one prompt in the order they were sampled, before any label: the unit that
/// every labelling regime of the soft-label study relabels, so all regimes share the same pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct SampledPair {
    /// The prompt.
    pub prompt: Prompt,
    /// The first sample.
    pub first: String,
    /// The second sample.
    pub second: String,
}

impl SampledPair {
    /// `r(first) − r(second)` under the true reward.
    pub fn reward_gap(&self) -> f64 {
        true_reward(&self.prompt, &self.first) - true_reward(&self.prompt, &self.second)
    }
}

/// Two samples (temperature 1) from `model` per prompt. Identical samples are dropped: their
/// log-ratio margin is zero whatever the weights, so no loss can learn from them.
pub fn sample_unlabelled(
    model: &CausalLm,
    tokenizer: &TextTokenizer,
    prompts: &[Prompt],
    rng: &mut impl Rng,
) -> Result<Vec<SampledPair>> {
    let sampling = Sampling::Sample {
        temperature: 1.0,
        top_p: 1.0,
        top_k: None,
    };
    let mut pairs = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let first = sample_response(model, tokenizer, prompt, sampling, rng.random())?;
        let second = sample_response(model, tokenizer, prompt, sampling, rng.random())?;
        if first != second {
            pairs.push(SampledPair {
                prompt: *prompt,
                first,
                second,
            });
        }
    }
    Ok(pairs)
}

/// How a soft label is made from the true reward: the regimes of the soft-label study.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Labelling {
    /// Exact Bradley–Terry probabilities `p̂ = σ(scale·Δr)`; pairs of equal reward are dropped
    /// unless `keep_ties` (then p̂ = ½).
    BradleyTerry {
        /// κ.
        scale: f64,
        /// Keep pairs of equal true reward with p̂ = ½.
        keep_ties: bool,
    },
    /// `raters` simulated raters each prefer the first response with probability
    /// `p* = σ(scale·Δr)`; `p̂ = k / raters` for k votes, so `E[p̂] = p*`: noisy but unbiased.
    Votes {
        /// κ of the raters' Bradley–Terry probability.
        scale: f64,
        /// Raters per pair.
        raters: u32,
    },
}

impl Labelling {
    /// The demo's labels: exact Bradley–Terry at κ = [`LABEL_SCALE`], ties dropped.
    pub const DEMO: Self = Self::BradleyTerry {
        scale: LABEL_SCALE,
        keep_ties: false,
    };

    /// κ, the scale of the underlying Bradley–Terry probability.
    pub fn scale(&self) -> f64 {
        match *self {
            Self::BradleyTerry { scale, .. } | Self::Votes { scale, .. } => scale,
        }
    }

    /// `P(first ≻ second)` for `pair`, or `None` when the pair is dropped. Votes draw from `rng`;
    /// the other regimes draw nothing, so relabelling leaves the random stream untouched.
    pub fn probability(&self, pair: &SampledPair, rng: &mut impl Rng) -> Option<f64> {
        let gap = pair.reward_gap();
        match *self {
            Self::BradleyTerry { scale, keep_ties } => {
                (keep_ties || gap != 0.0).then(|| sigmoid(scale * gap))
            }
            Self::Votes { scale, raters } => {
                let p = sigmoid(scale * gap);
                let votes = (0..raters).filter(|_| rng.random::<f64>() < p).count();
                Some(votes as f64 / f64::from(raters.max(1)))
            }
        }
    }

    /// `pair` labelled and oriented (preferred response first; p̂ = ½ keeps the sampled order),
    /// or `None` when the regime drops it.
    pub fn label(&self, pair: &SampledPair, rng: &mut impl Rng) -> Option<LabelledPair> {
        let p = self.probability(pair, rng)?;
        let oriented = orient_pair(pair.first.clone(), pair.second.clone(), p)
            .expect("a probability or vote share is in [0, 1]");
        Some(LabelledPair {
            prompt: pair.prompt,
            chosen: oriented.chosen,
            rejected: oriented.rejected,
            soft_label: oriented.soft_label,
        })
    }
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
