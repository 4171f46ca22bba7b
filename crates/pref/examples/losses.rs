//! Check every loss against a golden file (../shared/golden/losses.json, made by the reference
//! implementation; see its README) and print one JSON line:
//! `{"cases": N, "max_rel_err_loss": X, "max_rel_err_grad": Y}`.
//!
//! Values come from the tensor form [`PrefLoss::per_example`] in float64, derivatives from
//! burn's autodiff through it. Errors are relative with an absolute floor, because the file's
//! tiny entries carry the reference's rounding: it forms ROPO's `α(1 − σ(βδ))` by subtraction,
//! exact only to a few 1e-16 absolute (case 9, ROPO: 5.083e-14 in the file, 5.096e-14 exactly),
//! and its derivatives are central differences with h = 1e-6, which turns that into up to
//! ~1e-10 absolute (case 33, ROPO: −6.93e-10 in the file, −5.59e-10 exactly). Hence
//! `|got − want| / max(|want|, 1e-9)` for values and `|got − want| / max(|want|, 1e-5)` for
//! derivatives.
//!
//! `cargo run --release -p softalign-pref --example losses -- FILE.json`; a missing, unreadable
//! or malformed file gives one line on stderr and exit status 2.

use std::process::ExitCode;

use burn::tensor::{DType, Device, Tensor, TensorData};
use serde_json::Value;
use softalign_pref::PrefLoss;

const LOSS_FLOOR: f64 = 1e-9;
const GRAD_FLOOR: f64 = 1e-5;

/// One golden case: the loss's inputs and, per loss name, its value and derivative.
struct Case {
    beta: f64,
    soft_label: f64,
    alpha: f64,
    gamma: f64,
    delta: f64,
    expected: Vec<(PrefLoss, f64, f64)>,
}

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("losses: usage: losses FILE.json");
        return ExitCode::from(2);
    };
    match read_cases(&path) {
        Ok(cases) => {
            let (loss_err, grad_err) = max_errors(&cases);
            println!(
                "{{\"cases\": {}, \"max_rel_err_loss\": {}, \"max_rel_err_grad\": {}}}",
                cases.len(),
                json_number(loss_err),
                json_number(grad_err)
            );
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("losses: {path}: {message}");
            ExitCode::from(2)
        }
    }
}

fn read_cases(path: &str) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| format!("line {}: invalid json: {e}", e.line()))?;
    let cases = root
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("cases: missing or not an array")?;
    if cases.is_empty() {
        return Err("cases: empty".to_string());
    }
    cases
        .iter()
        .enumerate()
        .map(|(i, case)| read_case(i, case))
        .collect()
}

fn read_case(index: usize, case: &Value) -> Result<Case, String> {
    let number = |value: Option<&Value>, field: &str| {
        value
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("cases[{index}].{field}: missing or not a number"))
    };
    let beta = number(case.get("beta"), "beta")?;
    let soft_label = number(case.get("p"), "p")?;
    softalign_pref::validate_soft_label(soft_label)
        .map_err(|e| format!("cases[{index}].p: {e}"))?;
    let alpha = number(case.get("alpha"), "alpha")?;
    let gamma = number(case.get("gamma"), "gamma")?;
    let delta = number(case.get("delta"), "delta")?;
    let losses = case
        .get("loss")
        .and_then(Value::as_object)
        .ok_or(format!("cases[{index}].loss: missing"))?;
    let mut expected = Vec::new();
    for (name, value) in losses {
        let loss = match name
            .parse::<PrefLoss>()
            .map_err(|e| format!("cases[{index}].loss.{name}: {e}"))?
        {
            PrefLoss::Ropo { .. } => PrefLoss::Ropo { beta, alpha, gamma },
            PrefLoss::GRopo { .. } => PrefLoss::GRopo { beta, alpha, gamma },
            other => other.with_beta(beta),
        };
        loss.validate()
            .map_err(|e| format!("cases[{index}]: {e}"))?;
        let value = number(Some(value), &format!("loss.{name}"))?;
        let slope = number(
            case.get("dloss_ddelta").and_then(|d| d.get(name)),
            &format!("dloss_ddelta.{name}"),
        )?;
        expected.push((loss, value, slope));
    }
    Ok(Case {
        beta,
        soft_label,
        alpha,
        gamma,
        delta,
        expected,
    })
}

/// The largest value and derivative errors over all cases and losses.
fn max_errors(cases: &[Case]) -> (f64, f64) {
    let device = Device::flex().autodiff();
    let mut worst = (0.0f64, 0.0f64);
    for case in cases {
        debug_assert!(case.beta > 0.0 && case.alpha >= 0.0 && case.gamma >= 0.0);
        for &(loss, want_value, want_slope) in &case.expected {
            let (value, slope) = value_and_slope(loss, case.delta, case.soft_label, &device);
            worst.0 = worst.0.max(relative_error(value, want_value, LOSS_FLOOR));
            worst.1 = worst.1.max(relative_error(slope, want_slope, GRAD_FLOOR));
        }
    }
    worst
}

/// The loss and dL/dδ at one point, through the tensor form and autodiff, in float64.
fn value_and_slope(loss: PrefLoss, delta: f64, soft_label: f64, device: &Device) -> (f64, f64) {
    let float64 = |x: f64| Tensor::<1>::from_data(TensorData::from([x]), (device, DType::F64));
    let margin = float64(delta).require_grad();
    let value = loss.per_example(margin.clone(), float64(soft_label)).sum();
    let grads = value.backward();
    let slope = margin
        .grad(&grads)
        .expect("the margin requires grad")
        .into_scalar::<f64>();
    (value.into_scalar::<f64>(), slope)
}

fn relative_error(got: f64, want: f64, floor: f64) -> f64 {
    if got.is_nan() {
        return f64::INFINITY;
    }
    (got - want).abs() / want.abs().max(floor)
}

/// A JSON number, or `null` where the error is not finite (a NaN or infinite result).
fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x:e}")
    } else {
        "null".to_string()
    }
}
