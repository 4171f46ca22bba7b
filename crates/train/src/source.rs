//! Where the training loop's examples come from, step by step: a fixed set read in the seeded
//! order of [`example_at`] (a slice or `Vec` of examples: `sft`, offline `align`), or examples
//! made fresh for each step from the policy as it is before the step (online alignment in
//! `softalign-judge`: two samples per prompt, labelled). Either way the loop ([`crate::train_loop`])
//! is the same: accumulation, clipping, the schedule, the non-finite guard, checkpoints and
//! resume.
//!
//! A source is a pure function of the step, the settings and the model before the step: it keeps
//! no state between steps (a sampling source draws its random numbers from seeds derived from the
//! run's seed and the step), so a run resumed from a checkpoint — which holds the step, the seed
//! and the model — draws exactly the examples the uninterrupted run drew.

use crate::error::Result;
use crate::objective::Item;
use crate::trainer::{LoopSettings, example_at};
use softalign_model::CausalLm;

/// The examples of one optimizer step.
pub enum StepExamples<'s, E> {
    /// Examples of a fixed set, by reference.
    Borrowed(Vec<Item<'s, E>>),
    /// Examples made for this step, with their keys (unique within the run).
    Owned(Vec<(usize, E)>),
}

/// The examples of one optimizer step and the metrics of making them.
pub struct StepBatch<'s, E> {
    /// The step's examples, `examples_per_step` of them or fewer (none: the step applies no
    /// update, only the schedule advances).
    pub examples: StepExamples<'s, E>,
    /// Metrics of drawing them (e.g. the mean reward of the samples), appended to the step's
    /// `train` record.
    pub metrics: Vec<(&'static str, f64)>,
}

impl<E> StepBatch<'_, E> {
    /// The step's examples as the items an objective reads.
    pub fn items(&self) -> Vec<Item<'_, E>> {
        match &self.examples {
            StepExamples::Borrowed(items) => items
                .iter()
                .map(|i| Item {
                    key: i.key,
                    example: i.example,
                })
                .collect(),
            StepExamples::Owned(examples) => examples
                .iter()
                .map(|(key, example)| Item { key: *key, example })
                .collect(),
        }
    }
}

/// Where a run's training examples come from (see the module's documentation).
pub trait BatchSource<E> {
    /// How many distinct examples (or prompts) the source draws from; a run refuses a source
    /// of none.
    fn size(&self) -> usize;

    /// The examples of optimizer step `step` (0-based), `settings.examples_per_step()` of them
    /// or fewer, for `model` as it is before the step.
    ///
    /// A value computed from the model that is not finite (a self-preference label) is reported
    /// as [`crate::TrainError::NonFinite`] with its `what` and `value`; the loop fills in the
    /// step and the checkpoint it keeps, and stops as for a non-finite loss.
    fn step_examples(
        &self,
        model: &CausalLm,
        step: usize,
        settings: &LoopSettings,
    ) -> Result<StepBatch<'_, E>>;

    /// Whether the step's examples depend on the model (sampled from the policy): the loop then
    /// checks that the weights are finite before each step, as it does before each checkpoint.
    fn reads_model(&self) -> bool {
        false
    }

    /// Every metric name this source adds to `train` or `eval` records, in a fixed order
    /// (columns of the CSV).
    fn metric_names(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// Held-out metrics of `model` (in validation mode) of the source's own, logged with the
    /// objective's in the `eval` record.
    fn evaluate(&self, _model: &CausalLm) -> Result<Vec<(&'static str, f64)>> {
        Ok(Vec::new())
    }
}

/// A fixed set of examples, epoch after epoch in the seeded order of [`example_at`].
impl<E> BatchSource<E> for [E] {
    fn size(&self) -> usize {
        self.len()
    }

    fn step_examples(
        &self,
        _model: &CausalLm,
        step: usize,
        settings: &LoopSettings,
    ) -> Result<StepBatch<'_, E>> {
        let per_step = settings.examples_per_step();
        let first = step * per_step;
        let items = (first..first + per_step)
            .map(|position| {
                let key = example_at(position, self.len(), settings.seed);
                Item {
                    key,
                    example: &self[key],
                }
            })
            .collect();
        Ok(StepBatch {
            examples: StepExamples::Borrowed(items),
            metrics: Vec::new(),
        })
    }
}

impl<E> BatchSource<E> for Vec<E> {
    fn size(&self) -> usize {
        self.len()
    }

    fn step_examples(
        &self,
        model: &CausalLm,
        step: usize,
        settings: &LoopSettings,
    ) -> Result<StepBatch<'_, E>> {
        self.as_slice().step_examples(model, step, settings)
    }
}
