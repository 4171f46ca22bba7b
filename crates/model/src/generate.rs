//! Text generation with a KV cache: greedy decoding and seeded temperature / top-k / top-p
//! sampling, stopping at an end token or after a number of tokens.

use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{ModelError, Result};
use crate::model::{CausalLm, KvCache};
use crate::tokenizer::TextTokenizer;

/// How the next token is chosen from the logits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The most likely token (ties go to the lowest id).
    Greedy,
    /// A draw from `softmax(logits / temperature)`, restricted to the `top_k` most likely tokens
    /// (when set) and then to the smallest set whose probability reaches `top_p`.
    Sample {
        /// Softmax temperature, > 0.
        temperature: f64,
        /// Nucleus mass in (0, 1]; 1 keeps every token.
        top_p: f64,
        /// Keep only this many most likely tokens.
        top_k: Option<usize>,
    },
}

impl Sampling {
    /// Greedy at temperature 0, sampling otherwise; checks the ranges.
    pub fn new(temperature: f64, top_p: f64, top_k: Option<usize>) -> Result<Self> {
        if !temperature.is_finite() || temperature < 0.0 {
            return Err(ModelError::Generation {
                field: "temperature",
                problem: format!("{temperature} is not a finite number ≥ 0"),
            });
        }
        if top_p.is_nan() || top_p <= 0.0 || top_p > 1.0 {
            return Err(ModelError::Generation {
                field: "top_p",
                problem: format!("{top_p} is not in (0, 1]"),
            });
        }
        if top_k == Some(0) {
            return Err(ModelError::Generation {
                field: "top_k",
                problem: "must be at least 1".into(),
            });
        }
        Ok(if temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample {
                temperature,
                top_p,
                top_k,
            }
        })
    }
}

/// Settings of one generation.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Stop after this many new tokens.
    pub max_new_tokens: usize,
    /// Token choice.
    pub sampling: Sampling,
    /// Seed of the sampler (ChaCha8); unused when greedy.
    pub seed: u64,
    /// Tokens that end generation (not included in the output).
    pub stop_tokens: Vec<u32>,
}

/// Picks the next token from one row of logits.
pub fn sample_token(logits: &[f32], sampling: Sampling, rng: &mut impl Rng) -> u32 {
    let argmax = |values: &[f32]| {
        let mut best = 0;
        for (i, &v) in values.iter().enumerate() {
            if v > values[best] {
                best = i;
            }
        }
        best as u32
    };
    let Sampling::Sample {
        temperature,
        top_p,
        top_k,
    } = sampling
    else {
        return argmax(logits);
    };
    // Candidates sorted by logit, highest first (stable, so ties keep id order).
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    if let Some(k) = top_k {
        order.truncate(k.max(1));
    }
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - top) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    // The nucleus: the shortest prefix whose mass reaches top_p.
    let mut kept = 0;
    let mut mass = 0.0;
    while kept < weights.len() {
        mass += weights[kept] / total;
        kept += 1;
        if mass >= top_p {
            break;
        }
    }
    let kept_total: f64 = weights[..kept].iter().sum();
    let mut draw = rng.random::<f64>() * kept_total;
    for (j, w) in weights[..kept].iter().enumerate() {
        if draw < *w {
            return order[j] as u32;
        }
        draw -= w;
    }
    order[kept - 1] as u32
}

/// Generates up to `config.max_new_tokens` tokens after `prompt`, calling `on_token` with each
/// new token as soon as it is chosen (return `false` to stop early). Returns the new tokens,
/// without the stop token.
pub fn generate(
    model: &CausalLm,
    prompt: &[u32],
    config: &GenerationConfig,
    mut on_token: impl FnMut(u32) -> Result<bool>,
) -> Result<Vec<u32>> {
    if prompt.is_empty() {
        return Err(ModelError::Generation {
            field: "prompt",
            problem: "encodes to no tokens".into(),
        });
    }
    let device = model.embed_tokens.val().device();
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut cache = KvCache::new(model);
    let mut generated = Vec::new();
    let mut input: Vec<u32> = prompt.to_vec();
    while generated.len() < config.max_new_tokens {
        let ids: Vec<i64> = input.iter().map(|&t| t as i64).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, input.len()]), &device);
        let logits: Vec<f32> = model
            .forward_cached(tokens, &mut cache)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        let next = sample_token(&logits, config.sampling, &mut rng);
        if config.stop_tokens.contains(&next) {
            break;
        }
        generated.push(next);
        if !on_token(next)? {
            break;
        }
        input = vec![next];
    }
    Ok(generated)
}

/// Turns a stream of token ids into a stream of text pieces: each call returns the text that the
/// new token completes (empty while a multi-byte character is still incomplete).
#[derive(Debug)]
pub struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    emitted: usize,
}

impl<'a> TextStream<'a> {
    /// An empty stream.
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            emitted: 0,
        }
    }

    /// Adds a token and returns the newly completed text. Text ending in U+FFFD (a character
    /// whose bytes are not all decoded yet) is held back until a later token completes it, or
    /// until [`TextStream::finish`].
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{fffd}') {
            return Ok(String::new());
        }
        Ok(self.rest(&text))
    }

    /// What is still held back at the end of the stream: the pieces together are then exactly
    /// the decoding of every token pushed (transformers' `decode` of the generated ids), an
    /// incomplete last character included as U+FFFD.
    pub fn finish(&mut self) -> Result<String> {
        let text = self.tokenizer.decode(&self.ids, true)?;
        Ok(self.rest(&text))
    }

    /// The part of `text` after what was emitted, now marked emitted.
    fn rest(&mut self, text: &str) -> String {
        let piece = text.get(self.emitted..).unwrap_or_default().to_string();
        self.emitted = self.emitted.max(text.len());
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(
            sample_token(&[0.0, 3.0, 3.0, -1.0], Sampling::Greedy, &mut rng()),
            1
        );
    }

    #[test]
    fn top_k_one_is_greedy_whatever_the_temperature() {
        let s = Sampling::new(5.0, 1.0, Some(1)).unwrap();
        let mut r = rng();
        for _ in 0..50 {
            assert_eq!(sample_token(&[0.5, 0.1, 0.9, 0.8], s, &mut r), 2);
        }
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // Probabilities ≈ 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let s = Sampling::new(1.0, 0.8, None).unwrap();
        let mut r = rng();
        let mut counts = [0usize; 4];
        for _ in 0..4000 {
            counts[sample_token(&logits, s, &mut r) as usize] += 1;
        }
        assert_eq!(counts[2] + counts[3], 0);
        // Renormalised: 0.73 / 0.27.
        let share = counts[0] as f64 / 4000.0;
        assert!((share - 0.731).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn sampling_follows_the_softmax_and_the_seed() {
        let logits = [0.0f32, (2.0f32).ln()];
        let s = Sampling::new(1.0, 1.0, None).unwrap();
        let draws: Vec<u32> = {
            let mut r = rng();
            (0..6000)
                .map(|_| sample_token(&logits, s, &mut r))
                .collect()
        };
        let ones = draws.iter().filter(|&&t| t == 1).count() as f64 / 6000.0;
        assert!((ones - 2.0 / 3.0).abs() < 0.03, "{ones}");
        let again: Vec<u32> = {
            let mut r = rng();
            (0..6000)
                .map(|_| sample_token(&logits, s, &mut r))
                .collect()
        };
        assert_eq!(draws, again);
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert!(Sampling::new(-1.0, 1.0, None).is_err());
        assert!(Sampling::new(1.0, 0.0, None).is_err());
        assert!(Sampling::new(1.0, 1.5, None).is_err());
        assert!(Sampling::new(1.0, 1.0, Some(0)).is_err());
        assert_eq!(Sampling::new(0.0, 0.5, Some(3)).unwrap(), Sampling::Greedy);
    }
}
