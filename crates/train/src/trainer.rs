//! The training loop shared by SFT, offline and online preference alignment: the step's examples
//! from a [`BatchSource`], gradient accumulation, global gradient-norm clipping, the
//! learning-rate schedule, the non-finite guard, held-out evaluation, metrics, progress,
//! checkpoints and exact resume.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::progress::progress_bar;
use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::distributed::{DistributedConfig, ReduceOperation, all_reduce};
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use softalign_model::CausalLm;
use softalign_optim::OptimizerKind;

use crate::checkpoint::{TrainerState, load_checkpoint, save_checkpoint};
use crate::error::{Result, TrainError, setting};
use crate::metrics::{MetricRecord, MetricsLog};
use crate::objective::{Item, Objective};
use crate::schedule::Schedule;
use crate::source::BatchSource;

/// Settings of the loop, shared by SFT and alignment.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopSettings {
    /// The optimizer (ADOPT by default), with its default hyper-parameters.
    pub optimizer: OptimizerKind,
    /// Weight decay (decoupled for ADOPT and AdamW, L2 for Adam and AMSGrad).
    pub weight_decay: f64,
    /// Learning rate per step; its `total_steps` is the length of the run.
    pub schedule: Schedule,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step (gradient accumulation).
    pub grad_accum: usize,
    /// Clip the global gradient norm (over all parameters together) to this value.
    pub max_grad_norm: Option<f64>,
    /// Evaluate on the held-out set every this many steps (and before the first and after the
    /// last); 0 evaluates only before the first and after the last.
    pub eval_every: usize,
    /// Examples per evaluation batch.
    pub eval_batch_size: usize,
    /// Save a checkpoint every this many steps (and at the end and on interruption); 0 only then.
    pub save_every: usize,
    /// How many checkpoints to keep (the newest).
    pub keep_checkpoints: usize,
    /// Seed of the data order.
    pub seed: u64,
    /// Output folder: metrics, figures, checkpoints.
    pub out_dir: PathBuf,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// A short name shown before the progress bar (`sft`, `gdpo`).
    pub label: String,
    /// Where the shards of a micro-batch run: threads of the model's own device, or several
    /// devices (data parallel).
    pub replicas: Replicas,
}

/// Where the shards of a micro-batch run. Either way a micro-batch is split into contiguous
/// shards ([`shard_ranges`]), each shard's summed loss is divided by the normaliser of the whole
/// step, and the shards' gradients are summed, so the step's gradient is that of one pass over
/// the batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Replicas {
    /// On the CPU one shard per rayon thread, each on a replica of the model sharing its weights
    /// (`valid().train()`: the same parameters, its own autodiff graph); on any other device one
    /// shard. Gradients are added in shard order.
    #[default]
    Threads,
    /// One shard per device (the first is the model's own), each on a copy of the model moved
    /// there (`fork`, same parameter ids) at the start of the step; the gradients are summed by
    /// burn's collective all-reduce (NCCL on CUDA) and the model's device keeps the sum. Devices
    /// that are all one device (tests on the CPU) are summed in device order instead, the
    /// reduction a collective performs.
    Devices(Vec<Device>),
}

impl LoopSettings {
    /// Checks the ranges of the settings.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        if self.batch_size == 0 {
            return Err(setting("batch-size", "must be at least 1"));
        }
        if self.grad_accum == 0 {
            return Err(setting("grad-accum", "must be at least 1"));
        }
        if self.batch_size.checked_mul(self.grad_accum).is_none() {
            return Err(setting(
                "grad-accum",
                format!(
                    "batch-size {} × grad-accum {} examples per step overflows",
                    self.batch_size, self.grad_accum
                ),
            ));
        }
        if self.eval_batch_size == 0 {
            return Err(setting("eval-batch-size", "must be at least 1"));
        }
        if let Some(norm) = self.max_grad_norm
            && !(norm.is_finite() && norm > 0.0)
        {
            return Err(setting(
                "max-grad-norm",
                format!("must be positive and finite, got {norm}"),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(setting(
                "weight-decay",
                format!("must be non-negative and finite, got {}", self.weight_decay),
            ));
        }
        if self.keep_checkpoints == 0 {
            return Err(setting("keep-checkpoints", "must be at least 1"));
        }
        if let Replicas::Devices(devices) = &self.replicas
            && self.batch_size < devices.len()
        {
            return Err(setting(
                "batch-size",
                format!(
                    "{} is fewer examples than the {} devices that share each micro-batch",
                    self.batch_size,
                    devices.len()
                ),
            ));
        }
        Ok(())
    }

    /// Examples consumed by one optimizer step.
    pub fn examples_per_step(&self) -> usize {
        self.batch_size * self.grad_accum
    }
}

/// What a run ended with.
#[derive(Debug)]
pub struct LoopOutcome {
    /// The trained model (on the autodiff device it was trained on).
    pub model: CausalLm,
    /// Every metric record of the run, resumed parts included.
    pub history: Vec<MetricRecord>,
    /// Optimizer steps completed.
    pub steps: usize,
    /// Whether the stop flag ended the run early (a checkpoint was saved).
    pub interrupted: bool,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

/// The index of the example at position `position` of the run's data stream: epoch after epoch,
/// each a permutation drawn from `seed` and the epoch number alone, so the order at any step is
/// known without replaying the ones before (a resume needs only the step).
///
/// ```
/// use softalign_train::example_at;
/// let first_epoch: Vec<usize> = (0..5).map(|p| example_at(p, 5, 7)).collect();
/// let mut sorted = first_epoch.clone();
/// sorted.sort();
/// assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
/// assert_eq!(example_at(3, 5, 7), first_epoch[3]);
/// ```
pub fn example_at(position: usize, examples: usize, seed: u64) -> usize {
    epoch_order(position / examples, examples, seed)[position % examples]
}

fn epoch_order(epoch: usize, examples: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..examples).collect();
    let stream = seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(stream));
    order
}

/// Squared L2 norms of every parameter's gradient.
struct GradNorm<'a> {
    grads: &'a GradientsParams,
    sum_squares: f64,
}

impl ModuleVisitor for GradNorm<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.get::<D>(param.id) {
            let squares: f32 = grad.powi_scalar(2).sum().into_scalar::<f32>();
            self.sum_squares += f64::from(squares);
        }
    }
}

/// Multiplies every gradient by a factor.
struct ScaleGrads<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for ScaleGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(grad) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, grad.mul_scalar(self.factor));
        }
    }
}

/// Whether every parameter of `model` is finite: a step can turn finite gradients into infinite
/// weights (a learning rate of 1e30), which no loss would show before the next step.
fn weights_finite(model: &CausalLm) -> bool {
    struct Finite(bool);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.0 {
                self.0 = param.val().is_finite().all().into_scalar::<bool>();
            }
        }
    }
    let mut visitor = Finite(true);
    model.visit(&mut visitor);
    visitor.0
}

/// The error for a non-finite `what` met in optimizer step `step` (0-based), whose state before
/// the step was saved as `checkpoint`.
fn non_finite(
    settings: &LoopSettings,
    step: usize,
    what: &'static str,
    value: f64,
    checkpoint: &Path,
) -> TrainError {
    let per_step = settings.examples_per_step();
    TrainError::NonFinite {
        step: step + 1,
        what,
        value,
        first: step * per_step,
        end: (step + 1) * per_step,
        kept: format!("checkpoint {}", checkpoint.display()),
    }
}

/// The error for weights that optimizer step `step` (1-based) made non-finite.
fn weights_not_finite(settings: &LoopSettings, step: usize) -> TrainError {
    let per_step = settings.examples_per_step();
    TrainError::NonFinite {
        step,
        what: "the updated weights",
        value: f64::NAN,
        first: step.saturating_sub(1) * per_step,
        end: step * per_step,
        kept: newest_checkpoint(&settings.out_dir),
    }
}

/// The newest complete checkpoint of `out_dir`, described for an error message.
fn newest_checkpoint(out_dir: &Path) -> String {
    crate::checkpoint::list_checkpoints(out_dir)
        .pop()
        .map_or("no checkpoint (none was saved)".into(), |(_, p)| {
            format!("checkpoint {}", p.display())
        })
}

/// The global gradient norm `‖g‖₂` over all parameters of `model` together.
pub fn global_grad_norm(model: &CausalLm, grads: &GradientsParams) -> f64 {
    let mut visitor = GradNorm {
        grads,
        sum_squares: 0.0,
    };
    model.visit(&mut visitor);
    visitor.sum_squares.sqrt()
}

/// Scales all gradients by `max_norm / norm` when the global norm exceeds `max_norm` (as
/// `torch.nn.utils.clip_grad_norm_` does, with its 1e-6 guard). Returns the norm before clipping.
pub fn clip_global_grad_norm(model: &CausalLm, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_grad_norm(model, grads);
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        model.visit(&mut ScaleGrads { grads, factor });
    }
    norm
}

/// Evaluates `model` (in validation mode) on `examples`, keyed after the `train_len` training
/// examples; `None` when there are none.
pub fn evaluate<O: Objective>(
    model: &CausalLm,
    objective: &mut O,
    examples: &[O::Example],
    train_len: usize,
    batch_size: usize,
) -> Result<Option<Vec<(&'static str, f64)>>> {
    if examples.is_empty() {
        return Ok(None);
    }
    let valid = model.valid();
    let mut outputs = O::Outputs::default();
    for (c, chunk) in examples.chunks(batch_size.max(1)).enumerate() {
        let items: Vec<Item<'_, O::Example>> = chunk
            .iter()
            .enumerate()
            .map(|(j, example)| Item {
                key: train_len + c * batch_size + j,
                example,
            })
            .collect();
        let (_, more) = objective.forward(&valid, &items)?;
        O::absorb(&mut outputs, more);
    }
    Ok(Some(objective.metrics(&outputs)))
}

/// The data, settings and controls of one run.
pub struct Run<'a, O, S = [<O as Objective>::Example]>
where
    O: Objective,
    S: ?Sized + BatchSource<O::Example>,
{
    /// The objective (SFT or a preference loss).
    pub objective: &'a mut O,
    /// Where each step's training examples come from: a slice or `Vec` of examples (read in the
    /// seeded order of [`example_at`]), or a source that makes them for each step.
    pub train: &'a S,
    /// Held-out examples (may be empty).
    pub eval: &'a [O::Example],
    /// The loop's settings.
    pub settings: &'a LoopSettings,
    /// A checkpoint folder to resume from.
    pub resume: Option<&'a Path>,
    /// Set (e.g. by a Ctrl-C handler) to stop after the current step with a checkpoint.
    pub stop: Option<&'a AtomicBool>,
}

/// Trains `model` (on an autodiff device) with `run`'s objective. With `run.resume`, the model,
/// optimizer state, step, objective state and metric history come from the checkpoint and the
/// run continues bitwise as if it had never stopped.
///
/// A step whose source gives no examples (online: every sampled pair carried no preference)
/// applies no update; its schedule position passes and its record holds the source's metrics
/// and the learning rate only.
pub fn train_loop<O, S>(model: CausalLm, run: Run<'_, O, S>) -> Result<LoopOutcome>
where
    O: Objective,
    S: ?Sized + BatchSource<O::Example>,
{
    let settings = run.settings;
    settings.validate()?;
    if run.train.size() == 0 {
        return Err(setting("data", "no training examples"));
    }
    let total = settings.schedule.total_steps;
    let optimizer = settings
        .optimizer
        .module_optimizer(settings.weight_decay, None);
    let (mut model, mut optim, start, history) = match run.resume {
        Some(dir) => {
            let (model, optim, state) = load_checkpoint(dir, model, optimizer)?;
            run.objective.load_state(dir)?;
            if state.step > total {
                return Err(TrainError::Resume {
                    path: dir.to_path_buf(),
                    problem: format!(
                        "the checkpoint is at step {} but the run has only {total} steps",
                        state.step
                    ),
                });
            }
            (model, optim, state.step, state.history)
        }
        None => (model, optimizer, 0, Vec::new()),
    };
    std::fs::create_dir_all(&settings.out_dir)
        .map_err(crate::error::io_error(&settings.out_dir))?;
    let mut columns = vec!["step", "split"];
    columns.extend(run.objective.metric_names());
    columns.extend(run.train.metric_names());
    columns.extend(["grad_norm", "learning_rate"]);
    let mut log = MetricsLog::create(&settings.out_dir, &columns, &history)?;
    let mut history = history;

    let progress = progress_bar(settings.progress, &settings.label, "steps", total, start);
    let train_len = run.train.size();
    let record_eval = |model: &CausalLm,
                       objective: &mut O,
                       step: usize,
                       history: &mut Vec<MetricRecord>,
                       log: &mut MetricsLog|
     -> Result<()> {
        let mut metrics = evaluate(
            model,
            objective,
            run.eval,
            train_len,
            settings.eval_batch_size,
        )?
        .unwrap_or_default();
        metrics.extend(run.train.evaluate(&model.valid())?);
        if !metrics.is_empty() {
            let record = MetricRecord::new(step, "eval", metrics);
            log.append(&record)?;
            history.push(record);
        }
        Ok(())
    };
    if start == 0 {
        record_eval(&model, run.objective, 0, &mut history, &mut log)?;
    }

    let mut interrupted = false;
    let mut done = start;
    for step in start..total {
        if run.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupted = true;
            break;
        }
        let learning_rate = settings.schedule.learning_rate(step);
        // A source that samples from the policy must not sample from broken weights.
        if run.train.reads_model() && step > start && !weights_finite(&model) {
            return Err(weights_not_finite(settings, step));
        }
        let batch = match run.train.step_examples(&model, step, settings) {
            // A value of the model's the source computed (a self-preference label) is not
            // finite: stop as for a non-finite loss, keeping the state before the step.
            Err(TrainError::NonFinite { what, value, .. }) => {
                let checkpoint = save(&model, &optim, run.objective, settings, step, &history)?;
                return Err(non_finite(settings, step, what, value, &checkpoint));
            }
            other => other?,
        };
        let items = batch.items();
        let (mut metrics, grad_norm) = if items.is_empty() {
            (Vec::new(), None)
        } else {
            let (mut grads, outputs) = step_gradients(&model, run.objective, &items, settings)?;
            let grad_norm = match settings.max_grad_norm {
                Some(max) => clip_global_grad_norm(&model, &mut grads, max),
                None => global_grad_norm(&model, &grads),
            };
            let metrics = run.objective.metrics(&outputs);
            let loss = metrics.first().map_or(f64::NAN, |m| m.1);
            if let Some((what, value)) = [("loss", loss), ("gradient norm", grad_norm)]
                .into_iter()
                .find(|(_, v)| !v.is_finite())
            {
                let checkpoint = save(&model, &optim, run.objective, settings, step, &history)?;
                return Err(non_finite(settings, step, what, value, &checkpoint));
            }
            model = optim.step(learning_rate, model, grads);
            (metrics, Some(grad_norm))
        };
        done = step + 1;
        crate::test_hook::reached("step");
        progress.set_message(match (metrics.first(), grad_norm) {
            (Some((_, loss)), Some(_)) => format!("loss {loss:.4}"),
            _ => "no examples this step".to_string(),
        });
        metrics.extend(batch.metrics);
        metrics.extend(grad_norm.map(|norm| ("grad_norm", norm)));
        metrics.push(("learning_rate", learning_rate));
        let record = MetricRecord::new(done, "train", metrics);
        log.append(&record)?;
        history.push(record);
        progress.inc(1);

        if settings.eval_every > 0 && done % settings.eval_every == 0 && done < total {
            record_eval(&model, run.objective, done, &mut history, &mut log)?;
        }
        if settings.save_every > 0 && done % settings.save_every == 0 && done < total {
            save(&model, &optim, run.objective, settings, done, &history)?;
        }
    }
    if !interrupted && done == total && history.last().is_none_or(|r| r.split != "eval") {
        record_eval(&model, run.objective, done, &mut history, &mut log)?;
    }
    let checkpoint = Some(save(
        &model,
        &optim,
        run.objective,
        settings,
        done,
        &history,
    )?);
    progress.finish_and_clear();
    Ok(LoopOutcome {
        model,
        history,
        steps: done,
        interrupted,
        checkpoint,
    })
}

/// The gradients of one optimizer step over `step_items`: micro-batches of `batch_size` examples
/// (`grad_accum` of them for a full step), each micro-batch's summed loss divided by its
/// normaliser times the number of micro-batches, so the gradient is that of the mean over the
/// step's micro-batches.
///
/// Each micro-batch is split into shards ([`Replicas`]); each shard runs forward and backward on
/// its own replica of the model (gradient checkpointing, a setting of the model, carries over),
/// so the element-wise work of the shards runs in parallel as well as the matrix products, and
/// the shards' gradients are summed in shard order, so a step is deterministic for a given
/// thread (or device) count.
fn step_gradients<O: Objective>(
    model: &CausalLm,
    objective: &mut O,
    step_items: &[Item<'_, O::Example>],
    settings: &LoopSettings,
) -> Result<(GradientsParams, O::Outputs)> {
    let devices = match &settings.replicas {
        Replicas::Devices(devices) if devices.len() > 1 => Some(devices.as_slice()),
        _ => None,
    };
    // Copies of the model on the other devices, made once per step from the updated weights.
    let forks: Vec<CausalLm> = devices.map_or_else(Vec::new, |devices| {
        devices[1..]
            .iter()
            .map(|device| model.clone().fork(&device.clone().autodiff()))
            .collect()
    });
    let mut outputs = O::Outputs::default();
    // Running sums of the shards' gradients, added as each micro-batch finishes (in micro-batch
    // and shard order): one per device when the devices differ (the all-reduce adds them up),
    // one for the whole step otherwise.
    let across_devices = devices.is_some_and(|devices| devices.iter().any(|d| d != &devices[0]));
    let sum_count = match devices {
        Some(devices) if across_devices => devices.len(),
        _ => 1,
    };
    let mut sums: Vec<GradientsAccumulator<CausalLm>> = (0..sum_count)
        .map(|_| GradientsAccumulator::new())
        .collect();
    let micro_batches = step_items.len().div_ceil(settings.batch_size);
    for items in step_items.chunks(settings.batch_size) {
        objective.prepare(items)?;
        let divisor = objective.normalizer(items) * micro_batches as f64;
        let parts = match devices {
            Some(devices) => devices.len(),
            None if softalign_model::device::is_cpu(&model.embed_tokens.val().device()) => {
                rayon::current_num_threads()
            }
            None => 1,
        };
        let shards = shard_ranges(items.len(), parts);
        let objective = &*objective;
        let shard_gradients = |s: usize, range: &std::ops::Range<usize>| {
            let replica = match devices {
                Some(_) if s > 0 => forks[s - 1].clone(),
                Some(_) => model.clone(),
                None if shards.len() == 1 => model.clone(),
                None => model.valid().train(),
            };
            objective.shard_gradients(&replica, &items[range.clone()], divisor)
        };
        let results: Vec<Result<(GradientsParams, O::Outputs)>> = match devices {
            // One thread per device: each device's work is queued from its own thread.
            Some(_) => std::thread::scope(|scope| {
                let handles: Vec<_> = shards
                    .iter()
                    .enumerate()
                    .map(|(s, range)| scope.spawn(move || shard_gradients(s, range)))
                    .collect();
                handles.into_iter().map(join).collect()
            }),
            None => shards
                .par_iter()
                .enumerate()
                .map(|(s, range)| shard_gradients(s, range))
                .collect(),
        };
        for (s, result) in results.into_iter().enumerate() {
            let (grads, more) = result?;
            O::absorb(&mut outputs, more);
            sums[if across_devices { s } else { 0 }].accumulate(model, grads);
        }
    }
    let mut sums: Vec<GradientsParams> = sums.into_iter().map(|mut sum| sum.grads()).collect();
    let grads = match devices {
        Some(devices) if across_devices => all_reduce_gradients(model, &forks, sums, devices),
        _ => sums.pop().expect("one sum"),
    };
    Ok((grads, outputs))
}

/// A scoped thread's result, re-raising its panic on the caller's thread.
fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Contiguous index ranges covering `0 .. n` in order, at most `parts` of them and as equal as
/// possible (none when `n` is 0): the shards of a micro-batch of `n` examples.
pub fn shard_ranges(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let count = parts.clamp(1, n.max(1));
    (0..count)
        .map(|s| s * n / count..(s + 1) * n / count)
        .filter(|r| !r.is_empty())
        .collect()
}

/// The sum of gradients, added in order (on the device they are on; `model` names the
/// parameters).
pub(crate) fn sum_in_order(model: &CausalLm, mut grads: Vec<GradientsParams>) -> GradientsParams {
    if grads.len() == 1 {
        return grads.pop().expect("one");
    }
    let mut accumulator = GradientsAccumulator::<CausalLm>::new();
    for grads in grads {
        accumulator.accumulate(model, grads);
    }
    accumulator.grads()
}

/// The sum of the devices' gradients by burn's collective all-reduce: every device thread
/// reduces its gradients in the model's parameter order (the order is what pairs the devices'
/// calls), and the first device's result — on the model's device — is kept.
fn all_reduce_gradients(
    model: &CausalLm,
    forks: &[CausalLm],
    per_device: Vec<GradientsParams>,
    devices: &[Device],
) -> GradientsParams {
    struct Reduce<'a> {
        grads: GradientsParams,
        devices: &'a [Device],
    }
    impl ModuleVisitor for Reduce<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                let sum = all_reduce(grad, ReduceOperation::Sum, self.devices.to_vec()).resolve();
                self.grads.register::<D>(param.id, sum);
            }
        }
    }
    let _context = burn::tensor::distributed::DistributedContext::init(
        devices.to_vec(),
        DistributedConfig {
            all_reduce_op: ReduceOperation::Sum,
        },
    );
    let replicas: Vec<&CausalLm> = std::iter::once(model).chain(forks).collect();
    let mut reduced: Vec<GradientsParams> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_device
            .into_iter()
            .zip(replicas)
            .map(|(grads, replica)| {
                scope.spawn(move || {
                    let mut visitor = Reduce { grads, devices };
                    replica.visit(&mut visitor);
                    visitor.grads
                })
            })
            .collect();
        handles.into_iter().map(join).collect()
    });
    reduced.swap_remove(0)
}

fn save<O: Objective>(
    model: &CausalLm,
    optim: &ModuleOptimizer,
    objective: &O,
    settings: &LoopSettings,
    step: usize,
    history: &[MetricRecord],
) -> Result<PathBuf> {
    if !weights_finite(model) {
        return Err(weights_not_finite(settings, step));
    }
    let state = TrainerState {
        step,
        seed: settings.seed,
        total_steps: settings.schedule.total_steps,
        history: history.to_vec(),
    };
    save_checkpoint(
        &settings.out_dir,
        model,
        optim,
        &state,
        |dir| objective.save_state(dir),
        settings.keep_checkpoints,
    )
}
