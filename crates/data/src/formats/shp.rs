//! Stanford Human Preferences (SHP): `history` (the post), `human_ref_A`, `human_ref_B` (two
//! comments), `score_A`, `score_B` (their net upvotes) and `labels` (1 when A is preferred, 0 when B).
//!
//! The winner named by `labels` is chosen, and p̂ = winner's score / (score_A + score_B); should
//! that fall below 0.5 the pair is re-oriented like any other.

use serde_json::Value;

use crate::formats::Parts;
use crate::labels;
use crate::pair::Prompt;
use crate::problem::ProblemKind;
use crate::record::Fields;

pub(super) fn convert(fields: &mut Fields<'_>) -> Parts {
    let prompt = fields.string("history").map(|h| Prompt::Text(h.to_owned()));
    let a = fields.string("human_ref_A").map(str::to_owned);
    let b = fields.string("human_ref_B").map(str::to_owned);
    let score_a = fields.number("score_A");
    let score_b = fields.number("score_B");
    let a_wins = winner(fields);
    let mut label = labels::BINARY;
    if let (Some(score_a), Some(score_b), Some(a_wins)) = (score_a, score_b, a_wins) {
        let (first, second) = if a_wins {
            (score_a, score_b)
        } else {
            (score_b, score_a)
        };
        match labels::from_score_ratio(first, second) {
            Ok(ratio) => label = ratio,
            Err(kind) => fields.report(if a_wins { "score_A" } else { "score_B" }, kind),
        }
    }
    let (chosen, rejected) = match a_wins {
        Some(false) => (b, a),
        _ => (a, b),
    };
    Parts {
        prompt,
        chosen,
        rejected,
        label,
    }
}

/// `labels`: 1 (or `true`) when A is preferred, 0 (or `false`) when B is.
fn winner(fields: &mut Fields<'_>) -> Option<bool> {
    let value = fields.required("labels")?;
    match value {
        Value::Bool(a_wins) => Some(*a_wins),
        Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Value::Number(n) => {
            fields.report(
                "labels",
                ProblemKind::Invalid(format!("expected 0 or 1, found {n}")),
            );
            None
        }
        other => {
            fields.report(
                "labels",
                ProblemKind::WrongType {
                    expected: "0 or 1",
                    found: crate::problem::json_type_name(other),
                },
            );
            None
        }
    }
}
