//! REPORT.md: every reproduction's figure and table, what the paper claims beside what was
//! measured, and the command that produced it.
//!
//! The report is built from the JSON files the reproductions wrote (`toy.json`, `bandit.json`,
//! `mnist.json`, `fashion.json`, `lm.json`), so it states only numbers that a run produced; each
//! verdict ("agrees", "disagrees", "no significant difference") is computed from them against
//! the paper's claim, never written in advance.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ReproError;
use crate::lm::LmReport;
use crate::mnist::{Interval, MnistReport};

/// A reproduction that ran: where its files are, the command that reproduces it, its time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// Its output folder (holding `<name>.json` and `<name>.png`).
    pub dir: PathBuf,
    /// The command line that reproduces it.
    pub command: String,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// What became of one reproduction.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It ran.
    Done(Run),
    /// It did not, for this reason (missing data, failure, skipped on request).
    Skipped(String),
}

impl Default for Outcome {
    fn default() -> Self {
        Self::Skipped("not run".to_string())
    }
}

/// The outcome of every reproduction, in report order.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sections {
    /// ADOPT's toy convex problem.
    pub toy: Outcome,
    /// The GDPO paper's 1-D bandit.
    pub bandit: Outcome,
    /// MNIST MLP.
    pub mnist: Outcome,
    /// Fashion-MNIST MLP.
    pub fashion: Outcome,
    /// Language-model pretraining.
    pub lm: Outcome,
    /// Soft-label alignment of a real model.
    pub align: Outcome,
    /// The soft-label study across label regimes and β (absent from manifests written before it
    /// existed).
    #[serde(default)]
    pub soft_labels: Outcome,
}

impl Sections {
    /// Reads the manifest `repro all` wrote (`DIR/all.json`).
    pub fn read(path: &Path) -> Result<Self, ReproError> {
        let json = read_json(path)?;
        serde_json::from_value(json)
            .map_err(|e| format_error(path, format!("not a `repro all` manifest: {e}")))
    }
}

fn format_error(path: &Path, message: impl Into<String>) -> ReproError {
    ReproError::Format {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_json(path: &Path) -> Result<Value, ReproError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReproError::Io {
        path: path.to_path_buf(),
        cause: source,
    })?;
    serde_json::from_str(&text).map_err(|e| format_error(path, format!("line {}: {e}", e.line())))
}

fn interval(i: &Interval, scale: f64, digits: usize) -> String {
    if (i.high - i.low).abs() < 1e-15 {
        format!("{:.digits$}", scale * i.mean)
    } else {
        format!(
            "{:.digits$} [{:.digits$}, {:.digits$}]",
            scale * i.mean,
            scale * i.low,
            scale * i.high
        )
    }
}

/// A markdown table of an MNIST report: per optimizer, the first and last epoch's training loss
/// and the last epoch's test loss and accuracy, each mean [95% interval] over seeds.
pub fn mnist_table(report: &MnistReport) -> String {
    let last = report.config.epochs;
    let mut table = format!(
        "| optimizer | train loss, epoch 1 | train loss, epoch {last} | test loss, epoch {last} | test accuracy %, epoch {last} | s per run |\n|---|---|---|---|---|---|\n"
    );
    for result in &report.results {
        let (first, final_) = (&result.epochs[0], &result.epochs[result.epochs.len() - 1]);
        let seconds = result.runs.iter().map(|r| r.seconds).sum::<f64>() / result.runs.len() as f64;
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} | {seconds:.0} |",
            result.optimizer,
            interval(&first.train_loss, 1.0, 4),
            interval(&final_.train_loss, 1.0, 4),
            interval(&final_.test_loss, 1.0, 4),
            interval(&final_.test_accuracy, 100.0, 2),
        );
    }
    table
}

/// A markdown table of a language-model report: per batch size and optimizer, the final
/// validation loss, the best, the spikes and the clipped steps.
pub fn lm_table(report: &LmReport) -> String {
    let mut table = String::from(
        "| batch | optimizer | final validation loss | best validation loss | mean train loss, last 50 steps | spikes (onset steps) | clipped steps | s |\n|---|---|---|---|---|---|---|---|\n",
    );
    for run in &report.runs {
        let final_ = run.validation_loss.last().map_or(f64::NAN, |v| v.1);
        let best = run
            .validation_loss
            .iter()
            .map(|v| v.1)
            .fold(f64::INFINITY, f64::min);
        let tail = &run.train_loss[run.train_loss.len().saturating_sub(50)..];
        let tail_mean = tail.iter().sum::<f64>() / tail.len().max(1) as f64;
        let onsets: Vec<String> = run.spikes.iter().map(|s| s.step.to_string()).collect();
        let _ = writeln!(
            table,
            "| {} | {} | {final_:.4} | {best:.4} | {tail_mean:.4} | {}{} | {} | {:.0} |",
            run.batch_size,
            run.optimizer,
            run.spike_count,
            if onsets.is_empty() {
                String::new()
            } else {
                format!(" ({})", onsets.join(", "))
            },
            run.clipped_steps,
            run.seconds
        );
    }
    table
}

/// Writes the report to `report_path`, copying every figure into `figures_dir` (named after the
/// reproduction); returns how many figures it copied. The file appears atomically.
pub fn write_report(
    sections: &Sections,
    figures_dir: &Path,
    report_path: &Path,
) -> Result<usize, ReproError> {
    let base = report_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let link_dir = relative_link(base, figures_dir);
    let mut copied = 0;
    let mut copy_figure = |run: &Run, stem: &str, png: &str| -> Result<String, ReproError> {
        let from = run.dir.join(png);
        let to = figures_dir.join(format!("{stem}.png"));
        let io = |source| ReproError::Io {
            path: to.clone(),
            cause: source,
        };
        std::fs::create_dir_all(figures_dir).map_err(io)?;
        std::fs::copy(&from, &to).map_err(|source| ReproError::Io {
            path: from.clone(),
            cause: source,
        })?;
        copied += 1;
        Ok(format!("{link_dir}/{stem}.png"))
    };

    let mut md = String::from(
        "# softalign: reproductions\n\n\
         Generated by `softalign repro all` from the JSON each reproduction wrote; every number below \
         is a measurement of that run (2-core CPU, burn `flex` backend; wall times vary with the machine's load). Each section gives the figure, a \
         table, the paper's claim beside what we measured, and the command that reproduces it. Data come \
         from `scripts/fetch-repro-data.sh` (see DATA.md).\n\n",
    );
    // (figure name, title, outcome, its JSON and PNG in the run's folder, the section writer)
    let sections_list: [(&str, &str, &Outcome, [&str; 2], Section); 7] = [
        (
            "toy",
            "ADOPT's toy convex problem (ADOPT Fig. 1, 3)",
            &sections.toy,
            ["toy.json", "toy.png"],
            toy_section,
        ),
        (
            "bandit",
            "1-D bandit with soft labels (GDPO §3.3)",
            &sections.bandit,
            ["bandit.json", "bandit.png"],
            bandit_section,
        ),
        (
            "mnist",
            "MNIST MLP (ADOPT §5)",
            &sections.mnist,
            ["mnist.json", "mnist.png"],
            mnist_section,
        ),
        (
            "fashion",
            "Fashion-MNIST MLP (ADOPT §5, same protocol)",
            &sections.fashion,
            ["fashion.json", "fashion.png"],
            mnist_section,
        ),
        (
            "lm",
            "Language-model pretraining (ADOPT §5, GPT-2 at small scale)",
            &sections.lm,
            ["lm.json", "lm.png"],
            lm_section,
        ),
        (
            "align",
            "Soft-label alignment, built-in demo (GDPO §4–5, a known true reward)",
            &sections.align,
            ["report.json", "comparison.png"],
            align_section,
        ),
        (
            "soft_labels",
            "Soft labels across label regimes and β (GDPO's claim, a paired study on the demo's task)",
            &sections.soft_labels,
            ["soft_labels.json", "soft_labels.png"],
            soft_labels_section,
        ),
    ];
    let mut summary = String::from("## Summary\n\n");
    let mut body = String::new();
    for (stem, title, outcome, [json_name, png_name], section) in sections_list {
        let _ = writeln!(body, "## {title}\n");
        match outcome {
            Outcome::Skipped(reason) => {
                let _ = writeln!(body, "Not run: {reason}.\n");
                let _ = writeln!(summary, "- {title}: not run ({reason}).");
            }
            Outcome::Done(run) => {
                let json_path = run.dir.join(json_name);
                let json = read_json(&json_path)?;
                let figure = copy_figure(run, stem, png_name)?;
                let _ = writeln!(body, "![{stem}]({figure})\n");
                let text = section(&json, &json_path)?;
                let _ = writeln!(summary, "- {title}: {}", verdict_summary(&text));
                body.push_str(&text);
                let _ = writeln!(
                    body,
                    "\nReproduce ({:.0} s here):\n\n```\n{}\n```\n",
                    run.seconds, run.command
                );
            }
        }
    }
    md.push_str(&summary);
    md.push('\n');
    md.push_str(&body);
    softalign_durable::write_file_atomic(report_path, md.as_bytes())?;
    Ok(copied)
}

type Section = fn(&Value, &Path) -> Result<String, ReproError>;

/// "k of n claims agree", naming the claims that do not, from a section's claims table; a
/// section with a `**Verdict**:` line is summarised by that line instead.
fn verdict_summary(section: &str) -> String {
    if let Some(line) = section.lines().find(|l| l.starts_with("**Verdict**:")) {
        return line.to_string();
    }
    let rows: Vec<&str> = section
        .lines()
        .filter(|l| l.ends_with("| agrees |") || l.ends_with("| **disagrees** |"))
        .collect();
    let disagreeing: Vec<String> = rows
        .iter()
        .filter(|l| l.ends_with("| **disagrees** |"))
        .map(|l| {
            l.trim_start_matches("| ")
                .split(" | ")
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let mut text = format!(
        "{} of {} claims agree",
        rows.len() - disagreeing.len(),
        rows.len()
    );
    if !disagreeing.is_empty() {
        let _ = write!(text, "; **we disagree**: {}", disagreeing.join("; "));
    }
    text.push('.');
    text
}

/// How `report_dir` reaches `figures_dir` in a markdown link.
fn relative_link(report_dir: &Path, figures_dir: &Path) -> String {
    let same = |a: &Path, b: &Path| {
        a.canonicalize()
            .ok()
            .zip(b.canonicalize().ok())
            .is_some_and(|(a, b)| a == b)
    };
    if figures_dir.is_relative() && same(report_dir, Path::new(".")) {
        return figures_dir.display().to_string();
    }
    match (report_dir.canonicalize(), figures_dir.canonicalize()) {
        (Ok(r), Ok(f)) => f
            .strip_prefix(&r)
            .map_or_else(|_| f.display().to_string(), |p| p.display().to_string()),
        _ => figures_dir.display().to_string(),
    }
}

fn align_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let rows = field(json, "rows", path)?
        .as_array()
        .ok_or_else(|| format_error(path, "field \"rows\" is not a list"))?;
    let mut md = format!(
        "A tiny Llama is fine-tuned (SFT) on noisy demonstrations, then aligned with DPO (binarized \
         labels), cDPO and GDPO on {} pairs sampled from it and labelled by Bradley–Terry on a known \
         true reward (modestly confident soft labels). Each loss runs at every β of the grid; the β \
         whose greedy answers to {} validation prompts score best is reported on {} test prompts, \
         beside the paper's default β. True reward 0 is perfect. One seed.\n\n\
         | model | β chosen on validation | mean true reward (test) | exact answers % | preference accuracy % | paper's β | mean true reward at paper's β |\n|---|---|---|---|---|---|---|\n",
        number(json, "train_pairs", path)?,
        number(json, "validation_prompts", path)?,
        number(json, "test_prompts", path)?
    );
    let optional = |row: &Value, key: &str, show: &dyn Fn(f64) -> String| {
        row.get(key)
            .and_then(Value::as_f64)
            .map_or("–".to_string(), show)
    };
    let mut rewards = Vec::new();
    for row in rows {
        let name = text(row, "name", path)?;
        let reward = number(row, "mean_true_reward", path)?;
        let _ = writeln!(
            md,
            "| {name} | {} | {reward:+.3} | {:.1} | {} | {} | {} |",
            optional(row, "beta", &|b| format!("{b}")),
            100.0 * number(row, "exact_match", path)?,
            optional(row, "preference_accuracy", &|a| format!("{:.1}", 100.0 * a)),
            optional(row, "default_beta", &|b| format!("{b}")),
            optional(row, "default_beta_true_reward", &|r| format!("{r:+.3}")),
        );
        let loss = row
            .get("loss")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        rewards.push((loss, reward));
    }
    let reward_of = |name: &str| {
        rewards
            .iter()
            .find(|(l, _)| l.as_deref() == Some(name))
            .map(|(_, r)| *r)
    };
    let mut claims = Vec::new();
    if let (Some(g), Some(d), Some(c)) = (reward_of("gdpo"), reward_of("dpo"), reward_of("cdpo")) {
        claims.push((
            "with modestly confident soft labels GDPO (β tuned) beats DPO and cDPO (β tuned), on this one seed".to_string(),
            format!("true reward GDPO {g:+.3}, DPO {d:+.3}, cDPO {c:+.3}"),
            g > d && g > c,
        ));
    }
    md.push('\n');
    md.push_str(&claims_table(&claims));
    md.push_str(
        "\nThis is the built-in demo of `softalign align`, not the paper's SmolLM2 experiment with AI-feedback \
         labels; it checks the paper's mechanism where the true reward is known, on one seed. The next section \
         repeats the comparison over seeds and label regimes with intervals.\n",
    );
    Ok(md)
}

fn soft_labels_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let report: crate::soft_labels::SoftLabelReport = serde_json::from_value(json.clone())
        .map_err(|e| format_error(path, format!("not a soft-labels report: {e}")))?;
    let mut md = crate::soft_labels::markdown(&report);
    md.push_str(
        "\nDifferences from the paper's setting: labels here are exact Bradley–Terry probabilities \
         (or simulated votes) of a known reward, not an AI judge's; the model is a 2-block, \
         width-64 Llama on a three-digit task, not SmolLM2/Llama on dialogue; each run is scored \
         at its last step, with β chosen on validation prompts, not at a checkpoint chosen by \
         win rate. The verdict above is the only claim this section makes.\n",
    );
    Ok(md)
}

fn field<'a>(value: &'a Value, key: &str, path: &Path) -> Result<&'a Value, ReproError> {
    value
        .get(key)
        .ok_or_else(|| format_error(path, format!("field {key:?} is missing")))
}

fn number(value: &Value, key: &str, path: &Path) -> Result<f64, ReproError> {
    field(value, key, path)?
        .as_f64()
        .ok_or_else(|| format_error(path, format!("field {key:?} is not a number")))
}

fn text<'a>(value: &'a Value, key: &str, path: &Path) -> Result<&'a str, ReproError> {
    field(value, key, path)?
        .as_str()
        .ok_or_else(|| format_error(path, format!("field {key:?} is not a string")))
}

fn claims_table(rows: &[(String, String, bool)]) -> String {
    let mut md = String::from("| the paper claims | we measured | verdict |\n|---|---|---|\n");
    for (claim, measured, agrees) in rows {
        let verdict = if *agrees { "agrees" } else { "**disagrees**" };
        let _ = writeln!(md, "| {claim} | {measured} | {verdict} |");
    }
    md
}

fn toy_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let results = field(json, "results", path)?
        .as_array()
        .ok_or_else(|| format_error(path, "field \"results\" is not a list"))?;
    let mut cells = Vec::new();
    for r in results {
        cells.push((
            text(r, "optimizer", path)?.to_string(),
            number(r, "k", path)?,
            number(r, "beta2", path)?,
            number(r, "median", path)?,
            number(r, "q25", path)?,
            number(r, "q75", path)?,
        ));
    }
    let median = |optimizer: &str, k: f64, beta2: f64| {
        cells
            .iter()
            .find(|c| c.0 == optimizer && c.1 == k && (c.2 - beta2).abs() < 1e-12)
            .map(|c| c.3)
    };
    let steps = number(json, "steps", path)?;
    let mut md = format!(
        "Final θ after {steps} steps (median [quartiles] over {} chains; the optimum is −1):\n\n",
        number(json, "chains", path)?
    );
    let mut ks: Vec<f64> = cells.iter().map(|c| c.1).collect();
    ks.dedup();
    ks.sort_by(f64::total_cmp);
    ks.dedup();
    let mut betas: Vec<f64> = cells.iter().map(|c| c.2).collect();
    betas.sort_by(f64::total_cmp);
    betas.dedup();
    let mut optimizers: Vec<&str> = Vec::new();
    for c in &cells {
        if !optimizers.contains(&c.0.as_str()) {
            optimizers.push(&c.0);
        }
    }
    md.push_str("| optimizer |");
    for k in &ks {
        for b in &betas {
            let _ = write!(md, " k={k}, β₂={b} |");
        }
    }
    md.push_str("\n|---|");
    md.push_str(&"---|".repeat(ks.len() * betas.len()));
    md.push('\n');
    for optimizer in &optimizers {
        let _ = write!(md, "| {optimizer} |");
        for &k in &ks {
            for &b in &betas {
                match cells
                    .iter()
                    .find(|c| c.0 == *optimizer && c.1 == k && c.2 == b)
                {
                    Some(c) => {
                        let _ = write!(md, " {:+.2} [{:+.2}, {:+.2}] |", c.3, c.4, c.5);
                    }
                    None => md.push_str(" – |"),
                }
            }
        }
        md.push('\n');
    }
    md.push('\n');
    let mut rows = Vec::new();
    let fmt = |v: Option<f64>| v.map_or("not run".to_string(), |v| format!("{v:+.2}"));
    for beta2 in [0.1, 0.5] {
        for k in [10.0, 50.0] {
            let adam = median("adam", k, beta2);
            rows.push((
                format!("Adam ends near +1 (the wrong end) at k = {k}, β₂ = {beta2}"),
                format!("Adam median {}", fmt(adam)),
                adam.is_some_and(|m| m > 0.5),
            ));
        }
    }
    for (k, bound, words) in [(10.0, -0.9, "near −1"), (50.0, -0.5, "below −0.5")] {
        let worst = betas
            .iter()
            .filter_map(|&b| median("adopt", k, b))
            .fold(f64::NEG_INFINITY, f64::max);
        let any = betas.iter().any(|&b| median("adopt", k, b).is_some());
        rows.push((
            format!("ADOPT (no clip) ends {words} at k = {k} for every β₂"),
            if any {
                format!("largest ADOPT median {worst:+.2}")
            } else {
                "not run".to_string()
            },
            any && worst < bound,
        ));
    }
    for ablation in ["adopt_no_decorrelation", "adopt_momentum_first"] {
        let m = median(ablation, 50.0, 0.1);
        rows.push((
            format!("the ablation {ablation} fails like Adam (k = 50, β₂ = 0.1)"),
            format!("median {}", fmt(m)),
            m.is_some_and(|m| m > -0.5),
        ));
    }
    md.push_str(&claims_table(&rows));
    let clip = median("adopt_clip", 50.0, 0.1);
    let _ = writeln!(
        md,
        "\nADOPT with its default clip t^¼ at k = 50, β₂ = 0.1 ends at {} after {steps} steps: the clip \
         stays below the normalised rare gradient (about k) until t ≈ k⁴, so convergence comes late there.",
        fmt(clip)
    );
    Ok(md)
}

fn bandit_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let results = field(json, "results", path)?
        .as_array()
        .ok_or_else(|| format_error(path, "field \"results\" is not a list"))?;
    let data_reward = number(json, "data_expected_reward", path)?;
    let data_mode = json.get("data_mode").and_then(Value::as_f64);
    let actions = json.get("actions").and_then(Value::as_f64).unwrap_or(100.0);
    let mut md =
        String::from("| loss | policy mode (action) | expected true reward |\n|---|---|---|\n");
    let _ = writeln!(
        md,
        "| data | {} | {data_reward:+.4} |",
        data_mode.map_or("–".to_string(), |m| format!("{m}"))
    );
    let mut fits = Vec::new();
    for r in results {
        let loss = text(r, "loss", path)?.to_string();
        let (mode, reward) = (
            number(r, "mode", path)?,
            number(r, "expected_reward", path)?,
        );
        let _ = writeln!(md, "| {loss} | {mode} | {reward:+.4} |");
        fits.push((loss, mode, reward));
    }
    let get = |name: &str| fits.iter().find(|f| f.0 == name);
    let high = actions / 2.0;
    let mut rows = Vec::new();
    if let Some(c) = get("cdpo") {
        rows.push((
            "cDPO's mode stays at the low-reward data mode".to_string(),
            format!("cDPO mode {} (high-reward half starts at {high})", c.1),
            c.1 < high,
        ));
    }
    for name in ["dpo", "gdpo"] {
        if let Some(f) = get(name) {
            rows.push((
                format!("{} moves the mode to high reward", name.to_uppercase()),
                format!("{name} mode {}, expected reward {:+.4}", f.1, f.2),
                f.1 >= high,
            ));
        }
    }
    if let (Some(g), Some(c)) = (get("gdpo"), get("cdpo")) {
        rows.push((
            "GDPO's policy earns more true reward than cDPO's".to_string(),
            format!("{:+.4} vs {:+.4}", g.2, c.2),
            g.2 > c.2,
        ));
    }
    md.push('\n');
    md.push_str(&claims_table(&rows));
    Ok(md)
}

fn mnist_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let report: MnistJson = serde_json::from_value(json.clone())
        .map_err(|e| format_error(path, format!("not an MNIST report: {e}")))?;
    let config = &report.config;
    let mut md = format!(
        "MLP 784-{}-10, {} epochs over {} training images, batch {}, constant lr {}, {} seeds; \
         mean [95% interval] over seeds ({} test images):\n\n",
        config.hidden,
        config.epochs,
        report.train_images,
        config.batch_size,
        config.learning_rate,
        config.seeds,
        report.test_images
    );
    md.push_str("| optimizer | train loss, epoch 1 | train loss, last epoch | test accuracy %, last epoch |\n|---|---|---|---|\n");
    let last = |r: &ResultJson| r.epochs.last().cloned();
    for r in &report.results {
        if let (Some(first), Some(final_)) = (r.epochs.first(), last(r)) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                r.optimizer,
                interval(&first.train_loss, 1.0, 4),
                interval(&final_.train_loss, 1.0, 4),
                interval(&final_.test_accuracy, 100.0, 2)
            );
        }
    }
    let find = |name: &str| {
        report
            .results
            .iter()
            .find(|r| r.optimizer == name)
            .and_then(last)
    };
    let mut rows = Vec::new();
    if let Some(adopt) = find("adopt") {
        for other in ["adam", "amsgrad"] {
            let Some(o) = find(other) else { continue };
            let (a, b) = (adopt.train_loss, o.train_loss);
            let significant = a.high < b.low || b.high < a.low;
            let measured = format!(
                "final train loss ADOPT {:.4} vs {other} {:.4} ({}); test accuracy {:.2}% vs {:.2}%",
                a.mean,
                b.mean,
                if significant {
                    "95% intervals disjoint"
                } else {
                    "95% intervals overlap"
                },
                100.0 * adopt.test_accuracy.mean,
                100.0 * o.test_accuracy.mean
            );
            // "At least as fast": not significantly worse.
            rows.push((
                format!("ADOPT trains at least as fast as {other}"),
                measured,
                !(significant && a.mean > b.mean),
            ));
        }
    }
    md.push('\n');
    md.push_str(&claims_table(&rows));
    Ok(md)
}

fn lm_section(json: &Value, path: &Path) -> Result<String, ReproError> {
    let report: LmJson = serde_json::from_value(json.clone())
        .map_err(|e| format_error(path, format!("not a language-model report: {e}")))?;
    let c = &report.config;
    let mut md = format!(
        "Byte-level Llama, {} layers × {} wide ({} parameters), trained from scratch on {} bytes \
         (validation: the last {} bytes), windows of {}, {} steps per run, peak lr {} (warmup {}, cosine \
         to a tenth), global gradient-norm clip {}, weight decay {} (decoupled), AdamW β₂ {} / ADOPT β₂ 0.9999. \
         Spike: {}.\n\n",
        c.layers,
        c.width,
        report.parameters,
        report.train_bytes,
        report.validation_bytes,
        c.seq_len,
        c.steps,
        c.learning_rate,
        c.warmup_steps,
        c.clip_norm,
        c.weight_decay,
        c.adam_beta2,
        report.spike_definition
    );
    md.push_str("| batch | optimizer | final validation loss | spikes | clipped steps |\n|---|---|---|---|---|\n");
    for r in &report.runs {
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} | {} | {} |",
            r.batch_size,
            r.optimizer,
            r.validation_loss.last().map_or(f64::NAN, |v| v.1),
            r.spike_count,
            r.clipped_steps
        );
    }
    let small = c.batch_sizes.iter().copied().min().unwrap_or(0);
    let large = c.batch_sizes.iter().copied().max().unwrap_or(0);
    let get = |name: &str, batch: usize| {
        report
            .runs
            .iter()
            .find(|r| r.optimizer.starts_with(name) && r.batch_size == batch)
    };
    let final_loss = |r: &RunJson| r.validation_loss.last().map_or(f64::NAN, |v| v.1);
    let mut rows = Vec::new();
    if let (Some(adam), Some(adopt)) = (get("adam", small), get("adopt", small)) {
        rows.push((
            format!("at the small batch ({small}) Adam's training loss spikes"),
            format!("{} spikes ({})", adam.spike_count, adam.optimizer),
            adam.spike_count > 0,
        ));
        rows.push((
            format!("at the small batch ({small}) ADOPT does not spike"),
            format!("{} spikes", adopt.spike_count),
            adopt.spike_count == 0,
        ));
        rows.push((
            format!("at the small batch ({small}) ADOPT reaches a lower loss than Adam"),
            format!(
                "validation {:.4} vs {:.4}",
                final_loss(adopt),
                final_loss(adam)
            ),
            final_loss(adopt) < final_loss(adam),
        ));
    }
    if let (Some(adam), Some(adopt)) = (get("adam", large), get("adopt", large)) {
        rows.push((
            format!("at the large batch ({large}) ADOPT is at least as good as Adam"),
            format!(
                "validation {:.4} vs {:.4}; spikes {} vs {}",
                final_loss(adopt),
                final_loss(adam),
                adopt.spike_count,
                adam.spike_count
            ),
            final_loss(adopt) <= final_loss(adam) + 0.01,
        ));
    }
    md.push('\n');
    md.push_str(&claims_table(&rows));
    md.push_str(
        "\nScale caveat: the paper's GPT-2 runs are 124M parameters and hundreds of thousands of steps; \
         spikes there appear late in training. This run is thousands of times smaller, so an absence of \
         spikes here is weak evidence either way.\n",
    );
    Ok(md)
}

// The subsets of the reports' JSON the report reads back.

#[derive(serde::Deserialize)]
struct MnistJson {
    config: MnistConfigJson,
    train_images: usize,
    test_images: usize,
    results: Vec<ResultJson>,
}

#[derive(serde::Deserialize)]
struct MnistConfigJson {
    epochs: usize,
    seeds: usize,
    batch_size: usize,
    hidden: usize,
    learning_rate: f64,
}

#[derive(serde::Deserialize)]
struct ResultJson {
    optimizer: String,
    epochs: Vec<EpochJson>,
}

#[derive(serde::Deserialize, Clone)]
struct EpochJson {
    train_loss: Interval,
    test_accuracy: Interval,
}

#[derive(serde::Deserialize)]
struct LmJson {
    config: LmConfigJson,
    spike_definition: String,
    parameters: usize,
    train_bytes: usize,
    validation_bytes: usize,
    runs: Vec<RunJson>,
}

#[derive(serde::Deserialize)]
struct LmConfigJson {
    layers: usize,
    width: usize,
    seq_len: usize,
    batch_sizes: Vec<usize>,
    steps: usize,
    learning_rate: f64,
    warmup_steps: usize,
    clip_norm: f64,
    weight_decay: f64,
    adam_beta2: f64,
}

#[derive(serde::Deserialize)]
struct RunJson {
    optimizer: String,
    batch_size: usize,
    validation_loss: Vec<(usize, f64)>,
    spike_count: usize,
    clipped_steps: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_sections_say_why_and_the_file_appears_whole() {
        let dir = std::env::temp_dir().join(format!("softalign-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sections = Sections {
            mnist: Outcome::Skipped(".cache/mnist not found".to_string()),
            ..Default::default()
        };
        let report = dir.join("REPORT.md");
        let copied = write_report(&sections, &dir.join("figures"), &report).unwrap();
        assert_eq!(copied, 0);
        let text = std::fs::read_to_string(&report).unwrap();
        assert!(text.contains("## MNIST MLP (ADOPT §5)\n\nNot run: .cache/mnist not found."));
        assert!(!softalign_durable::temporary_path(&report).exists());
    }

    #[test]
    fn a_manifest_from_before_the_soft_label_study_still_reads() {
        let dir = std::env::temp_dir().join(format!("softalign-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("all.json");
        let skipped = serde_json::json!({"skipped": "x"});
        let old: serde_json::Map<String, Value> =
            ["toy", "bandit", "mnist", "fashion", "lm", "align"]
                .iter()
                .map(|k| (k.to_string(), skipped.clone()))
                .collect();
        std::fs::write(&path, serde_json::to_string(&old).unwrap()).unwrap();
        let sections = Sections::read(&path).unwrap();
        assert_eq!(sections.soft_labels, Outcome::default());
        assert_eq!(sections.toy, Outcome::Skipped("x".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bandit_verdicts_follow_the_numbers() {
        let json = serde_json::json!({
            "data_expected_reward": -0.1, "data_mode": 20, "actions": 100,
            "results": [
                {"loss": "dpo", "mode": 90, "expected_reward": 0.3},
                {"loss": "cdpo", "mode": 21, "expected_reward": -0.05},
                {"loss": "gdpo", "mode": 30, "expected_reward": 0.1},
            ]
        });
        let md = bandit_section(&json, Path::new("b.json")).unwrap();
        assert!(md.contains("| cDPO's mode stays at the low-reward data mode | cDPO mode 21 (high-reward half starts at 50) | agrees |"), "{md}");
        assert!(md.contains("| GDPO moves the mode to high reward | gdpo mode 30, expected reward +0.1000 | **disagrees** |"), "{md}");
    }

    #[test]
    fn lm_verdicts_follow_spikes_and_losses() {
        let run = |optimizer: &str, batch: usize, spikes: usize, loss: f64| {
            serde_json::json!({"optimizer": optimizer, "batch_size": batch,
                "validation_loss": [[0, 5.5], [100, loss]], "spike_count": spikes, "clipped_steps": 3})
        };
        let json = serde_json::json!({
            "config": {"layers": 1, "width": 32, "seq_len": 16, "batch_sizes": [4, 16], "steps": 100,
                "learning_rate": 0.002, "warmup_steps": 10, "clip_norm": 1.0, "weight_decay": 0.1,
                "adam_beta2": 0.95},
            "spike_definition": "d", "parameters": 10, "train_bytes": 1000, "validation_bytes": 100,
            "runs": [run("adamw", 4, 2, 2.0), run("adopt", 4, 0, 2.1), run("adamw", 16, 0, 1.9),
                run("adopt", 16, 0, 1.8)]
        });
        let md = lm_section(&json, Path::new("lm.json")).unwrap();
        assert_eq!(
            verdict_summary(&md),
            "3 of 4 claims agree; **we disagree**: at the small batch (4) ADOPT reaches a lower loss than Adam."
        );
        let verdict = |claim: &str| {
            let line = md
                .lines()
                .find(|l| l.starts_with(&format!("| {claim}")))
                .unwrap();
            line.ends_with("| agrees |")
        };
        assert!(
            verdict("at the small batch (4) Adam's training loss spikes"),
            "{md}"
        );
        assert!(verdict("at the small batch (4) ADOPT does not spike"));
        assert!(!verdict(
            "at the small batch (4) ADOPT reaches a lower loss than Adam"
        ));
        assert!(verdict(
            "at the large batch (16) ADOPT is at least as good as Adam"
        ));
    }

    #[test]
    fn a_malformed_json_field_is_named() {
        let json = serde_json::json!({"results": [{"loss": "dpo"}], "data_expected_reward": 0.0});
        let error = bandit_section(&json, Path::new("b.json")).unwrap_err();
        assert_eq!(error.to_string(), "b.json: field \"mode\" is missing");
    }
}
