//! Sequence log-probabilities (masking and the shift convention), soft-label handling and the
//! metrics.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, DType, Device, Int, Tensor, TensorData};
use proptest::prelude::*;
use softalign_pref::{
    PrefError, PrefLoss, PreferenceMetrics, StepOutputs, binarize, orient_pair,
    preference_accuracy, sequence_logps, validate_soft_label,
};

const VOCAB: usize = 5;

fn logits_from(values: &[f64], batch: usize, seq: usize, device: &Device) -> Tensor<3> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [batch, seq, VOCAB]),
        (device, DType::F64),
    )
}

/// Deterministic, distinct logits.
fn logit_values(batch: usize, seq: usize) -> Vec<f64> {
    (0..batch * seq * VOCAB)
        .map(|i| ((i * 7919) % 23) as f64 / 5.0 - 2.0)
        .collect()
}

#[test]
fn logps_sum_response_tokens_predicted_from_the_previous_position() {
    let device = Device::default();
    let (batch, seq) = (2, 5);
    let values = logit_values(batch, seq);
    let tokens = [[1i64, 4, 2, 0, 3], [2, 2, 1, 4, 0]];
    // Row 0: prompt of 2 tokens, response of 3. Row 1: prompt 1, response 2, then 2 padding.
    let mask = [
        [false, false, true, true, true],
        [false, true, true, false, false],
    ];
    let logps = sequence_logps(
        logits_from(&values, batch, seq, &device),
        Tensor::<2, Int>::from_data(TensorData::from(tokens), &device),
        Tensor::<2, Bool>::from_data(TensorData::from(mask), &device),
    )
    .into_data()
    .try_into_vec_as::<f64>()
    .unwrap();
    for b in 0..batch {
        let mut want = 0.0;
        for t in 1..seq {
            if mask[b][t] {
                let row = &values[(b * seq + t - 1) * VOCAB..(b * seq + t) * VOCAB];
                let log_norm = row.iter().map(|x| x.exp()).sum::<f64>().ln();
                want += row[tokens[b][t] as usize] - log_norm;
            }
        }
        assert!(
            (logps[b] - want).abs() < 1e-12,
            "row {b}: {} vs {want}",
            logps[b]
        );
    }
}

#[test]
fn masked_positions_neither_contribute_nor_receive_gradient() {
    let device = Device::default().autodiff();
    let (batch, seq) = (1, 6);
    let tokens = Tensor::<2, Int>::from_data(TensorData::from([[3i64, 1, 0, 2, 4, 4]]), &device);
    // Prompt is tokens 0..2, response 2..4, padding 4..6.
    let mask = || {
        Tensor::<2, Bool>::from_data(
            TensorData::from([[false, false, true, true, false, false]]),
            &device,
        )
    };
    let values = logit_values(batch, seq);
    let logits = logits_from(&values, batch, seq, &device).require_grad();
    let logp = sequence_logps(logits.clone(), tokens.clone(), mask());
    let grads = logp.clone().sum().backward();
    let grad = logits
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec_as::<f64>()
        .unwrap();
    // Positions 1 and 2 predict the response tokens 2 and 3; every other position is inert.
    for t in 0..seq {
        let row_norm: f64 = grad[t * VOCAB..(t + 1) * VOCAB]
            .iter()
            .map(|g| g.abs())
            .sum();
        assert_eq!(row_norm > 0.0, t == 1 || t == 2, "position {t}: {row_norm}");
    }
    // Scrambling the inert logits leaves the value unchanged.
    let mut scrambled = values.clone();
    for t in [0, 3, 4, 5] {
        for v in &mut scrambled[t * VOCAB..(t + 1) * VOCAB] {
            *v = -*v * 3.0 + 1.0;
        }
    }
    let again = sequence_logps(logits_from(&scrambled, batch, seq, &device), tokens, mask());
    assert_eq!(logp.into_scalar::<f64>(), again.into_scalar::<f64>());
}

#[test]
fn logps_match_a_direct_log_softmax_on_a_full_response() {
    let device = Device::default();
    let values = logit_values(1, 3);
    let logits = logits_from(&values, 1, 3, &device);
    let tokens = Tensor::<2, Int>::from_data(TensorData::from([[0i64, 1, 2]]), &device);
    let mask = Tensor::<2, Bool>::from_data(TensorData::from([[true, true, true]]), &device);
    let got = sequence_logps(logits.clone(), tokens, mask).into_scalar::<f64>();
    let table = log_softmax(logits, 2)
        .into_data()
        .try_into_vec_as::<f64>()
        .unwrap();
    // The first token has no prediction even when marked.
    let want = table[1] + table[VOCAB + 2];
    assert!((got - want).abs() < 1e-12);
}

#[test]
fn soft_labels_outside_the_unit_interval_are_errors() {
    for bad in [-0.1, 1.0 + 1e-12, f64::NAN, f64::INFINITY] {
        assert!(
            matches!(validate_soft_label(bad), Err(PrefError::SoftLabel { .. })),
            "{bad}"
        );
        assert!(orient_pair(0, 1, bad).is_err());
    }
    for good in [0.0, 0.5, 1.0] {
        assert_eq!(validate_soft_label(good), Ok(good));
    }
    assert_eq!(
        PrefError::SoftLabel { value: 1.5 }.to_string(),
        "soft label 1.5 is not a probability in [0, 1]"
    );
}

proptest! {
    #[test]
    fn orienting_makes_the_first_response_preferred_and_keeps_the_loss(
        p in 0.0f64..=1.0, delta in -100f64..100.0,
    ) {
        let pair = orient_pair(delta, -delta, p).unwrap();
        prop_assert!(pair.soft_label >= 0.5);
        prop_assert_eq!(pair.swapped, p < 0.5);
        prop_assert_eq!(binarize(pair.soft_label), 1.0);
        prop_assert_eq!(binarize(p), if p >= 0.5 { 1.0 } else { 0.0 });
        // The pair's margin is δ in input order and −δ after a swap; soft-label losses agree.
        for loss in [PrefLoss::cdpo(), PrefLoss::gdpo()] {
            let before = loss.value(delta, p);
            let after = loss.value(pair.chosen, pair.soft_label);
            prop_assert!((before - after).abs() <= 1e-12 * before.abs().max(1.0));
        }
    }
}

#[test]
fn metrics_use_trl_names_and_reject_ragged_inputs() {
    let outputs = StepOutputs {
        policy_chosen_logps: &[-10.0, -20.0, -5.0],
        policy_rejected_logps: &[-12.0, -18.0, -9.0],
        reference_chosen_logps: &[-11.0, -19.0, -6.0],
        reference_rejected_logps: &[-11.0, -19.0, -6.0],
        soft_labels: &[0.9, 0.7, 0.5],
    };
    let metrics = PreferenceMetrics::compute(&outputs, 0.5).unwrap();
    let named = metrics.named();
    let get = |name: &str| named.iter().find(|(n, _)| *n == name).unwrap().1;
    assert!((get("rewards/chosen") - 0.5 * (1.0 - 1.0 + 1.0) / 3.0).abs() < 1e-12);
    assert!((get("rewards/rejected") - 0.5 * (-1.0 + 1.0 - 3.0) / 3.0).abs() < 1e-12);
    assert!((get("rewards/margins") - 0.5 * (2.0 - 2.0 + 4.0) / 3.0).abs() < 1e-12);
    assert!((get("rewards/accuracies") - 2.0 / 3.0).abs() < 1e-12);
    assert!((get("logps/chosen") + 35.0 / 3.0).abs() < 1e-12);
    assert!((get("logps/rejected") + 13.0).abs() < 1e-12);
    assert!((get("label/mean_p") - 0.7).abs() < 1e-12);
    // Margins 2, −2, 4 against labels 0.9, 0.7 and a tie: one of the two counted pairs is right.
    assert_eq!(
        preference_accuracy(&outputs.margins(), outputs.soft_labels, 0.5),
        Some(0.5)
    );

    let ragged = StepOutputs {
        soft_labels: &[0.9, 0.7],
        ..outputs
    };
    assert_eq!(
        PreferenceMetrics::compute(&ragged, 0.5),
        Err(PrefError::LengthMismatch {
            field: "soft_labels",
            expected: 3,
            found: 2
        })
    );
    let empty = StepOutputs {
        policy_chosen_logps: &[],
        policy_rejected_logps: &[],
        reference_chosen_logps: &[],
        reference_rejected_logps: &[],
        soft_labels: &[],
    };
    assert_eq!(
        PreferenceMetrics::compute(&empty, 0.5),
        Err(PrefError::Empty)
    );
    assert_eq!(preference_accuracy(&[1.0], &[0.5], 0.1), None);
}
