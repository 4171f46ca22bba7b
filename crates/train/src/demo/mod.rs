//! The built-in demo (`softalign align` with no data): soft-label alignment end to end on a task
//! whose true reward is known exactly.
//!
//! 1. A tiny Llama ([`task::model_config`]) learns the task ([`task`]) by SFT on noisy
//!    demonstrations whose most common answer (copying the digits) is not the correct one.
//! 2. Two responses per prompt are sampled from the SFT model and labelled by Bradley–Terry on the
//!    true reward ([`pairs`]): most labels are modestly confident (p̂ ≈ 0.6–0.8).
//! 3. DPO (binarized labels), cDPO and GDPO train from the same reference (the SFT model) with the
//!    same optimizer, steps and data, each at every β of a small grid ([`BETA_GRID`]): with ADOPT
//!    (or Adam) a constant gradient scale cancels, so β acts only through how fast each loss
//!    saturates, and one β for all would favour whichever loss it happens to suit.
//! 4. Each model answers held-out prompts greedily. Per loss, the β whose answers to the
//!    *validation* prompts have the highest mean true reward is chosen; the table reports that
//!    model on the separate *test* prompts (mean true reward, exact answers, preference accuracy
//!    of σ(βδ) on test pairs), beside the same loss at the paper's default β.
//!
//! Everything is seeded: the same seed gives the same report.

pub mod pairs;
pub mod report;
pub mod task;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use softalign_model::{CausalLm, HostTensor, ModelConfig, Sampling, WeightMap, save_pretrained};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;

use crate::error::Result;
use crate::figures::write_figures;
use crate::metrics::MetricRecord;
use crate::objective::{PreferenceObjective, ReferenceMode, SftObjective};
use crate::schedule::Schedule;
use crate::sequence::{EncodedExample, EncodedPair};
use crate::trainer::{LoopOutcome, LoopSettings, Run, train_loop};
use pairs::{LabelledPair, encode_pair, sample_pairs, sample_response};
use report::{AnswerQuality, BetaPoint, DemoReport, LabelStats, ModelRow};
use task::{EOS_ID, PAD_ID, Prompt, all_prompts, noisy_demonstration, prompt_text};

/// The β grid each loss is tuned over (on validation prompts): a factor of three apart, from
/// the DPO paper's default up.
pub const BETA_GRID: [f64; 4] = [0.1, 0.3, 0.9, 2.7];

/// Settings of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    /// Where the report, figures, metrics and models go.
    pub out_dir: PathBuf,
    /// The one seed of everything random.
    pub seed: u64,
    /// Prompts held out from training: the first `validation_prompts` choose β, the rest are
    /// the test prompts the table reports.
    pub heldout_prompts: usize,
    /// Held-out prompts used to choose β (never reported as results).
    pub validation_prompts: usize,
    /// Noisy demonstrations per training prompt.
    pub demonstrations_per_prompt: usize,
    /// SFT optimizer steps.
    pub sft_steps: usize,
    /// Alignment optimizer steps, the same for every loss.
    pub align_steps: usize,
    /// Examples (SFT) or pairs (alignment) per step.
    pub batch_size: usize,
    /// Peak learning rate of SFT.
    pub sft_learning_rate: f64,
    /// Peak learning rate of alignment.
    pub align_learning_rate: f64,
    /// The losses compared, each with the paper's default β (reported beside the tuned one).
    pub losses: Vec<PrefLoss>,
    /// The β grid each loss is tuned over.
    pub betas: Vec<f64>,
    /// Evaluate ten times per run for the figures' curves (else only before and after).
    pub curves: bool,
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Where the models train and generate (the CPU by default).
    pub device: Device,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("out/align-demo"),
            seed: 0,
            heldout_prompts: 200,
            validation_prompts: 100,
            demonstrations_per_prompt: 4,
            sft_steps: 400,
            align_steps: 200,
            batch_size: 32,
            sft_learning_rate: 3e-3,
            align_learning_rate: 1e-4,
            losses: vec![PrefLoss::dpo(), PrefLoss::cdpo(), PrefLoss::gdpo()],
            betas: BETA_GRID.to_vec(),
            curves: true,
            progress: true,
            device: Device::flex(),
        }
    }
}

impl DemoSettings {
    /// The β values `loss` runs at: the grid and the paper's default, ascending.
    pub fn betas_for(&self, loss: &PrefLoss) -> Vec<f64> {
        let mut betas = self.betas.clone();
        if !betas.contains(&loss.beta()) {
            betas.push(loss.beta());
        }
        betas.sort_by(f64::total_cmp);
        betas
    }
}

/// A model with weights drawn from `seed` (normal, σ = 0.02; norm gains one), independent of
/// burn's global random state.
pub fn seeded_model(config: &ModelConfig, seed: u64, device: &Device) -> Result<CausalLm> {
    let shapes = CausalLm::init(config, &Device::flex()).to_weights();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut tensors = HashMap::new();
    for (name, tensor) in shapes {
        let len = tensor.data.len();
        let data = if name.ends_with("norm.weight") {
            vec![1.0; len]
        } else {
            (0..len).map(|_| 0.02 * standard_normal(&mut rng)).collect()
        };
        tensors.insert(
            name,
            HostTensor {
                shape: tensor.shape,
                data,
            },
        );
    }
    let weights = WeightMap {
        source: PathBuf::from("<seeded init>"),
        tensors,
        ..Default::default()
    };
    Ok(CausalLm::from_weights(config, weights, device)?)
}

fn standard_normal(rng: &mut impl rand::Rng) -> f32 {
    // Box–Muller on (0, 1] × [0, 1).
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn loop_settings(
    settings: &DemoSettings,
    dir: &Path,
    label: &str,
    steps: usize,
    learning_rate: f64,
) -> LoopSettings {
    LoopSettings {
        optimizer: OptimizerKind::Adopt,
        weight_decay: 0.0,
        schedule: Schedule {
            peak: learning_rate,
            warmup_steps: steps / 10,
            total_steps: steps,
            min_ratio: 0.1,
        },
        batch_size: settings.batch_size,
        grad_accum: 1,
        max_grad_norm: Some(1.0),
        eval_every: if settings.curves {
            (steps / 10).max(1)
        } else {
            0
        },
        eval_batch_size: 256,
        save_every: 0,
        keep_checkpoints: 1,
        seed: settings.seed,
        out_dir: dir.to_path_buf(),
        progress: settings.progress,
        label: label.to_string(),
        replicas: Default::default(),
    }
}

/// Greedy answers of `model` to `prompts`.
pub fn greedy_answers(
    model: &CausalLm,
    tokenizer: &softalign_model::TextTokenizer,
    prompts: &[Prompt],
) -> Result<Vec<String>> {
    let model = model.valid();
    prompts
        .iter()
        .map(|prompt| sample_response(&model, tokenizer, prompt, Sampling::Greedy, 0))
        .collect()
}

/// One seed's prompts: training, validation (to choose β) and test (to report).
#[derive(Debug, Clone, PartialEq)]
pub struct PromptSplit {
    /// Prompts the models train on.
    pub train: Vec<Prompt>,
    /// Held-out prompts that choose β.
    pub validation: Vec<Prompt>,
    /// Held-out prompts that the results are measured on.
    pub test: Vec<Prompt>,
}

impl PromptSplit {
    /// All 1000 prompts shuffled by `rng`: the first `heldout_prompts` held out (the first
    /// `validation_prompts` of them for validation), the rest for training.
    pub fn draw(settings: &DemoSettings, rng: &mut impl rand::Rng) -> Result<Self> {
        if settings.validation_prompts >= settings.heldout_prompts
            || settings.heldout_prompts >= 1000
        {
            return Err(crate::error::setting(
                "heldout-prompts",
                format!(
                    "need 0 ≤ validation ({}) < held-out ({}) < 1000 prompts",
                    settings.validation_prompts, settings.heldout_prompts
                ),
            ));
        }
        let mut prompts = all_prompts();
        prompts.shuffle(rng);
        let train = prompts.split_off(settings.heldout_prompts);
        let test = prompts.split_off(settings.validation_prompts);
        Ok(Self {
            train,
            validation: prompts,
            test,
        })
    }
}

/// The SFT stage: trains the reference on noisy demonstrations of the training prompts (held-out
/// demonstrations for its evaluation) and writes its metrics and figures into `dir`.
/// Returns the model and the number of demonstrations.
pub fn train_reference(
    settings: &DemoSettings,
    split: &PromptSplit,
    rng: &mut impl rand::Rng,
    dir: &Path,
) -> Result<(CausalLm, usize)> {
    let tokenizer = task::tokenizer()?;
    let encode_demo = |prompt: &Prompt, response: &str| -> Result<EncodedExample> {
        let mut ids = tokenizer.encode(response)?;
        ids.push(EOS_ID);
        Ok(EncodedExample {
            prompt: tokenizer.encode(&prompt_text(prompt))?,
            response: ids,
            source_line: 0,
        })
    };
    let mut sft_train = Vec::new();
    for prompt in &split.train {
        for _ in 0..settings.demonstrations_per_prompt {
            sft_train.push(encode_demo(prompt, &noisy_demonstration(prompt, rng))?);
        }
    }
    let sft_eval = split
        .validation
        .iter()
        .chain(&split.test)
        .map(|p| encode_demo(p, &noisy_demonstration(p, rng)))
        .collect::<Result<Vec<_>>>()?;
    let sft_settings = loop_settings(
        settings,
        dir,
        "sft",
        settings.sft_steps,
        settings.sft_learning_rate,
    );
    let device = settings.device.clone().autodiff();
    let initial = seeded_model(&task::model_config(), settings.seed, &device)?;
    let sft = train_loop(
        initial,
        Run {
            objective: &mut SftObjective { pad_id: PAD_ID },
            train: &sft_train,
            eval: &sft_eval,
            settings: &sft_settings,
            resume: None,
            stop: None,
        },
    )?;
    if settings.curves {
        write_figures(&sft.history, dir, "sft")?;
    }
    Ok((sft.model, sft_train.len()))
}

/// One alignment run from `reference` with `loss` on `train` pairs (evaluated on `eval` pairs),
/// its metrics and checkpoint in `dir`.
pub fn align_once(
    settings: &DemoSettings,
    reference: &CausalLm,
    loss: PrefLoss,
    train: &[EncodedPair],
    eval: &[EncodedPair],
    dir: &Path,
) -> Result<LoopOutcome> {
    let label = format!("{} β {}", loss.name(), loss.beta());
    let run_settings = loop_settings(
        settings,
        dir,
        &label,
        settings.align_steps,
        settings.align_learning_rate,
    );
    let mut objective = PreferenceObjective::new(loss, reference, ReferenceMode::Cached, PAD_ID);
    train_loop(
        reference.clone(),
        Run {
            objective: &mut objective,
            train,
            eval,
            settings: &run_settings,
            resume: None,
            stop: None,
        },
    )
}

/// A metric of the last held-out evaluation of a run.
pub fn final_eval(history: &[MetricRecord], name: &str) -> Option<f64> {
    history
        .iter()
        .rev()
        .find(|r| r.split == "eval")
        .and_then(|r| r.get(name))
}

/// The index of the β whose validation reward is highest (the smallest such β on a tie): the
/// choice sees validation numbers only.
pub fn choose_beta(validation_rewards: &[f64]) -> Option<usize> {
    let best = validation_rewards
        .iter()
        .copied()
        .filter(|r| r.is_finite())
        .max_by(f64::total_cmp)?;
    validation_rewards.iter().position(|&r| r == best)
}

/// Tokenizes labelled pairs.
pub fn encode_pairs(
    tokenizer: &softalign_model::TextTokenizer,
    pairs: &[LabelledPair],
) -> Result<Vec<EncodedPair>> {
    pairs.iter().map(|p| encode_pair(tokenizer, p)).collect()
}

/// Runs the demo and writes `report.md`, `report.json` and `comparison.png` into
/// `settings.out_dir` (plus each stage's metrics, figures and exported model in a subfolder).
/// Every loss runs at each β of the grid; the β with the best greedy reward on the validation
/// prompts is reported on the test prompts, beside the paper's default β. `notify` receives one
/// line per stage.
pub fn run_demo(settings: &DemoSettings, notify: &mut dyn FnMut(&str)) -> Result<DemoReport> {
    let started = Instant::now();
    let out = &settings.out_dir;
    std::fs::create_dir_all(out).map_err(crate::error::io_error(out))?;
    let tokenizer = task::tokenizer()?;
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let split = PromptSplit::draw(settings, &mut rng)?;

    // 1. SFT on noisy demonstrations.
    notify(&format!(
        "sft: {} noisy demonstrations per prompt of {} prompts, {} steps",
        settings.demonstrations_per_prompt,
        split.train.len(),
        settings.sft_steps
    ));
    let sft_dir = out.join("sft");
    let (reference, sft_examples) = train_reference(settings, &split, &mut rng, &sft_dir)?;
    save_pretrained(&reference.valid(), &tokenizer, &sft_dir.join("model"))?;
    let sft_validation = greedy_answers(&reference, &tokenizer, &split.validation)?;
    let sft_test = greedy_answers(&reference, &tokenizer, &split.test)?;
    let sft_quality = AnswerQuality::of(&split.test, &sft_test, &sft_test);
    notify(&format!(
        "sft: greedy test true reward {:.3}, exact {:.1}%",
        sft_quality.mean_true_reward,
        100.0 * sft_quality.exact_match
    ));

    // 2. Preference pairs from the SFT model, labelled by Bradley–Terry on the true reward.
    let sampler = reference.valid();
    let train_pairs = sample_pairs(&sampler, &tokenizer, &split.train, &mut rng)?;
    let eval_pairs = sample_pairs(&sampler, &tokenizer, &split.test, &mut rng)?;
    let labels = LabelStats::of(&train_pairs);
    notify(&format!(
        "pairs: {} train, {} test; labels p̂ in [0.55, 0.8]: {:.0}%, ties: {:.0}%, mean p̂ {:.3}",
        train_pairs.len(),
        eval_pairs.len(),
        100.0 * labels.modest_fraction,
        100.0 * labels.tie_fraction,
        labels.mean
    ));
    let train_encoded = encode_pairs(&tokenizer, &train_pairs)?;
    let eval_encoded = encode_pairs(&tokenizer, &eval_pairs)?;

    // 3. Each loss at each β from the same reference, same budget; β chosen on validation.
    let mut rows = vec![ModelRow::reference(sft_quality)];
    let mut histories = Vec::new();
    for loss in &settings.losses {
        let name = loss.name();
        let mut sweep = Vec::new();
        let mut runs = Vec::new();
        for beta in settings.betas_for(loss) {
            let dir = out.join(name).join(format!("beta-{beta}"));
            let outcome = align_once(
                settings,
                &reference,
                loss.with_beta(beta),
                &train_encoded,
                &eval_encoded,
                &dir,
            )?;
            let validation = greedy_answers(&outcome.model, &tokenizer, &split.validation)?;
            let test = greedy_answers(&outcome.model, &tokenizer, &split.test)?;
            sweep.push(BetaPoint {
                beta,
                validation: AnswerQuality::of(&split.validation, &validation, &sft_validation),
                test: AnswerQuality::of(&split.test, &test, &sft_test),
                preference_accuracy: final_eval(&outcome.history, "preference_accuracy"),
            });
            runs.push(outcome);
        }
        let validation: Vec<f64> = sweep
            .iter()
            .map(|p| p.validation.mean_true_reward)
            .collect();
        let chosen = choose_beta(&validation).unwrap_or(0);
        let outcome = runs.swap_remove(chosen);
        let dir = out.join(name);
        write_figures(&outcome.history, &dir, name)?;
        save_pretrained(&outcome.model.valid(), &tokenizer, &dir.join("model"))?;
        let row = ModelRow::tuned(*loss, sweep, chosen);
        notify(&format!(
            "{name}: β {} chosen on validation; test true reward {:.3} (paper's β {}: {:.3}), exact {:.1}%",
            row.beta.unwrap_or(f64::NAN),
            row.quality.mean_true_reward,
            loss.beta(),
            row.default_beta_true_reward.unwrap_or(f64::NAN),
            100.0 * row.quality.exact_match,
        ));
        rows.push(row);
        histories.push((name.to_string(), outcome.history));
    }

    let report = DemoReport {
        seed: settings.seed,
        train_prompts: split.train.len(),
        validation_prompts: split.validation.len(),
        test_prompts: split.test.len(),
        sft_examples,
        train_pairs: train_pairs.len(),
        heldout_pairs: eval_pairs.len(),
        sft_steps: settings.sft_steps,
        align_steps: settings.align_steps,
        batch_size: settings.batch_size,
        align_learning_rate: settings.align_learning_rate,
        betas: settings.betas.clone(),
        demonstration_expected_reward: task::demonstration_expected_reward(),
        labels,
        rows,
        seconds: started.elapsed().as_secs_f64(),
        out_dir: out.clone(),
    };
    report.write(out, &histories)?;
    Ok(report)
}
