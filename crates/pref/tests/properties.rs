//! The properties SPEC §2 pins, as property tests over margins, labels and β, plus agreement of
//! the three forms of every loss (tensor value, scalar value, analytic derivative vs autodiff).

use burn::tensor::{DType, Device, Tensor, TensorData};
use proptest::prelude::*;
use softalign_pref::{PrefLoss, sigmoid};

/// Per-example values and autodiff dL/dδ of `loss` at the given margins and labels, in float64.
fn values_and_slopes(loss: PrefLoss, deltas: &[f64], labels: &[f64]) -> (Vec<f64>, Vec<f64>) {
    values_and_slopes_in(loss, deltas, labels, DType::F64)
}

fn values_and_slopes_in(
    loss: PrefLoss,
    deltas: &[f64],
    labels: &[f64],
    dtype: DType,
) -> (Vec<f64>, Vec<f64>) {
    let device = Device::default().autodiff();
    let tensor = |v: &[f64]| {
        Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), (&device, dtype))
    };
    let margin = tensor(deltas).require_grad();
    let values = loss.per_example(margin.clone(), tensor(labels));
    // The sum's gradient is the per-example derivative, each example depending on its own δ.
    let grads = values.clone().sum().backward();
    let slopes = margin
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_into_vec_as::<f64>()
        .unwrap();
    (values.into_data().try_into_vec_as::<f64>().unwrap(), slopes)
}

fn close(got: f64, want: f64, tolerance: f64) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1.0)
}

fn any_loss() -> impl Strategy<Value = PrefLoss> {
    (0usize..8, 0.01f64..3.0).prop_map(|(i, beta)| PrefLoss::all_defaults()[i].with_beta(beta))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn gdpo_at_a_tie_is_ln2_with_zero_gradient(delta in -1e3f64..1e3, beta in 0.01f64..3.0) {
        let gdpo = PrefLoss::GDpo { beta };
        let (values, slopes) = values_and_slopes(gdpo, &[delta], &[0.5]);
        prop_assert!(close(values[0], std::f64::consts::LN_2, 1e-15));
        prop_assert_eq!(slopes[0], 0.0);
        prop_assert_eq!(gdpo.value(delta, 0.5), std::f64::consts::LN_2);
        prop_assert_eq!(gdpo.d_value_d_delta(delta, 0.5), 0.0);
    }

    #[test]
    fn cdpo_and_gdpo_equal_dpo_on_binary_labels(delta in -1e3f64..1e3, beta in 0.01f64..3.0) {
        let (dpo_values, dpo_slopes) = values_and_slopes(PrefLoss::Dpo { beta }, &[delta], &[1.0]);
        for loss in [PrefLoss::CDpo { beta }, PrefLoss::GDpo { beta }] {
            let (values, slopes) = values_and_slopes(loss, &[delta], &[1.0]);
            prop_assert!(close(values[0], dpo_values[0], 1e-14), "{loss}: {} vs {}", values[0], dpo_values[0]);
            prop_assert!(close(slopes[0], dpo_slopes[0], 1e-14), "{loss}: {} vs {}", slopes[0], dpo_slopes[0]);
        }
    }

    #[test]
    fn cdpo_and_gdpo_are_unchanged_by_swapping_the_pair(
        delta in -1e3f64..1e3, p in 0.0f64..=1.0, beta in 0.01f64..3.0,
    ) {
        // (y₁, y₂, p̂) → (y₂, y₁, 1 − p̂) maps δ to −δ.
        for loss in [PrefLoss::CDpo { beta }, PrefLoss::GDpo { beta }] {
            let (values, slopes) = values_and_slopes(loss, &[delta, -delta], &[p, 1.0 - p]);
            prop_assert!(close(values[0], values[1], 1e-12), "{loss}: {values:?}");
            // dL/dδ flips sign with δ, so the gradient on the log-probabilities is the same.
            prop_assert!(close(slopes[0], -slopes[1], 1e-12), "{loss}: {slopes:?}");
        }
    }

    #[test]
    fn all_losses_are_finite_at_extreme_margins(loss in any_loss(), p in 0.0f64..=1.0, sign in prop::bool::ANY) {
        let delta = if sign { 1e4 } else { -1e4 };
        for dtype in [DType::F32, DType::F64] {
            let (values, slopes) = values_and_slopes_in(loss, &[delta], &[p], dtype);
            prop_assert!(values[0].is_finite() && slopes[0].is_finite(), "{loss} {dtype:?}: {values:?} {slopes:?}");
        }
        prop_assert!(loss.value(delta, p).is_finite() && loss.d_value_d_delta(delta, p).is_finite());
    }

    #[test]
    fn gradient_scales_match_autodiff(delta in -200f64..200.0, p in 0.5f64..=1.0, beta in 0.01f64..3.0) {
        // ∇L = −β w ∇δ.
        let s = 2.0 * p - 1.0;
        let weights = [
            (PrefLoss::Dpo { beta }, 1.0 - sigmoid(beta * delta)),
            (PrefLoss::CDpo { beta }, p - sigmoid(beta * delta)),
            (PrefLoss::GDpo { beta }, s * (1.0 - sigmoid(beta * s * delta))),
        ];
        for (loss, w) in weights {
            let (_, slopes) = values_and_slopes(loss, &[delta], &[p]);
            prop_assert!((slopes[0] - (-beta * w)).abs() <= 1e-12, "{loss}: {} vs {}", slopes[0], -beta * w);
        }
    }

    #[test]
    fn tensor_scalar_and_analytic_forms_agree(loss in any_loss(), delta in -50f64..50.0, p in 0.0f64..=1.0) {
        let (values, slopes) = values_and_slopes(loss, &[delta], &[p]);
        prop_assert!(close(values[0], loss.value(delta, p), 1e-12), "{loss}: {} vs {}", values[0], loss.value(delta, p));
        let analytic = loss.d_value_d_delta(delta, p);
        prop_assert!(close(slopes[0], analytic, 1e-12), "{loss}: {} vs {analytic}", slopes[0]);
    }

    #[test]
    fn analytic_derivative_matches_central_differences(loss in any_loss(), delta in -20f64..20.0, p in 0.0f64..=1.0) {
        let h = 1e-5;
        let numeric = (loss.value(delta + h, p) - loss.value(delta - h, p)) / (2.0 * h);
        prop_assert!(close(loss.d_value_d_delta(delta, p), numeric, 1e-6), "{loss}");
    }
}

#[test]
fn mean_is_the_average_of_per_example_losses() {
    let device = Device::default().autodiff();
    let deltas = [3.0, -1.0, 0.0, 12.0];
    let labels = [0.9, 0.5, 1.0, 0.6];
    for loss in PrefLoss::all_defaults() {
        let tensor = |v: &[f64]| {
            Tensor::<1>::from_data(TensorData::new(v.to_vec(), [4]), (&device, DType::F64))
        };
        let mean = loss
            .mean(tensor(&deltas), tensor(&labels))
            .into_scalar::<f64>();
        let want = deltas
            .iter()
            .zip(&labels)
            .map(|(&d, &p)| loss.value(d, p))
            .sum::<f64>()
            / 4.0;
        assert!(close(mean, want, 1e-14), "{loss}: {mean} vs {want}");
    }
}

#[test]
fn log_sigmoid_gradient_is_exact_at_zero() {
    // Differentiating |x| in min(x,0) − log1p(e^−|x|) would give 0 or 1 here instead of ½.
    let (_, slopes) = values_and_slopes(PrefLoss::Dpo { beta: 1.0 }, &[0.0], &[1.0]);
    assert_eq!(slopes[0], -0.5);
}

#[test]
fn names_round_trip_with_paper_defaults() {
    let defaults = [
        ("dpo", 0.1),
        ("cdpo", 0.1),
        ("ipo", 1.0),
        ("cipo", 1.0),
        ("ropo", 0.1),
        ("gdpo", 0.3),
        ("gipo", 0.5),
        ("gropo", 0.3),
    ];
    for (name, beta) in defaults {
        let loss: PrefLoss = name.parse().unwrap();
        assert_eq!((loss.name(), loss.beta()), (name, beta));
        assert_eq!(loss.to_string(), name);
        loss.validate().unwrap();
    }
    assert_eq!(
        "ropo".parse::<PrefLoss>().unwrap(),
        PrefLoss::Ropo {
            beta: 0.1,
            alpha: 2.0,
            gamma: 0.1
        }
    );
    assert!("DPO".parse::<PrefLoss>().is_err());
    assert!(PrefLoss::dpo().with_beta(0.0).validate().is_err());
    assert!(
        PrefLoss::Ropo {
            beta: 0.1,
            alpha: -1.0,
            gamma: 0.1
        }
        .validate()
        .is_err()
    );
    assert!(
        PrefLoss::GRopo {
            beta: 0.1,
            alpha: 2.0,
            gamma: f64::NAN
        }
        .validate()
        .is_err()
    );
}
