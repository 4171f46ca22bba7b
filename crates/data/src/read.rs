//! Reading a preference file: JSONL or a JSON array, format detection, validation, orientation.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::DataError;
use crate::format::Format;
use crate::formats::{self, ConvertSettings};
use crate::labels;
use crate::non_finite;
use crate::pair::PreferencePair;
use crate::problem::{Location, Problem, ProblemKind, json_type_name};

/// What to do with bad records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationPolicy {
    /// Any problem makes loading fail with [`DataError::Invalid`], which lists every problem.
    #[default]
    Strict,
    /// Bad records are left out; they are counted and their problems returned with the pairs.
    Skip,
}

/// How to read a preference file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadOptions {
    /// The format, or `None` to detect it from the first record's keys ([`Format::detect`]).
    pub format: Option<Format>,
    /// τ > 0 in UltraFeedback's p̂ = σ((score_chosen − score_rejected)/τ). Default 1.0.
    pub temperature: f64,
    /// What to do with bad records. Default strict.
    pub policy: ValidationPolicy,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            format: None,
            temperature: 1.0,
            policy: ValidationPolicy::Strict,
        }
    }
}

impl LoadOptions {
    /// Reads `format` instead of detecting it.
    pub fn with_format(mut self, format: Format) -> LoadOptions {
        self.format = Some(format);
        self
    }

    /// Sets UltraFeedback's temperature τ.
    pub fn with_temperature(mut self, temperature: f64) -> LoadOptions {
        self.temperature = temperature;
        self
    }

    /// Sets the validation policy.
    pub fn with_policy(mut self, policy: ValidationPolicy) -> LoadOptions {
        self.policy = policy;
        self
    }
}

/// How records are laid out in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One JSON object per line; problems name the line.
    Jsonl,
    /// One JSON array of objects; problems name the record (index + 1).
    JsonArray,
}

/// The outcome of reading a file.
#[derive(Debug, Clone)]
pub struct LoadedPairs {
    /// The file, as named by the caller.
    pub path: PathBuf,
    /// JSONL or JSON array.
    pub layout: Layout,
    /// The format read: the one asked for, or the one detected; `None` only when no record is a
    /// JSON object.
    pub format: Option<Format>,
    /// Records seen (non-blank lines, or array elements).
    pub records: usize,
    /// The valid records as pairs, in file order, oriented so that `soft_label ≥ 0.5`.
    pub pairs: Vec<PreferencePair>,
    /// Records left out because they have at least one problem.
    pub invalid_records: usize,
    /// Every problem, in file order (empty under [`ValidationPolicy::Strict`]).
    pub problems: Vec<Problem>,
    /// Valid records whose label was below 0.5 and that were therefore swapped.
    pub reoriented: usize,
}

/// Reads a preference file (JSONL or JSON array, told apart by the first non-blank character `[`).
///
/// Every record is checked and each problem reported as `FILE:LINE: FIELD: PROBLEM`; under
/// [`ValidationPolicy::Strict`] any problem fails the load with all of them, under
/// [`ValidationPolicy::Skip`] bad records are left out and returned as problems. Records with
/// p̂ < 0.5 are re-oriented: chosen and rejected swap and p̂ becomes 1 − p̂ (SPEC §2), so every
/// returned pair has `soft_label` in [0.5, 1].
///
/// ```
/// use softalign_data::{LoadOptions, load_bytes};
/// let text = br#"{"prompt": "2+2?", "chosen": "5", "rejected": "4", "p_chosen": 0.1}"#;
/// let loaded = load_bytes("pairs.jsonl", text, &LoadOptions::default()).unwrap();
/// let pair = &loaded.pairs[0];
/// assert_eq!((pair.chosen.as_str(), pair.soft_label), ("4", 0.9));
/// assert_eq!(loaded.reoriented, 1);
/// ```
pub fn load(path: impl AsRef<Path>, options: &LoadOptions) -> Result<LoadedPairs, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    load_bytes(path, &bytes, options)
}

/// [`load`] on bytes already in memory; `path` names them in problems.
pub fn load_bytes(
    path: impl AsRef<Path>,
    bytes: &[u8],
    options: &LoadOptions,
) -> Result<LoadedPairs, DataError> {
    let path = path.as_ref();
    if !(options.temperature.is_finite() && options.temperature > 0.0) {
        return Err(DataError::Setting {
            name: "temperature",
            reason: format!("must be positive and finite, got {}", options.temperature),
        });
    }
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    let (layout, records) = if first == Some(&b'[') {
        (Layout::JsonArray, json_array_records(bytes))
    } else {
        (Layout::Jsonl, jsonl_records(bytes))
    };
    let mut loaded = LoadedPairs {
        path: path.to_owned(),
        layout,
        format: options.format,
        records: 0,
        pairs: Vec::new(),
        invalid_records: 0,
        problems: Vec::new(),
        reoriented: 0,
    };
    if loaded.format.is_none() {
        loaded.format = detect(path, &records)?;
    }
    let settings = ConvertSettings {
        temperature: options.temperature,
    };
    for record in records {
        loaded.add(record, settings);
    }
    if loaded.records == 0 && loaded.problems.is_empty() {
        return Err(DataError::NoRecords {
            path: path.to_owned(),
        });
    }
    if options.policy == ValidationPolicy::Strict && !loaded.problems.is_empty() {
        return Err(DataError::Invalid {
            path: path.to_owned(),
            problems: loaded.problems,
        });
    }
    Ok(loaded)
}

/// One record as read: its place, and its JSON value or the (field, problem) that prevents reading it.
/// A file-level failure (a JSON array that does not parse) is one such record with a line location.
struct RawRecord {
    location: Location,
    value: Result<Value, ProblemKind>,
}

impl LoadedPairs {
    fn add(&mut self, record: RawRecord, settings: ConvertSettings) {
        let location = record.location;
        // A JSON array that does not parse is one file-level problem, not a record.
        let file_level = self.layout == Layout::JsonArray && matches!(location, Location::Line(_));
        if !file_level {
            self.records += 1;
        }
        let problems = match record.value {
            Err(kind) => vec![("record".to_owned(), kind)],
            Ok(Value::Object(object)) => {
                let format = self
                    .format
                    .expect("the format is known once a record is an object");
                match formats::convert(format, &object, settings) {
                    Ok(raw) => {
                        self.push_oriented(raw, location);
                        return;
                    }
                    Err(problems) => problems,
                }
            }
            Ok(other) => vec![(
                "record".to_owned(),
                ProblemKind::WrongType {
                    expected: "a JSON object",
                    found: json_type_name(&other),
                },
            )],
        };
        if !file_level {
            self.invalid_records += 1;
        }
        self.problems
            .extend(problems.into_iter().map(|(field, kind)| Problem {
                path: self.path.clone(),
                location,
                field,
                kind,
            }));
    }

    /// Keeps a valid record, swapping its responses when p̂ < 0.5.
    fn push_oriented(&mut self, raw: formats::RawPair, location: Location) {
        let (soft_label, swapped) = labels::reorient(raw.label);
        let (chosen, rejected) = if swapped {
            (raw.rejected, raw.chosen)
        } else {
            (raw.chosen, raw.rejected)
        };
        self.reoriented += usize::from(swapped);
        self.pairs.push(PreferencePair {
            prompt: raw.prompt,
            chosen,
            rejected,
            soft_label,
            source_line: location.number(),
        });
    }
}

/// The format of the first record that is a JSON object; `None` when there is none.
fn detect(path: &Path, records: &[RawRecord]) -> Result<Option<Format>, DataError> {
    let Some((location, object)) = records.iter().find_map(|record| match &record.value {
        Ok(Value::Object(object)) => Some((record.location, object)),
        _ => None,
    }) else {
        return Ok(None);
    };
    match Format::detect(object) {
        Some(format) => Ok(Some(format)),
        None => Err(DataError::UnknownFormat {
            path: path.to_owned(),
            location,
            keys: object.keys().cloned().collect::<Vec<_>>().join(", "),
        }),
    }
}

/// JSONL: one record per non-blank line, numbered from 1.
fn jsonl_records(bytes: &[u8]) -> Vec<RawRecord> {
    let mut records = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let location = Location::Line(index + 1);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = match std::str::from_utf8(line) {
            Err(error) => Err(ProblemKind::InvalidUtf8 {
                byte: error.valid_up_to(),
            }),
            Ok(text) => parse_json(text).map_err(|(_, kind)| kind),
        };
        records.push(RawRecord { location, value });
    }
    records
}

/// A JSON array: one record per element, numbered from 1. When the text is not valid UTF-8 or not
/// valid JSON, a single problem at the line where reading stopped.
fn json_array_records(bytes: &[u8]) -> Vec<RawRecord> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(error) => {
            let at = error.valid_up_to();
            let line_start = bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
            return vec![RawRecord {
                location: Location::Line(line),
                value: Err(ProblemKind::InvalidUtf8 {
                    byte: at - line_start,
                }),
            }];
        }
    };
    match parse_json(text) {
        Ok(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(index, value)| RawRecord {
                location: Location::Record(index + 1),
                value: Ok(value),
            })
            .collect(),
        Ok(other) => vec![RawRecord {
            location: Location::Line(1),
            value: Err(ProblemKind::WrongType {
                expected: "an array of records",
                found: json_type_name(&other),
            }),
        }],
        Err((line, kind)) => vec![RawRecord {
            location: Location::Line(line),
            value: Err(kind),
        }],
    }
}

/// Parses JSON, accepting Python's bare `NaN`/`Infinity` as marker strings (see `non_finite`).
/// On failure, the line (within `text`) and the problem.
fn parse_json(text: &str) -> Result<Value, (usize, ProblemKind)> {
    serde_json::from_str(text).or_else(|error| {
        non_finite::quote_tokens(text)
            .and_then(|quoted: String| serde_json::from_str(&quoted).ok())
            .ok_or((error.line(), malformed(&error)))
    })
}

/// serde_json's message with its position reduced to the column (the line is already in the
/// problem's location).
fn malformed(error: &serde_json::Error) -> ProblemKind {
    let message = error.to_string();
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |at| &message[..at]);
    ProblemKind::MalformedJson(format!("{message} (column {})", error.column()))
}
