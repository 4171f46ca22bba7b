//! What a training step optimises: the supervised loss on response tokens ([`SftObjective`]) or
//! a preference loss against a frozen reference ([`PreferenceObjective`]). The training loop
//! ([`crate::train_loop`]) is shared; only the objective differs.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use softalign_model::CausalLm;
use softalign_pref::{
    PrefLoss, PreferenceMetrics, StepOutputs, preference_accuracy, preference_margin,
    response_logps,
};

use crate::error::{Result, TrainError, io_error};
use crate::sequence::{EncodedExample, EncodedPair, SequenceBatch};

/// One example of a batch with its key: its index among the training examples, or
/// `train_len + i` for the i-th held-out example.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a, E> {
    /// A stable key of the example within the run.
    pub key: usize,
    /// The example.
    pub example: &'a E,
}

/// A training objective: a differentiable batch loss plus the per-example outputs its metrics are
/// computed from.
///
/// The loss of a batch is a sum over its shards divided by one normaliser of the whole batch
/// (pairs, or response tokens), so the training loop can split a batch into shards and run them
/// on model replicas in parallel, with the same mean as one pass: [`Objective::prepare`] does the
/// batch's exclusive work first (reference log-probabilities), then each shard, `&self`, is
/// turned into token sequences ([`Objective::shard_sequences`]) and its loss is computed from
/// their next-token log-probabilities under the model ([`Objective::shard_loss`]). The model
/// sits between the two, so that it can take the gradients its own way
/// ([`CausalLm::next_token_logps_gradients`], which recomputes each block under gradient
/// checkpointing).
pub trait Objective: Sync {
    /// What the objective trains on.
    type Example: Sync;
    /// Per-example outputs of a forward pass, accumulated over micro-batches or evaluation batches.
    type Outputs: Default + Send;
    /// Sequences one example runs through the model (a preference pair: chosen and rejected),
    /// for the memory estimate of a batch.
    const SEQUENCES_PER_EXAMPLE: usize = 1;

    /// Readies what [`Objective::shard_loss`] reads for the examples of `batch` (e.g. their
    /// reference log-probabilities).
    fn prepare(&mut self, _batch: &[Item<'_, Self::Example>]) -> Result<()> {
        Ok(())
    }

    /// The token sequences `shard` runs through the model, as one padded batch.
    fn shard_sequences(&self, shard: &[Item<'_, Self::Example>]) -> SequenceBatch;

    /// The summed (not averaged) loss of `shard`, part of a prepared batch, and the shard's
    /// outputs, from `logps`: the next-token log-probabilities of its
    /// [`Objective::shard_sequences`] under the model, `[rows, width − 1]` (differentiable when
    /// the model is on an autodiff device).
    fn shard_loss(
        &self,
        logps: Tensor<2>,
        sequences: &SequenceBatch,
        shard: &[Item<'_, Self::Example>],
    ) -> Result<(Tensor<1>, Self::Outputs)>;

    /// What the summed loss of `batch` is divided by to give its mean.
    fn normalizer(&self, batch: &[Item<'_, Self::Example>]) -> f64;

    /// The summed loss of `shard` under `model`, and the shard's outputs.
    fn shard_forward(
        &self,
        model: &CausalLm,
        shard: &[Item<'_, Self::Example>],
    ) -> Result<(Tensor<1>, Self::Outputs)> {
        let sequences = self.shard_sequences(shard);
        let tokens = sequences.token_tensor(&model.embed_tokens.val().device());
        self.shard_loss(model.next_token_logps(tokens), &sequences, shard)
    }

    /// The gradients of `shard`'s summed loss divided by `divisor` for the parameters of `model`
    /// (on an autodiff device) that are trained, and the shard's outputs.
    fn shard_gradients(
        &self,
        model: &CausalLm,
        shard: &[Item<'_, Self::Example>],
        divisor: f64,
    ) -> Result<(GradientsParams, Self::Outputs)> {
        let sequences = self.shard_sequences(shard);
        let tokens = sequences.token_tensor(&model.embed_tokens.val().device());
        model.next_token_logps_gradients(tokens, |logps| {
            let (sum, outputs) = self.shard_loss(logps, &sequences, shard)?;
            Ok((sum.div_scalar(divisor), outputs))
        })
    }

    /// The mean loss of `batch` under `model` in one pass, and the batch's outputs.
    fn forward(
        &mut self,
        model: &CausalLm,
        batch: &[Item<'_, Self::Example>],
    ) -> Result<(Tensor<1>, Self::Outputs)> {
        self.prepare(batch)?;
        let (sum, outputs) = self.shard_forward(model, batch)?;
        Ok((sum.div_scalar(self.normalizer(batch)), outputs))
    }

    /// The gradients of the mean loss of `batch` under `model` (on an autodiff device) in one
    /// pass, and the batch's outputs.
    fn gradients(
        &mut self,
        model: &CausalLm,
        batch: &[Item<'_, Self::Example>],
    ) -> Result<(GradientsParams, Self::Outputs)> {
        self.prepare(batch)?;
        self.shard_gradients(model, batch, self.normalizer(batch))
    }

    /// Appends `more` to `outputs`.
    fn absorb(outputs: &mut Self::Outputs, more: Self::Outputs);

    /// The metrics of accumulated outputs, under the names of [`Objective::metric_names`].
    fn metrics(&self, outputs: &Self::Outputs) -> Vec<(&'static str, f64)>;

    /// Every metric name [`Objective::metrics`] can return, in a fixed order (columns of the CSV).
    fn metric_names(&self) -> Vec<&'static str>;

    /// Saves state that must survive a resume (e.g. cached reference log-probabilities).
    fn save_state(&self, _dir: &Path) -> Result<()> {
        Ok(())
    }

    /// Restores what [`Objective::save_state`] wrote.
    fn load_state(&mut self, _dir: &Path) -> Result<()> {
        Ok(())
    }
}

fn host(t: Tensor<1>) -> Vec<f32> {
    t.into_data().convert::<f32>().iter::<f32>().collect()
}

/// Supervised fine-tuning: the mean negative log-likelihood of response tokens (prompt tokens
/// and padding carry no loss), averaged over the tokens of the batch as TRL does.
#[derive(Debug, Clone)]
pub struct SftObjective {
    /// Id used for padding (any id; padded positions are masked out).
    pub pad_id: u32,
}

/// Summed negative log-likelihood and token counts of SFT batches.
#[derive(Debug, Clone, Default)]
pub struct SftOutputs {
    /// Σ −log p over response tokens.
    pub nll_sum: f64,
    /// Number of response tokens.
    pub tokens: usize,
}

impl Objective for SftObjective {
    type Example = EncodedExample;
    type Outputs = SftOutputs;

    fn normalizer(&self, batch: &[Item<'_, EncodedExample>]) -> f64 {
        // The response tokens of the batch, as `SequenceBatch::response_tokens` counts them.
        let tokens: usize = batch.iter().map(|i| i.example.response.len()).sum();
        tokens.max(1) as f64
    }

    fn shard_sequences(&self, shard: &[Item<'_, EncodedExample>]) -> SequenceBatch {
        SequenceBatch::new(
            shard
                .iter()
                .map(|i| (i.example.prompt.as_slice(), i.example.response.as_slice())),
            self.pad_id,
        )
    }

    fn shard_loss(
        &self,
        logps: Tensor<2>,
        sequences: &SequenceBatch,
        _shard: &[Item<'_, EncodedExample>],
    ) -> Result<(Tensor<1>, SftOutputs)> {
        let device = logps.device();
        let (rows, width) = (sequences.rows, sequences.width);
        let weights: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let mask = &sequences.response_mask[r * width + 1..(r + 1) * width];
                mask.iter()
                    .map(|&m| f32::from(u8::from(m)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let count = sequences.response_tokens();
        let weights = Tensor::<2>::from_data(TensorData::new(weights, [rows, width - 1]), &device);
        let nll_sum = (logps * weights).sum().neg();
        let outputs = SftOutputs {
            nll_sum: host(nll_sum.clone().detach())[0] as f64,
            tokens: count,
        };
        Ok((nll_sum, outputs))
    }

    fn absorb(outputs: &mut SftOutputs, more: SftOutputs) {
        outputs.nll_sum += more.nll_sum;
        outputs.tokens += more.tokens;
    }

    fn metrics(&self, outputs: &SftOutputs) -> Vec<(&'static str, f64)> {
        let loss = outputs.nll_sum / outputs.tokens.max(1) as f64;
        vec![("loss", loss), ("tokens", outputs.tokens as f64)]
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec!["loss", "tokens"]
    }
}

/// Where the reference log-probabilities come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReferenceMode {
    /// Computed once per example, the first time it is used, and kept (saved with checkpoints,
    /// so a resumed run reads the same values).
    Cached,
    /// Recomputed by the reference model for every batch.
    OnTheFly,
}

/// Preference optimisation with any [`PrefLoss`] against a frozen reference model.
///
/// Losses that read soft labels get `p̂`; DPO, IPO and ROPO get the binarized label (1, since
/// pairs are oriented so that `p̂ ≥ 0.5`).
#[derive(Debug)]
pub struct PreferenceObjective {
    /// The loss and its parameters.
    pub loss: PrefLoss,
    /// The frozen reference model, on a plain (non-autodiff) device.
    pub reference: CausalLm,
    /// Cached or on-the-fly reference log-probabilities.
    pub mode: ReferenceMode,
    /// Id used for padding.
    pub pad_id: u32,
    cache: BTreeMap<usize, [f32; 2]>,
    /// On-the-fly values of the batch last prepared.
    fresh: BTreeMap<usize, [f32; 2]>,
}

/// Per-pair outputs of preference batches.
#[derive(Debug, Clone, Default)]
pub struct PreferenceOutputs {
    /// `log πθ(y₁)`.
    pub policy_chosen: Vec<f64>,
    /// `log πθ(y₂)`.
    pub policy_rejected: Vec<f64>,
    /// `log π_ref(y₁)`.
    pub reference_chosen: Vec<f64>,
    /// `log π_ref(y₂)`.
    pub reference_rejected: Vec<f64>,
    /// `p̂`.
    pub soft_labels: Vec<f64>,
    /// Per-pair loss.
    pub losses: Vec<f64>,
}

/// File of the cached reference log-probabilities inside a checkpoint.
pub const REFERENCE_CACHE_FILE: &str = "reference_logps.json";

impl PreferenceObjective {
    /// An objective with an empty reference cache. `reference` is moved to validation mode.
    pub fn new(loss: PrefLoss, reference: &CausalLm, mode: ReferenceMode, pad_id: u32) -> Self {
        Self {
            loss,
            reference: reference.valid(),
            mode,
            pad_id,
            cache: Default::default(),
            fresh: Default::default(),
        }
    }

    /// Computes the reference log-probabilities of the pairs of `batch` not in the cache (all of
    /// them on the fly), in one shard per thread, and keeps them for [`Self::reference_logps`]
    /// (in the cache in cached mode).
    fn compute_reference(&mut self, batch: &[Item<'_, EncodedPair>]) {
        let missing: Vec<&Item<'_, EncodedPair>> = batch
            .iter()
            .filter(|i| self.mode == ReferenceMode::OnTheFly || !self.cache.contains_key(&i.key))
            .collect();
        let reference = &self.reference;
        let pad_id = self.pad_id;
        let fresh = shards(missing.len())
            .into_par_iter()
            .flat_map_iter(|range| {
                let shard = &missing[range];
                let values = host(pair_logps(reference, shard, pad_id).detach());
                let n = shard.len();
                let pairs: Vec<(usize, [f32; 2])> = (0..n)
                    .map(|j| (shard[j].key, [values[j], values[n + j]]))
                    .collect();
                pairs
            })
            .collect::<Vec<_>>();
        match self.mode {
            ReferenceMode::Cached => self.cache.extend(fresh),
            ReferenceMode::OnTheFly => self.fresh = fresh.into_iter().collect(),
        }
    }

    /// `[log π_ref(chosen), log π_ref(rejected)]` of every pair of a prepared batch.
    pub fn reference_logps(&self, batch: &[Item<'_, EncodedPair>]) -> Vec<[f32; 2]> {
        batch
            .iter()
            .map(|i| self.fresh.get(&i.key).or(self.cache.get(&i.key)).copied())
            .map(|v| v.expect("the batch was prepared: every key is cached or fresh"))
            .collect()
    }
}

/// Index ranges of at most one shard per thread of the rayon pool covering `0 .. n`, in order
/// and as equal as possible (none when `n` is 0).
pub fn shards(n: usize) -> Vec<std::ops::Range<usize>> {
    crate::trainer::shard_ranges(n, rayon::current_num_threads())
}

/// The chosen sequences of `batch`, then the rejected ones: `2n` rows.
fn pair_sequences<'a>(
    batch: impl Iterator<Item = &'a EncodedPair> + Clone,
    pad_id: u32,
) -> SequenceBatch {
    let chosen = batch
        .clone()
        .map(|pair| (pair.prompt.as_slice(), pair.chosen.as_slice()));
    let rejected = batch.map(|pair| (pair.prompt.as_slice(), pair.rejected.as_slice()));
    SequenceBatch::new(chosen.chain(rejected), pad_id)
}

/// Sequence log-probabilities of the chosen responses, then of the rejected ones: `[2n]`.
fn pair_logps(model: &CausalLm, batch: &[&Item<'_, EncodedPair>], pad_id: u32) -> Tensor<1> {
    let device = model.embed_tokens.val().device();
    let sequences = pair_sequences(batch.iter().map(|i| i.example), pad_id);
    let tokens = sequences.token_tensor(&device);
    response_logps(
        model.next_token_logps(tokens),
        sequences.mask_tensor(&device),
    )
}

#[derive(Serialize, Deserialize)]
struct CachedLogps {
    /// `(key, f32 bits of chosen, f32 bits of rejected)`: bits, so a resume reads exact values.
    entries: Vec<(usize, u32, u32)>,
}

impl Objective for PreferenceObjective {
    const SEQUENCES_PER_EXAMPLE: usize = 2;
    type Example = EncodedPair;
    type Outputs = PreferenceOutputs;

    fn prepare(&mut self, batch: &[Item<'_, EncodedPair>]) -> Result<()> {
        self.compute_reference(batch);
        Ok(())
    }

    fn normalizer(&self, batch: &[Item<'_, EncodedPair>]) -> f64 {
        batch.len().max(1) as f64
    }

    fn shard_sequences(&self, shard: &[Item<'_, EncodedPair>]) -> SequenceBatch {
        pair_sequences(shard.iter().map(|i| i.example), self.pad_id)
    }

    fn shard_loss(
        &self,
        token_logps: Tensor<2>,
        sequences: &SequenceBatch,
        batch: &[Item<'_, EncodedPair>],
    ) -> Result<(Tensor<1>, PreferenceOutputs)> {
        let device = token_logps.device();
        let n = batch.len();
        let reference = self.reference_logps(batch);
        let logps = response_logps(token_logps, sequences.mask_tensor(&device));
        let chosen = logps.clone().narrow(0, 0, n);
        let rejected = logps.narrow(0, n, n);
        let column =
            |values: Vec<f32>| Tensor::<1>::from_data(TensorData::new(values, [n]), &device);
        let reference_chosen = column(reference.iter().map(|r| r[0]).collect());
        let reference_rejected = column(reference.iter().map(|r| r[1]).collect());
        let margin = preference_margin(
            chosen.clone(),
            rejected.clone(),
            reference_chosen,
            reference_rejected,
        );
        let soft_labels: Vec<f64> = batch.iter().map(|i| i.example.soft_label).collect();
        let training_labels: Vec<f32> = soft_labels
            .iter()
            .map(|&p| {
                if self.loss.uses_soft_labels() {
                    p as f32
                } else {
                    softalign_pref::binarize(p) as f32
                }
            })
            .collect();
        let per_example = self.loss.per_example(margin, column(training_labels));
        let loss = per_example.clone().sum();
        let widen = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        let outputs = PreferenceOutputs {
            policy_chosen: widen(host(chosen.detach())),
            policy_rejected: widen(host(rejected.detach())),
            reference_chosen: reference.iter().map(|r| f64::from(r[0])).collect(),
            reference_rejected: reference.iter().map(|r| f64::from(r[1])).collect(),
            soft_labels,
            losses: widen(host(per_example.detach())),
        };
        Ok((loss, outputs))
    }

    fn absorb(outputs: &mut PreferenceOutputs, more: PreferenceOutputs) {
        outputs.policy_chosen.extend(more.policy_chosen);
        outputs.policy_rejected.extend(more.policy_rejected);
        outputs.reference_chosen.extend(more.reference_chosen);
        outputs.reference_rejected.extend(more.reference_rejected);
        outputs.soft_labels.extend(more.soft_labels);
        outputs.losses.extend(more.losses);
    }

    fn metrics(&self, o: &PreferenceOutputs) -> Vec<(&'static str, f64)> {
        let n = o.losses.len().max(1) as f64;
        let mut metrics = vec![("loss", o.losses.iter().sum::<f64>() / n)];
        let step = StepOutputs {
            policy_chosen_logps: &o.policy_chosen,
            policy_rejected_logps: &o.policy_rejected,
            reference_chosen_logps: &o.reference_chosen,
            reference_rejected_logps: &o.reference_rejected,
            soft_labels: &o.soft_labels,
        };
        let beta = self.loss.beta();
        if let Ok(named) = PreferenceMetrics::compute(&step, beta) {
            metrics.extend(named.named());
            metrics.push(("logratio/chosen", named.rewards_chosen / beta));
            metrics.push(("logratio/rejected", named.rewards_rejected / beta));
        }
        let margins = step.margins();
        // At the reference every δ is 0 and σ(βδ) = ½ decides nothing: no accuracy to report.
        let decided = margins.iter().any(|&d| d != 0.0);
        if let Some(accuracy) =
            preference_accuracy(&margins, &o.soft_labels, beta).filter(|_| decided)
        {
            metrics.push(("preference_accuracy", accuracy));
        }
        metrics
    }

    fn metric_names(&self) -> Vec<&'static str> {
        vec![
            "loss",
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
            "label/mean_p",
            "logratio/chosen",
            "logratio/rejected",
            "preference_accuracy",
        ]
    }

    fn save_state(&self, dir: &Path) -> Result<()> {
        let cached = CachedLogps {
            entries: self
                .cache
                .iter()
                .map(|(&k, v)| (k, v[0].to_bits(), v[1].to_bits()))
                .collect(),
        };
        let path = dir.join(REFERENCE_CACHE_FILE);
        let text = serde_json::to_vec(&cached).expect("cache serialises");
        std::fs::write(&path, text).map_err(io_error(&path))
    }

    fn load_state(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(REFERENCE_CACHE_FILE);
        if !path.exists() {
            return Ok(());
        }
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        let cached: CachedLogps =
            serde_json::from_slice(&bytes).map_err(|cause| TrainError::Json {
                path: path.clone(),
                cause,
            })?;
        self.cache = cached
            .entries
            .into_iter()
            .map(|(k, c, r)| (k, [f32::from_bits(c), f32::from_bits(r)]))
            .collect();
        Ok(())
    }
}
