//! The built-in demo (`softalign align` with no data): soft-label alignment end to end on a task
//! whose true reward is known exactly.
//!
//! 1. A tiny Llama ([`task::model_config`]) learns the task ([`task`]) by SFT on noisy
//!    demonstrations whose most common answer (copying the digits) is not the correct one.
//! 2. Two responses per prompt are sampled from the SFT model and labelled by Bradley–Terry on the
//!    true reward ([`pairs`]): most labels are modestly confident (p̂ ≈ 0.6–0.8).
//! 3. DPO (binarized labels), cDPO and GDPO train from the same reference (the SFT model) with the
//!    same optimizer, steps and data.
//! 4. Each model answers the held-out prompts greedily; the table reports the mean true reward of
//!    those answers and the preference-classification accuracy of σ(βδ) on held-out pairs.
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
use crate::objective::{PreferenceObjective, ReferenceMode, SftObjective};
use crate::schedule::Schedule;
use crate::sequence::EncodedExample;
use crate::trainer::{LoopSettings, Run, train_loop};
use pairs::{LabelledPair, encode_pair, sample_pairs, sample_response};
use report::{DemoReport, LabelStats, ModelRow};
use task::{EOS_ID, PAD_ID, Prompt, all_prompts, noisy_demonstration, prompt_text, true_reward};

/// Settings of the demo.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoSettings {
    /// Where the report, figures, metrics and models go.
    pub out_dir: PathBuf,
    /// The one seed of everything random.
    pub seed: u64,
    /// Prompts held out from training (answered greedily for the table).
    pub heldout_prompts: usize,
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
    /// The losses compared, each with its β.
    pub losses: Vec<PrefLoss>,
    /// Draw progress bars on stderr.
    pub progress: bool,
}

impl Default for DemoSettings {
    fn default() -> Self {
        Self {
            out_dir: PathBuf::from("out/align-demo"),
            seed: 0,
            heldout_prompts: 200,
            demonstrations_per_prompt: 4,
            sft_steps: 400,
            align_steps: 200,
            batch_size: 32,
            sft_learning_rate: 3e-3,
            align_learning_rate: 1e-4,
            losses: vec![PrefLoss::dpo(), PrefLoss::cdpo(), PrefLoss::gdpo()],
            progress: true,
        }
    }
}

/// A model with weights drawn from `seed` (normal, σ = 0.02; norm gains one), independent of
/// burn's global random state.
pub fn seeded_model(config: &ModelConfig, seed: u64, device: &Device) -> Result<CausalLm> {
    let shapes = CausalLm::init(config, &Device::default()).to_weights();
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
        eval_every: (steps / 10).max(1),
        eval_batch_size: 256,
        save_every: 0,
        keep_checkpoints: 1,
        seed: settings.seed,
        out_dir: dir.to_path_buf(),
        progress: settings.progress,
        label: label.to_string(),
    }
}

/// Greedy answers of `model` to `prompts`: mean true reward and exact-match rate.
fn greedy_quality(
    model: &CausalLm,
    tokenizer: &softalign_model::TextTokenizer,
    prompts: &[Prompt],
) -> Result<(f64, f64, Vec<String>)> {
    let model = model.valid();
    let mut total = 0.0;
    let mut exact = 0usize;
    let mut answers = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        let answer = sample_response(&model, tokenizer, prompt, Sampling::Greedy, 0)?;
        let reward = true_reward(prompt, &answer);
        total += reward;
        exact += usize::from(reward == 0.0);
        answers.push(answer);
    }
    let n = prompts.len().max(1) as f64;
    Ok((total / n, exact as f64 / n, answers))
}

/// Runs the demo and writes `report.md`, `report.json` and `comparison.png` into
/// `settings.out_dir` (plus each stage's metrics, figures and exported model in a subfolder).
/// `notify` receives one line per stage.
pub fn run_demo(settings: &DemoSettings, notify: &mut dyn FnMut(&str)) -> Result<DemoReport> {
    let started = Instant::now();
    let out = &settings.out_dir;
    std::fs::create_dir_all(out).map_err(crate::error::io_error(out))?;
    let tokenizer = task::tokenizer()?;
    let device = Device::default().autodiff();

    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut prompts = all_prompts();
    prompts.shuffle(&mut rng);
    let (heldout, train_prompts) = prompts.split_at(settings.heldout_prompts);

    // 1. SFT on noisy demonstrations.
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
    for prompt in train_prompts {
        for _ in 0..settings.demonstrations_per_prompt {
            sft_train.push(encode_demo(prompt, &noisy_demonstration(prompt, &mut rng))?);
        }
    }
    let sft_eval = heldout
        .iter()
        .map(|p| encode_demo(p, &noisy_demonstration(p, &mut rng)))
        .collect::<Result<Vec<_>>>()?;
    notify(&format!(
        "sft: {} noisy demonstrations of {} prompts, {} steps",
        sft_train.len(),
        train_prompts.len(),
        settings.sft_steps
    ));
    let sft_dir = out.join("sft");
    let sft_settings = loop_settings(
        settings,
        &sft_dir,
        "sft",
        settings.sft_steps,
        settings.sft_learning_rate,
    );
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
    write_figures(&sft.history, &sft_dir, "sft")?;
    save_pretrained(&sft.model.valid(), &tokenizer, &sft_dir.join("model"))?;
    let reference = sft.model;
    let (sft_reward, sft_exact, _) = greedy_quality(&reference, &tokenizer, heldout)?;
    notify(&format!(
        "sft: greedy held-out true reward {sft_reward:.3}, exact {:.1}%",
        100.0 * sft_exact
    ));

    // 2. Preference pairs from the SFT model, labelled by Bradley–Terry on the true reward.
    let sampler = reference.valid();
    let train_pairs = sample_pairs(&sampler, &tokenizer, train_prompts, &mut rng)?;
    let eval_pairs = sample_pairs(&sampler, &tokenizer, heldout, &mut rng)?;
    let labels = LabelStats::of(&train_pairs);
    notify(&format!(
        "pairs: {} train, {} held-out; labels p̂ in [0.55, 0.8]: {:.0}%, ties: {:.0}%, mean p̂ {:.3}",
        train_pairs.len(),
        eval_pairs.len(),
        100.0 * labels.modest_fraction,
        100.0 * labels.tie_fraction,
        labels.mean
    ));
    let encode_all = |pairs: &[LabelledPair]| {
        pairs
            .iter()
            .map(|p| encode_pair(&tokenizer, p))
            .collect::<Result<Vec<_>>>()
    };
    let (train_encoded, eval_encoded) = (encode_all(&train_pairs)?, encode_all(&eval_pairs)?);

    // 3. DPO, cDPO and GDPO from the same reference, same budget.
    let mut rows = vec![ModelRow {
        name: "sft (reference)".into(),
        loss: None,
        beta: None,
        mean_true_reward: sft_reward,
        exact_match: sft_exact,
        preference_accuracy: None,
        final_eval_loss: None,
    }];
    let mut histories = Vec::new();
    for loss in &settings.losses {
        let name = loss.name();
        let dir = out.join(name);
        let run_settings = loop_settings(
            settings,
            &dir,
            name,
            settings.align_steps,
            settings.align_learning_rate,
        );
        let mut objective =
            PreferenceObjective::new(*loss, &reference, ReferenceMode::Cached, PAD_ID);
        let outcome = train_loop(
            reference.clone(),
            Run {
                objective: &mut objective,
                train: &train_encoded,
                eval: &eval_encoded,
                settings: &run_settings,
                resume: None,
                stop: None,
            },
        )?;
        write_figures(&outcome.history, &dir, name)?;
        save_pretrained(&outcome.model.valid(), &tokenizer, &dir.join("model"))?;
        let (reward, exact, _) = greedy_quality(&outcome.model, &tokenizer, heldout)?;
        let last_eval = outcome.history.iter().rev().find(|r| r.split == "eval");
        let accuracy = last_eval.and_then(|r| r.get("preference_accuracy"));
        notify(&format!(
            "{name}: greedy held-out true reward {reward:.3}, exact {:.1}%, held-out preference accuracy {}",
            100.0 * exact,
            accuracy.map_or("n/a".into(), |a| format!("{:.1}%", 100.0 * a))
        ));
        rows.push(ModelRow {
            name: name.to_string(),
            loss: Some(name.to_string()),
            beta: Some(loss.beta()),
            mean_true_reward: reward,
            exact_match: exact,
            preference_accuracy: accuracy,
            final_eval_loss: last_eval.and_then(|r| r.get("loss")),
        });
        histories.push((name.to_string(), outcome.history));
    }

    let report = DemoReport {
        seed: settings.seed,
        train_prompts: train_prompts.len(),
        heldout_prompts: heldout.len(),
        sft_examples: sft_train.len(),
        train_pairs: train_pairs.len(),
        heldout_pairs: eval_pairs.len(),
        sft_steps: settings.sft_steps,
        align_steps: settings.align_steps,
        batch_size: settings.batch_size,
        align_learning_rate: settings.align_learning_rate,
        demonstration_expected_reward: task::demonstration_expected_reward(),
        labels,
        rows,
        seconds: started.elapsed().as_secs_f64(),
        out_dir: out.clone(),
    };
    report.write(out, &histories)?;
    Ok(report)
}
