//! Soft labels p̂ = P(y₁ ≻ y₂ | x) derived from what datasets record (SPEC §3).
//!
//! Each function returns the label for the response listed first; a result below 0.5 means the
//! second one is preferred, and [`reorient`] turns the pair around. Inputs a label cannot be
//! derived from come back as the [`ProblemKind`] a validation report shows.

use crate::problem::ProblemKind;

/// The label when the first response is preferred outright: a binary label.
pub const BINARY: f64 = 1.0;

/// A label given in the data: must be finite and within [0, 1].
///
/// ```
/// use softalign_data::labels::given;
/// assert_eq!(given(0.7), Ok(0.7));
/// assert!(given(-0.2).is_err() && given(f64::NAN).is_err());
/// ```
pub fn given(label: f64) -> Result<f64, ProblemKind> {
    if !label.is_finite() {
        Err(ProblemKind::LabelNotFinite)
    } else if !(0.0..=1.0).contains(&label) {
        Err(ProblemKind::LabelOutOfRange(label))
    } else {
        Ok(label)
    }
}

/// Fraction of rater votes for the first response: p̂ = v₁ / (v₁ + v₂).
///
/// ```
/// use softalign_data::labels::from_votes;
/// assert_eq!(from_votes(3.0, 1.0), Ok(0.75));
/// assert!(from_votes(0.0, 0.0).is_err());
/// ```
pub fn from_votes(votes_first: f64, votes_second: f64) -> Result<f64, ProblemKind> {
    ratio(votes_first, votes_second, "vote counts")
}

/// SHP style: the first response's share of the two (non-negative) scores, p̂ = s₁ / (s₁ + s₂).
///
/// ```
/// use softalign_data::labels::from_score_ratio;
/// assert_eq!(from_score_ratio(30.0, 10.0), Ok(0.75));
/// ```
pub fn from_score_ratio(score_first: f64, score_second: f64) -> Result<f64, ProblemKind> {
    ratio(score_first, score_second, "scores")
}

/// UltraFeedback style: Bradley–Terry on two scores with temperature τ > 0,
/// p̂ = σ((s₁ − s₂)/τ). Equal scores give 0.5; a larger τ gives less confident labels.
///
/// ```
/// use softalign_data::labels::from_scores;
/// assert_eq!(from_scores(7.0, 7.0, 1.0), Ok(0.5));
/// let p = from_scores(8.0, 6.0, 2.0).unwrap();
/// assert!((p - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-15);
/// ```
pub fn from_scores(
    score_first: f64,
    score_second: f64,
    temperature: f64,
) -> Result<f64, ProblemKind> {
    if !score_first.is_finite() || !score_second.is_finite() {
        return Err(ProblemKind::Invalid("scores must be finite".into()));
    }
    given(sigmoid((score_first - score_second) / temperature))
}

/// The binarized label used by the DPO/IPO/ROPO baselines: 1 when p̂ ≥ 0.5, else 0 (SPEC §3).
///
/// ```
/// use softalign_data::labels::binarize;
/// assert_eq!((binarize(0.5), binarize(0.93), binarize(0.2)), (1.0, 1.0, 0.0));
/// ```
pub fn binarize(label: f64) -> f64 {
    if label >= 0.5 { 1.0 } else { 0.0 }
}

/// Orients a label so that the first response is the preferred one: a label below 0.5 becomes
/// 1 − p̂ and the second return value says that the responses must be swapped. 0.5 stays as is.
///
/// ```
/// use softalign_data::labels::reorient;
/// assert_eq!(reorient(0.25), (0.75, true));
/// assert_eq!(reorient(0.5), (0.5, false));
/// ```
pub fn reorient(label: f64) -> (f64, bool) {
    if label < 0.5 {
        (1.0 - label, true)
    } else {
        (label, false)
    }
}

/// Whether a label is soft (strictly between 0 and 1 after orientation: p̂ < 1) rather than binary.
pub fn is_soft(label: f64) -> bool {
    label < BINARY
}

/// The logistic function, computed without overflow for large |x|.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn ratio(first: f64, second: f64, what: &str) -> Result<f64, ProblemKind> {
    if !first.is_finite() || !second.is_finite() {
        return Err(ProblemKind::Invalid(format!("{what} must be finite")));
    }
    if first < 0.0 || second < 0.0 {
        return Err(ProblemKind::Invalid(format!("{what} must be non-negative")));
    }
    // Halving both is exact and keeps the sum finite when each is finite (two values near
    // f64::MAX would otherwise sum to infinity, and x / ∞ = 0 would flip a tie into a label).
    let (first, second) = if (first + second).is_finite() {
        (first, second)
    } else {
        (first / 2.0, second / 2.0)
    };
    let total = first + second;
    if total <= 0.0 {
        return Err(ProblemKind::Invalid(format!(
            "{what} sum to zero, no preference"
        )));
    }
    given(first / total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn huge_counts_keep_their_ratio_instead_of_overflowing() {
        assert_eq!(from_votes(1e308, 1e308), Ok(0.5));
        assert_eq!(from_votes(f64::MAX, f64::MAX), Ok(0.5));
        assert_eq!(from_score_ratio(1.5e308, 0.5e308), Ok(0.75));
        assert_eq!(from_scores(1e308, -1e308, 1.0), Ok(1.0));
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(from_scores(1e6, 0.0, 1.0), Ok(1.0));
        assert_eq!(from_scores(0.0, 1e6, 1.0), Ok(0.0));
        assert!(from_scores(f64::INFINITY, 0.0, 1.0).is_err());
    }

    #[test]
    fn ratios_reject_negative_and_empty_counts() {
        assert!(matches!(
            from_votes(-1.0, 3.0),
            Err(ProblemKind::Invalid(_))
        ));
        assert!(matches!(
            from_score_ratio(0.0, 0.0),
            Err(ProblemKind::Invalid(_))
        ));
        assert_eq!(from_votes(0.0, 4.0), Ok(0.0));
    }

    proptest! {
        #[test]
        fn swapping_scores_complements_the_label(a in -50.0f64..50.0, b in -50.0f64..50.0, t in 0.1f64..10.0) {
            let p = from_scores(a, b, t).unwrap();
            let q = from_scores(b, a, t).unwrap();
            prop_assert!((p + q - 1.0).abs() < 1e-12);
        }

        #[test]
        fn reoriented_labels_lie_in_upper_half(p in 0.0f64..=1.0) {
            let (oriented, swapped) = reorient(p);
            prop_assert!((0.5..=1.0).contains(&oriented));
            prop_assert_eq!(swapped, p < 0.5);
            prop_assert_eq!(binarize(p), if swapped { 0.0 } else { 1.0 });
        }

        #[test]
        fn vote_fraction_matches_complement(a in 0u32..1000, b in 0u32..1000) {
            prop_assume!(a + b > 0);
            let p = from_votes(a.into(), b.into()).unwrap();
            let q = from_votes(b.into(), a.into()).unwrap();
            prop_assert!((p + q - 1.0).abs() < 1e-12);
        }
    }
}
