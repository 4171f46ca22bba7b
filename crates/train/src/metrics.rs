//! Metric records of a run, written to `metrics.jsonl` (one JSON object per record) and
//! `metrics.csv` (fixed columns, empty where a record lacks a metric).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, io_error};

/// File of JSON metric records in the output folder.
pub const METRICS_JSONL: &str = "metrics.jsonl";
/// File of CSV metric records in the output folder.
pub const METRICS_CSV: &str = "metrics.csv";

/// The metrics of one training step (`split == "train"`) or one evaluation (`"eval"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRecord {
    /// Optimizer steps completed when the record was taken.
    pub step: usize,
    /// `train` or `eval`.
    pub split: String,
    /// Named values, in the objective's order (TRL names: `loss`, `rewards/margins`, …).
    pub metrics: Vec<(String, f64)>,
}

impl MetricRecord {
    /// A record of `metrics` at `step`.
    pub fn new(step: usize, split: &str, metrics: Vec<(&'static str, f64)>) -> Self {
        Self {
            step,
            split: split.to_string(),
            metrics: metrics
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }

    /// The value of metric `name`.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|(k, _)| k == name).map(|m| m.1)
    }

    /// The record as one JSON object: `{"step", "split", <metric>: value, …}` (non-finite
    /// values as null).
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = serde_json::Map::new();
        object.insert("step".into(), self.step.into());
        object.insert("split".into(), self.split.clone().into());
        for (name, value) in &self.metrics {
            object.insert(
                name.clone(),
                serde_json::Number::from_f64(*value).map_or(serde_json::Value::Null, Into::into),
            );
        }
        serde_json::Value::Object(object)
    }
}

/// The two metric files of a run, opened for appending.
#[derive(Debug)]
pub struct MetricsLog {
    jsonl: File,
    csv: File,
    columns: Vec<String>,
    paths: [PathBuf; 2],
}

impl MetricsLog {
    /// Starts both files in `dir` over from `history`: the records of the checkpoint a run resumes
    /// from (none for a fresh run). Each file is replaced whole (`softalign_durable`) by the CSV
    /// header of `columns` (the first two being `step` and `split`) and `history`, so records an
    /// interrupted run wrote after that checkpoint are dropped and a resumed run's files equal an
    /// uninterrupted run's; then both are opened for appending.
    pub fn create(dir: &Path, columns: &[&str], history: &[MetricRecord]) -> Result<Self> {
        let paths = [dir.join(METRICS_JSONL), dir.join(METRICS_CSV)];
        let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
        let mut jsonl = String::new();
        let mut csv = format!("{}\n", columns.join(","));
        for record in history {
            jsonl.push_str(&json_line(record));
            csv.push_str(&csv_line(&columns, record));
        }
        softalign_durable::write_file_atomic(&paths[0], jsonl.as_bytes())?;
        softalign_durable::write_file_atomic(&paths[1], csv.as_bytes())?;
        let append = |path: &Path| {
            OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(io_error(path))
        };
        Ok(Self {
            jsonl: append(&paths[0])?,
            csv: append(&paths[1])?,
            columns,
            paths,
        })
    }

    /// Appends one record to both files.
    pub fn append(&mut self, record: &MetricRecord) -> Result<()> {
        self.jsonl
            .write_all(json_line(record).as_bytes())
            .map_err(io_error(&self.paths[0]))?;
        self.csv
            .write_all(csv_line(&self.columns, record).as_bytes())
            .map_err(io_error(&self.paths[1]))
    }
}

/// `record` as a line of `metrics.jsonl`.
fn json_line(record: &MetricRecord) -> String {
    format!("{}\n", record.to_json())
}

/// `record` as a line of `metrics.csv` with `columns` (empty cells for metrics it lacks or that
/// are not finite).
fn csv_line(columns: &[String], record: &MetricRecord) -> String {
    let cells: Vec<String> = columns
        .iter()
        .map(|column| match column.as_str() {
            "step" => record.step.to_string(),
            "split" => record.split.clone(),
            name => record
                .get(name)
                .filter(|v| v.is_finite())
                .map_or(String::new(), |v| v.to_string()),
        })
        .collect();
    format!("{}\n", cells.join(","))
}
