//! The demo's report: a table on stdout and in `report.md`, the numbers in `report.json`, and
//! `comparison.png`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use softalign_plot::{Bars, Figure, Panel, Series};

use softalign_pref::PrefLoss;

use super::pairs::{LabelledPair, bradley_terry};
use super::task::{DIGITS, Prompt, true_reward};
use crate::error::{Result, TrainError};
use crate::metrics::MetricRecord;

/// How confident the demo's labels are.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LabelStats {
    /// Mean p̂.
    pub mean: f64,
    /// Fraction of pairs with p̂ in [0.55, 0.8].
    pub modest_fraction: f64,
    /// Fraction with p̂ = 0.5 (equal true reward).
    pub tie_fraction: f64,
    /// Fraction with p̂ > 0.8.
    pub confident_fraction: f64,
}

impl LabelStats {
    /// The statistics of `pairs`' labels.
    pub fn of(pairs: &[LabelledPair]) -> Self {
        let n = pairs.len().max(1) as f64;
        let share = |keep: &dyn Fn(f64) -> bool| {
            pairs.iter().filter(|p| keep(p.soft_label)).count() as f64 / n
        };
        Self {
            mean: pairs.iter().map(|p| p.soft_label).sum::<f64>() / n,
            modest_fraction: share(&|p| (0.55..=0.8).contains(&p)),
            tie_fraction: share(&|p| p == 0.5),
            confident_fraction: share(&|p| p > 0.8),
        }
    }
}

/// How good greedy answers to a set of prompts are, by the true reward, and how they compare with
/// a baseline's answers (the SFT reference's) to the same prompts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct AnswerQuality {
    /// Mean true reward (0 is perfect).
    pub mean_true_reward: f64,
    /// Fraction answered exactly.
    pub exact_match: f64,
    /// Fraction not exactly three digits.
    pub malformed: f64,
    /// Fraction with a higher true reward than the baseline's answer.
    pub win_rate: f64,
    /// Fraction with the same true reward as the baseline's answer.
    pub tie_rate: f64,
    /// Fraction with a lower true reward than the baseline's answer.
    pub loss_rate: f64,
    /// Mean Bradley–Terry probability σ(κ(r − r_baseline)) that the answer is preferred (the
    /// GDPO paper's percentage win rate, with the true reward as the judge; ties count ½).
    pub percentage_win_rate: f64,
}

impl AnswerQuality {
    /// The quality of `answers` to `prompts`, against `baseline`'s answers to the same prompts.
    pub fn of(prompts: &[Prompt], answers: &[String], baseline: &[String]) -> Self {
        let n = prompts.len().max(1) as f64;
        let mut q = Self {
            mean_true_reward: 0.0,
            exact_match: 0.0,
            malformed: 0.0,
            win_rate: 0.0,
            tie_rate: 0.0,
            loss_rate: 0.0,
            percentage_win_rate: 0.0,
        };
        for ((prompt, answer), base) in prompts.iter().zip(answers).zip(baseline) {
            let (r, r_base) = (true_reward(prompt, answer), true_reward(prompt, base));
            q.mean_true_reward += r / n;
            q.exact_match += f64::from(u8::from(r == 0.0)) / n;
            let well_formed = answer.len() == DIGITS && answer.bytes().all(|b| b.is_ascii_digit());
            q.malformed += f64::from(u8::from(!well_formed)) / n;
            let share = match r.total_cmp(&r_base) {
                std::cmp::Ordering::Greater => &mut q.win_rate,
                std::cmp::Ordering::Equal => &mut q.tie_rate,
                std::cmp::Ordering::Less => &mut q.loss_rate,
            };
            *share += 1.0 / n;
            q.percentage_win_rate += bradley_terry(r, r_base) / n;
        }
        q
    }
}

/// One loss at one β of the grid.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BetaPoint {
    /// β.
    pub beta: f64,
    /// Greedy answers to the validation prompts (these choose β).
    pub validation: AnswerQuality,
    /// Greedy answers to the test prompts.
    pub test: AnswerQuality,
    /// Preference-classification accuracy of σ(βδ) on test pairs (ties left out).
    pub preference_accuracy: Option<f64>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    /// The model's name.
    pub name: String,
    /// Its loss (none for the reference).
    pub loss: Option<String>,
    /// Its β, chosen on the validation prompts.
    pub beta: Option<f64>,
    /// Mean true reward of its greedy answers to the test prompts (0 is perfect).
    pub mean_true_reward: f64,
    /// Fraction of test prompts answered exactly.
    pub exact_match: f64,
    /// Its answers to the test prompts, in full.
    pub quality: AnswerQuality,
    /// Preference-classification accuracy of σ(βδ) on test pairs (ties left out).
    pub preference_accuracy: Option<f64>,
    /// The paper's default β for this loss.
    pub default_beta: Option<f64>,
    /// Mean test true reward at the paper's default β.
    pub default_beta_true_reward: Option<f64>,
    /// Every β tried.
    pub sweep: Vec<BetaPoint>,
}

impl ModelRow {
    /// The SFT reference's row.
    pub fn reference(quality: AnswerQuality) -> Self {
        Self {
            name: "sft (reference)".into(),
            loss: None,
            beta: None,
            mean_true_reward: quality.mean_true_reward,
            exact_match: quality.exact_match,
            quality,
            preference_accuracy: None,
            default_beta: None,
            default_beta_true_reward: None,
            sweep: Vec::new(),
        }
    }

    /// The row of `loss` tuned over `sweep`, at the β of index `chosen`.
    pub fn tuned(loss: PrefLoss, sweep: Vec<BetaPoint>, chosen: usize) -> Self {
        let point = &sweep[chosen];
        let default = sweep.iter().find(|p| p.beta == loss.beta());
        Self {
            name: loss.name().to_string(),
            loss: Some(loss.name().to_string()),
            beta: Some(point.beta),
            mean_true_reward: point.test.mean_true_reward,
            exact_match: point.test.exact_match,
            quality: point.test,
            preference_accuracy: point.preference_accuracy,
            default_beta: Some(loss.beta()),
            default_beta_true_reward: default.map(|p| p.test.mean_true_reward),
            sweep: sweep.clone(),
        }
    }
}

/// Everything the demo measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoReport {
    /// The seed.
    pub seed: u64,
    /// Prompts trained on.
    pub train_prompts: usize,
    /// Held-out prompts that chose β.
    pub validation_prompts: usize,
    /// Held-out prompts the table reports.
    pub test_prompts: usize,
    /// Noisy demonstrations SFT trained on.
    pub sft_examples: usize,
    /// Preference pairs trained on.
    pub train_pairs: usize,
    /// Test preference pairs.
    pub heldout_pairs: usize,
    /// SFT steps.
    pub sft_steps: usize,
    /// Alignment steps per loss.
    pub align_steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak alignment learning rate.
    pub align_learning_rate: f64,
    /// The β grid.
    pub betas: Vec<f64>,
    /// Expected true reward of a demonstration.
    pub demonstration_expected_reward: f64,
    /// Label confidence.
    pub labels: LabelStats,
    /// The table.
    pub rows: Vec<ModelRow>,
    /// Wall time of the whole demo.
    pub seconds: f64,
    /// The output folder.
    pub out_dir: PathBuf,
}

impl DemoReport {
    /// The table as Markdown.
    pub fn table(&self) -> String {
        let mut text = String::from(
            "| model | β (chosen on validation) | mean true reward (test, greedy) | exact answers | win / tie / loss vs SFT | preference accuracy (test pairs) | paper's β | mean true reward at paper's β |\n|---|---|---|---|---|---|---|---|\n",
        );
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "–".into());
        for row in &self.rows {
            let q = &row.quality;
            text.push_str(&format!(
                "| {} | {} | {:.3} | {:.1}% | {} | {} | {} | {} |\n",
                row.name,
                or_dash(row.beta.map(|b| format!("{b}"))),
                row.mean_true_reward,
                100.0 * row.exact_match,
                or_dash(row.loss.as_ref().map(|_| format!(
                    "{:.0}% / {:.0}% / {:.0}%",
                    100.0 * q.win_rate,
                    100.0 * q.tie_rate,
                    100.0 * q.loss_rate
                ))),
                or_dash(
                    row.preference_accuracy
                        .map(|a| format!("{:.1}%", 100.0 * a))
                ),
                or_dash(row.default_beta.map(|b| format!("{b}"))),
                or_dash(row.default_beta_true_reward.map(|r| format!("{r:.3}"))),
            ));
        }
        text
    }

    /// The best aligned model by mean true reward on the test prompts.
    pub fn best(&self) -> Option<&ModelRow> {
        self.rows
            .iter()
            .filter(|r| r.loss.is_some())
            .max_by(|a, b| a.mean_true_reward.total_cmp(&b.mean_true_reward))
    }

    /// What the comparison means, in one sentence: the ranking this one seed measured, and that
    /// one seed does not settle it.
    pub fn summary(&self) -> String {
        let mut tuned: Vec<&ModelRow> = self.rows.iter().filter(|r| r.loss.is_some()).collect();
        tuned.sort_by(|a, b| b.mean_true_reward.total_cmp(&a.mean_true_reward));
        let ranking = tuned
            .iter()
            .map(|r| format!("{} {:.3}", r.name, r.mean_true_reward))
            .collect::<Vec<_>>()
            .join(" ≥ ");
        format!(
            "With β tuned per loss on {} validation prompts, this seed ranks the losses {ranking} \
             by mean true reward on {} test prompts (SFT {:.3}); one seed at this size does not \
             rank losses reliably: `softalign repro soft-labels` repeats the comparison over seeds \
             and label regimes with intervals.",
            self.validation_prompts, self.test_prompts, self.rows[0].mean_true_reward,
        )
    }

    fn markdown(&self) -> String {
        let l = &self.labels;
        let mut text = format!(
            "# softalign demo: soft-label alignment with a known true reward\n\n\
             Task: a prompt is three digits (`473>`); the correct answer adds one to each digit \
             modulo 10 (`584`). True reward = −(mean cyclic distance of the answer's digits to \
             the correct ones); 0 is perfect, copying the prompt scores −1.\n\n\
             - SFT: {} noisy demonstrations of {} prompts (each digit copied 50%, correct 30%, +2 \
             20%: the most common answer is the copy; expected demonstration reward {:.2}), {} steps.\n\
             - Pairs: two samples per prompt from the SFT model, labelled by Bradley–Terry on the \
             true reward, p̂ = σ(1.5·Δr): {} train pairs, {} held-out; mean p̂ {:.3}; p̂ in [0.55, 0.8]: \
             {:.0}%; ties (p̂ = 0.5): {:.0}%; p̂ > 0.8: {:.0}%.\n\
             - DPO (binarized labels), cDPO and GDPO from the SFT model: ADOPT, {} steps of {} \
             pairs, peak learning rate {}, same data order (seed {}), each at β ∈ {:?}; per loss \
             the β with the best greedy reward on the validation prompts is reported on the test \
             prompts, beside the paper's default β.\n\n",
            self.sft_examples,
            self.train_prompts,
            self.demonstration_expected_reward,
            self.sft_steps,
            self.train_pairs,
            self.heldout_pairs,
            l.mean,
            100.0 * l.modest_fraction,
            100.0 * l.tie_fraction,
            100.0 * l.confident_fraction,
            self.align_steps,
            self.batch_size,
            self.align_learning_rate,
            self.seed,
            self.betas,
        );
        text.push_str(&format!(
            "Validation prompts: {}; test prompts: {}. Preference accuracy: σ(βδ) on the side of ½ of the label, ties left out.\n\n",
            self.validation_prompts, self.test_prompts
        ));
        text.push_str(&self.table());
        text.push('\n');
        text.push_str(&self.summary());
        text.push('\n');
        text.push_str(&format!(
            "\nWall time {:.0} s. Figures: comparison.png, and per run loss.png, \
             reward_margins.png, logratios.png (log πθ − log π_ref of chosen and rejected, the \
             GDPO paper's Fig. 5) in sft/, and for the chosen β in dpo/, cdpo/, gdpo/ (every β's \
             metrics in dpo/beta-*/ …).\n",
            self.seconds
        ));
        text
    }

    /// Writes `report.md`, `report.json` and `comparison.png` into `dir`.
    pub fn write(&self, dir: &Path, histories: &[(String, Vec<MetricRecord>)]) -> Result<()> {
        write_atomic(&dir.join("report.md"), self.markdown().as_bytes())?;
        let json = serde_json::to_vec_pretty(self).expect("the report serialises");
        write_atomic(&dir.join("report.json"), &json)?;
        self.comparison(histories)
            .save(&dir.join("comparison.png"))
            .map_err(|e| TrainError::Plot {
                path: dir.join("comparison.png"),
                message: e.to_string(),
            })
    }

    fn comparison(&self, histories: &[(String, Vec<MetricRecord>)]) -> Figure {
        let curve = |metric: &str| -> Vec<Series> {
            histories
                .iter()
                .map(|(name, history)| {
                    Series::line(
                        name.clone(),
                        history
                            .iter()
                            .filter(|r| r.split == "eval")
                            .filter_map(|r| r.get(metric).map(|v| (r.step as f64, v)))
                            .collect(),
                    )
                })
                .collect()
        };
        let bars = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| Bars {
                label: row.name.clone(),
                bars: vec![(i as f64 - 0.4, row.mean_true_reward)],
                width: 0.8,
                errors: Vec::new(),
            })
            .collect();
        let categories = self
            .rows
            .iter()
            .map(|row| match row.beta {
                Some(beta) => format!("{} β {beta}", row.name),
                None => "sft".to_string(),
            })
            .collect();
        Figure {
            title:
                "softalign demo: DPO vs cDPO vs GDPO from one SFT reference, β tuned on validation"
                    .into(),
            panels: vec![
                Panel {
                    title: "mean true reward of greedy answers (test prompts)".into(),
                    x_label: "model (β chosen on validation)".into(),
                    y_label: "true reward (0 = perfect)".into(),
                    bars,
                    categories,
                    ..Panel::default()
                },
                Panel {
                    title: "test-pair preference accuracy of σ(βδ)".into(),
                    x_label: "step".into(),
                    y_label: "accuracy".into(),
                    series: curve("preference_accuracy"),
                    ..Panel::default()
                },
                Panel {
                    title: "test-pair log πθ − log π_ref, chosen".into(),
                    x_label: "step".into(),
                    y_label: "log-likelihood ratio".into(),
                    series: curve("logratio/chosen"),
                    ..Panel::default()
                },
                Panel {
                    title: "test-pair log πθ − log π_ref, rejected".into(),
                    x_label: "step".into(),
                    y_label: "log-likelihood ratio".into(),
                    series: curve("logratio/rejected"),
                    ..Panel::default()
                },
            ],
            columns: 2,
            panel_size: (560, 380),
        }
    }
}

/// Writes `bytes` to `path` whole or not at all (`softalign_durable::write_file_atomic`).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(softalign_durable::write_file_atomic(path, bytes)?)
}
