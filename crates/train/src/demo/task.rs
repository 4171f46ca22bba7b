//! The demo's task, with a true reward that can be computed exactly for any response.
//!
//! A prompt is three digits and a `>`, e.g. `473>`; the correct answer adds one to every digit,
//! modulo 10 (`584`). The true reward of any response string `y` is minus the mean cyclic
//! distance of its digits to the correct ones:
//! `r(y) = −(Σᵢ dᵢ + 5·extra) / 3`, with `dᵢ ∈ [0, 5]` the cyclic distance of the i-th character
//! to the i-th correct digit (5 when it is missing or not a digit) and `extra` the characters
//! beyond the third. So `r ∈ [−5, 0]` (less for overlong answers), 0 for the correct answer.
//!
//! Demonstrations are noisy, digit by digit: each digit is copied unchanged with probability
//! [`COPY_PROBABILITY`], correct (+1) with [`CORRECT_PROBABILITY`], and +2 otherwise. The most
//! common demonstration of every prompt is therefore the copy (reward −1), not the correct answer.

use rand::Rng;
use serde_json::json;
use softalign_model::{ModelConfig, TextTokenizer};

use crate::error::Result;

/// Digits per prompt and per correct answer.
pub const DIGITS: usize = 3;
/// Probability that a demonstration copies a digit unchanged (the mode).
pub const COPY_PROBABILITY: f64 = 0.5;
/// Probability that a demonstration's digit is correct (+1).
pub const CORRECT_PROBABILITY: f64 = 0.3;
/// The token that ends a prompt.
pub const PROMPT_END: char = '>';
/// The padding token.
pub const PAD: &str = "<pad>";
/// The end-of-sequence token.
pub const EOS: &str = "</s>";

/// Token ids: `<pad>` 0, `</s>` 1, digits `0`–`9` 2–11, `>` 12.
pub const PAD_ID: u32 = 0;
/// Id of `</s>`.
pub const EOS_ID: u32 = 1;
/// Vocabulary size of the demo's tokenizer.
pub const VOCAB_SIZE: usize = 13;

/// A prompt of the task: its three digits.
pub type Prompt = [u8; DIGITS];

/// All 1000 prompts, in order `000` … `999`.
pub fn all_prompts() -> Vec<Prompt> {
    (0..1000u32)
        .map(|n| [(n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8])
        .collect()
}

/// The prompt's text, e.g. `473>`.
pub fn prompt_text(prompt: &Prompt) -> String {
    let mut text: String = prompt.iter().map(|d| char::from(b'0' + d)).collect();
    text.push(PROMPT_END);
    text
}

/// The correct answer: every digit plus one, modulo 10.
pub fn correct_answer(prompt: &Prompt) -> String {
    prompt
        .iter()
        .map(|d| char::from(b'0' + (d + 1) % 10))
        .collect()
}

/// The true reward of `response` to `prompt` (see the module documentation).
///
/// ```
/// use softalign_train::demo::task::true_reward;
/// assert_eq!(true_reward(&[4, 7, 9], "580"), 0.0);
/// assert_eq!(true_reward(&[4, 7, 9], "479"), -1.0);
/// assert_eq!(true_reward(&[4, 7, 9], "58"), -5.0 / 3.0);
/// assert_eq!(true_reward(&[4, 7, 9], "5805"), -5.0 / 3.0);
/// assert_eq!(true_reward(&[4, 7, 9], "085"), -(5.0 + 0.0 + 5.0) / 3.0);
/// ```
pub fn true_reward(prompt: &Prompt, response: &str) -> f64 {
    let correct = correct_answer(prompt);
    let got: Vec<char> = response.chars().collect();
    let mut distance = 0u32;
    for (i, want) in correct.chars().enumerate() {
        let want = want.to_digit(10).expect("correct answers are digits");
        distance += match got.get(i).and_then(|c| c.to_digit(10)) {
            Some(d) => {
                let gap = d.abs_diff(want);
                gap.min(10 - gap)
            }
            None => 5,
        };
    }
    distance += 5 * got.len().saturating_sub(DIGITS) as u32;
    -f64::from(distance) / DIGITS as f64
}

/// One noisy demonstration: per digit, copy ([`COPY_PROBABILITY`]), correct
/// ([`CORRECT_PROBABILITY`]) or +2.
pub fn noisy_demonstration(prompt: &Prompt, rng: &mut impl Rng) -> String {
    prompt
        .iter()
        .map(|d| {
            let u: f64 = rng.random();
            let offset = if u < COPY_PROBABILITY {
                0
            } else if u < COPY_PROBABILITY + CORRECT_PROBABILITY {
                1
            } else {
                2
            };
            char::from(b'0' + (d + offset) % 10)
        })
        .collect()
}

/// The expected true reward of a demonstration (the data's own quality).
pub fn demonstration_expected_reward() -> f64 {
    // Copy and +2 are each one away from the correct digit; the correct digit is zero away.
    -(1.0 - CORRECT_PROBABILITY)
}

/// The demo's character-level tokenizer (a BPE model without merges over the 13 tokens), built in
/// code as a `tokenizer.json` document so the trained model can be saved in Hugging Face layout.
pub fn tokenizer() -> Result<TextTokenizer> {
    let mut vocab = serde_json::Map::new();
    vocab.insert(PAD.into(), 0.into());
    vocab.insert(EOS.into(), 1.into());
    for d in 0..10u32 {
        vocab.insert(d.to_string(), (d + 2).into());
    }
    vocab.insert(PROMPT_END.to_string(), 12.into());
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    let document = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(PAD_ID, PAD), special(EOS_ID, EOS)],
        "normalizer": null,
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Fuse"},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": []
        }
    });
    Ok(TextTokenizer::from_json(
        &document,
        std::path::Path::new("<demo tokenizer>"),
        None,
        None,
        Some(EOS.into()),
    )?)
}

/// The demo's tiny Llama: 2 blocks, width 64, 4 heads of 16, SwiGLU width 192, tied embeddings.
pub fn model_config() -> ModelConfig {
    ModelConfig {
        family: softalign_model::Family::Llama,
        vocab_size: VOCAB_SIZE,
        hidden_size: 64,
        intermediate_size: 192,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 4,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        tie_word_embeddings: true,
        max_position_embeddings: 32,
        bos_token_id: None,
        eos_token_ids: vec![EOS_ID],
        sliding_window: None,
        ..ModelConfig::llama_defaults()
    }
}
