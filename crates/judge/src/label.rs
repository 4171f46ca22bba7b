//! `softalign label`: soft labels for a preference file by AI feedback, written as JSONL,
//! resumable, with a histogram of the labels (the GDPO paper's Fig. 2).
//!
//! Each input pair is judged in both orders ([`Judge::judge`]); the record is written oriented so
//! that the judge's winner is `chosen` (p̂ ≥ 0.5), with `p_chosen` = p̂ and the two one-order
//! probabilities `p_order_ab` (chosen shown as output (1)) and `p_order_ba` (chosen shown as (2)),
//! both P(chosen ≻ rejected). Plain-text prompts give native records (`prompt`, `chosen`,
//! `rejected`); conversations give ShareGPT records (`conversations`, `chosen`/`rejected` as
//! `{"from": "gpt", "value"}`), which every reader of this project loads with their labels.
//! `source_line` names the input record.
//!
//! Resumability: records go to `OUT.partial`, one line each, flushed as they are written; the
//! finished file is renamed to `OUT`. A run that finds `OUT.partial` (or a finished `OUT`) checks
//! that its records are the first input records, in order, drops a torn last line, and labels
//! only the rest, so an interrupted and resumed run writes the same file as one that never
//! stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use softalign_data::{
    Format, LabelHistogram, LoadOptions, PreferencePair, Prompt, Role, ValidationPolicy,
};
use softalign_plot::{Bars, Figure, Panel};
use softalign_train::progress_bar;

use crate::error::{JudgeError, Result, io_error};
use crate::judge::{Judge, JudgeItem, Judgement};

/// What to label and where.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSettings {
    /// The input preference file (any format the data crate reads).
    pub data: PathBuf,
    /// Its format (`None` detects it).
    pub format: Option<Format>,
    /// Stop at a bad record (strict) or skip it.
    pub validation: ValidationPolicy,
    /// The output JSONL file.
    pub out: PathBuf,
    /// Label only the first this many pairs.
    pub limit: Option<usize>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl LabelSettings {
    /// Refuses an output that is the input: `--out` (or one of the files written beside it) and
    /// `--data` naming the same file, by any path, would replace the data with its labels.
    pub fn check_paths(&self) -> Result<()> {
        let Some(data) = resolved(&self.data) else {
            return Ok(());
        };
        let outputs = [
            self.out.clone(),
            partial_path(&self.out),
            figure_path(&self.out),
            summary_path(&self.out),
        ];
        for output in outputs {
            if resolved(&output).is_some_and(|o| o == data) {
                return Err(crate::error::setting(
                    "out",
                    format!(
                        "{} is the --data file {} (or a file written beside --out): labelling would replace the input; choose another --out",
                        output.display(),
                        self.data.display()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// `path` with its folder's links and `..` resolved (the file itself need not exist); `None`
/// when its folder does not exist.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(path) = std::fs::canonicalize(path) {
        return Some(path);
    }
    let name = path.file_name()?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let folder = std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()?;
    Some(folder.join(name))
}

/// What a labelling run did.
#[derive(Debug, Clone, Serialize)]
pub struct LabelReport {
    /// The output file (or its `.partial` when interrupted).
    pub out: PathBuf,
    /// The histogram figure.
    pub figure: Option<PathBuf>,
    /// The summary JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<PathBuf>,
    /// Pairs in the output.
    pub pairs: usize,
    /// Pairs taken from an earlier, interrupted run.
    pub resumed: usize,
    /// Pairs judged by this run.
    pub judged: usize,
    /// Records of the input skipped as invalid.
    pub skipped: usize,
    /// Pairs whose judged winner is the input's `rejected`.
    pub flipped: usize,
    /// Histogram of p̂ in ten bins over [0.5, 1].
    pub histogram: LabelHistogram,
    /// Mean p̂.
    pub mean_p: f64,
    /// Median p̂.
    pub median_p: f64,
    /// Mean probability that the output shown first is preferred, over both orders of every
    /// pair (0.5 = no position bias).
    pub first_position_preference: f64,
    /// Pairs whose two orders disagree on the winner.
    pub order_disagreements: usize,
    /// Whether the stop flag ended the run early.
    pub interrupted: bool,
    /// Seconds of this run.
    pub seconds: f64,
}

#[derive(Serialize)]
struct NativeRecord<'a> {
    prompt: &'a str,
    chosen: &'a str,
    rejected: &'a str,
    p_chosen: f64,
    p_order_ab: f64,
    p_order_ba: f64,
    source_line: usize,
}

#[derive(Serialize)]
struct Turn<'a> {
    from: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
struct ShareGptRecord<'a> {
    conversations: Vec<Turn<'a>>,
    chosen: Turn<'a>,
    rejected: Turn<'a>,
    p_chosen: f64,
    p_order_ab: f64,
    p_order_ba: f64,
    source_line: usize,
}

/// The ShareGPT speaker name of a role.
fn sharegpt_role(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "human",
        Role::Assistant => "gpt",
        Role::Tool => "observation",
    }
}

/// The output line (without newline) of `pair` judged `judgement` (P(pair.chosen ≻
/// pair.rejected)), oriented so the winner is `chosen`.
pub fn labelled_record(pair: &PreferencePair, judgement: Judgement) -> String {
    let (chosen, rejected, j) = if judgement.p < 0.5 {
        (&pair.rejected, &pair.chosen, judgement.swapped())
    } else {
        (&pair.chosen, &pair.rejected, judgement)
    };
    let line = pair.source_line;
    let text = match &pair.prompt {
        Prompt::Text(prompt) => serde_json::to_string(&NativeRecord {
            prompt,
            chosen,
            rejected,
            p_chosen: j.p,
            p_order_ab: j.p_order_ab,
            p_order_ba: j.p_order_ba,
            source_line: line,
        }),
        Prompt::Chat(messages) => serde_json::to_string(&ShareGptRecord {
            conversations: messages
                .iter()
                .map(|m| Turn {
                    from: sharegpt_role(m.role),
                    value: &m.content,
                })
                .collect(),
            chosen: Turn {
                from: "gpt",
                value: chosen,
            },
            rejected: Turn {
                from: "gpt",
                value: rejected,
            },
            p_chosen: j.p,
            p_order_ab: j.p_order_ab,
            p_order_ba: j.p_order_ba,
            source_line: line,
        }),
    };
    text.expect("records serialise")
}

/// `OUT.partial`.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The histogram figure next to `out`: `STEM_histogram.png`.
pub fn figure_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map_or_else(
        || "labels".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!("{stem}_histogram.png"))
}

/// The summary next to `out`: `STEM_summary.json`.
pub fn summary_path(out: &Path) -> PathBuf {
    let stem = out.file_stem().map_or_else(
        || "labels".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    out.with_file_name(format!("{stem}_summary.json"))
}

/// A record already written, as read back for resuming.
struct Written {
    judgement: Judgement,
    flipped: bool,
}

/// Reads the complete lines of an earlier output, checks that they continue `pairs`, truncates
/// a torn last line away, and returns what they hold.
fn read_earlier(path: &Path, pairs: &[PreferencePair]) -> Result<Vec<Written>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let (written, complete_bytes) = parse_earlier(path, &text, pairs)?;
    if complete_bytes < text.len() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_error(path))?;
        file.set_len(complete_bytes as u64)
            .map_err(io_error(path))?;
    }
    Ok(written)
}

/// The records of an earlier output `text` (of file `path`) that continue `pairs`, and the bytes
/// their complete lines take; an error when the text is not such an output.
fn parse_earlier(
    path: &Path,
    text: &str,
    pairs: &[PreferencePair],
) -> Result<(Vec<Written>, usize)> {
    let mut written = Vec::new();
    let mut complete_bytes = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            break; // torn by an interruption: labelled again
        }
        let number = index + 1;
        let fail = |problem: String| JudgeError::Resume {
            path: path.to_path_buf(),
            line: number,
            problem,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| {
            fail(format!(
                "not a json record ({e}); delete the file to start over"
            ))
        })?;
        let Some(pair) = pairs.get(index) else {
            return Err(fail(
                "more records than the input has; delete the file to start over".into(),
            ));
        };
        let number_field = |key: &str| value.get(key).and_then(Value::as_f64);
        let source = value.get("source_line").and_then(Value::as_u64);
        if source != Some(pair.source_line as u64) {
            return Err(fail(format!(
                "source_line is {source:?} but input record {} comes next; delete the file to start over",
                pair.source_line
            )));
        }
        let (Some(p), Some(ab), Some(ba)) = (
            number_field("p_chosen"),
            number_field("p_order_ab"),
            number_field("p_order_ba"),
        ) else {
            return Err(fail("missing p_chosen, p_order_ab or p_order_ba".into()));
        };
        let text = |key: &str| match value.get(key) {
            Some(Value::String(s)) => Some(s.as_str()),
            Some(Value::Object(o)) => o.get("value").and_then(Value::as_str),
            _ => None,
        };
        let (chosen, rejected) = (text("chosen"), text("rejected"));
        let same = |a: &str, b: &str| chosen == Some(a) && rejected == Some(b);
        if !(same(&pair.chosen, &pair.rejected) || same(&pair.rejected, &pair.chosen)) {
            return Err(fail(format!(
                "its responses are not those of input record {}; delete the file to start over",
                pair.source_line
            )));
        }
        written.push(Written {
            judgement: Judgement {
                p_order_ab: ab,
                p_order_ba: ba,
                p,
            },
            flipped: chosen != Some(pair.chosen.as_str()),
        });
        complete_bytes += line.len();
    }
    Ok((written, complete_bytes))
}

/// Labels `settings.data` with `judge` into `settings.out` (see the module documentation).
/// `stop` (e.g. set by Ctrl-C) ends the run after the current batch, leaving `OUT.partial` to
/// resume from.
pub fn label_file(
    judge: &Judge,
    settings: &LabelSettings,
    stop: Option<&AtomicBool>,
) -> Result<LabelReport> {
    let started = Instant::now();
    settings.check_paths()?;
    let options = LoadOptions {
        format: settings.format,
        temperature: 1.0,
        policy: settings.validation,
    };
    let loaded = softalign_data::load(&settings.data, &options)?;
    let mut pairs = loaded.pairs;
    if let Some(limit) = settings.limit {
        pairs.truncate(limit);
    }
    let partial = partial_path(&settings.out);
    if let Some(dir) = settings.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    }
    if !partial.exists() && settings.out.exists() {
        // Only a label file of this data is ours to continue; any other file is the user's and
        // is left exactly as it is.
        let text = std::fs::read_to_string(&settings.out).map_err(io_error(&settings.out))?;
        parse_earlier(&settings.out, &text, &pairs)?;
        std::fs::rename(&settings.out, &partial).map_err(io_error(&settings.out))?;
    }
    let mut written = if partial.exists() {
        read_earlier(&partial, &pairs)?
    } else {
        Vec::new()
    };
    let resumed = written.len();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&partial)
        .map_err(io_error(&partial))?;
    let bar = progress_bar(settings.progress, "label", "pairs", pairs.len(), resumed);
    let mut interrupted = false;
    for chunk in pairs[resumed..].chunks(judge.settings().batch_size) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            interrupted = true;
            break;
        }
        let items: Vec<JudgeItem<'_>> = chunk
            .iter()
            .map(|p| JudgeItem {
                context: &p.prompt,
                first: &p.chosen,
                second: &p.rejected,
                line: p.source_line,
            })
            .collect();
        let judgements = judge.judge(&items, &settings.data)?;
        for (pair, judgement) in chunk.iter().zip(judgements) {
            let mut line = labelled_record(pair, judgement);
            line.push('\n');
            file.write_all(line.as_bytes())
                .and_then(|()| file.flush())
                .map_err(io_error(&partial))?;
            let oriented = if judgement.p < 0.5 {
                judgement.swapped()
            } else {
                judgement
            };
            written.push(Written {
                judgement: oriented,
                flipped: judgement.p < 0.5,
            });
        }
        bar.inc(chunk.len() as u64);
        if let Some(last) = written.last() {
            bar.set_message(format!("last p̂ {:.3}", last.judgement.p));
        }
    }
    bar.finish_and_clear();
    file.sync_all().map_err(io_error(&partial))?;
    drop(file);
    let out = if interrupted {
        partial
    } else {
        softalign_durable::rename_durable(&partial, &settings.out)?;
        settings.out.clone()
    };
    let mut report = summarize(&written);
    report.out = out;
    report.resumed = resumed;
    report.judged = written.len() - resumed;
    report.skipped = loaded.invalid_records;
    report.interrupted = interrupted;
    report.seconds = started.elapsed().as_secs_f64();
    if !interrupted && !written.is_empty() {
        let figure = figure_path(&settings.out);
        draw_histogram(&written, &figure)?;
        report.figure = Some(figure);
        let summary = summary_path(&settings.out);
        let text = serde_json::to_string_pretty(&report).expect("the report serialises");
        write_atomic(&summary, text.as_bytes())?;
        report.summary = Some(summary);
    }
    Ok(report)
}

/// Writes `bytes` to `path` whole or not at all (`softalign_durable::write_file_atomic`).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(softalign_durable::write_file_atomic(path, bytes)?)
}

fn summarize(written: &[Written]) -> LabelReport {
    let n = written.len();
    let mut labels: Vec<f64> = written.iter().map(|w| w.judgement.p).collect();
    let mean_p = labels.iter().sum::<f64>() / n.max(1) as f64;
    labels.sort_by(f64::total_cmp);
    let median_p = match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => labels[n / 2],
        _ => 0.5 * (labels[n / 2 - 1] + labels[n / 2]),
    };
    // P(output (1) preferred): p_order_ab in the first order, 1 − p_order_ba in the second.
    let first = written
        .iter()
        .map(|w| w.judgement.p_order_ab + (1.0 - w.judgement.p_order_ba))
        .sum::<f64>()
        / (2 * n).max(1) as f64;
    LabelReport {
        out: PathBuf::new(),
        figure: None,
        summary: None,
        pairs: n,
        resumed: 0,
        judged: 0,
        skipped: 0,
        flipped: written.iter().filter(|w| w.flipped).count(),
        histogram: LabelHistogram::of(labels.iter().copied()),
        mean_p,
        median_p,
        first_position_preference: first,
        order_disagreements: written
            .iter()
            .filter(|w| (w.judgement.p_order_ab >= 0.5) != (w.judgement.p_order_ba >= 0.5))
            .count(),
        interrupted: false,
        seconds: 0.0,
    }
}

fn draw_histogram(written: &[Written], path: &Path) -> Result<()> {
    let histogram = LabelHistogram::of(written.iter().map(|w| w.judgement.p));
    let soft = Bars {
        label: "p̂ (averaged over both orders)".into(),
        bars: (0..histogram.counts.len())
            .map(|i| (LabelHistogram::edges(i).0, histogram.counts[i] as f64))
            .collect(),
        width: LabelHistogram::edges(0).1 - LabelHistogram::edges(0).0,
        errors: Vec::new(),
    };
    let mut one_order = [0usize; 20];
    for w in written {
        for p in [w.judgement.p_order_ab, 1.0 - w.judgement.p_order_ba] {
            one_order[((p * 20.0) as usize).min(19)] += 1;
        }
    }
    let positions = Bars {
        label: "P(output (1) preferred), each order".into(),
        bars: (0..20)
            .map(|i| (i as f64 / 20.0, one_order[i] as f64))
            .collect(),
        width: 0.05,
        errors: Vec::new(),
    };
    let figure = Figure {
        title: format!("AI-feedback soft labels ({} pairs)", written.len()),
        panels: vec![
            Panel {
                title: "soft label of the winner".into(),
                x_label: "p̂".into(),
                y_label: "pairs".into(),
                bars: vec![soft],
                x_range: Some((0.5, 1.0)),
                ..Panel::default()
            },
            Panel {
                title: "position bias: one order alone".into(),
                x_label: "probability of the first-shown output".into(),
                y_label: "judge prompts".into(),
                bars: vec![positions],
                x_range: Some((0.0, 1.0)),
                ..Panel::default()
            },
        ],
        columns: 2,
        panel_size: (560, 400),
    };
    figure.save(path).map_err(|e| JudgeError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use softalign_data::Message;

    fn pair(prompt: Prompt) -> PreferencePair {
        PreferencePair {
            prompt,
            chosen: "A".into(),
            rejected: "B".into(),
            soft_label: 1.0,
            source_line: 7,
        }
    }

    #[test]
    fn a_record_below_one_half_is_swapped() {
        let j = Judgement {
            p_order_ab: 0.2,
            p_order_ba: 0.4,
            p: 0.3,
        };
        let v: Value =
            serde_json::from_str(&labelled_record(&pair(Prompt::Text("x".into())), j)).unwrap();
        assert_eq!(
            (v["chosen"].as_str(), v["rejected"].as_str()),
            (Some("B"), Some("A"))
        );
        assert!((v["p_chosen"].as_f64().unwrap() - 0.7).abs() < 1e-12);
        // B shown first: 1 − P(A ≻ B | A second) = 0.6; B second: 1 − 0.2 = 0.8.
        assert!((v["p_order_ab"].as_f64().unwrap() - 0.6).abs() < 1e-12);
        assert!((v["p_order_ba"].as_f64().unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(v["source_line"], 7);
        let kept = Judgement {
            p_order_ab: 0.9,
            p_order_ba: 0.3,
            p: 0.6,
        };
        let v: Value =
            serde_json::from_str(&labelled_record(&pair(Prompt::Text("x".into())), kept)).unwrap();
        assert_eq!(v["chosen"], "A");
        assert_eq!(v["p_chosen"], 0.6);
    }

    #[test]
    fn conversations_become_sharegpt_records_that_load_back() {
        let chat = Prompt::Chat(vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, "hi"),
        ]);
        let j = Judgement {
            p_order_ab: 0.7,
            p_order_ba: 0.6,
            p: 0.65,
        };
        let line = labelled_record(&pair(chat.clone()), j);
        let loaded =
            softalign_data::load_bytes("l.jsonl", line.as_bytes(), &LoadOptions::default())
                .unwrap();
        assert_eq!(loaded.format, Some(Format::ShareGpt));
        let back = &loaded.pairs[0];
        assert_eq!((back.prompt.clone(), back.chosen.as_str()), (chat, "A"));
        assert!((back.soft_label - 0.65).abs() < 1e-12);
    }

    #[test]
    fn summary_counts_position_bias_and_disagreements() {
        let w = |ab: f64, ba: f64| Written {
            judgement: Judgement {
                p_order_ab: ab,
                p_order_ba: ba,
                p: 0.5 * (ab + ba),
            },
            flipped: false,
        };
        let report = summarize(&[w(0.9, 0.3), w(0.8, 0.6)]);
        // P(first shown preferred): (0.9 + 0.7 + 0.8 + 0.4) / 4.
        assert!((report.first_position_preference - 0.7).abs() < 1e-12);
        assert_eq!(report.order_disagreements, 1);
        assert!((report.mean_p - 0.65).abs() < 1e-12);
        assert!((report.median_p - 0.65).abs() < 1e-12);
    }
}
