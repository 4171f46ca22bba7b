//! Gradient checkpointing recomputes each decoder block in the backward pass: the gradients must
//! equal those of the plain autodiff pass (to 1e-6) for every family's parameters, tied and
//! untied heads, full fine-tuning and LoRA, and the log-probabilities the loss sees must be the
//! same bit for bit; a replica made with `valid().train()` keeps the setting.

use std::convert::Infallible;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use softalign_model::{CausalLm, Family, LoraConfig, ModelConfig};

fn config(family: Family, tied: bool) -> ModelConfig {
    ModelConfig {
        family,
        vocab_size: 40,
        hidden_size: 24,
        intermediate_size: 36,
        num_hidden_layers: 3,
        num_attention_heads: 6,
        num_key_value_heads: 2,
        head_dim: 8,
        tie_word_embeddings: tied,
        // A window shorter than the sequences: the banded mask, not the plain causal one.
        sliding_window: (family == Family::Mistral).then_some(3),
        ..ModelConfig::smollm2_135m()
    }
}

/// The gradients of `Σ w ⊙ logps` (fixed, non-uniform weights `w`) over a batch of two
/// sequences, and the log-probabilities the loss saw.
fn gradients(model: &CausalLm) -> (GradientsParams, Vec<f32>) {
    let device = model.embed_tokens.val().device();
    let ids: Vec<i64> = vec![3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3];
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [2, 8]), &device);
    let weights: Vec<f32> = (0..14).map(|i| 0.25 + (i % 5) as f32 * 0.5).collect();
    let weights = Tensor::<2>::from_data(TensorData::new(weights, [2, 7]), &device);
    let Ok(result) = model.next_token_logps_gradients(tokens, |logps| {
        let seen = logps.clone().into_data().iter::<f32>().collect::<Vec<_>>();
        Ok::<_, Infallible>(((logps * weights).sum(), seen))
    });
    result
}

/// Each float parameter's gradient in `grads` (`None` where it has none), in visiting order.
fn per_parameter(model: &CausalLm, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a> {
        grads: &'a GradientsParams,
        found: Vec<Option<Vec<f32>>>,
    }
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self.grads.get::<D>(param.id);
            self.found
                .push(grad.map(|g| g.into_data().iter::<f32>().collect()));
        }
    }
    let mut collect = Collect {
        grads,
        found: Vec::new(),
    };
    model.visit(&mut collect);
    collect.found
}

/// Asserts that `model` with checkpointing (and a replica of it) gets the gradients and sees the
/// log-probabilities of `model` without; returns how many parameters had a gradient, and how
/// many there are.
fn assert_checkpointing_is_exact(model: &CausalLm, case: &str) -> (usize, usize) {
    let (plain, plain_logps) = gradients(model);
    let checkpointed = model.clone().with_gradient_checkpointing(true).unwrap();
    assert!(checkpointed.gradient_checkpointing() && !model.gradient_checkpointing());
    let replica = checkpointed.valid().train();
    assert!(
        replica.gradient_checkpointing(),
        "{case}: a replica keeps it"
    );
    let expected = per_parameter(model, &plain);
    let trained = expected.iter().filter(|g| g.is_some()).count();
    assert!(trained > 0, "{case}: something is trained");
    for (which, candidate) in [("checkpointed", &checkpointed), ("replica", &replica)] {
        let (grads, logps) = gradients(candidate);
        assert_eq!(
            logps, plain_logps,
            "{case}: {which}: the loss sees the same values"
        );
        let got = per_parameter(model, &grads);
        assert_eq!(got.len(), expected.len());
        let mut worst = 0.0f32;
        for (i, (a, b)) in expected.iter().zip(&got).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    for (x, y) in a.iter().zip(b) {
                        assert!(
                            (x - y).abs() <= 1e-6,
                            "{case}: {which}: parameter {i}: {x} vs {y}"
                        );
                        worst = worst.max((x - y).abs());
                    }
                }
                (None, None) => {}
                _ => panic!(
                    "{case}: {which}: parameter {i}: a gradient in only one pass ({} plain, {} {which})",
                    a.is_some(),
                    b.is_some()
                ),
            }
        }
        eprintln!("{case}: {which}: {trained} parameters, max |difference| {worst:e}");
    }
    (trained, expected.len())
}

#[test]
fn checkpointed_gradients_equal_the_plain_ones() {
    let device = Device::flex().autodiff();
    for family in Family::ALL {
        for tied in [false, true] {
            device.seed(11);
            let mut model = CausalLm::init(&config(family, tied), &device);
            // Non-trivial norm gains and biases, so their gradients are not those of ones/zeros.
            model = model.map(&mut Perturb);
            let case = format!("{family}, tied {tied}");
            let (trained, all) = assert_checkpointing_is_exact(&model, &format!("{case}, full"));
            assert_eq!(trained, all, "{case}: every weight is trained");

            let lora = model.with_lora(&LoraConfig::new(2), 3).map(&mut Perturb);
            let (trained, _) = assert_checkpointing_is_exact(&lora, &format!("{case}, LoRA"));
            let projections = family.linear_modules().len();
            assert_eq!(
                trained,
                2 * projections * 3,
                "{case}: A and B of {projections} projections in 3 blocks"
            );
        }
    }
}

#[test]
fn checkpointing_refuses_lora_dropout() {
    let device = Device::flex().autodiff();
    let model = CausalLm::init(&config(Family::Llama, true), &device);
    let lora = LoraConfig {
        dropout: 0.1,
        ..LoraConfig::new(2)
    };
    let error = model
        .with_lora(&lora, 0)
        .with_gradient_checkpointing(true)
        .unwrap_err();
    assert!(
        error.to_string().starts_with("lora-dropout: is 0.1;"),
        "{error}"
    );
}

/// Adds small noise to every float parameter that requires a gradient (LoRA's B starts at 0,
/// which would leave A without a gradient) and to the norm gains.
struct Perturb;

impl burn::module::ModuleMapper for Perturb {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| {
            let noise = tensor.random_like(Distribution::Normal(0.0, 0.05));
            let trainable = tensor.is_require_grad();
            let moved = tensor.inner() + noise.inner();
            let moved = Tensor::from_inner(moved);
            if trainable {
                moved.require_grad()
            } else {
                moved
            }
        })
    }
}
