//! Gradient checkpointing: autodiff recomputes activations during the backward pass instead of
//! keeping them, trading compute for memory.
//!
//! burn 0.22 carries the strategy on each autodiff tensor (from the device it was made on, or
//! set per tensor); operations take it from their inputs, and inputs with different strategies
//! may not be mixed. So the strategy is put on every float parameter of the model, and a replica
//! made with `valid().train()` (which re-enters autodiff with the default strategy) gets it back
//! with [`CausalLm::with_gradient_checkpointing`].

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{GradientCheckpointingStrategy, Tensor};

use crate::model::CausalLm;

struct SetStrategy(GradientCheckpointingStrategy);

impl ModuleMapper for SetStrategy {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let strategy = self.0;
        param.map(|tensor| tensor.with_gradient_checkpointing_strategy(strategy))
    }
}

impl CausalLm {
    /// The same model (same parameters and ids), with autodiff recomputing activations in the
    /// backward pass when `on` (burn's `Balanced` strategy: element-wise, memory-bound results are
    /// recomputed, matrix products kept) and keeping them all otherwise. A model on a plain
    /// (non-autodiff) device is returned unchanged: nothing is recorded there.
    pub fn with_gradient_checkpointing(self, on: bool) -> Self {
        if !self.embed_tokens.val().is_autodiff() {
            return self;
        }
        let strategy = if on {
            GradientCheckpointingStrategy::Balanced
        } else {
            GradientCheckpointingStrategy::Disabled
        };
        self.map(&mut SetStrategy(strategy))
    }

    /// Whether the backward pass recomputes activations (see
    /// [`Self::with_gradient_checkpointing`]).
    pub fn gradient_checkpointing(&self) -> bool {
        self.embed_tokens.val().gradient_checkpointing_strategy()
            == Some(GradientCheckpointingStrategy::Balanced)
    }
}
