//! SmolLM2-135M-Instruct from its Q4_1 GGUF (fetched by scripts/fetch-smollm2.sh; the test is
//! skipped, with a note, when the file is absent): greedy decoding must continue the capitals
//! prompt with " Rome", and the model's perplexity on the sentence must be about 4.2 (DATA.md).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use softalign_model::{GenerationConfig, Sampling, generate, load_pretrained, next_token_logps};

const PROMPT: &str =
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is";

fn model_path() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "note: skipped: {} is absent (run scripts/fetch-smollm2.sh)",
            path.display()
        );
        None
    }
}

#[test]
fn smollm2_gguf_says_rome_with_the_expected_perplexity() {
    let Some(path) = model_path() else { return };
    let device = Device::default();
    let loaded = load_pretrained(&path, &device).unwrap();
    let config = &loaded.model.config;
    assert_eq!(
        (
            config.num_hidden_layers,
            config.hidden_size,
            config.vocab_size
        ),
        (30, 576, 49152)
    );
    assert!(config.tie_word_embeddings);

    let prompt = loaded.tokenizer.encode(PROMPT).unwrap();
    // No BOS: the GGUF says add_bos_token = false.
    assert_eq!(loaded.tokenizer.decode(&prompt[..1], false).unwrap(), "The");
    let settings = GenerationConfig {
        max_new_tokens: 1,
        sampling: Sampling::Greedy,
        seed: 0,
        stop_tokens: loaded.stop_tokens(false),
    };
    let next = generate(&loaded.model, &prompt, &settings, |_| Ok(true)).unwrap();
    assert_eq!(loaded.tokenizer.decode(&next, true).unwrap(), " Rome");

    // Perplexity of the prompt sentence itself (next-token log-probabilities after the first).
    let ids: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, prompt.len()]), &device);
    let logps: Vec<f32> = next_token_logps(loaded.model.forward(tokens.clone()), tokens)
        .into_data()
        .iter::<f32>()
        .collect();
    let perplexity = (-logps.iter().sum::<f32>() / logps.len() as f32).exp();
    eprintln!("perplexity {perplexity:.3} over {} tokens", logps.len());
    assert!((4.0..=4.5).contains(&perplexity), "perplexity {perplexity}");
}
