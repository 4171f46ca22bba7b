//! Gradient checkpointing by per-block recomputation: the backward pass keeps one
//! `[tokens, width]` hidden state per decoder block instead of every block's activations, and
//! recomputes each block, one at a time, when its gradients are needed.
//!
//! [`CausalLm::next_token_logps_gradients`] is where training takes its gradients. Without
//! checkpointing it is one autodiff graph and one backward pass. With it:
//!
//! 1. The embedding and the blocks run untracked — on the autodiff device, with parameters that
//!    require no gradient, and attention on its explicit path, so that every value is bit for
//!    bit what the tracked pass computes (the inner backend's fused kernels round differently);
//!    only each block's input is kept.
//! 2. The top graph, tracked: the last block's output as a leaf, the final norm, the head and the
//!    caller's loss. Its backward gives the norm's and the head's gradients and `g_L`, the
//!    gradient of the last block's output.
//! 3. From the top block down, block `l` is rebuilt as a graph of its own from its saved input
//!    (a leaf that requires a gradient) and back-propagated from `Σ out ⊙ g_{l+1}`: that gives
//!    the block's parameter gradients (its adapters only under LoRA) and `g_l`, the gradient of
//!    its input. The graph is dropped before the next block is built.
//! 4. The embedding's gradient comes from `g_0` (added to the head's when they are tied); a
//!    frozen embedding (LoRA) is skipped.
//!
//! So at most one block's activations exist at a time, at the price of a second forward pass of
//! the blocks. burn 0.22's own `GradientCheckpointingStrategy` was measured on this model and
//! raised the peak memory of a step instead (see the README).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Gradients, Int, Tensor};

use crate::error::{ModelError, Result};
use crate::model::CausalLm;

impl CausalLm {
    /// The same model (same parameters and ids) with gradient checkpointing on or off; see
    /// [`CausalLm::next_token_logps_gradients`]. The setting survives `valid()` and `train()`,
    /// so shard replicas carry it.
    ///
    /// Refused for adapters with dropout: a recomputed block would draw other dropout masks than
    /// the first pass did.
    pub fn with_gradient_checkpointing(mut self, on: bool) -> Result<Self> {
        if let Some(lora) = self.lora_config().filter(|lora| on && lora.dropout > 0.0) {
            return Err(ModelError::Setting {
                field: "lora-dropout",
                problem: format!(
                    "is {}; gradient checkpointing recomputes each block, which would draw other \
                     dropout masks: use dropout 0 or train without checkpointing",
                    lora.dropout
                ),
            });
        }
        self.gradient_checkpointing = on;
        Ok(self)
    }

    /// Whether the backward pass recomputes each block instead of keeping its activations.
    pub fn gradient_checkpointing(&self) -> bool {
        self.gradient_checkpointing
    }

    /// The gradients of `loss(self.next_token_logps(tokens))` for every parameter that requires
    /// one (every weight in a full fine-tune, the adapters under LoRA), and what `loss` returns
    /// beside the loss tensor. The model is on an autodiff device.
    ///
    /// With [`CausalLm::gradient_checkpointing`] the blocks are recomputed one by one in the
    /// backward pass (see [`crate::checkpointing`]): `loss` sees the same log-probabilities bit
    /// for bit, and the gradients are those of the plain pass (bitwise in
    /// `tests/checkpointing.rs`; the order of a tied embedding's two terms may differ).
    ///
    /// # Panics
    ///
    /// With checkpointing on, if adapters with dropout were added after it was turned on (which
    /// [`CausalLm::with_gradient_checkpointing`] refuses).
    pub fn next_token_logps_gradients<T, E>(
        &self,
        tokens: Tensor<2, Int>,
        loss: impl FnOnce(Tensor<2>) -> std::result::Result<(Tensor<1>, T), E>,
    ) -> std::result::Result<(GradientsParams, T), E> {
        if !self.gradient_checkpointing {
            let (value, outputs) = loss(self.next_token_logps(tokens))?;
            return Ok((GradientsParams::from_grads(value.backward(), self), outputs));
        }
        assert!(
            self.lora_config().is_none_or(|lora| lora.dropout == 0.0),
            "gradient checkpointing recomputes each block, which LoRA dropout would change"
        );
        let [batch, time] = tokens.dims();

        // 1. The blocks untracked, keeping each one's input: on the autodiff device (whose
        //    operations compute what they compute when tracked) with parameters that require no
        //    gradient, and the explicit attention path, as the tracked recomputation takes it.
        let untracked = self.clone().no_grad();
        let rotary = self
            .rotary(0, time, &tokens.device())
            .without_fused_kernel();
        let mut x = untracked.embed(tokens.clone());
        let mut inputs = Vec::with_capacity(self.layers.len());
        for layer in &untracked.layers {
            let output = layer.forward(x.clone(), batch, time, &rotary, None);
            inputs.push(x);
            x = output;
        }
        drop(untracked);

        // 2. The top graph: final norm, head and loss on the last block's output.
        let last = x.require_grad();
        let (value, outputs) = loss(self.final_token_logps(last.clone(), tokens.clone()))?;
        let mut grads = value.backward();
        let mut upstream = take_gradient(&last, &mut grads);
        let mut params = GradientsParams::new();
        add_gradients(&mut params, &mut grads, self);

        // 3. Each block from the top down, rebuilt from its input.
        for (layer, input) in self.layers.iter().zip(inputs).rev() {
            let input = input.require_grad();
            let output = layer.forward(input.clone(), batch, time, &rotary, None);
            let mut grads = (output * Tensor::from_inner(upstream)).sum().backward();
            upstream = take_gradient(&input, &mut grads);
            add_gradients(&mut params, &mut grads, layer);
        }

        // 4. The embedding lookup.
        if self.embed_tokens.is_require_grad() {
            let embedded = self.embed(tokens);
            let mut grads = (embedded * Tensor::from_inner(upstream)).sum().backward();
            add_gradients(&mut params, &mut grads, &self.embed_tokens);
        }
        Ok((params, outputs))
    }
}

/// The gradient of the leaf `leaf` in `grads`, on the inner backend.
fn take_gradient(leaf: &Tensor<2>, grads: &mut Gradients) -> Tensor<2> {
    leaf.grad_remove(grads)
        .expect("the loss depends on every block's input")
}

/// Moves the gradients of `module`'s parameters from `grads` into `params`, adding them to
/// what `params` already holds for a parameter (the tied embedding, used by the head and the
/// lookup).
fn add_gradients<M: Module>(params: &mut GradientsParams, grads: &mut Gradients, module: &M) {
    struct Add<'a> {
        params: &'a mut GradientsParams,
        grads: &'a mut Gradients,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !param.is_require_grad() {
                return;
            }
            let Some(grad) = param.val().grad_remove(self.grads) else {
                return;
            };
            let sum = match self.params.remove::<D>(param.id) {
                Some(earlier) => earlier + grad,
                None => grad,
            };
            self.params.register(param.id, sum);
        }
    }
    module.visit(&mut Add { params, grads });
}
