//! Soft labels: validation, orientation of a pair so that the first response is preferred, and
//! binarization for the losses that take hard labels.
//!
//! A soft label `p̂ = P(y₁ ≻ y₂ | x)` is a probability. The losses assume `p̂ ≥ 0.5` (y₁ the
//! winner), so a pair labelled below one half is re-oriented by swapping its responses, which
//! maps `(y₁, y₂, p̂)` to `(y₂, y₁, 1 − p̂)` and describes the same preference.

use crate::PrefError;

/// Check that `soft_label` is a probability: finite and in [0, 1] (NaN is rejected).
///
/// ```
/// use softalign_pref::validate_soft_label;
/// assert_eq!(validate_soft_label(0.7).unwrap(), 0.7);
/// assert!(validate_soft_label(1.2).is_err());
/// assert!(validate_soft_label(f64::NAN).is_err());
/// ```
pub fn validate_soft_label(soft_label: f64) -> Result<f64, PrefError> {
    if (0.0..=1.0).contains(&soft_label) {
        Ok(soft_label)
    } else {
        Err(PrefError::SoftLabel { value: soft_label })
    }
}

/// A preference pair whose first response is preferred: `soft_label ≥ 0.5`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrientedPair<T> {
    /// The preferred response, y₁.
    pub chosen: T,
    /// The other response, y₂.
    pub rejected: T,
    /// `P(chosen ≻ rejected)`, in [0.5, 1].
    pub soft_label: f64,
    /// Whether the input order was swapped to make `chosen` the preferred response.
    pub swapped: bool,
}

/// Validate `soft_label = P(first ≻ second)` and orient the pair so that the preferred response
/// comes first: below one half, the responses are swapped and the label becomes `1 − p̂`.
/// A label of exactly one half keeps the input order.
///
/// ```
/// use softalign_pref::orient_pair;
/// let pair = orient_pair("a", "b", 0.2).unwrap();
/// assert_eq!((pair.chosen, pair.rejected, pair.swapped), ("b", "a", true));
/// assert!((pair.soft_label - 0.8).abs() < 1e-15);
/// assert!(orient_pair("a", "b", -0.1).is_err());
/// ```
pub fn orient_pair<T>(first: T, second: T, soft_label: f64) -> Result<OrientedPair<T>, PrefError> {
    let soft_label = validate_soft_label(soft_label)?;
    Ok(if soft_label < 0.5 {
        OrientedPair {
            chosen: second,
            rejected: first,
            soft_label: 1.0 - soft_label,
            swapped: true,
        }
    } else {
        OrientedPair {
            chosen: first,
            rejected: second,
            soft_label,
            swapped: false,
        }
    })
}

/// The hard label of a soft one, thresholded at one half: `1` when `p̂ ≥ 0.5`, else `0`.
/// A tie goes to the first response, matching [`orient_pair`], which keeps the order of a tie.
///
/// ```
/// use softalign_pref::binarize;
/// assert_eq!(binarize(0.51), 1.0);
/// assert_eq!(binarize(0.5), 1.0);
/// assert_eq!(binarize(0.3), 0.0);
/// ```
pub fn binarize(soft_label: f64) -> f64 {
    if soft_label >= 0.5 { 1.0 } else { 0.0 }
}
