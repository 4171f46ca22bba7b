//! Every case of the golden file ../shared/golden/losses.json (per-example losses and dL/dδ from
//! the reference implementation; see its README), through the tensor form with autodiff in
//! float64 and float32, and through the scalar forms.
//!
//! Tolerances: values 1e-6 relative, derivatives 1e-4 relative, each with an absolute floor
//! (1e-9 for values, 1e-5 for derivatives) below which the file's own rounding dominates: the
//! reference forms ROPO's α(1 − σ(βδ)) by subtraction and differentiates by central differences
//! with h = 1e-6 (e.g. case 33, GROPO: −6.93e-10 in the file, −5.59e-10 exactly). float32 gets
//! 1e-5 on values, the precision its inputs allow.

use burn::tensor::{DType, Device, Tensor, TensorData};
use serde_json::Value;
use softalign_pref::PrefLoss;

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/golden/losses.json"
);

struct Expectation {
    case: usize,
    loss: PrefLoss,
    delta: f64,
    soft_label: f64,
    value: f64,
    slope: f64,
}

fn expectations() -> Vec<Expectation> {
    let text = std::fs::read_to_string(GOLDEN).unwrap_or_else(|e| panic!("{GOLDEN}: {e}"));
    let root: Value = serde_json::from_str(&text).expect("golden file is json");
    let cases = root["cases"].as_array().expect("cases array");
    let mut out = Vec::new();
    for (case, c) in cases.iter().enumerate() {
        let field = |name: &str| {
            c[name]
                .as_f64()
                .unwrap_or_else(|| panic!("case {case}: {name}"))
        };
        let (beta, alpha, gamma) = (field("beta"), field("alpha"), field("gamma"));
        // δ is given, and must agree with the log-probabilities it comes from.
        let delta = field("delta");
        let from_logps = (field("policy_logp_chosen") - field("reference_logp_chosen"))
            - (field("policy_logp_rejected") - field("reference_logp_rejected"));
        assert!(
            (delta - from_logps).abs() <= 1e-9 * delta.abs().max(1.0),
            "case {case}: delta"
        );
        for (name, value) in c["loss"].as_object().expect("loss object") {
            let loss = match name.parse::<PrefLoss>().expect("known loss name") {
                PrefLoss::Ropo { .. } => PrefLoss::Ropo { beta, alpha, gamma },
                PrefLoss::GRopo { .. } => PrefLoss::GRopo { beta, alpha, gamma },
                other => other.with_beta(beta),
            };
            out.push(Expectation {
                case,
                loss,
                delta,
                soft_label: field("p"),
                value: value.as_f64().expect("loss value"),
                slope: c["dloss_ddelta"][name].as_f64().expect("derivative"),
            });
        }
    }
    out
}

fn relative_error(got: f64, want: f64, floor: f64) -> f64 {
    if got.is_nan() {
        f64::INFINITY
    } else {
        (got - want).abs() / want.abs().max(floor)
    }
}

/// Value and autodiff dL/dδ of the tensor form, on a batch of all expectations at once.
fn tensor_values_and_slopes(expectations: &[Expectation], dtype: DType) -> Vec<(f64, f64)> {
    let device = Device::default().autodiff();
    expectations
        .iter()
        .map(|e| {
            let tensor = |x: f64| Tensor::<1>::from_data(TensorData::from([x]), (&device, dtype));
            let margin = tensor(e.delta).require_grad();
            let value = e.loss.per_example(margin.clone(), tensor(e.soft_label));
            let grads = value.backward();
            let slope = margin
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_into_vec_as::<f64>()
                .unwrap()[0];
            (
                value.into_data().try_into_vec_as::<f64>().unwrap()[0],
                slope,
            )
        })
        .collect()
}

#[test]
fn golden_file_covers_all_eight_losses() {
    let expectations = expectations();
    assert_eq!(expectations.len(), 45 * 8);
    for name in PrefLoss::NAMES {
        assert_eq!(
            expectations
                .iter()
                .filter(|e| e.loss.name() == name)
                .count(),
            45,
            "{name}"
        );
    }
}

#[test]
fn tensor_losses_and_autodiff_match_golden_in_float64() {
    let expectations = expectations();
    let got = tensor_values_and_slopes(&expectations, DType::F64);
    for (e, (value, slope)) in expectations.iter().zip(got) {
        let value_err = relative_error(value, e.value, 1e-9);
        let slope_err = relative_error(slope, e.slope, 1e-5);
        assert!(
            value_err <= 1e-6,
            "case {} {}: value {value} want {} ({value_err:e})",
            e.case,
            e.loss,
            e.value
        );
        assert!(
            slope_err <= 1e-4,
            "case {} {}: dL/dδ {slope} want {} ({slope_err:e})",
            e.case,
            e.loss,
            e.slope
        );
    }
}

#[test]
fn tensor_losses_and_autodiff_match_golden_in_float32() {
    let expectations = expectations();
    let got = tensor_values_and_slopes(&expectations, DType::F32);
    for (e, (value, slope)) in expectations.iter().zip(got) {
        // The inputs themselves are rounded to float32 (δ to ~6e-8 relative), and the
        // IPO-family squares amplify that; the floor on derivatives stays the file's.
        let value_err = relative_error(value, e.value, 1e-9);
        let slope_err = relative_error(slope, e.slope, 1e-5);
        assert!(
            value_err <= 1e-5,
            "case {} {}: value {value} want {} ({value_err:e})",
            e.case,
            e.loss,
            e.value
        );
        assert!(
            slope_err <= 1e-4,
            "case {} {}: dL/dδ {slope} want {} ({slope_err:e})",
            e.case,
            e.loss,
            e.slope
        );
    }
}

#[test]
fn scalar_values_and_analytic_derivatives_match_golden() {
    for e in expectations() {
        let value_err = relative_error(e.loss.value(e.delta, e.soft_label), e.value, 1e-9);
        let slope_err =
            relative_error(e.loss.d_value_d_delta(e.delta, e.soft_label), e.slope, 1e-5);
        assert!(
            value_err <= 1e-6,
            "case {} {}: value ({value_err:e})",
            e.case,
            e.loss
        );
        assert!(
            slope_err <= 1e-4,
            "case {} {}: dL/dδ ({slope_err:e})",
            e.case,
            e.loss
        );
    }
}
