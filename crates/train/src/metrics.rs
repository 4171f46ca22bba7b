//! Metric records of a run, written to `metrics.jsonl` (one JSON object per record) and
//! `metrics.csv` (fixed columns, empty where a record lacks a metric).

use std::fs::File;
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
    /// Creates (truncates) both files in `dir`, writes the CSV header of `columns` (the first two
    /// being `step` and `split`) and the records of `history` (those of a resumed run).
    pub fn create(dir: &Path, columns: &[&str], history: &[MetricRecord]) -> Result<Self> {
        let paths = [dir.join(METRICS_JSONL), dir.join(METRICS_CSV)];
        let jsonl = File::create(&paths[0]).map_err(io_error(&paths[0]))?;
        let csv = File::create(&paths[1]).map_err(io_error(&paths[1]))?;
        let mut log = Self {
            jsonl,
            csv,
            columns: columns.iter().map(|c| c.to_string()).collect(),
            paths,
        };
        let header = log.columns.join(",");
        writeln!(log.csv, "{header}").map_err(io_error(&log.paths[1]))?;
        for record in history {
            log.append(record)?;
        }
        Ok(log)
    }

    /// Appends one record to both files.
    pub fn append(&mut self, record: &MetricRecord) -> Result<()> {
        let line = record.to_json().to_string();
        writeln!(self.jsonl, "{line}").map_err(io_error(&self.paths[0]))?;
        let cells: Vec<String> = self
            .columns
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
        writeln!(self.csv, "{}", cells.join(",")).map_err(io_error(&self.paths[1]))
    }
}
