//! Soft labels, honestly: DPO, cDPO and GDPO on the built-in demo's task across label regimes and
//! β, a paired experiment whose verdict rules are fixed here, before any run.
//!
//! Per seed: one SFT reference; two samples per training prompt and per test prompt; held-out
//! prompts split into validation (to choose β) and test (to report). The *same* sampled pairs are
//! relabelled under every regime ([`regimes`]), so every loss sees the same reference, pairs and
//! order; a run whose effective labels (binarized for DPO) and test pairs equal an earlier
//! regime's is reused, not retrained. Each loss runs at every β of the grid; per seed and regime
//! the β with the best greedy true reward on the validation prompts is "tuned", and all metrics
//! are measured on the test prompts. GDPO − DPO and GDPO − cDPO are paired over seeds (95%
//! t-intervals, sign counts, the smallest detectable effect) and judged by [`RULES`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use softalign_plot::{Bars, Figure, Panel, Series};
use softalign_pref::{PrefLoss, binarize};
use softalign_train::demo::pairs::{LabelledPair, Labelling, SampledPair, sample_unlabelled};
use softalign_train::demo::report::AnswerQuality;
use softalign_train::demo::{
    DemoSettings, PromptSplit, align_once, choose_beta, encode_pairs, final_eval, greedy_answers,
    task, train_reference,
};

use crate::stats::{Interval, PairedDifference, mean_ci95, paired_difference};
use crate::{ReproError, write_json_atomic};

/// The verdict rules, fixed before any run and printed with every result. "≥" and "beats" are
/// about the mean paired difference of tuned test rewards over seeds and its 95% interval.
pub const RULES: &str = "Reproduces if tuned GDPO ≥ both DPO and cDPO (mean paired difference ≥ 0) \
in each of R1, R2 and R4, beats at least one of them with the interval's lower bound > 0 in at \
least two of those regimes, and GDPO − DPO shrinks toward 0 in R3 (|mean in R3| < the mean of \
GDPO − DPO over R1, R2, R4). Refutes if tuned GDPO is below DPO or cDPO with the interval's upper \
bound < 0 in R1, R2 or R4. Otherwise inconclusive at this scale (and undecided when a regime the \
rules need was not run).";

/// The mechanism check, fixed before any run.
pub const MECHANISM_RULE: &str = "cDPO's target margin is κΔr/β, so it should collapse (mean test \
reward below the SFT reference's) once κ/β is small: the check holds if, in every (regime, β) \
cell with κ/β < 2 (the issue's κ/β ≲ 1.5 on this grid: the cells at 1.67 and below), cDPO \
collapses while DPO and GDPO collapse in none.";

/// The cells of the mechanism check: κ/β below this.
const MECHANISM_RATIO: f64 = 2.0;

/// A labelling regime of the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regime {
    /// Short name, `R0` … `R4`.
    pub name: String,
    /// What it models.
    pub description: String,
    /// How labels are made from the true reward.
    pub labelling: Labelling,
}

/// The five regimes: R0 the demo's labels; R1 ties kept; R2 near-ties (κ 0.5); R3 confident
/// labels (κ 4.5, a negative control where soft and hard labels nearly agree); R4 five simulated
/// raters' votes (noisy, unbiased).
pub fn regimes() -> Vec<Regime> {
    let regime = |name: &str, description: &str, labelling| Regime {
        name: name.into(),
        description: description.into(),
        labelling,
    };
    let exact = |scale, keep_ties| Labelling::BradleyTerry { scale, keep_ties };
    vec![
        regime("R0", "the demo: κ 1.5, ties dropped", exact(1.5, false)),
        regime("R1", "κ 1.5, ties kept (p̂ = ½)", exact(1.5, true)),
        regime("R2", "κ 0.5: near-ties", exact(0.5, true)),
        regime(
            "R3",
            "κ 4.5: confident (negative control)",
            exact(4.5, true),
        ),
        regime(
            "R4",
            "κ 1.5 as 5 raters' votes, p̂ = k/5",
            Labelling::Votes {
                scale: 1.5,
                raters: 5,
            },
        ),
    ]
}

/// The geometric losses and the baselines each is compared with.
fn comparisons_of(loss: &str) -> &'static [&'static str] {
    match loss {
        "gdpo" => &["dpo", "cdpo"],
        "gipo" => &["ipo", "cipo"],
        "gropo" => &["ropo"],
        _ => &[],
    }
}

/// What the study runs.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftLabelConfig {
    /// Seeds `0 … seeds − 1`.
    pub seeds: usize,
    /// The regimes run.
    pub regimes: Vec<Regime>,
    /// The losses, each with the paper's default β.
    pub losses: Vec<PrefLoss>,
    /// The demo's settings per seed (steps, prompts, β grid); its seed and output are set per run.
    pub demo: DemoSettings,
    /// Where runs write their (temporary) metrics and checkpoints.
    pub scratch: PathBuf,
}

impl SoftLabelConfig {
    /// The default study (`quick`: 3 seeds, R1 and R2 only), with the IPO and ROPO families when
    /// `all_losses`. Per run: 150 SFT steps and 100 alignment steps of 32 pairs, a smaller budget
    /// than the demo's 400 and 200 so that the whole grid fits in minutes on two cores.
    pub fn new(seeds: Option<usize>, quick: bool, all_losses: bool, scratch: PathBuf) -> Self {
        let regimes = regimes()
            .into_iter()
            .filter(|r| !quick || r.name == "R1" || r.name == "R2")
            .collect();
        let mut losses = vec![PrefLoss::dpo(), PrefLoss::cdpo(), PrefLoss::gdpo()];
        if all_losses {
            losses.extend([
                PrefLoss::ipo(),
                PrefLoss::cipo(),
                PrefLoss::gipo(),
                PrefLoss::ropo(),
                PrefLoss::gropo(),
            ]);
        }
        Self {
            seeds: seeds.unwrap_or(if quick { 3 } else { 5 }),
            regimes,
            losses,
            demo: DemoSettings {
                sft_steps: 150,
                align_steps: 100,
                curves: false,
                progress: false,
                ..DemoSettings::default()
            },
            scratch,
        }
    }
}

/// One trained (or reused) run, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Its seed.
    pub seed: u64,
    /// Its regime.
    pub regime: String,
    /// Its loss.
    pub loss: String,
    /// Its β.
    pub beta: f64,
    /// Greedy answers to the validation prompts (they choose β).
    pub validation: AnswerQuality,
    /// Greedy answers to the test prompts.
    pub test: AnswerQuality,
    /// Preference accuracy of σ(βδ) on the test pairs of its regime (ties left out).
    pub preference_accuracy: Option<f64>,
    /// Mean log πθ − log π_ref of the chosen test responses after training.
    pub logratio_chosen: Option<f64>,
    /// Mean log πθ − log π_ref of the rejected test responses after training.
    pub logratio_rejected: Option<f64>,
    /// The regime whose identical run this is (same effective labels and test pairs).
    pub reused_from: Option<String>,
}

/// Labels of one regime for one seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegimeLabels {
    /// The regime.
    pub regime: String,
    /// Training pairs it keeps.
    pub pairs: usize,
    /// Mean p̂ (oriented, ≥ ½).
    pub mean_label: f64,
    /// Fraction with p̂ = ½.
    pub tie_fraction: f64,
}

/// One seed's reference and data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeedInfo {
    /// The seed.
    pub seed: u64,
    /// The SFT reference's greedy answers to the validation prompts.
    pub sft_validation: AnswerQuality,
    /// The SFT reference's greedy answers to the test prompts.
    pub sft_test: AnswerQuality,
    /// Distinct sampled training pairs (before any regime drops some).
    pub sampled_pairs: usize,
    /// Labels per regime.
    pub labels: Vec<RegimeLabels>,
    /// Wall seconds of the seed.
    pub seconds: f64,
}

/// Means over seeds of the test metrics of a set of runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestMetrics {
    /// Mean true reward of greedy test answers.
    pub true_reward: Interval,
    /// Exact answers.
    pub exact_match: Interval,
    /// Malformed answers.
    pub malformed: Interval,
    /// Binary win rate against the SFT reference's answer.
    pub win_rate: Interval,
    /// Ties with the SFT reference's answer.
    pub tie_rate: Interval,
    /// Percentage win rate, σ(κ(r − r_sft)).
    pub percentage_win_rate: Interval,
    /// Preference accuracy on test pairs.
    pub preference_accuracy: Option<Interval>,
    /// Final log-ratio of chosen test responses.
    pub logratio_chosen: Option<Interval>,
    /// Final log-ratio of rejected test responses.
    pub logratio_rejected: Option<Interval>,
}

impl TestMetrics {
    fn of(runs: &[&RunResult]) -> Self {
        let ci =
            |f: fn(&RunResult) -> f64| mean_ci95(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
        let optional = |f: fn(&RunResult) -> Option<f64>| {
            let values: Option<Vec<f64>> = runs.iter().map(|r| f(r)).collect();
            values.filter(|v| !v.is_empty()).map(|v| mean_ci95(&v))
        };
        Self {
            true_reward: ci(|r| r.test.mean_true_reward),
            exact_match: ci(|r| r.test.exact_match),
            malformed: ci(|r| r.test.malformed),
            win_rate: ci(|r| r.test.win_rate),
            tie_rate: ci(|r| r.test.tie_rate),
            percentage_win_rate: ci(|r| r.test.percentage_win_rate),
            preference_accuracy: optional(|r| r.preference_accuracy),
            logratio_chosen: optional(|r| r.logratio_chosen),
            logratio_rejected: optional(|r| r.logratio_rejected),
        }
    }
}

/// One loss at one β in one regime, over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BetaSummary {
    /// β.
    pub beta: f64,
    /// Mean validation true reward.
    pub validation_reward: Interval,
    /// Mean test true reward.
    pub test_reward: Interval,
}

/// One loss in one regime, over seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossSummary {
    /// The regime.
    pub regime: String,
    /// The loss.
    pub loss: String,
    /// β chosen on validation, per seed.
    pub chosen_betas: Vec<f64>,
    /// Test metrics at the chosen β.
    pub tuned: TestMetrics,
    /// The paper's default β.
    pub default_beta: f64,
    /// Test metrics at the paper's default β.
    pub default: TestMetrics,
    /// Every β of the grid.
    pub by_beta: Vec<BetaSummary>,
}

/// A geometric loss against one baseline in one regime: tuned and at the paper's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The regime.
    pub regime: String,
    /// The geometric loss.
    pub loss: String,
    /// The baseline.
    pub baseline: String,
    /// Test reward, loss − baseline, each at its β chosen on validation.
    pub tuned: PairedDifference,
    /// Test reward, loss − baseline, each at the paper's default β.
    pub default: PairedDifference,
}

/// The verdict under [`RULES`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `reproduces`, `refutes`, `inconclusive` or `undecided`.
    pub outcome: String,
    /// Why, one line each.
    pub reasons: Vec<String>,
}

/// One cell of the mechanism check: mean test reward minus the SFT reference's, per loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MechanismCell {
    /// The regime.
    pub regime: String,
    /// κ/β.
    pub ratio: f64,
    /// β.
    pub beta: f64,
    /// (loss, mean test reward − SFT's) for DPO, cDPO, GDPO.
    pub change: Vec<(String, f64)>,
}

/// The mechanism check under [`MECHANISM_RULE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mechanism {
    /// The cells with κ/β < 2.
    pub cells: Vec<MechanismCell>,
    /// Whether the check holds (`None` without cells or losses).
    pub holds: Option<bool>,
}

/// Everything the study measured and concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftLabelReport {
    /// The seeds.
    pub seeds: Vec<u64>,
    /// The regimes run.
    pub regimes: Vec<Regime>,
    /// The losses with their paper default β.
    pub losses: Vec<(String, f64)>,
    /// The β grid.
    pub betas: Vec<f64>,
    /// SFT steps per seed.
    pub sft_steps: usize,
    /// Alignment steps per run.
    pub align_steps: usize,
    /// Pairs per step.
    pub batch_size: usize,
    /// Peak alignment learning rate.
    pub align_learning_rate: f64,
    /// Training / validation / test prompts.
    pub prompts: [usize; 3],
    /// Per seed: reference and labels.
    pub seed_info: Vec<SeedInfo>,
    /// Every run.
    pub runs: Vec<RunResult>,
    /// Per regime and loss.
    pub summaries: Vec<LossSummary>,
    /// Paired comparisons.
    pub comparisons: Vec<Comparison>,
    /// The verdict rules (as fixed in [`RULES`]).
    pub rules: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The mechanism rule (as fixed in [`MECHANISM_RULE`]).
    pub mechanism_rule: String,
    /// The mechanism check.
    pub mechanism: Mechanism,
    /// Runs trained.
    pub trained_runs: usize,
    /// Runs reused from an identical earlier regime.
    pub reused_runs: usize,
    /// Rayon threads.
    pub threads: usize,
    /// Wall seconds.
    pub seconds: f64,
}

/// Relabels `pairs` under `labelling`, keeping their order (pairs it drops are left out).
pub fn relabel(
    pairs: &[SampledPair],
    labelling: &Labelling,
    rng: &mut impl rand::Rng,
) -> Vec<LabelledPair> {
    pairs
        .iter()
        .filter_map(|p| labelling.label(p, rng))
        .collect()
}

/// The random stream of a regime's votes: fixed by the seed and the regime's name, so a subset of
/// regimes (`--quick`) labels exactly as the full study does.
fn votes_rng(seed: u64, regime: &str) -> ChaCha8Rng {
    let tag = regime
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131).wrapping_add(u64::from(b)));
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag)
}

/// What decides a run: the loss and β, the labels it trains on (binarized for losses that ignore
/// soft labels) and the side of ½ of its test labels (all its reported metrics depend on).
pub fn run_key(loss: PrefLoss, train: &[LabelledPair], test: &[LabelledPair]) -> String {
    let mut key = format!("{}|{}|", loss.name(), loss.beta());
    for p in train {
        let label = if loss.uses_soft_labels() {
            p.soft_label
        } else {
            binarize(p.soft_label)
        };
        let _ = write!(key, "{}>{}:{label};", p.chosen, p.rejected);
    }
    key.push('|');
    for p in test {
        let _ = write!(key, "{}>{}:{};", p.chosen, p.rejected, p.soft_label > 0.5);
    }
    key
}

fn remove_dir(dir: &Path) -> Result<(), ReproError> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ReproError::Io {
            path: dir.to_path_buf(),
            cause: e,
        }),
        _ => Ok(()),
    }
}

/// One seed: SFT, samples, and every (regime, loss, β) run.
fn run_seed(
    config: &SoftLabelConfig,
    seed: u64,
    notify: &mut dyn FnMut(&str),
) -> Result<(SeedInfo, Vec<RunResult>, usize), ReproError> {
    let started = Instant::now();
    let settings = DemoSettings {
        seed,
        ..config.demo.clone()
    };
    let scratch = config.scratch.join(format!("seed-{seed}"));
    let tokenizer = task::tokenizer()?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let split = PromptSplit::draw(&settings, &mut rng)?;
    let (reference, _) = train_reference(&settings, &split, &mut rng, &scratch.join("sft"))?;
    let sft_validation = greedy_answers(&reference, &tokenizer, &split.validation)?;
    let sft_test = greedy_answers(&reference, &tokenizer, &split.test)?;
    let sampler = reference.valid();
    let train_pairs = sample_unlabelled(&sampler, &tokenizer, &split.train, &mut rng)?;
    let test_pairs = sample_unlabelled(&sampler, &tokenizer, &split.test, &mut rng)?;
    let sft_test_quality = AnswerQuality::of(&split.test, &sft_test, &sft_test);
    notify(&format!(
        "seed {seed}: SFT test reward {:.3}; {} sampled pairs",
        sft_test_quality.mean_true_reward,
        train_pairs.len()
    ));

    let mut done: HashMap<String, RunResult> = HashMap::new();
    let mut results = Vec::new();
    let mut labels = Vec::new();
    let mut trained = 0;
    for regime in &config.regimes {
        let mut votes = votes_rng(seed, &regime.name);
        let train = relabel(&train_pairs, &regime.labelling, &mut votes);
        let test = relabel(&test_pairs, &regime.labelling, &mut votes);
        let n = train.len().max(1) as f64;
        labels.push(RegimeLabels {
            regime: regime.name.clone(),
            pairs: train.len(),
            mean_label: train.iter().map(|p| p.soft_label).sum::<f64>() / n,
            tie_fraction: train.iter().filter(|p| p.soft_label == 0.5).count() as f64 / n,
        });
        let (train_encoded, test_encoded) = (
            encode_pairs(&tokenizer, &train)?,
            encode_pairs(&tokenizer, &test)?,
        );
        for loss in &config.losses {
            for beta in settings.betas_for(loss) {
                let loss = loss.with_beta(beta);
                let key = run_key(loss, &train, &test);
                if let Some(earlier) = done.get(&key) {
                    results.push(RunResult {
                        regime: regime.name.clone(),
                        reused_from: Some(earlier.regime.clone()),
                        ..earlier.clone()
                    });
                    continue;
                }
                let dir = scratch
                    .join(&regime.name)
                    .join(format!("{}-{beta}", loss.name()));
                let outcome = align_once(
                    &settings,
                    &reference,
                    loss,
                    &train_encoded,
                    &test_encoded,
                    &dir,
                )?;
                remove_dir(&dir)?;
                trained += 1;
                let validation = greedy_answers(&outcome.model, &tokenizer, &split.validation)?;
                let answers = greedy_answers(&outcome.model, &tokenizer, &split.test)?;
                let history = &outcome.history;
                let result = RunResult {
                    seed,
                    regime: regime.name.clone(),
                    loss: loss.name().to_string(),
                    beta,
                    validation: AnswerQuality::of(&split.validation, &validation, &sft_validation),
                    test: AnswerQuality::of(&split.test, &answers, &sft_test),
                    preference_accuracy: final_eval(history, "preference_accuracy"),
                    logratio_chosen: final_eval(history, "logratio/chosen"),
                    logratio_rejected: final_eval(history, "logratio/rejected"),
                    reused_from: None,
                };
                done.insert(key, result.clone());
                results.push(result);
            }
        }
        notify(&format!(
            "seed {seed}: {} done ({:.0} s so far)",
            regime.name,
            started.elapsed().as_secs_f64()
        ));
    }
    remove_dir(&scratch)?;
    let info = SeedInfo {
        seed,
        sft_validation: AnswerQuality::of(&split.validation, &sft_validation, &sft_validation),
        sft_test: sft_test_quality,
        sampled_pairs: train_pairs.len(),
        labels,
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((info, results, trained))
}

/// The run of `loss` in `regime` for `seed` at the β chosen on validation (the grid in
/// ascending β; the smallest β on a tie). It reads validation rewards only.
pub fn tuned_run<'a>(
    runs: &'a [RunResult],
    seed: u64,
    regime: &str,
    loss: &str,
) -> Option<&'a RunResult> {
    let mut candidates: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.seed == seed && r.regime == regime && r.loss == loss)
        .collect();
    candidates.sort_by(|a, b| a.beta.total_cmp(&b.beta));
    let validation: Vec<f64> = candidates
        .iter()
        .map(|r| r.validation.mean_true_reward)
        .collect();
    choose_beta(&validation).map(|i| candidates[i])
}

fn run_at<'a>(
    runs: &'a [RunResult],
    seed: u64,
    regime: &str,
    loss: &str,
    beta: f64,
) -> Option<&'a RunResult> {
    runs.iter()
        .find(|r| r.seed == seed && r.regime == regime && r.loss == loss && r.beta == beta)
}

fn summarise(
    runs: &[RunResult],
    seeds: &[u64],
    regime: &str,
    loss: &PrefLoss,
    betas: &[f64],
) -> LossSummary {
    let name = loss.name();
    let tuned: Vec<&RunResult> = seeds
        .iter()
        .filter_map(|&s| tuned_run(runs, s, regime, name))
        .collect();
    let at = |beta: f64| -> Vec<&RunResult> {
        seeds
            .iter()
            .filter_map(|&s| run_at(runs, s, regime, name, beta))
            .collect()
    };
    LossSummary {
        regime: regime.to_string(),
        loss: name.to_string(),
        chosen_betas: tuned.iter().map(|r| r.beta).collect(),
        tuned: TestMetrics::of(&tuned),
        default_beta: loss.beta(),
        default: TestMetrics::of(&at(loss.beta())),
        by_beta: betas
            .iter()
            .map(|&beta| {
                let runs = at(beta);
                BetaSummary {
                    beta,
                    validation_reward: mean_ci95(
                        &runs
                            .iter()
                            .map(|r| r.validation.mean_true_reward)
                            .collect::<Vec<_>>(),
                    ),
                    test_reward: mean_ci95(
                        &runs
                            .iter()
                            .map(|r| r.test.mean_true_reward)
                            .collect::<Vec<_>>(),
                    ),
                }
            })
            .collect(),
    }
}

fn compare(
    runs: &[RunResult],
    seeds: &[u64],
    regime: &str,
    loss: &PrefLoss,
    baseline: &PrefLoss,
) -> Comparison {
    let rewards = |pick: &dyn Fn(u64, &PrefLoss) -> Option<f64>| -> (Vec<f64>, Vec<f64>) {
        seeds
            .iter()
            .filter_map(|&s| Some((pick(s, loss)?, pick(s, baseline)?)))
            .unzip()
    };
    let (a, b) =
        rewards(&|s, l| tuned_run(runs, s, regime, l.name()).map(|r| r.test.mean_true_reward));
    let (c, d) = rewards(&|s, l| {
        run_at(runs, s, regime, l.name(), l.beta()).map(|r| r.test.mean_true_reward)
    });
    Comparison {
        regime: regime.to_string(),
        loss: loss.name().to_string(),
        baseline: baseline.name().to_string(),
        tuned: paired_difference(&a, &b),
        default: paired_difference(&c, &d),
    }
}

/// Applies [`RULES`] to the GDPO comparisons.
pub fn verdict(comparisons: &[Comparison]) -> Verdict {
    let gdpo = |regime: &str| -> Vec<&Comparison> {
        comparisons
            .iter()
            .filter(|c| c.loss == "gdpo" && c.regime == regime)
            .collect()
    };
    let soft = ["R1", "R2", "R4"];
    let mut reasons = Vec::new();
    for regime in soft {
        for c in gdpo(regime) {
            if c.tuned.difference.high < 0.0 {
                reasons.push(format!(
                    "{regime}: tuned GDPO − {} = {:+.3} [{:+.3}, {:+.3}], upper bound < 0",
                    c.baseline,
                    c.tuned.difference.mean,
                    c.tuned.difference.low,
                    c.tuned.difference.high
                ));
            }
        }
    }
    if !reasons.is_empty() {
        return Verdict {
            outcome: "refutes".into(),
            reasons,
        };
    }
    let missing: Vec<&str> = ["R1", "R2", "R3", "R4"]
        .into_iter()
        .filter(|r| gdpo(r).len() < 2)
        .collect();
    if !missing.is_empty() {
        return Verdict {
            outcome: "undecided".into(),
            reasons: vec![format!(
                "no interval has its upper bound below 0; the rules also need {} (with DPO and cDPO), not run",
                missing.join(", ")
            )],
        };
    }
    let mut holds = true;
    let mut clear = 0;
    for regime in soft {
        for c in gdpo(regime) {
            if c.tuned.difference.mean < 0.0 {
                holds = false;
                reasons.push(format!(
                    "{regime}: tuned GDPO below {} on average ({:+.3})",
                    c.baseline, c.tuned.difference.mean
                ));
            }
        }
        if gdpo(regime).iter().any(|c| c.tuned.difference.low > 0.0) {
            clear += 1;
        }
    }
    if clear < 2 {
        holds = false;
        reasons.push(format!(
            "GDPO beats a baseline with lower bound > 0 in {clear} of R1, R2, R4 (needs 2)"
        ));
    }
    let versus_dpo = |regime: &str| {
        gdpo(regime)
            .iter()
            .find(|c| c.baseline == "dpo")
            .map_or(f64::NAN, |c| c.tuned.difference.mean)
    };
    let soft_mean = soft.iter().map(|r| versus_dpo(r)).sum::<f64>() / 3.0;
    let control = versus_dpo("R3");
    if control.abs() >= soft_mean || soft_mean.is_nan() {
        holds = false;
        reasons.push(format!(
            "GDPO − DPO in R3 ({control:+.3}) does not shrink below its mean over R1, R2, R4 ({soft_mean:+.3})"
        ));
    }
    if holds {
        reasons.push("every condition of the rules holds".into());
    }
    Verdict {
        outcome: if holds { "reproduces" } else { "inconclusive" }.into(),
        reasons,
    }
}

fn mechanism(
    report_runs: &[RunResult],
    seeds: &[SeedInfo],
    regimes: &[Regime],
    betas: &[f64],
) -> Mechanism {
    let sft: HashMap<u64, f64> = seeds
        .iter()
        .map(|s| (s.seed, s.sft_test.mean_true_reward))
        .collect();
    let mut cells = Vec::new();
    for regime in regimes {
        let kappa = regime.labelling.scale();
        for &beta in betas.iter().filter(|&&b| kappa / b < MECHANISM_RATIO) {
            let change = ["dpo", "cdpo", "gdpo"]
                .iter()
                .filter_map(|&loss| {
                    let deltas: Vec<f64> = report_runs
                        .iter()
                        .filter(|r| r.regime == regime.name && r.loss == loss && r.beta == beta)
                        .filter_map(|r| Some(r.test.mean_true_reward - sft.get(&r.seed)?))
                        .collect();
                    (!deltas.is_empty()).then(|| {
                        (
                            loss.to_string(),
                            deltas.iter().sum::<f64>() / deltas.len() as f64,
                        )
                    })
                })
                .collect::<Vec<_>>();
            cells.push(MechanismCell {
                regime: regime.name.clone(),
                ratio: kappa / beta,
                beta,
                change,
            });
        }
    }
    let complete: Vec<&MechanismCell> = cells.iter().filter(|c| c.change.len() == 3).collect();
    let holds = (!complete.is_empty()).then(|| {
        complete.iter().all(|c| {
            c.change
                .iter()
                .all(|(loss, delta)| (loss == "cdpo") == (*delta < 0.0))
        })
    });
    Mechanism { cells, holds }
}

/// Runs the study. `notify` receives a line per regime and seed.
pub fn run(
    config: &SoftLabelConfig,
    notify: &mut dyn FnMut(&str),
) -> Result<SoftLabelReport, ReproError> {
    if config.seeds == 0 || config.regimes.is_empty() || config.losses.is_empty() {
        return Err(ReproError::Setting(
            "soft-labels needs at least one seed, regime and loss".into(),
        ));
    }
    let started = Instant::now();
    let seeds: Vec<u64> = (0..config.seeds as u64).collect();
    let (mut seed_info, mut runs, mut trained) = (Vec::new(), Vec::new(), 0);
    for &seed in &seeds {
        let (info, results, count) = run_seed(config, seed, notify)?;
        seed_info.push(info);
        runs.extend(results);
        trained += count;
    }
    remove_dir(&config.scratch)?;
    let mut betas = config.demo.betas.clone();
    betas.sort_by(f64::total_cmp);
    let mut summaries = Vec::new();
    let mut comparisons = Vec::new();
    for regime in &config.regimes {
        for loss in &config.losses {
            summaries.push(summarise(&runs, &seeds, &regime.name, loss, &betas));
            for baseline in comparisons_of(loss.name()) {
                if let Some(base) = config.losses.iter().find(|l| l.name() == *baseline) {
                    comparisons.push(compare(&runs, &seeds, &regime.name, loss, base));
                }
            }
        }
    }
    let reused = runs.iter().filter(|r| r.reused_from.is_some()).count();
    let demo = &config.demo;
    Ok(SoftLabelReport {
        verdict: verdict(&comparisons),
        mechanism: mechanism(&runs, &seed_info, &config.regimes, &betas),
        seeds,
        regimes: config.regimes.clone(),
        losses: config
            .losses
            .iter()
            .map(|l| (l.name().to_string(), l.beta()))
            .collect(),
        betas,
        sft_steps: demo.sft_steps,
        align_steps: demo.align_steps,
        batch_size: demo.batch_size,
        align_learning_rate: demo.align_learning_rate,
        prompts: [
            1000 - demo.heldout_prompts,
            demo.validation_prompts,
            demo.heldout_prompts - demo.validation_prompts,
        ],
        seed_info,
        runs,
        summaries,
        comparisons,
        rules: RULES.into(),
        mechanism_rule: MECHANISM_RULE.into(),
        trained_runs: trained,
        reused_runs: reused,
        threads: rayon::current_num_threads(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn interval(i: &Interval) -> String {
    format!("{:+.3} [{:+.3}, {:+.3}]", i.mean, i.low, i.high)
}

fn percent(i: &Interval) -> String {
    format!("{:.0}%", 100.0 * i.mean)
}

/// The study as Markdown: setting, per-regime tables, paired differences, verdict and mechanism.
pub fn markdown(report: &SoftLabelReport) -> String {
    let mut md = format!(
        "Paired design on the demo's task: per seed one SFT reference ({} steps), two samples per \
         training prompt, the same pairs relabelled under each regime; DPO (binarized labels), \
         cDPO and GDPO each at β ∈ {:?} ({} ADOPT steps of {} pairs, peak learning rate {}); β \
         chosen per seed on {} validation prompts by greedy true reward, everything below \
         measured on {} test prompts. Seeds {}; {} runs trained, {} reused (identical binarized \
         labels); {:.0} s on {} threads. Intervals: 95% Student t over seeds.\n\n",
        report.sft_steps,
        report.betas,
        report.align_steps,
        report.batch_size,
        report.align_learning_rate,
        report.prompts[1],
        report.prompts[2],
        report.seeds.len(),
        report.trained_runs,
        report.reused_runs,
        report.seconds,
        report.threads,
    );
    let sft = mean_ci95(
        &report
            .seed_info
            .iter()
            .map(|s| s.sft_test.mean_true_reward)
            .collect::<Vec<_>>(),
    );
    let _ = writeln!(
        md,
        "SFT reference, test true reward {} (0 is perfect; copying the prompt scores −1).\n",
        interval(&sft)
    );
    md.push_str("| regime | labels | pairs | mean p̂ | ties |\n|---|---|---|---|---|\n");
    for regime in &report.regimes {
        let labels: Vec<&RegimeLabels> = report
            .seed_info
            .iter()
            .flat_map(|s| s.labels.iter().filter(|l| l.regime == regime.name))
            .collect();
        let n = labels.len().max(1) as f64;
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.3} | {:.0}% |",
            regime.name,
            regime.description,
            labels.iter().map(|l| l.pairs as f64).sum::<f64>() / n,
            labels.iter().map(|l| l.mean_label).sum::<f64>() / n,
            100.0 * labels.iter().map(|l| l.tie_fraction).sum::<f64>() / n,
        );
    }
    md.push_str(
        "\n| regime | loss | β chosen per seed | test true reward, tuned | exact | malformed | win / tie vs SFT | % win | preference accuracy | log-ratio chosen / rejected | paper's β | test true reward at paper's β |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for s in &report.summaries {
        let t = &s.tuned;
        let optional =
            |i: &Option<Interval>| i.as_ref().map_or("–".into(), |i| format!("{:+.2}", i.mean));
        let _ = writeln!(
            md,
            "| {} | {} | {:?} | {} | {} | {} | {} / {} | {} | {} | {} / {} | {} | {} |",
            s.regime,
            s.loss,
            s.chosen_betas,
            interval(&t.true_reward),
            percent(&t.exact_match),
            percent(&t.malformed),
            percent(&t.win_rate),
            percent(&t.tie_rate),
            percent(&t.percentage_win_rate),
            t.preference_accuracy.as_ref().map_or("–".into(), percent),
            optional(&t.logratio_chosen),
            optional(&t.logratio_rejected),
            s.default_beta,
            interval(&s.default.true_reward),
        );
    }
    md.push_str(
        "\nPaired differences of test true reward (per seed, then over seeds):\n\n\
         | regime | difference | tuned: mean [95% interval] | signs + / − / 0 | smallest detectable | at paper's β: mean [95% interval] |\n|---|---|---|---|---|---|\n",
    );
    for c in &report.comparisons {
        let d = &c.tuned;
        let _ = writeln!(
            md,
            "| {} | {} − {} | {} | {} / {} / {} | {} | {} |",
            c.regime,
            c.loss,
            c.baseline,
            interval(&d.difference),
            d.positive,
            d.negative,
            d.zero,
            d.minimum_detectable
                .map_or("–".into(), |m| format!("{m:.3}")),
            interval(&c.default.difference),
        );
    }
    let _ = writeln!(md, "\nRules (fixed before the run): {}\n", report.rules);
    let _ = writeln!(
        md,
        "**Verdict**: {}: {}.\n",
        report.verdict.outcome,
        report.verdict.reasons.join("; ")
    );
    let _ = writeln!(md, "Mechanism check: {}\n", report.mechanism_rule);
    md.push_str(
        "| regime | β | κ/β | test reward − SFT's: dpo / cdpo / gdpo |\n|---|---|---|---|\n",
    );
    for cell in &report.mechanism.cells {
        let changes = cell
            .change
            .iter()
            .map(|(loss, d)| format!("{loss} {d:+.3}"))
            .collect::<Vec<_>>()
            .join(" / ");
        let _ = writeln!(
            md,
            "| {} | {} | {:.2} | {changes} |",
            cell.regime, cell.beta, cell.ratio
        );
    }
    let _ = writeln!(
        md,
        "\nMechanism check {}.",
        match report.mechanism.holds {
            Some(true) => "holds",
            Some(false) => "does not hold",
            None => "not applicable (no cell)",
        }
    );
    md
}

/// The figure: tuned test reward by regime and loss; paired differences; test reward against β
/// per regime. Every loss keeps its colour.
pub fn figure(report: &SoftLabelReport) -> Figure {
    let regimes: Vec<String> = report.regimes.iter().map(|r| r.name.clone()).collect();
    let losses: Vec<&str> = report.losses.iter().map(|(l, _)| l.as_str()).collect();
    let width = 0.8 / losses.len().max(1) as f64;
    let grouped = |value: &dyn Fn(&str, &str) -> Option<Interval>, keys: &[&str]| -> Vec<Bars> {
        keys.iter()
            .enumerate()
            .map(|(j, key)| {
                let cells: Vec<(f64, Interval)> = regimes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| Some((i as f64 - 0.4 + j as f64 * width, value(r, key)?)))
                    .collect();
                Bars {
                    label: (*key).to_string(),
                    bars: cells.iter().map(|(x, i)| (*x, i.mean)).collect(),
                    width,
                    errors: cells.iter().map(|(_, i)| (i.low, i.high)).collect(),
                }
            })
            .collect()
    };
    let tuned = |regime: &str, loss: &str| {
        report
            .summaries
            .iter()
            .find(|s| s.regime == regime && s.loss == loss)
            .map(|s| s.tuned.true_reward)
    };
    let baselines: Vec<String> = report
        .comparisons
        .iter()
        .map(|c| format!("{} baseline: {} − {}", c.baseline, c.loss, c.baseline))
        .fold(Vec::new(), |mut v, k| {
            if !v.contains(&k) {
                v.push(k);
            }
            v
        });
    let baseline_keys: Vec<&str> = baselines.iter().map(String::as_str).collect();
    let difference = |regime: &str, key: &str| {
        report
            .comparisons
            .iter()
            .find(|c| {
                c.regime == regime
                    && key == format!("{} baseline: {} − {}", c.baseline, c.loss, c.baseline)
            })
            .map(|c| c.tuned.difference)
    };
    let mut panels = vec![
        Panel {
            title: "test true reward at β chosen on validation (95% intervals)".into(),
            x_label: "label regime".into(),
            y_label: "true reward (0 = perfect)".into(),
            bars: grouped(&tuned, &losses),
            categories: regimes.clone(),
            ..Panel::default()
        },
        Panel {
            title: "paired difference of tuned test reward (95% intervals)".into(),
            x_label: "label regime".into(),
            y_label: "difference in true reward".into(),
            bars: grouped(&difference, &baseline_keys),
            categories: regimes.clone(),
            ..Panel::default()
        },
    ];
    let beta_names: Vec<String> = report.betas.iter().map(|b| format!("β {b}")).collect();
    for regime in &report.regimes {
        let series = report
            .summaries
            .iter()
            .filter(|s| s.regime == regime.name)
            .map(|s| {
                let points: Vec<(f64, &BetaSummary)> = s
                    .by_beta
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (i as f64, b))
                    .collect();
                Series::line(
                    s.loss.clone(),
                    points
                        .iter()
                        .map(|(x, b)| (*x, b.test_reward.mean))
                        .collect(),
                )
                .with_band(
                    points
                        .iter()
                        .map(|(x, b)| (*x, b.test_reward.low, b.test_reward.high))
                        .collect(),
                )
            })
            .collect();
        panels.push(Panel {
            title: format!(
                "{}: {} — test reward against β",
                regime.name, regime.description
            ),
            x_label: "β".into(),
            y_label: "true reward".into(),
            series,
            categories: beta_names.clone(),
            ..Panel::default()
        });
    }
    Figure {
        title: format!(
            "Soft labels across regimes: DPO, cDPO, GDPO on the demo task ({} seeds)",
            report.seeds.len()
        ),
        panels,
        columns: 3,
        panel_size: (560, 380),
    }
}

/// Writes `soft_labels.json` and `soft_labels.png` into `dir`.
pub fn write(report: &SoftLabelReport, dir: &Path) -> Result<(), ReproError> {
    write_json_atomic(&dir.join("soft_labels.json"), report)?;
    figure(report).save(&dir.join("soft_labels.png"))?;
    Ok(())
}
