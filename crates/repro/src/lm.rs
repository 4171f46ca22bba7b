//! Language-model pretraining on real English text (ADOPT paper, §5, GPT-2 on OpenWebText, at
//! the scale of one CPU): Adam(W) against ADOPT at a small and a large batch.
//!
//! A small Llama (byte-level vocabulary of 256, RMSNorm, rotary embeddings, SwiGLU, tied
//! embeddings; [`softalign_model::CausalLm`]) is trained from scratch on random windows of the
//! text, the last part of which is held out for validation. Both optimizers get the same
//! initial weights, the same minibatches, the same warmup-then-cosine learning-rate schedule and
//! the same *global* gradient-norm clipping (all gradients scaled by `min(1, c/‖g‖)`, as
//! nanoGPT's `clip_grad_norm_(…, 1.0)`, on which the paper's GPT-2 scripts are built). The
//! Adam side is AdamW as nanoGPT configures it (β₂ 0.95, weight decay 0.1); ADOPT runs at its
//! defaults (β₂ 0.9999, ε 1e-6, clip t^0.25) with the same decoupled weight decay.
//!
//! **Spike**, as counted here: a maximal run of consecutive steps whose training loss exceeds
//! the median of the `spike_window` losses before it by more than `spike_threshold` nats
//! (defaults 50 steps and 0.3 nats); the first step of the run is the spike's onset.
//!
//! What the paper claims: at a small batch Adam's loss spikes and ADOPT's does not; at a large
//! batch both train smoothly and ADOPT is at least as good.

use std::path::Path;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use softalign_model::{CausalLm, ModelConfig, token_logps};
use softalign_optim::{AdamWConfig, AdoptConfig, OptimizerKind, WeightDecay};
use softalign_plot::{Figure, Panel, Series};

use crate::{ReproError, write_json_atomic};

/// Settings of the language-model reproduction; the defaults finish in a few minutes on two
/// cores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmConfig {
    /// Decoder blocks (4).
    pub layers: usize,
    /// Model width (128); the SwiGLU width is 3× it, heads are 32 wide.
    pub width: usize,
    /// Tokens (bytes) per training window (64).
    pub seq_len: usize,
    /// The small and the large batch, in windows (4 and 16).
    pub batch_sizes: Vec<usize>,
    /// Optimizer steps of every run (300).
    pub steps: usize,
    /// Peak learning rate (2e-3), reached after `warmup_steps`, then cosine to a tenth of it.
    pub learning_rate: f64,
    /// Linear warmup steps (40).
    pub warmup_steps: usize,
    /// Global gradient-norm clip (1.0).
    pub clip_norm: f64,
    /// Decoupled weight decay of both optimizers (0.1).
    pub weight_decay: f64,
    /// β₂ of Adam(W) (0.95, nanoGPT's).
    pub adam_beta2: f64,
    /// The optimizers compared (AdamW, ADOPT).
    pub optimizers: Vec<OptimizerKind>,
    /// Fraction of the text held out for validation, at its end (0.05).
    pub validation_fraction: f64,
    /// Validation windows, fixed for the whole run (32).
    pub validation_windows: usize,
    /// Validation every this many steps (25), and after the last step.
    pub eval_every: usize,
    /// Steps of the running median a spike is measured against (50).
    pub spike_window: usize,
    /// Nats above that median that make a spike (0.3).
    pub spike_threshold: f64,
    /// Seed of the initial weights and of the windows drawn.
    pub seed: u64,
    /// Where the models train (the CPU by default).
    #[serde(skip)]
    pub device: Device,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            layers: 4,
            width: 128,
            seq_len: 64,
            batch_sizes: vec![4, 16],
            steps: 300,
            learning_rate: 2e-3,
            warmup_steps: 40,
            clip_norm: 1.0,
            weight_decay: 0.1,
            adam_beta2: 0.95,
            optimizers: vec![OptimizerKind::AdamW, OptimizerKind::Adopt],
            validation_fraction: 0.05,
            validation_windows: 32,
            eval_every: 25,
            spike_window: 50,
            spike_threshold: 0.3,
            seed: 0,
            device: Device::flex(),
        }
    }
}

impl LmConfig {
    /// The model's shape: byte vocabulary, `width / 32` heads, SwiGLU 3 × width, tied embeddings.
    pub fn model_config(&self) -> ModelConfig {
        let head_dim = 32.min(self.width);
        ModelConfig {
            family: softalign_model::Family::Llama,
            vocab_size: 256,
            hidden_size: self.width,
            intermediate_size: 3 * self.width,
            num_hidden_layers: self.layers,
            num_attention_heads: self.width / head_dim,
            num_key_value_heads: self.width / head_dim,
            head_dim,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            max_position_embeddings: self.seq_len,
            bos_token_id: None,
            eos_token_ids: Vec::new(),
            sliding_window: None,
            ..ModelConfig::llama_defaults()
        }
    }

    fn validate(&self) -> Result<(), ReproError> {
        let setting = |message: String| Err(ReproError::Setting(message));
        for (name, value) in [
            ("layers", self.layers),
            ("seq-len", self.seq_len),
            ("steps", self.steps),
            ("validation windows", self.validation_windows),
            ("eval-every", self.eval_every),
            ("spike window", self.spike_window),
        ] {
            if value == 0 {
                return setting(format!("{name} must be at least 1"));
            }
        }
        if self.width == 0 || (self.width > 32 && !self.width.is_multiple_of(32)) {
            return setting(format!(
                "width {} must be a multiple of 32 (or at most 32)",
                self.width
            ));
        }
        if self.batch_sizes.is_empty() || self.batch_sizes.contains(&0) {
            return setting(format!(
                "batch sizes {:?} must be at least 1 each",
                self.batch_sizes
            ));
        }
        if self.optimizers.is_empty() {
            return setting("no optimizer to compare".to_string());
        }
        let positive = [
            ("learning rate", self.learning_rate),
            ("clip norm", self.clip_norm),
            ("spike threshold", self.spike_threshold),
        ];
        if let Some((name, value)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
            return setting(format!("{name} {value} must be positive"));
        }
        if !(0.0 < self.validation_fraction && self.validation_fraction < 0.5) {
            return setting(format!(
                "validation fraction {} must be in (0, 0.5)",
                self.validation_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.adam_beta2) || self.weight_decay < 0.0 {
            return setting("adam β₂ must be in [0, 1) and weight decay non-negative".to_string());
        }
        Ok(())
    }

    /// The optimizer of `kind` with this run's β₂, weight decay and no per-tensor clipping (the
    /// global clip is applied to the gradients before the step).
    fn optimizer(&self, kind: OptimizerKind) -> ModuleOptimizer {
        match kind {
            OptimizerKind::Adopt => AdoptConfig::new()
                .with_weight_decay(
                    (self.weight_decay > 0.0).then(|| WeightDecay::decoupled(self.weight_decay)),
                )
                .init(),
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_beta_2(self.adam_beta2)
                .with_weight_decay(self.weight_decay)
                .init(),
            OptimizerKind::Adam | OptimizerKind::AmsGrad => softalign_optim::AdamConfig::new()
                .with_beta_2(self.adam_beta2)
                .with_amsgrad(kind == OptimizerKind::AmsGrad)
                .with_weight_decay(self.weight_decay)
                .init(),
        }
    }

    /// The learning rate of `step` (0-based): linear warmup to the peak, then a cosine down to a
    /// tenth of it at the last step.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let peak = self.learning_rate;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / decay_steps).min(1.0);
        let floor = 0.1 * peak;
        floor + 0.5 * (peak - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// A loss spike: the onset step of a run of steps above the running median plus the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spike {
    /// First step (0-based) of the run.
    pub step: usize,
    /// Steps in the run.
    pub length: usize,
    /// Highest loss in the run.
    pub peak_loss: f64,
    /// The running median at the onset.
    pub median: f64,
}

/// Counts spikes in a loss series: maximal runs of consecutive steps whose loss exceeds the
/// median of the `window` losses before the run's step by more than `threshold`. The first
/// `window` steps have no full history and are never spikes.
///
/// ```
/// use softalign_repro::lm::find_spikes;
/// let mut losses = vec![2.0; 100];
/// losses[60] = 3.0;
/// losses[61] = 2.9;
/// let spikes = find_spikes(&losses, 20, 0.5);
/// assert_eq!((spikes.len(), spikes[0].step, spikes[0].length), (1, 60, 2));
/// ```
pub fn find_spikes(losses: &[f64], window: usize, threshold: f64) -> Vec<Spike> {
    let mut spikes: Vec<Spike> = Vec::new();
    let mut open = false;
    for step in window.max(1)..losses.len() {
        let mut history = losses[step - window.max(1)..step].to_vec();
        history.sort_by(f64::total_cmp);
        let median = median_of_sorted(&history);
        let loss = losses[step];
        if loss > median + threshold {
            match spikes.last_mut() {
                Some(spike) if open => {
                    spike.length += 1;
                    spike.peak_loss = spike.peak_loss.max(loss);
                }
                _ => spikes.push(Spike {
                    step,
                    length: 1,
                    peak_loss: loss,
                    median,
                }),
            }
            open = true;
        } else {
            open = false;
        }
    }
    spikes
}

fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
    }
}

/// The text as bytes, split into a training and a held-out validation part.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Training bytes (the first part of the text).
    pub train: Vec<u8>,
    /// Validation bytes (the last `validation_fraction` of it).
    pub validation: Vec<u8>,
}

impl Corpus {
    /// Splits `text` at `1 − validation_fraction`; `path` names it in errors. Both parts must
    /// hold several windows of `seq_len + 1` bytes.
    pub fn split(
        text: Vec<u8>,
        validation_fraction: f64,
        seq_len: usize,
        path: &Path,
    ) -> Result<Self, ReproError> {
        let cut = ((text.len() as f64) * (1.0 - validation_fraction)) as usize;
        let minimum = 4 * (seq_len + 1);
        if cut < minimum || text.len() - cut < minimum {
            return Err(ReproError::Format {
                path: path.to_path_buf(),
                message: format!(
                    "{} bytes of text is too short: training and validation parts need {minimum} bytes each",
                    text.len()
                ),
            });
        }
        let mut train = text;
        let validation = train.split_off(cut);
        Ok(Self { train, validation })
    }

    /// Reads a text file (any bytes; the vocabulary is bytes).
    pub fn read(path: &Path, config: &LmConfig) -> Result<Self, ReproError> {
        let text = std::fs::read(path).map_err(|source| ReproError::Io {
            path: path.to_path_buf(),
            cause: source,
        })?;
        Self::split(text, config.validation_fraction, config.seq_len, path)
    }
}

/// One optimizer at one batch size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmRun {
    /// `adamw`, `adopt`, ….
    pub optimizer: String,
    /// Windows per step.
    pub batch_size: usize,
    /// Training loss (nats per byte) of every step's minibatch.
    pub train_loss: Vec<f64>,
    /// Global gradient norm of every step, before clipping.
    pub grad_norm: Vec<f64>,
    /// `(steps done, validation loss)`, from step 0 (the initial model).
    pub validation_loss: Vec<(usize, f64)>,
    /// The spikes of `train_loss`.
    pub spikes: Vec<Spike>,
    /// `spikes.len()`.
    pub spike_count: usize,
    /// Steps whose gradient norm exceeded the clip.
    pub clipped_steps: usize,
    /// Wall-clock seconds of the run (validation included).
    pub seconds: f64,
}

/// The output of [`run`] (`lm.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LmReport {
    /// The settings.
    pub config: LmConfig,
    /// The spike definition in words.
    pub spike_definition: String,
    /// Parameters of the model.
    pub parameters: usize,
    /// Training and validation bytes.
    pub train_bytes: usize,
    /// Validation bytes.
    pub validation_bytes: usize,
    /// One run per (batch size, optimizer), batch sizes outermost.
    pub runs: Vec<LmRun>,
    /// Wall-clock seconds of everything.
    pub seconds: f64,
}

/// Trains every optimizer at every batch size and reports the curves and spikes. `progress`
/// gets a line at every validation.
pub fn run(
    config: &LmConfig,
    corpus: &Corpus,
    progress: &mut dyn FnMut(&str),
) -> Result<LmReport, ReproError> {
    config.validate()?;
    let started = Instant::now();
    let device = config.device.clone();
    let validation = fixed_windows(&corpus.validation, config, &device);
    let mut runs = Vec::new();
    let mut parameters = 0;
    for &batch_size in &config.batch_sizes {
        for &kind in &config.optimizers {
            let (run, params) = train_one(config, corpus, &validation, kind, batch_size, progress);
            parameters = params;
            runs.push(run);
        }
    }
    Ok(LmReport {
        config: config.clone(),
        spike_definition: format!(
            "a maximal run of consecutive steps whose training loss exceeds the median of the {} \
             losses before it by more than {} nats; counted once, at its first step",
            config.spike_window, config.spike_threshold
        ),
        parameters,
        train_bytes: corpus.train.len(),
        validation_bytes: corpus.validation.len(),
        runs,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Validation windows at evenly spaced offsets of the held-out bytes: (inputs, targets).
fn fixed_windows(
    bytes: &[u8],
    config: &LmConfig,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let span = bytes.len() - (config.seq_len + 1);
    let offsets: Vec<usize> = (0..config.validation_windows)
        .map(|i| i * span / config.validation_windows.max(2).saturating_sub(1).max(1))
        .map(|o| o.min(span))
        .collect();
    windows(bytes, &offsets, config.seq_len, device)
}

/// Inputs `bytes[o .. o+T]` and targets `bytes[o+1 .. o+T+1]` for every offset.
fn windows(
    bytes: &[u8],
    offsets: &[usize],
    seq_len: usize,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>) {
    let take = |shift: usize| -> Vec<i64> {
        offsets
            .iter()
            .flat_map(|&o| {
                bytes[o + shift..o + shift + seq_len]
                    .iter()
                    .map(|&b| i64::from(b))
            })
            .collect()
    };
    let shape = [offsets.len(), seq_len];
    (
        Tensor::from_data(TensorData::new(take(0), shape), device),
        Tensor::from_data(TensorData::new(take(1), shape), device),
    )
}

/// Mean next-byte cross-entropy (nats).
fn lm_loss(model: &CausalLm, inputs: Tensor<2, Int>, targets: Tensor<2, Int>) -> Tensor<1> {
    token_logps(model.forward(inputs), targets).mean().neg()
}

fn train_one(
    config: &LmConfig,
    corpus: &Corpus,
    validation: &(Tensor<2, Int>, Tensor<2, Int>),
    kind: OptimizerKind,
    batch_size: usize,
    progress: &mut dyn FnMut(&str),
) -> (LmRun, usize) {
    let started = Instant::now();
    let device = config.device.clone().autodiff();
    device.seed(config.seed);
    let mut model = CausalLm::init(&config.model_config(), &device);
    let parameters = model.num_params();
    let mut optimizer = config.optimizer(kind);
    // The same seed for every optimizer: the same windows in the same order.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed_0fda_7a00);
    let span = corpus.train.len() - (config.seq_len + 1);
    let evaluate = |model: &CausalLm| -> f64 {
        let (inputs, targets) = validation.clone();
        f64::from(lm_loss(&model.valid(), inputs, targets).into_scalar::<f32>())
    };
    let mut run = LmRun {
        optimizer: kind.name().to_string(),
        batch_size,
        train_loss: Vec::with_capacity(config.steps),
        grad_norm: Vec::with_capacity(config.steps),
        validation_loss: vec![(0, evaluate(&model))],
        spikes: Vec::new(),
        spike_count: 0,
        clipped_steps: 0,
        seconds: 0.0,
    };
    for step in 0..config.steps {
        let offsets: Vec<usize> = (0..batch_size)
            .map(|_| rng.random_range(0..=span))
            .collect();
        let (inputs, targets) = windows(&corpus.train, &offsets, config.seq_len, &device);
        let loss = lm_loss(&model, inputs, targets);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        run.train_loss.push(f64::from(loss.into_scalar::<f32>()));
        let norm = clip_global_norm(&model, &mut grads, config.clip_norm);
        run.clipped_steps += usize::from(norm > config.clip_norm);
        run.grad_norm.push(norm);
        model = optimizer.step(config.learning_rate_at(step), model, grads);
        let done = step + 1;
        if done % config.eval_every == 0 || done == config.steps {
            let loss = evaluate(&model);
            run.validation_loss.push((done, loss));
            progress(&format!(
                "{} batch {batch_size} step {done}/{}: train loss {:.4}, validation loss {loss:.4}",
                kind.name(),
                config.steps,
                run.train_loss[step]
            ));
        }
    }
    run.spikes = find_spikes(&run.train_loss, config.spike_window, config.spike_threshold);
    run.spike_count = run.spikes.len();
    run.seconds = started.elapsed().as_secs_f64();
    (run, parameters)
}

/// Scales every gradient by `min(1, max_norm / ‖g‖)`, ‖g‖ the norm of all gradients together
/// (PyTorch's `clip_grad_norm_`, which also adds 1e-6 to the norm); returns ‖g‖.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    struct SquaredNorm<'a> {
        grads: &'a GradientsParams,
        sum: f64,
    }
    impl ModuleVisitor for SquaredNorm<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.get::<D>(param.id) {
                self.sum += f64::from(grad.powi_scalar(2).sum().into_scalar::<f32>());
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(grad) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, grad.mul_scalar(self.factor));
            }
        }
    }
    let mut squared = SquaredNorm { grads, sum: 0.0 };
    module.visit(&mut squared);
    let norm = squared.sum.sqrt();
    let factor = max_norm / (norm + 1e-6);
    if factor < 1.0 {
        module.visit(&mut Scale { grads, factor });
    }
    norm
}

/// Writes `DIR/lm.json` and `DIR/lm.png`.
pub fn write(report: &LmReport, out_dir: &Path) -> Result<(), ReproError> {
    write_json_atomic(&out_dir.join("lm.json"), report)?;
    figure(report).save(&out_dir.join("lm.png"))?;
    Ok(())
}

fn figure(report: &LmReport) -> Figure {
    let label = |r: &LmRun| format!("{} ({} spikes)", r.optimizer, r.spike_count);
    let mut panels: Vec<Panel> = report
        .config
        .batch_sizes
        .iter()
        .map(|&batch_size| Panel {
            title: format!("batch {batch_size}: training loss of every step"),
            x_label: "step".to_string(),
            y_label: "nats per byte".to_string(),
            series: report
                .runs
                .iter()
                .filter(|r| r.batch_size == batch_size)
                .map(|r| {
                    let points = r
                        .train_loss
                        .iter()
                        .enumerate()
                        .map(|(s, l)| (s as f64 + 1.0, *l));
                    Series::line(label(r), points.collect())
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    panels.push(Panel {
        title: "validation loss (held-out text)".to_string(),
        x_label: "step".to_string(),
        y_label: "nats per byte".to_string(),
        series: report
            .runs
            .iter()
            .map(|r| {
                let points = r
                    .validation_loss
                    .iter()
                    .map(|(s, l)| (*s as f64, *l))
                    .collect();
                Series::line(format!("{}, batch {}", r.optimizer, r.batch_size), points)
            })
            .collect(),
        ..Default::default()
    });
    let config = &report.config;
    Figure {
        title: format!(
            "byte-level Llama, {} layers × {} wide ({} parameters), windows of {}, peak lr {}, global clip {}",
            config.layers,
            config.width,
            report.parameters,
            config.seq_len,
            config.learning_rate,
            config.clip_norm
        ),
        columns: panels.len(),
        panels,
        panel_size: (560, 400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spikes_are_runs_above_the_running_median() {
        // A noisy decreasing curve with two bumps: 3 steps at +0.8 and 1 step at +0.6.
        let mut losses: Vec<f64> = (0..300)
            .map(|s| 3.0 - s as f64 / 200.0 + 0.05 * ((s * 7) % 5) as f64)
            .collect();
        for loss in &mut losses[120..123] {
            *loss += 0.8;
        }
        losses[200] += 0.6;
        let spikes = find_spikes(&losses, 50, 0.3);
        assert_eq!(spikes.len(), 2, "{spikes:?}");
        assert_eq!((spikes[0].step, spikes[0].length), (120, 3));
        assert_eq!((spikes[1].step, spikes[1].length), (200, 1));
        assert!(spikes[0].peak_loss > spikes[0].median + 0.7);
        // A higher threshold leaves only the large bump; the first `window` steps never count.
        assert_eq!(find_spikes(&losses, 50, 0.5).len(), 1);
        let mut early = losses.clone();
        early[10] += 5.0;
        assert_eq!(find_spikes(&early, 50, 0.3).len(), 2);
        // A smooth curve has none.
        let smooth: Vec<f64> = (0..300).map(|s| 3.0 - s as f64 / 150.0).collect();
        assert!(find_spikes(&smooth, 50, 0.3).is_empty());
    }

    #[test]
    fn schedule_warms_up_then_decays_to_a_tenth() {
        let config = LmConfig {
            steps: 100,
            warmup_steps: 10,
            learning_rate: 1.0,
            ..Default::default()
        };
        assert!((config.learning_rate_at(0) - 0.1).abs() < 1e-12);
        assert!((config.learning_rate_at(9) - 1.0).abs() < 1e-12);
        assert!((config.learning_rate_at(10) - 1.0).abs() < 1e-12);
        assert!((config.learning_rate_at(100) - 0.1).abs() < 1e-12);
        let rates: Vec<f64> = (10..100).map(|s| config.learning_rate_at(s)).collect();
        assert!(rates.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn global_clip_scales_all_gradients_together() {
        use burn::nn::{Linear, LinearConfig};
        let device = Device::default().autodiff();
        let model: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device);
        let loss = model.forward(x).sum().mul_scalar(100.0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let before: Vec<f32> = grads
            .get::<2>(model.weight.id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        let norm = clip_global_norm(&model, &mut grads, 1.0);
        // ∂/∂W = 100·x per output, ∂/∂b = 100: ‖g‖² = 2·100²·(1+4+9) + 2·100².
        assert!((norm - (2.0f64 * 1e4 * 15.0).sqrt()).abs() < 1e-2, "{norm}");
        let after: Vec<f32> = grads
            .get::<2>(model.weight.id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        let bias: Vec<f32> = grads
            .get::<1>(model.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        let clipped: f64 = after
            .iter()
            .chain(&bias)
            .map(|g| f64::from(*g).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((clipped - 1.0).abs() < 1e-4, "{clipped}");
        assert!((f64::from(after[0] / before[0]) - 1.0 / norm).abs() < 1e-6);
        // Below the clip nothing changes.
        let loss = model
            .forward(Tensor::<2>::from_floats([[1e-3, 0.0, 0.0]], &device))
            .sum()
            .mul_scalar(1e-3);
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        let norm = clip_global_norm(&model, &mut grads, 1.0);
        assert!(norm < 1.0);
        let kept: Vec<f32> = grads
            .get::<1>(model.bias.as_ref().unwrap().id)
            .unwrap()
            .into_data()
            .try_into_vec()
            .unwrap();
        assert_eq!(kept, vec![1e-3f32; 2]);
    }

    #[test]
    fn a_tiny_model_learns_a_repetitive_text() {
        let text = b"the cat sat on the mat. ".repeat(60);
        let config = LmConfig {
            layers: 1,
            width: 32,
            seq_len: 16,
            batch_sizes: vec![4],
            steps: 60,
            warmup_steps: 5,
            learning_rate: 1e-2,
            eval_every: 20,
            spike_window: 10,
            validation_fraction: 0.2,
            validation_windows: 4,
            ..Default::default()
        };
        let corpus = Corpus::split(
            text,
            config.validation_fraction,
            config.seq_len,
            "t".as_ref(),
        )
        .unwrap();
        let report = run(&config, &corpus, &mut |_| {}).unwrap();
        assert_eq!(report.runs.len(), 2);
        for run in &report.runs {
            let first = run.validation_loss.first().unwrap().1;
            let last = run.validation_loss.last().unwrap().1;
            assert!(
                (first - 256f64.ln()).abs() < 0.2,
                "{}: initial loss {first}",
                run.optimizer
            );
            assert!(
                last < 0.5 * first,
                "{}: validation loss {first} → {last}",
                run.optimizer
            );
            assert_eq!(run.validation_loss.len(), 4);
            assert_eq!(run.train_loss.len(), 60);
        }
    }

    #[test]
    fn short_text_is_refused_with_its_size() {
        let error = Corpus::split(vec![b'a'; 100], 0.05, 128, "s.txt".as_ref()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("s.txt: 100 bytes of text is too short"),
            "{error}"
        );
    }
}
