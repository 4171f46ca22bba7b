//! `softalign data …`: inspect preference files. Flags are parsed here and handed to
//! `softalign_data`; the report is printed here.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use softalign_data::{
    Format, HISTOGRAM_BINS, LabelHistogram, LengthStats, LoadOptions, LoadedPairs, Location,
    Problem, Summary, ValidationPolicy,
};

/// Width in characters of the longest histogram bar.
const BAR_WIDTH: usize = 40;

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Validate a preference file: summary, label histogram and one `FILE:LINE: FIELD: PROBLEM`
    /// line per problem; exit status 0 when valid, 2 when not.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A JSONL file (one record per line) or a JSON array of records.
    file: PathBuf,
    /// The record format; `auto` detects it from the first record's keys.
    #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
    format: FormatArg,
    /// Temperature τ > 0 for UltraFeedback labels p̂ = σ((score_chosen − score_rejected)/τ).
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Print one JSON object (summary, histogram, problems) instead of the text report.
    #[arg(long)]
    json: bool,
}

/// `--format` values: `auto` or one of the library's formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    Auto,
    Native,
    Trl,
    Hh,
    Shp,
    Ultrafeedback,
    Votes,
    Sharegpt,
}

impl FormatArg {
    fn format(self) -> Option<Format> {
        match self {
            FormatArg::Auto => None,
            FormatArg::Native => Some(Format::Native),
            FormatArg::Trl => Some(Format::Trl),
            FormatArg::Hh => Some(Format::Hh),
            FormatArg::Shp => Some(Format::Shp),
            FormatArg::Ultrafeedback => Some(Format::UltraFeedback),
            FormatArg::Votes => Some(Format::Votes),
            FormatArg::Sharegpt => Some(Format::ShareGpt),
        }
    }
}

pub fn run(command: DataCommand) -> Result<()> {
    match command {
        DataCommand::Check(args) => check(args),
    }
}

fn check(args: CheckArgs) -> Result<()> {
    let options = LoadOptions {
        format: args.format.format(),
        temperature: args.temperature,
        policy: ValidationPolicy::Skip,
    };
    let loaded = softalign_data::load(&args.file, &options)?;
    let summary = Summary::of(&loaded);
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = JsonReport {
            valid_file: loaded.problems.is_empty(),
            summary: &summary,
            problem_list: loaded.problems.iter().map(ProblemJson::from).collect(),
        };
        serde_json::to_writer(&mut out, &report).context("writing the report")?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &loaded, &summary, args.format == FormatArg::Auto)?;
    }
    out.flush()?;
    if !loaded.problems.is_empty() {
        let problems = loaded.problems.len();
        if loaded.records == 0 {
            bail!(
                "{}: no records could be read ({problems} problem{}); a JSON file holds one array of records, a JSONL file one record object per line",
                args.file.display(),
                if problems == 1 { "" } else { "s" }
            );
        }
        bail!(
            "{}: {} of {} records invalid ({problems} problem{})",
            args.file.display(),
            loaded.invalid_records,
            loaded.records,
            if problems == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// `--json` output: the summary's fields, whether the file is valid, and every problem.
#[derive(Serialize)]
struct JsonReport<'a> {
    valid_file: bool,
    #[serde(flatten)]
    summary: &'a Summary,
    problem_list: Vec<ProblemJson>,
}

#[derive(Serialize)]
struct ProblemJson {
    /// 1-based line for JSONL (or where a JSON array stopped parsing), else null.
    line: Option<usize>,
    /// 1-based record number in a JSON array, else null.
    record: Option<usize>,
    field: String,
    message: String,
    /// The whole `FILE:LINE: FIELD: PROBLEM` line.
    text: String,
}

impl From<&Problem> for ProblemJson {
    fn from(problem: &Problem) -> ProblemJson {
        let (line, record) = match problem.location {
            Location::Line(line) => (Some(line), None),
            Location::Record(record) => (None, Some(record)),
        };
        ProblemJson {
            line,
            record,
            field: problem.field.clone(),
            message: problem.kind.to_string(),
            text: problem.to_string(),
        }
    }
}

fn write_text(
    out: &mut impl Write,
    loaded: &LoadedPairs,
    summary: &Summary,
    detected: bool,
) -> Result<()> {
    let layout = match summary.layout {
        softalign_data::Layout::Jsonl => "jsonl",
        softalign_data::Layout::JsonArray => "json array (problems name records by index + 1)",
    };
    let format = match (summary.format, detected) {
        (Some(format), true) => format!("{format} (detected)"),
        (Some(format), false) => format.to_string(),
        (None, _) => "unknown (no record is a JSON object)".to_owned(),
    };
    writeln!(out, "file        {}", summary.file)?;
    writeln!(out, "format      {format}, {layout}")?;
    writeln!(
        out,
        "records     {} (valid {}, invalid {}, re-oriented {})",
        summary.records, summary.valid, summary.invalid, summary.reoriented
    )?;
    let share = |count: usize| 100.0 * count as f64 / summary.valid.max(1) as f64;
    let mean = summary
        .mean_label
        .map_or("n/a".to_owned(), |mean| format!("{mean:.4}"));
    writeln!(
        out,
        "labels      soft {} ({:.1}%), binary {} ({:.1}%), mean p̂ {mean}",
        summary.soft_labels,
        share(summary.soft_labels),
        summary.binary_labels,
        share(summary.binary_labels)
    )?;
    for (name, stats) in [
        ("prompt", &summary.prompt_chars),
        ("chosen", &summary.chosen_chars),
        ("rejected", &summary.rejected_chars),
    ] {
        writeln!(out, "{name:<11} {}", length_line(stats))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "label histogram (p̂, {HISTOGRAM_BINS} bins over [0.5, 1])"
    )?;
    write_histogram(out, &summary.histogram)?;
    if !loaded.problems.is_empty() {
        writeln!(out)?;
        writeln!(out, "problems ({})", loaded.problems.len())?;
        for problem in &loaded.problems {
            writeln!(out, "{problem}")?;
        }
    }
    Ok(())
}

fn length_line(stats: &Option<LengthStats>) -> String {
    match stats {
        Some(s) => format!(
            "chars min {}, median {:.1}, mean {:.1}, max {}",
            s.min, s.median, s.mean, s.max
        ),
        None => "n/a (no valid pairs)".to_owned(),
    }
}

fn write_histogram(out: &mut impl Write, histogram: &LabelHistogram) -> Result<()> {
    let largest = histogram.counts.iter().copied().max().unwrap_or(0).max(1);
    for (index, &count) in histogram.counts.iter().enumerate() {
        let (lo, hi) = LabelHistogram::edges(index);
        let close = if index + 1 == HISTOGRAM_BINS {
            ']'
        } else {
            ')'
        };
        let bar = "#".repeat((count * BAR_WIDTH).div_ceil(largest));
        let row = format!("[{lo:.2}, {hi:.2}{close} {count:>8} {bar}");
        writeln!(out, "{}", row.trim_end())?;
    }
    Ok(())
}
