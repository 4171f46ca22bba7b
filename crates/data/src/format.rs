//! The on-disk formats and their automatic detection.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::DataError;

/// A preference-data layout. Each record is one JSON object; files are JSONL or a JSON array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{"prompt": str, "chosen": str, "rejected": str, "p_chosen": float?}`; absent label = 1.0.
    Native,
    /// TRL preference: `prompt`, `chosen`, `rejected`, each plain text or a message list
    /// `[{"role", "content"}]`; without `prompt`, what chosen and rejected share is the prompt
    /// (TRL's implicit-prompt form: the shared messages, or for plain texts the shared leading
    /// characters as TRL's `extract_prompt` cuts them). Label 1.0, or `p_chosen` when present.
    Trl,
    /// Anthropic HH-RLHF: `chosen` and `rejected` are whole dialogues `"\n\nHuman: … \n\nAssistant: …"`;
    /// their common prefix up to the last `"\n\nAssistant:"` is the prompt. Label 1.0, or `p_chosen`.
    Hh,
    /// Stanford Human Preferences: `history`, `human_ref_A`, `human_ref_B`, `score_A`, `score_B`,
    /// `labels` (1 = A preferred); p̂ = winner's score / (score_A + score_B).
    Shp,
    /// UltraFeedback binarized: `prompt`, `chosen`/`rejected` message lists (or text),
    /// `score_chosen`, `score_rejected`; p̂ = σ((score_chosen − score_rejected)/τ).
    UltraFeedback,
    /// Rater votes: `prompt`, `chosen`, `rejected` (as TRL), `votes_chosen`, `votes_rejected`;
    /// p̂ = votes_chosen / (votes_chosen + votes_rejected).
    Votes,
    /// ShareGPT style (LLaMA-Factory's `dpo_en_demo.json`): `conversations` `[{"from": "human"|"gpt"|
    /// "system", "value"}]`, `chosen` and `rejected` `{"from": "gpt", "value"}`, optional `system`.
    /// Label 1.0, or `p_chosen`.
    ShareGpt,
}

impl Format {
    /// Every format, in the order `--format` lists them.
    pub const ALL: [Format; 7] = [
        Format::Native,
        Format::Trl,
        Format::Hh,
        Format::Shp,
        Format::UltraFeedback,
        Format::Votes,
        Format::ShareGpt,
    ];

    /// The name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Trl => "trl",
            Format::Hh => "hh",
            Format::Shp => "shp",
            Format::UltraFeedback => "ultrafeedback",
            Format::Votes => "votes",
            Format::ShareGpt => "sharegpt",
        }
    }

    /// Guesses the format from one record's keys (the first record that is a JSON object):
    ///
    /// | keys present | format |
    /// |---|---|
    /// | `conversations` | sharegpt |
    /// | `history` and `human_ref_A` | shp |
    /// | `votes_chosen` or `votes_rejected` | votes |
    /// | `score_chosen` or `score_rejected` | ultrafeedback |
    /// | `prompt`, and `p_chosen` or all of prompt/chosen/rejected plain strings | native |
    /// | `prompt` (message lists) | trl |
    /// | `chosen`, `rejected` as `"\n\nHuman: … \n\nAssistant: …"` dialogues, no `prompt` | hh |
    /// | `chosen`, `rejected` as other strings or message lists, no `prompt` | trl (implicit prompt) |
    ///
    /// TRL's plain-text form is the native form without `p_chosen`, so it is reported as native.
    ///
    /// ```
    /// use softalign_data::Format;
    /// let record = serde_json::json!({"prompt": "2+2?", "chosen": "4", "rejected": "5"});
    /// assert_eq!(Format::detect(record.as_object().unwrap()), Some(Format::Native));
    /// let record = serde_json::json!({"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "…"});
    /// assert_eq!(Format::detect(record.as_object().unwrap()), Some(Format::Hh));
    /// ```
    pub fn detect(record: &Map<String, Value>) -> Option<Format> {
        let has = |key: &str| record.contains_key(key);
        let is_string = |key: &str| record.get(key).is_some_and(Value::is_string);
        if has("conversations") {
            Some(Format::ShareGpt)
        } else if has("history") && has("human_ref_A") {
            Some(Format::Shp)
        } else if has("votes_chosen") || has("votes_rejected") {
            Some(Format::Votes)
        } else if has("score_chosen") || has("score_rejected") {
            Some(Format::UltraFeedback)
        } else if has("prompt") {
            if has("p_chosen")
                || (is_string("prompt") && is_string("chosen") && is_string("rejected"))
            {
                Some(Format::Native)
            } else {
                Some(Format::Trl)
            }
        } else if has("chosen") && has("rejected") {
            if record
                .get("chosen")
                .and_then(Value::as_str)
                .is_some_and(crate::formats::is_hh_dialogue)
            {
                Some(Format::Hh)
            } else {
                Some(Format::Trl)
            }
        } else {
            None
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = DataError;

    fn from_str(name: &str) -> Result<Format, DataError> {
        Format::ALL
            .into_iter()
            .find(|format| format.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| DataError::Setting {
                name: "format",
                reason: format!(
                    "unknown format {name:?}; expected one of {}",
                    Format::ALL.map(Format::name).join(", ")
                ),
            })
    }
}
