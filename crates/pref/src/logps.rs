//! Sequence log-probabilities of response tokens, and the preference margin built from them.
//!
//! Convention (that of causal language models and TRL): `logits[b, t, :]` is the model's
//! prediction for the token at position `t + 1` of `token_ids[b, :]`. A token contributes to its
//! sequence's log-probability when its own position is marked in `response_mask`; prompt tokens
//! and padding are unmarked. The first token has no prediction and never contributes, and the
//! logits at the last position predict nothing and are ignored.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Int, Tensor};

/// `Σ_t mask[b, t] · log softmax(logits[b, t − 1])[token_ids[b, t]]` for each sequence `b`:
/// the log-probability of the marked (response) tokens given everything before them.
///
/// Shapes: `logits [batch, seq, vocab]`, `token_ids [batch, seq]`, `response_mask [batch, seq]`;
/// the result is `[batch]`. Gradients flow into `logits` from the marked tokens only.
///
/// ```
/// use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
/// use softalign_pref::sequence_logps;
/// let device = Device::default();
/// // Uniform logits over 4 tokens: every predicted token has log-probability −ln 4.
/// let logits = Tensor::<3>::zeros([1, 3, 4], &device);
/// let token_ids = Tensor::<2, Int>::from_data(TensorData::from([[0i64, 2, 3]]), &device);
/// // Token 0 is the prompt, tokens 1 and 2 the response.
/// let mask = Tensor::<2, Bool>::from_data(TensorData::from([[false, true, true]]), &device);
/// let logps = sequence_logps(logits, token_ids, mask).into_data().try_into_vec_as::<f64>().unwrap();
/// assert!((logps[0] + 2.0 * 4f64.ln()).abs() < 1e-6);
/// ```
pub fn sequence_logps(
    logits: Tensor<3>,
    token_ids: Tensor<2, Int>,
    response_mask: Tensor<2, Bool>,
) -> Tensor<1> {
    let [batch, seq, vocab] = logits.dims();
    if seq < 2 {
        return Tensor::zeros([batch], &logits.device());
    }
    let predictions = log_softmax(logits.slice([0..batch, 0..seq - 1, 0..vocab]), 2);
    let targets = token_ids.slice([0..batch, 1..seq]).unsqueeze_dim::<3>(2);
    let token_logps = predictions.gather(2, targets).squeeze_dim::<2>(2);
    response_logps(token_logps, response_mask)
}

/// `Σ_t mask[b, t] · token_logps[b, t − 1]` for each sequence `b`: [`sequence_logps`] from
/// next-token log-probabilities already gathered (`token_logps [batch, seq − 1]`, entry `t − 1`
/// the log-probability of token `t`, as a causal LM's chunked scorer gives them) and the
/// `response_mask [batch, seq]`; the result is `[batch]`.
///
/// ```
/// use burn::tensor::{Bool, Device, Tensor, TensorData};
/// use softalign_pref::response_logps;
/// let device = Device::default();
/// let token_logps = Tensor::<2>::from_data(TensorData::from([[-1.0f32, -2.0, -4.0]]), &device);
/// // Token 0 is the prompt (never scored), token 1 the prompt, tokens 2 and 3 the response.
/// let mask = Tensor::<2, Bool>::from_data(TensorData::from([[false, false, true, true]]), &device);
/// assert_eq!(response_logps(token_logps, mask).into_scalar::<f32>(), -6.0);
/// ```
pub fn response_logps(token_logps: Tensor<2>, response_mask: Tensor<2, Bool>) -> Tensor<1> {
    let [batch, scored] = token_logps.dims();
    let not_response = response_mask.slice([0..batch, 1..scored + 1]).bool_not();
    token_logps
        .mask_fill(not_response, 0.0)
        .sum_dim(1)
        .reshape([batch])
}

/// The margin `δ = [log πθ(y₁) − log π_ref(y₁)] − [log πθ(y₂) − log π_ref(y₂)]` per pair.
///
/// ```
/// use burn::tensor::{Device, Tensor};
/// use softalign_pref::preference_margin;
/// let device = Device::default();
/// let t = |v: f32| Tensor::<1>::from_floats([v], &device);
/// let delta = preference_margin(t(-12.0), t(-20.0), t(-14.0), t(-18.0));
/// assert_eq!(delta.into_scalar::<f32>(), 4.0);
/// ```
pub fn preference_margin(
    policy_chosen_logps: Tensor<1>,
    policy_rejected_logps: Tensor<1>,
    reference_chosen_logps: Tensor<1>,
    reference_rejected_logps: Tensor<1>,
) -> Tensor<1> {
    (policy_chosen_logps - reference_chosen_logps)
        - (policy_rejected_logps - reference_rejected_logps)
}
