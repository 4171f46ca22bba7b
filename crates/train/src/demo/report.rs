//! The demo's report: a table on stdout and in `report.md`, the numbers in `report.json`, and
//! `comparison.png`.

use std::path::{Path, PathBuf};

use serde::Serialize;
use softalign_plot::{Bars, Figure, Panel, Series};

use super::pairs::LabelledPair;
use crate::error::{Result, TrainError, io_error};
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

/// One row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelRow {
    /// The model's name.
    pub name: String,
    /// Its loss (none for the reference).
    pub loss: Option<String>,
    /// Its β.
    pub beta: Option<f64>,
    /// Mean true reward of its greedy answers to the held-out prompts (0 is perfect).
    pub mean_true_reward: f64,
    /// Fraction of held-out prompts answered exactly.
    pub exact_match: f64,
    /// Preference-classification accuracy of σ(βδ) on held-out pairs (ties left out).
    pub preference_accuracy: Option<f64>,
    /// Its loss on the held-out pairs after training.
    pub final_eval_loss: Option<f64>,
}

/// Everything the demo measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DemoReport {
    /// The seed.
    pub seed: u64,
    /// Prompts trained on.
    pub train_prompts: usize,
    /// Prompts held out.
    pub heldout_prompts: usize,
    /// Noisy demonstrations SFT trained on.
    pub sft_examples: usize,
    /// Preference pairs trained on.
    pub train_pairs: usize,
    /// Held-out preference pairs.
    pub heldout_pairs: usize,
    /// SFT steps.
    pub sft_steps: usize,
    /// Alignment steps per loss.
    pub align_steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak alignment learning rate.
    pub align_learning_rate: f64,
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
            "| model | β | mean true reward (held-out, greedy) | exact answers | preference accuracy (held-out pairs) |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            text.push_str(&format!(
                "| {} | {} | {:.3} | {:.1}% | {} |\n",
                row.name,
                row.beta.map_or("–".into(), |b| format!("{b}")),
                row.mean_true_reward,
                100.0 * row.exact_match,
                row.preference_accuracy
                    .map_or("–".into(), |a| format!("{:.1}%", 100.0 * a)),
            ));
        }
        text
    }

    /// The best aligned model by mean true reward.
    pub fn best(&self) -> Option<&ModelRow> {
        self.rows
            .iter()
            .filter(|r| r.loss.is_some())
            .max_by(|a, b| a.mean_true_reward.total_cmp(&b.mean_true_reward))
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
             pairs, peak learning rate {}, same data order (seed {}).\n\n",
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
        );
        text.push_str(&format!(
            "Held-out prompts: {}. Preference accuracy: σ(βδ) on the side of ½ of the label, ties left out.\n\n",
            self.heldout_prompts
        ));
        text.push_str(&self.table());
        text.push_str(&format!(
            "\nWall time {:.0} s. Figures: comparison.png, and per run loss.png, \
             reward_margins.png, logratios.png (log πθ − log π_ref of chosen and rejected, the \
             GDPO paper's Fig. 5) in sft/, dpo/, cdpo/, gdpo/.\n",
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
                bars: vec![(i as f64, row.mean_true_reward)],
                width: 0.8,
            })
            .collect();
        Figure {
            title: "softalign demo: DPO vs cDPO vs GDPO from one SFT reference".into(),
            panels: vec![
                Panel {
                    title: "mean true reward of greedy answers (held-out)".into(),
                    x_label: "model".into(),
                    y_label: "true reward (0 = perfect)".into(),
                    bars,
                    ..Panel::default()
                },
                Panel {
                    title: "held-out preference accuracy of σ(βδ)".into(),
                    x_label: "step".into(),
                    y_label: "accuracy".into(),
                    series: curve("preference_accuracy"),
                    ..Panel::default()
                },
                Panel {
                    title: "held-out log πθ − log π_ref, chosen".into(),
                    x_label: "step".into(),
                    y_label: "log-likelihood ratio".into(),
                    series: curve("logratio/chosen"),
                    ..Panel::default()
                },
                Panel {
                    title: "held-out log πθ − log π_ref, rejected".into(),
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

/// Writes `bytes` to a temporary file beside `path`, then renames it into place.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&partial, bytes).map_err(io_error(&partial))?;
    std::fs::rename(&partial, path).map_err(io_error(path))
}
