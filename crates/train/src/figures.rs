//! Figures of a run from its metric history: loss, reward margins, and the log-likelihood ratios
//! `log πθ(y) − log π_ref(y)` of chosen and rejected responses (the GDPO paper's Fig. 5).

use std::path::{Path, PathBuf};

use softalign_plot::{Figure, Panel, Series};

use crate::error::{Result, TrainError};
use crate::metrics::MetricRecord;

fn points(history: &[MetricRecord], split: &str, metric: &str) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter(|r| r.split == split)
        .filter_map(|r| r.get(metric).map(|v| (r.step as f64, v)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

fn panel(
    history: &[MetricRecord],
    title: &str,
    y_label: &str,
    lines: &[(&str, &str, &str)],
) -> Panel {
    Panel {
        title: title.into(),
        x_label: "optimizer step".into(),
        y_label: y_label.into(),
        series: lines
            .iter()
            .map(|(label, split, metric)| Series::line(*label, points(history, split, metric)))
            .filter(|s| !s.points.is_empty())
            .collect(),
        ..Panel::default()
    }
}

fn save(figure: &Figure, path: PathBuf) -> Result<PathBuf> {
    figure.save(&path).map_err(|e| TrainError::Plot {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(path)
}

/// Writes the run's figures into `dir` and returns their paths: `loss.png` always;
/// `reward_margins.png` and `logratios.png` when the history has preference metrics.
pub fn write_figures(history: &[MetricRecord], dir: &Path, title: &str) -> Result<Vec<PathBuf>> {
    let figure = |name: &str, panels: Vec<Panel>| Figure {
        title: format!("{title}: {name}"),
        columns: panels.len().max(1),
        panels,
        panel_size: (560, 380),
    };
    let mut written = Vec::new();
    let loss = panel(
        history,
        "loss",
        "loss",
        &[("train", "train", "loss"), ("held-out", "eval", "loss")],
    );
    written.push(save(&figure("loss", vec![loss]), dir.join("loss.png"))?);
    let has_preferences = history.iter().any(|r| r.get("rewards/margins").is_some());
    if has_preferences {
        let margins = panel(
            history,
            "reward margin β·δ",
            "rewards/margins",
            &[
                ("train", "train", "rewards/margins"),
                ("held-out", "eval", "rewards/margins"),
            ],
        );
        let accuracy = panel(
            history,
            "preference accuracy of σ(βδ)",
            "accuracy",
            &[
                ("train", "train", "preference_accuracy"),
                ("held-out", "eval", "preference_accuracy"),
            ],
        );
        written.push(save(
            &figure("reward margins", vec![margins, accuracy]),
            dir.join("reward_margins.png"),
        )?);
        let ratios = |split: &str, name: &str| {
            panel(
                history,
                &format!("log πθ(y) − log π_ref(y), {name}"),
                "log-likelihood ratio",
                &[
                    ("chosen", split, "logratio/chosen"),
                    ("rejected", split, "logratio/rejected"),
                ],
            )
        };
        written.push(save(
            &figure(
                "log-likelihood ratios",
                vec![ratios("train", "train"), ratios("eval", "held-out")],
            ),
            dir.join("logratios.png"),
        )?);
    }
    Ok(written)
}
