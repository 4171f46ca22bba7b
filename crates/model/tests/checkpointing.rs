//! Gradient checkpointing recomputes activations in the backward pass: the gradients must equal
//! those of the plain autodiff pass (to 1e-6), for every family's parameters, and a replica made
//! with `valid().train()` must get the strategy back.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use common::parameter_gradients;
use softalign_model::{CausalLm, Family, ModelConfig};

fn config(family: Family) -> ModelConfig {
    ModelConfig {
        family,
        vocab_size: 40,
        hidden_size: 24,
        intermediate_size: 36,
        num_hidden_layers: 2,
        num_attention_heads: 6,
        num_key_value_heads: 2,
        head_dim: 8,
        tie_word_embeddings: false,
        ..ModelConfig::smollm2_135m()
    }
}

/// Gradients of the summed next-token log-probabilities of a small batch.
fn gradients(model: &CausalLm) -> Vec<Vec<f32>> {
    let device = model.embed_tokens.val().device();
    let ids: Vec<i64> = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3];
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 8]), &device);
    let grads = model.next_token_logps(tokens).sum().backward();
    parameter_gradients(model, &grads)
}

#[test]
fn checkpointed_gradients_equal_the_plain_ones() {
    let device = Device::flex().autodiff();
    for family in [Family::Llama, Family::Qwen2, Family::Qwen3] {
        device.seed(11);
        let model = CausalLm::init(&config(family), &device);
        assert!(!model.gradient_checkpointing());
        let plain = gradients(&model);

        let checkpointed = model.clone().with_gradient_checkpointing(true);
        assert!(checkpointed.gradient_checkpointing());
        let recomputed = gradients(&checkpointed);
        // A replica for a shard of the batch keeps the strategy once it is put back.
        let replica = checkpointed
            .valid()
            .train()
            .with_gradient_checkpointing(true);
        assert!(replica.gradient_checkpointing());
        let from_replica = gradients(&replica);

        assert_eq!(plain.len(), recomputed.len());
        for (i, ((a, b), c)) in plain.iter().zip(&recomputed).zip(&from_replica).enumerate() {
            for ((x, y), z) in a.iter().zip(b).zip(c) {
                assert!((x - y).abs() <= 1e-6, "{family}: parameter {i}: {x} vs {y}");
                assert!(
                    (x - z).abs() <= 1e-6,
                    "{family}: replica parameter {i}: {x} vs {z}"
                );
            }
        }
    }
}
