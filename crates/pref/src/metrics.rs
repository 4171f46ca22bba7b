//! Training metrics of a preference step, named as TRL names them, computed from the step's
//! outputs (sequence log-probabilities and labels) rather than inside the loss.

use crate::PrefError;
use crate::logistic::sigmoid;

/// What one preference step produced, per pair (all slices the same length).
#[derive(Debug, Clone, Copy)]
pub struct StepOutputs<'a> {
    /// `log πθ(y₁)` per pair.
    pub policy_chosen_logps: &'a [f64],
    /// `log πθ(y₂)` per pair.
    pub policy_rejected_logps: &'a [f64],
    /// `log π_ref(y₁)` per pair.
    pub reference_chosen_logps: &'a [f64],
    /// `log π_ref(y₂)` per pair.
    pub reference_rejected_logps: &'a [f64],
    /// `p̂ = P(y₁ ≻ y₂)` per pair.
    pub soft_labels: &'a [f64],
}

impl StepOutputs<'_> {
    /// The number of pairs, after checking that every slice has it and that it is not zero.
    pub fn pair_count(&self) -> Result<usize, PrefError> {
        let n = self.policy_chosen_logps.len();
        let fields = [
            ("policy_rejected_logps", self.policy_rejected_logps.len()),
            ("reference_chosen_logps", self.reference_chosen_logps.len()),
            (
                "reference_rejected_logps",
                self.reference_rejected_logps.len(),
            ),
            ("soft_labels", self.soft_labels.len()),
        ];
        for (field, found) in fields {
            if found != n {
                return Err(PrefError::LengthMismatch {
                    field,
                    expected: n,
                    found,
                });
            }
        }
        if n == 0 {
            return Err(PrefError::Empty);
        }
        Ok(n)
    }

    /// The margins `δ` per pair.
    pub fn margins(&self) -> Vec<f64> {
        (0..self.policy_chosen_logps.len())
            .map(|i| {
                (self.policy_chosen_logps[i] - self.reference_chosen_logps[i])
                    - (self.policy_rejected_logps[i] - self.reference_rejected_logps[i])
            })
            .collect()
    }
}

/// Batch means of TRL's DPO metrics, with implicit reward `β (log πθ − log π_ref)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreferenceMetrics {
    /// `rewards/chosen`: mean implicit reward of y₁.
    pub rewards_chosen: f64,
    /// `rewards/rejected`: mean implicit reward of y₂.
    pub rewards_rejected: f64,
    /// `rewards/margins`: mean of `reward(y₁) − reward(y₂)`, i.e. of `βδ`.
    pub rewards_margins: f64,
    /// `rewards/accuracies`: fraction of pairs with `reward(y₁) > reward(y₂)`.
    pub rewards_accuracies: f64,
    /// `logps/chosen`: mean `log πθ(y₁)`.
    pub logps_chosen: f64,
    /// `logps/rejected`: mean `log πθ(y₂)`.
    pub logps_rejected: f64,
    /// `label/mean_p`: mean soft label.
    pub label_mean_p: f64,
}

impl PreferenceMetrics {
    /// The metrics of one step with inverse temperature `beta`.
    ///
    /// ```
    /// use softalign_pref::{PreferenceMetrics, StepOutputs};
    /// let outputs = StepOutputs {
    ///     policy_chosen_logps: &[-10.0, -8.0],
    ///     policy_rejected_logps: &[-12.0, -7.0],
    ///     reference_chosen_logps: &[-11.0, -8.0],
    ///     reference_rejected_logps: &[-11.0, -8.0],
    ///     soft_labels: &[0.9, 0.6],
    /// };
    /// let m = PreferenceMetrics::compute(&outputs, 0.1).unwrap();
    /// assert!((m.rewards_margins - 0.05).abs() < 1e-12);
    /// assert_eq!(m.rewards_accuracies, 0.5);
    /// assert_eq!(m.named()[3], ("rewards/accuracies", 0.5));
    /// ```
    pub fn compute(outputs: &StepOutputs<'_>, beta: f64) -> Result<Self, PrefError> {
        let n = outputs.pair_count()?;
        let mean = |values: &mut dyn Iterator<Item = f64>| values.sum::<f64>() / n as f64;
        let chosen: Vec<f64> = (0..n)
            .map(|i| beta * (outputs.policy_chosen_logps[i] - outputs.reference_chosen_logps[i]))
            .collect();
        let rejected: Vec<f64> = (0..n)
            .map(|i| {
                beta * (outputs.policy_rejected_logps[i] - outputs.reference_rejected_logps[i])
            })
            .collect();
        Ok(Self {
            rewards_chosen: mean(&mut chosen.iter().copied()),
            rewards_rejected: mean(&mut rejected.iter().copied()),
            rewards_margins: mean(&mut chosen.iter().zip(&rejected).map(|(c, r)| c - r)),
            rewards_accuracies: mean(
                &mut chosen
                    .iter()
                    .zip(&rejected)
                    .map(|(c, r)| f64::from(u8::from(c > r))),
            ),
            logps_chosen: mean(&mut outputs.policy_chosen_logps.iter().copied()),
            logps_rejected: mean(&mut outputs.policy_rejected_logps.iter().copied()),
            label_mean_p: mean(&mut outputs.soft_labels.iter().copied()),
        })
    }

    /// The metrics under TRL's names, in a fixed order.
    pub fn named(&self) -> [(&'static str, f64); 7] {
        [
            ("rewards/chosen", self.rewards_chosen),
            ("rewards/rejected", self.rewards_rejected),
            ("rewards/margins", self.rewards_margins),
            ("rewards/accuracies", self.rewards_accuracies),
            ("logps/chosen", self.logps_chosen),
            ("logps/rejected", self.logps_rejected),
            ("label/mean_p", self.label_mean_p),
        ]
    }
}

/// Preference-classification accuracy: the fraction of pairs where the model's preference
/// probability `ρθ = σ(βδ)` falls on the same side of one half as the label `p̂`. Pairs labelled
/// exactly one half carry no preference and are left out; `None` when none are left, or when the
/// slices differ in length.
///
/// ```
/// use softalign_pref::preference_accuracy;
/// let accuracy = preference_accuracy(&[2.0, -1.0, 3.0, 0.5], &[0.8, 0.9, 0.3, 0.5], 0.1);
/// assert_eq!(accuracy, Some(1.0 / 3.0));
/// ```
pub fn preference_accuracy(margins: &[f64], soft_labels: &[f64], beta: f64) -> Option<f64> {
    if margins.len() != soft_labels.len() {
        return None;
    }
    let (correct, counted) = margins
        .iter()
        .zip(soft_labels)
        .filter(|&(_, &p)| p != 0.5)
        .fold((0usize, 0usize), |(correct, counted), (&delta, &p)| {
            let model_prefers_first = sigmoid(beta * delta) > 0.5;
            (
                correct + usize::from(model_prefers_first == (p > 0.5)),
                counted + 1,
            )
        });
    (counted > 0).then(|| correct as f64 / counted as f64)
}
