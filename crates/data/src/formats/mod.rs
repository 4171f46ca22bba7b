//! Conversion of one JSON record, in a given format, to an (unoriented) preference pair.

mod hh;
mod sharegpt;
mod shp;
mod text_pair;

use serde_json::{Map, Value};

use crate::format::Format;
use crate::pair::Prompt;
use crate::problem::ProblemKind;
use crate::record::Fields;

/// Whether `text` reads as an Anthropic HH dialogue (it holds a `"\n\nAssistant:"` turn, or
/// starts with `Human:`): auto detection's test between HH and TRL's implicit-prompt plain texts.
pub(crate) fn is_hh_dialogue(text: &str) -> bool {
    hh::is_dialogue(text)
}

/// Settings the conversions need.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvertSettings {
    /// τ for UltraFeedback's p̂ = σ((s_c − s_r)/τ).
    pub(crate) temperature: f64,
}

/// A pair before orientation: `label` is P(chosen ≻ rejected) and may be below 0.5.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawPair {
    pub(crate) prompt: Prompt,
    pub(crate) chosen: String,
    pub(crate) rejected: String,
    pub(crate) label: f64,
}

/// What a format extracted from a record: each part that could be read, and the label (P(chosen ≻
/// rejected), any value in [0, 1]; a label problem is reported and leaves a placeholder here).
#[derive(Debug, Clone, Default)]
pub(crate) struct Parts {
    pub(crate) prompt: Option<Prompt>,
    pub(crate) chosen: Option<String>,
    pub(crate) rejected: Option<String>,
    pub(crate) label: f64,
}

/// Converts one record, or returns every (field, problem) found in it.
pub(crate) fn convert(
    format: Format,
    object: &Map<String, Value>,
    settings: ConvertSettings,
) -> Result<RawPair, Vec<(String, ProblemKind)>> {
    let mut fields = Fields::new(object);
    let parts = match format {
        Format::Native => text_pair::native(&mut fields),
        Format::Trl => text_pair::trl(&mut fields),
        Format::Votes => text_pair::votes(&mut fields),
        Format::UltraFeedback => text_pair::ultrafeedback(&mut fields, settings.temperature),
        Format::Hh => hh::convert(&mut fields),
        Format::Shp => shp::convert(&mut fields),
        Format::ShareGpt => sharegpt::convert(&mut fields),
    };
    check_responses(&parts, &mut fields);
    match (parts.prompt, parts.chosen, parts.rejected) {
        (Some(prompt), Some(chosen), Some(rejected)) if fields.problems.is_empty() => Ok(RawPair {
            prompt,
            chosen,
            rejected,
            label: parts.label,
        }),
        _ => {
            debug_assert!(
                !fields.problems.is_empty(),
                "a part is missing without a problem"
            );
            Err(fields.problems)
        }
    }
}

/// The checks every format shares: non-empty responses that differ.
fn check_responses(parts: &Parts, fields: &mut Fields<'_>) {
    let empty =
        |response: &Option<String>| response.as_deref().is_some_and(|r| r.trim().is_empty());
    if empty(&parts.chosen) {
        fields.report("chosen", ProblemKind::EmptyResponse);
    }
    if empty(&parts.rejected) {
        fields.report("rejected", ProblemKind::EmptyResponse);
    }
    if let (Some(chosen), Some(rejected)) = (&parts.chosen, &parts.rejected)
        && !chosen.trim().is_empty()
        && chosen == rejected
    {
        fields.report("rejected", ProblemKind::IdenticalResponses);
    }
}
