//! MNIST and Fashion-MNIST classifiers (ADOPT paper, §5 "MNIST classification"): Adam, AMSGrad
//! and ADOPT training the same multi-layer perceptron.
//!
//! A one-hidden-layer MLP (784 → hidden → 10, ReLU, cross-entropy) is trained from the same
//! initialisation per seed by each optimizer at its defaults (Adam and AMSGrad β₂ 0.999, ε 1e-8;
//! ADOPT β₂ 0.9999, ε 1e-6, clip t^0.25), with the same constant learning rate and the same
//! minibatch order. After every epoch the mean minibatch training loss of that epoch and the test
//! loss and accuracy are recorded; means and 95% intervals (Student t over seeds) summarise them.
//!
//! What the paper claims: ADOPT trains at least as fast as Adam and AMSGrad on an MLP (its
//! Fig. 4, accuracy curves with 95% intervals over three trials). What this run measures is
//! printed by `softalign repro mnist` and written to `mnist.json` / `mnist.png`.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use softalign_optim::OptimizerKind;
use softalign_plot::{Figure, Panel, Series};

use crate::idx::{IdxArray, read_idx};
use crate::{ReproError, write_json_atomic};

/// Which data set of the IDX family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataset {
    /// Handwritten digits (LeCun et al.).
    Mnist,
    /// Zalando's clothing images, same format and sizes.
    Fashion,
}

impl Dataset {
    /// The name used on the command line and as the stem of the output files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mnist => "mnist",
            Self::Fashion => "fashion",
        }
    }

    /// The title used in figures.
    pub fn title(self) -> &'static str {
        match self {
            Self::Mnist => "MNIST",
            Self::Fashion => "Fashion-MNIST",
        }
    }
}

impl FromStr for Dataset {
    type Err = ReproError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name.to_ascii_lowercase().as_str() {
            "mnist" => Ok(Self::Mnist),
            "fashion" | "fashion-mnist" => Ok(Self::Fashion),
            other => Err(ReproError::Setting(format!(
                "dataset {other:?} is not known (expected mnist or fashion)"
            ))),
        }
    }
}

/// Labelled images with pixels scaled to [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    /// `len × pixels` values, image after image.
    pub images: Vec<f32>,
    /// One class per image, below `classes`.
    pub labels: Vec<u8>,
    /// Pixels per image (784 for 28 × 28).
    pub pixels: usize,
    /// Number of classes (10).
    pub classes: usize,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pairs an image array (`[n, rows, cols]`) with a label array (`[n]`, values 0–9), checking
    /// that they agree; the paths name the files in errors.
    pub fn from_idx(
        images: IdxArray,
        labels: IdxArray,
        image_path: &Path,
        label_path: &Path,
    ) -> Result<Self, ReproError> {
        let error = |path: &Path, message: String| ReproError::Format {
            path: path.into(),
            message,
        };
        if images.dims.len() != 3 {
            return Err(error(
                image_path,
                format!(
                    "dimensions {:?}: expected [images, rows, columns]",
                    images.dims
                ),
            ));
        }
        if labels.dims.len() != 1 {
            return Err(error(
                label_path,
                format!("dimensions {:?}: expected [labels]", labels.dims),
            ));
        }
        if images.len() != labels.len() {
            return Err(error(
                label_path,
                format!(
                    "{} labels for the {} images of {}",
                    labels.len(),
                    images.len(),
                    image_path.display()
                ),
            ));
        }
        const CLASSES: usize = 10;
        if let Some((index, label)) = labels
            .data
            .iter()
            .enumerate()
            .find(|(_, l)| **l as usize >= CLASSES)
        {
            return Err(error(
                label_path,
                format!("label {index} is {label}, expected 0–9"),
            ));
        }
        Ok(Self {
            pixels: images.item_size(),
            images: images.data.iter().map(|&p| f32::from(p) / 255.0).collect(),
            labels: labels.data,
            classes: CLASSES,
        })
    }

    /// The first `n` images (all if there are fewer).
    pub fn truncated(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * self.pixels);
        self.labels.truncate(n);
        self
    }

    /// The images at `indices` as a `[indices, pixels]` batch and their labels.
    fn batch(&self, indices: &[usize], device: &Device) -> (Tensor<2>, Tensor<1, Int>) {
        let mut pixels = Vec::with_capacity(indices.len() * self.pixels);
        for &i in indices {
            pixels.extend_from_slice(&self.images[i * self.pixels..(i + 1) * self.pixels]);
        }
        let labels: Vec<i64> = indices.iter().map(|&i| i64::from(self.labels[i])).collect();
        (
            Tensor::from_data(
                TensorData::new(pixels, [indices.len(), self.pixels]),
                device,
            ),
            Tensor::from_data(TensorData::new(labels, [indices.len()]), device),
        )
    }
}

/// The training and test sets of a data folder.
#[derive(Debug, Clone)]
pub struct Splits {
    /// 60,000 training images for MNIST and Fashion-MNIST.
    pub train: ImageSet,
    /// 10,000 test images.
    pub test: ImageSet,
}

/// Loads `{train,t10k}-{images-idx3,labels-idx1}-ubyte` from `dir`, each plain or with a `.gz`
/// suffix (as `scripts/fetch-repro-data.sh` leaves MNIST and Fashion-MNIST).
pub fn load(dir: &Path) -> Result<Splits, ReproError> {
    let split = |name: &str| -> Result<ImageSet, ReproError> {
        let image_path = find_idx(dir, &format!("{name}-images-idx3-ubyte"))?;
        let label_path = find_idx(dir, &format!("{name}-labels-idx1-ubyte"))?;
        ImageSet::from_idx(
            read_idx(&image_path)?,
            read_idx(&label_path)?,
            &image_path,
            &label_path,
        )
    };
    Ok(Splits {
        train: split("train")?,
        test: split("t10k")?,
    })
}

fn find_idx(dir: &Path, name: &str) -> Result<PathBuf, ReproError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    [&plain, &gz]
        .into_iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| ReproError::Format {
            path: plain.clone(),
            message: "not found (nor with .gz); fetch it with scripts/fetch-repro-data.sh"
                .to_string(),
        })
}

/// The classifier: `pixels → hidden → classes` with a ReLU.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Input to hidden layer.
    pub hidden: Linear,
    /// Hidden to class logits.
    pub output: Linear,
}

impl Mlp {
    /// PyTorch-style initialisation (Kaiming-uniform, burn's `Linear` default); seed the device
    /// first for a reproducible draw.
    pub fn new(pixels: usize, hidden: usize, classes: usize, device: &Device) -> Self {
        Self {
            hidden: LinearConfig::new(pixels, hidden).init(device),
            output: LinearConfig::new(hidden, classes).init(device),
        }
    }

    /// Class logits of a `[batch, pixels]` batch.
    pub fn forward(&self, images: Tensor<2>) -> Tensor<2> {
        self.output.forward(relu(self.hidden.forward(images)))
    }
}

/// Mean cross-entropy of `logits: [batch, classes]` against `labels: [batch]`.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1]));
    picked.mean().neg()
}

/// Settings of the MNIST reproduction; the defaults finish in a few minutes on two cores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MnistConfig {
    /// Which data set (only names the outputs; the images come from [`load`]).
    pub dataset: Dataset,
    /// Passes over the training set (10).
    pub epochs: usize,
    /// Independent seeds, each a fresh initialisation and minibatch order (3).
    pub seeds: usize,
    /// Minibatch size (128).
    pub batch_size: usize,
    /// Hidden units (256).
    pub hidden: usize,
    /// Constant learning rate of every optimizer (1e-3).
    pub learning_rate: f64,
    /// The optimizers compared (Adam, AMSGrad, ADOPT).
    pub optimizers: Vec<OptimizerKind>,
    /// Training-loss points recorded per epoch for the curves, each the mean over its steps (10).
    pub loss_points_per_epoch: usize,
    /// Where the models train (the CPU by default).
    #[serde(skip)]
    pub device: Device,
}

impl Default for MnistConfig {
    fn default() -> Self {
        Self {
            dataset: Dataset::Mnist,
            epochs: 10,
            seeds: 3,
            batch_size: 128,
            hidden: 256,
            learning_rate: 1e-3,
            optimizers: vec![
                OptimizerKind::Adam,
                OptimizerKind::AmsGrad,
                OptimizerKind::Adopt,
            ],
            loss_points_per_epoch: 10,
            device: Device::flex(),
        }
    }
}

impl MnistConfig {
    fn validate(&self) -> Result<(), ReproError> {
        let positive = [
            ("epochs", self.epochs),
            ("seeds", self.seeds),
            ("batch-size", self.batch_size),
            ("hidden", self.hidden),
            ("loss points per epoch", self.loss_points_per_epoch),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ReproError::Setting(format!("{name} must be at least 1")));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(ReproError::Setting(format!(
                "learning rate {} must be positive",
                self.learning_rate
            )));
        }
        if self.optimizers.is_empty() {
            return Err(ReproError::Setting("no optimizer to compare".to_string()));
        }
        Ok(())
    }
}

pub use crate::stats::{Interval, mean_ci95};

/// One training run (one optimizer, one seed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedRun {
    /// The seed of the initialisation and of the minibatch order.
    pub seed: u64,
    /// Mean minibatch training loss of each epoch.
    pub train_loss: Vec<f64>,
    /// Test-set cross-entropy after each epoch.
    pub test_loss: Vec<f64>,
    /// Test-set accuracy after each epoch.
    pub test_accuracy: Vec<f64>,
    /// Training loss averaged over consecutive windows of steps: `(last step of the window, mean)`.
    pub loss_curve: Vec<(usize, f64)>,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
}

/// One epoch of one optimizer, summarised over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochSummary {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean minibatch training loss of the epoch.
    pub train_loss: Interval,
    /// Test-set cross-entropy after the epoch.
    pub test_loss: Interval,
    /// Test-set accuracy after the epoch.
    pub test_accuracy: Interval,
}

/// Everything one optimizer did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptimizerResult {
    /// `adam`, `amsgrad`, `adopt`, ….
    pub optimizer: String,
    /// Per-epoch summaries over seeds.
    pub epochs: Vec<EpochSummary>,
    /// The individual runs.
    pub runs: Vec<SeedRun>,
}

/// The output of [`run`] (`mnist.json` / `fashion.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MnistReport {
    /// The settings.
    pub config: MnistConfig,
    /// Training and test images.
    pub train_images: usize,
    /// Test images.
    pub test_images: usize,
    /// Minibatch steps per epoch.
    pub steps_per_epoch: usize,
    /// One entry per optimizer, in the order of the config.
    pub results: Vec<OptimizerResult>,
    /// Wall-clock seconds of the whole comparison.
    pub seconds: f64,
}

/// Trains every optimizer of `config` on `data.train` for every seed and evaluates on
/// `data.test`. `progress` is called after every epoch with a one-line description.
pub fn run(
    config: &MnistConfig,
    data: &Splits,
    progress: &mut dyn FnMut(&str),
) -> Result<MnistReport, ReproError> {
    config.validate()?;
    if data.train.is_empty() || data.test.is_empty() {
        return Err(ReproError::Setting(
            "the training and test sets must not be empty".to_string(),
        ));
    }
    if data.train.pixels != data.test.pixels {
        return Err(ReproError::Setting(format!(
            "training images have {} pixels, test images {}",
            data.train.pixels, data.test.pixels
        )));
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for &kind in &config.optimizers {
        let runs = (0..config.seeds as u64)
            .map(|seed| train_one(config, data, kind, seed, progress))
            .collect::<Vec<_>>();
        results.push(OptimizerResult {
            optimizer: kind.name().to_string(),
            epochs: summarise(&runs),
            runs,
        });
    }
    Ok(MnistReport {
        config: config.clone(),
        train_images: data.train.len(),
        test_images: data.test.len(),
        steps_per_epoch: data.train.len().div_ceil(config.batch_size),
        results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn summarise(runs: &[SeedRun]) -> Vec<EpochSummary> {
    let epochs = runs.first().map_or(0, |r| r.train_loss.len());
    (0..epochs)
        .map(|e| {
            let over_seeds = |pick: fn(&SeedRun) -> &Vec<f64>| {
                mean_ci95(&runs.iter().map(|r| pick(r)[e]).collect::<Vec<_>>())
            };
            EpochSummary {
                epoch: e + 1,
                train_loss: over_seeds(|r| &r.train_loss),
                test_loss: over_seeds(|r| &r.test_loss),
                test_accuracy: over_seeds(|r| &r.test_accuracy),
            }
        })
        .collect()
}

/// One optimizer, one seed: the same seed gives every optimizer the same initial weights and the
/// same minibatch order.
fn train_one(
    config: &MnistConfig,
    data: &Splits,
    kind: OptimizerKind,
    seed: u64,
    progress: &mut dyn FnMut(&str),
) -> SeedRun {
    let started = Instant::now();
    let device = config.device.clone().autodiff();
    device.seed(seed);
    let mut model = Mlp::new(
        data.train.pixels,
        config.hidden,
        data.train.classes,
        &device,
    );
    let mut optimizer = kind.module_optimizer(0.0, None);
    let mut order_rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
    let window = steps_per_epoch
        .div_ceil(config.loss_points_per_epoch)
        .max(1);
    let mut run = SeedRun {
        seed,
        train_loss: Vec::new(),
        test_loss: Vec::new(),
        test_accuracy: Vec::new(),
        loss_curve: Vec::new(),
        seconds: 0.0,
    };
    let (mut window_sum, mut window_len, mut step) = (0.0, 0usize, 0usize);
    for epoch in 1..=config.epochs {
        order.shuffle(&mut order_rng);
        let mut epoch_sum = 0.0;
        for indices in order.chunks(config.batch_size) {
            let (images, labels) = data.train.batch(indices, &device);
            let loss = cross_entropy(model.forward(images), labels);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let value = f64::from(loss.into_scalar::<f32>());
            model = optimizer.step(config.learning_rate, model, grads);
            epoch_sum += value;
            (window_sum, window_len, step) = (window_sum + value, window_len + 1, step + 1);
            if window_len == window || step == epoch * steps_per_epoch {
                run.loss_curve.push((step, window_sum / window_len as f64));
                (window_sum, window_len) = (0.0, 0);
            }
        }
        run.train_loss.push(epoch_sum / steps_per_epoch as f64);
        let (test_loss, test_accuracy) = evaluate(&model.valid(), &data.test);
        run.test_loss.push(test_loss);
        run.test_accuracy.push(test_accuracy);
        progress(&format!(
            "{} seed {seed} epoch {epoch}/{}: train loss {:.4}, test loss {test_loss:.4}, test accuracy {:.2}%",
            kind.name(),
            config.epochs,
            run.train_loss[epoch - 1],
            100.0 * test_accuracy
        ));
    }
    run.seconds = started.elapsed().as_secs_f64();
    run
}

/// Test cross-entropy and accuracy of a (non-autodiff) model, in chunks.
pub fn evaluate(model: &Mlp, set: &ImageSet) -> (f64, f64) {
    const CHUNK: usize = 2000;
    let device = model.hidden.weight.val().device();
    let (mut loss_sum, mut correct) = (0.0, 0usize);
    let indices: Vec<usize> = (0..set.len()).collect();
    for chunk in indices.chunks(CHUNK) {
        let (images, labels) = set.batch(chunk, &device);
        let logits = model.forward(images);
        let loss = cross_entropy(logits.clone(), labels).into_scalar::<f32>();
        loss_sum += f64::from(loss) * chunk.len() as f64;
        let values = logits.into_data().try_into_vec::<f32>().unwrap_or_default();
        for (row, &i) in values.chunks(set.classes).zip(chunk) {
            let predicted = row
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(class, _)| class);
            correct += usize::from(predicted == usize::from(set.labels[i]));
        }
    }
    (
        loss_sum / set.len() as f64,
        correct as f64 / set.len() as f64,
    )
}

/// Writes `DIR/<dataset>.json` and `DIR/<dataset>.png` (e.g. `mnist.json`, `fashion.png`).
pub fn write(report: &MnistReport, out_dir: &Path) -> Result<(), ReproError> {
    let stem = report.config.dataset.name();
    write_json_atomic(&out_dir.join(format!("{stem}.json")), report)?;
    figure(report).save(&out_dir.join(format!("{stem}.png")))?;
    Ok(())
}

fn figure(report: &MnistReport) -> Figure {
    let steps_per_epoch = report.steps_per_epoch as f64;
    let loss_series = report
        .results
        .iter()
        .map(|result| {
            let curves: Vec<&Vec<(usize, f64)>> =
                result.runs.iter().map(|r| &r.loss_curve).collect();
            let points = curves.first().map_or(0, |c| c.len());
            let mut line = Vec::new();
            let mut band = Vec::new();
            for p in 0..points {
                let x = curves[0][p].0 as f64 / steps_per_epoch;
                let interval = mean_ci95(&curves.iter().map(|c| c[p].1).collect::<Vec<_>>());
                line.push((x, interval.mean));
                band.push((x, interval.low, interval.high));
            }
            Series::line(&result.optimizer, line).with_band(band)
        })
        .collect();
    let per_epoch = |pick: fn(&EpochSummary) -> Interval, scale: f64| -> Vec<Series> {
        report
            .results
            .iter()
            .map(|result| {
                let intervals: Vec<(f64, Interval)> = result
                    .epochs
                    .iter()
                    .map(|e| (e.epoch as f64, pick(e)))
                    .collect();
                Series::line(
                    &result.optimizer,
                    intervals
                        .iter()
                        .map(|(x, i)| (*x, scale * i.mean))
                        .collect(),
                )
                .with_band(
                    intervals
                        .iter()
                        .map(|(x, i)| (*x, scale * i.low, scale * i.high))
                        .collect(),
                )
            })
            .collect()
    };
    let seeds = report.config.seeds;
    Figure {
        title: format!(
            "{}: MLP 784-{}-10, batch {}, lr {}, mean and 95% interval over {seeds} seeds",
            report.config.dataset.title(),
            report.config.hidden,
            report.config.batch_size,
            report.config.learning_rate
        ),
        panels: vec![
            Panel {
                title: "training loss (minibatch, window means)".to_string(),
                x_label: "epoch".to_string(),
                y_label: "cross-entropy".to_string(),
                series: loss_series,
                ..Default::default()
            },
            Panel {
                title: "test loss".to_string(),
                x_label: "epoch".to_string(),
                y_label: "cross-entropy".to_string(),
                series: per_epoch(|e| e.test_loss, 1.0),
                ..Default::default()
            },
            Panel {
                title: "test accuracy".to_string(),
                x_label: "epoch".to_string(),
                y_label: "accuracy (%)".to_string(),
                series: per_epoch(|e| e.test_accuracy, 100.0),
                ..Default::default()
            },
        ],
        columns: 3,
        panel_size: (520, 400),
    }
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    /// A few hundred 8 × 8 "digits": each class a fixed random stroke pattern, each image that
    /// pattern with pixel noise, so a small MLP can learn them but not at once.
    fn synthetic(images: usize, seed: u64) -> ImageSet {
        let (pixels, classes) = (64, 10);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let prototypes: Vec<Vec<f32>> = (0..classes)
            .map(|_| {
                (0..pixels)
                    .map(|_| if rng.random_bool(0.3) { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let labels: Vec<u8> = (0..images).map(|i| (i % classes) as u8).collect();
        let images = labels
            .iter()
            .flat_map(|&l| prototypes[l as usize].clone())
            .map(|p| (p * 0.6 + rng.random::<f32>() * 0.4).clamp(0.0, 1.0))
            .collect();
        ImageSet {
            images,
            labels,
            pixels,
            classes,
        }
    }

    /// Training and test images of the same classes (the same prototypes).
    fn synthetic_splits(train: usize, test: usize, seed: u64) -> Splits {
        let all = synthetic(train + test, seed);
        let test = ImageSet {
            images: all.images[train * all.pixels..].to_vec(),
            labels: all.labels[train..].to_vec(),
            ..all.clone()
        };
        Splits {
            train: all.truncated(train),
            test,
        }
    }

    #[test]
    fn every_optimizer_lowers_the_loss_on_synthetic_digits() {
        let data = synthetic_splits(400, 100, 1);
        let config = MnistConfig {
            epochs: 4,
            seeds: 2,
            batch_size: 32,
            hidden: 32,
            learning_rate: 1e-2,
            loss_points_per_epoch: 2,
            ..Default::default()
        };
        let mut lines = Vec::new();
        let report = run(&config, &data, &mut |line| lines.push(line.to_string())).unwrap();
        assert_eq!(lines.len(), 3 * 2 * 4);
        assert_eq!(report.steps_per_epoch, 13);
        let names: Vec<&str> = report
            .results
            .iter()
            .map(|r| r.optimizer.as_str())
            .collect();
        assert_eq!(names, ["adam", "amsgrad", "adopt"]);
        for result in &report.results {
            let first = result.epochs.first().unwrap().train_loss.mean;
            let last = result.epochs.last().unwrap().train_loss.mean;
            assert!(
                last < 0.5 * first,
                "{}: training loss {first} → {last}",
                result.optimizer
            );
            let accuracy = result.epochs.last().unwrap().test_accuracy.mean;
            assert!(
                accuracy > 0.5,
                "{}: test accuracy {accuracy}",
                result.optimizer
            );
            for run in &result.runs {
                assert_eq!(run.loss_curve.len(), 4 * 2);
                assert_eq!(run.loss_curve.last().unwrap().0, 4 * 13);
            }
        }
    }

    #[test]
    fn same_seed_same_run_and_seeds_differ() {
        let data = synthetic_splits(64, 20, 3);
        let config = MnistConfig {
            epochs: 1,
            seeds: 2,
            batch_size: 16,
            hidden: 8,
            optimizers: vec![OptimizerKind::Adopt, OptimizerKind::Adopt],
            ..Default::default()
        };
        let report = run(&config, &data, &mut |_| {}).unwrap();
        let (a, b) = (&report.results[0].runs, &report.results[1].runs);
        assert_eq!(a[0].loss_curve, b[0].loss_curve);
        assert_ne!(a[0].loss_curve, a[1].loss_curve);
    }

    #[test]
    fn interval_uses_student_t() {
        let interval = mean_ci95(&[1.0, 2.0, 3.0]);
        // s = 1, n = 3: half-width 4.303 / √3.
        assert!((interval.mean - 2.0).abs() < 1e-12);
        assert!((interval.high - 2.0 - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(
            mean_ci95(&[5.0]),
            Interval {
                mean: 5.0,
                low: 5.0,
                high: 5.0
            }
        );
    }

    #[test]
    fn mismatched_files_are_named() {
        let images = IdxArray {
            dims: vec![2, 2, 2],
            data: vec![0; 8],
        };
        let labels = IdxArray {
            dims: vec![3],
            data: vec![0, 1, 2],
        };
        let error =
            ImageSet::from_idx(images.clone(), labels, "i".as_ref(), "l".as_ref()).unwrap_err();
        assert_eq!(error.to_string(), "l: 3 labels for the 2 images of i");
        let labels = IdxArray {
            dims: vec![2],
            data: vec![0, 11],
        };
        let error = ImageSet::from_idx(images, labels, "i".as_ref(), "l".as_ref()).unwrap_err();
        assert_eq!(error.to_string(), "l: label 1 is 11, expected 0–9");
    }

    #[test]
    fn missing_data_points_to_the_fetch_script() {
        let error = load(Path::new("/nonexistent-mnist"))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("/nonexistent-mnist/train-images-idx3-ubyte: not found"),
            "{error}"
        );
        assert!(error.contains("scripts/fetch-repro-data.sh"));
    }
}
