//! Every golden trajectory (../shared/golden/optim, produced by the official `torch-adopt` and
//! by `torch.optim.Adam` / `AdamW` / `Adam(amsgrad=True)`, PyTorch 2.15; see its README)
//! replayed through the burn optimizers and the scalar references.

use std::path::PathBuf;

use burn::tensor::Device;
use softalign_optim::golden::{GoldenCase, UpdatePath, replay_burn, replay_reference};

/// The README's tolerance for a correct f32 implementation.
const F32_TOLERANCE: f64 = 1e-5;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/optim")
}

fn cases(dtype: &str) -> Vec<GoldenCase> {
    let mut paths: Vec<_> = std::fs::read_dir(golden_dir())
        .expect("the golden folder ../shared/golden/optim beside the repository")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(&format!(".{dtype}.json")))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 8, "eight {dtype} golden cases");
    paths
        .iter()
        .map(|path| GoldenCase::load(path).unwrap())
        .collect()
}

#[test]
fn float32_cases_pass_through_the_fused_burn_optimizer() {
    for case in cases("float32") {
        let got = replay_burn(&case, &Device::default(), UpdatePath::Fused).compare(&case);
        assert!(
            got.max_rel_err <= F32_TOLERANCE,
            "{}: parameters {got:?}",
            case.name
        );
        assert!(
            got.state_max_rel_err <= F32_TOLERANCE,
            "{}: state {got:?}",
            case.name
        );
    }
}

#[test]
fn float32_cases_pass_through_the_composed_burn_optimizer() {
    for case in cases("float32") {
        let got = replay_burn(&case, &Device::default(), UpdatePath::Composed).compare(&case);
        assert!(
            got.max_rel_err <= F32_TOLERANCE,
            "{}: parameters {got:?}",
            case.name
        );
        assert!(
            got.state_max_rel_err <= F32_TOLERANCE,
            "{}: state {got:?}",
            case.name
        );
    }
}

#[test]
fn float32_cases_pass_through_the_scalar_reference() {
    for case in cases("float32") {
        let got = replay_reference::<f32>(&case).compare(&case);
        assert!(got.max_rel_err <= F32_TOLERANCE, "{}: {got:?}", case.name);
        assert!(
            got.state_max_rel_err <= F32_TOLERANCE,
            "{}: state {got:?}",
            case.name
        );
    }
}

#[test]
fn float64_cases_pass_through_the_scalar_reference() {
    for case in cases("float64") {
        let got = replay_reference::<f64>(&case).compare(&case);
        assert!(got.max_rel_err <= 1e-12, "{}: {got:?}", case.name);
        assert!(
            got.state_max_rel_err <= 1e-12,
            "{}: state {got:?}",
            case.name
        );
    }
}

#[test]
fn float64_burn_optimizer_agrees_with_the_scalar_reference() {
    for case in cases("float64") {
        let reference = replay_reference::<f64>(&case);
        for path in [UpdatePath::Fused, UpdatePath::Composed] {
            let burn = replay_burn(&case, &Device::default(), path);
            for (got, want) in burn.steps.iter().zip(&reference.steps) {
                for (name, values) in got {
                    let want = &want[name];
                    for (g, w) in values.params.iter().zip(&want.params) {
                        assert!(
                            (g - w).abs() <= 1e-12 * w.abs().max(0.1),
                            "{} {path:?} {name}: {g} vs {w}",
                            case.name
                        );
                    }
                }
            }
            assert!(
                burn.compare(&case).max_rel_err <= 1e-12,
                "{} {path:?}",
                case.name
            );
        }
    }
}

#[test]
fn fused_float32_path_is_bitwise_the_scalar_reference() {
    for case in cases("float32") {
        let fused = replay_burn(&case, &Device::default(), UpdatePath::Fused);
        let reference = replay_reference::<f32>(&case);
        assert_eq!(fused.steps, reference.steps, "{}", case.name);
    }
}

#[test]
fn a_malformed_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("softalign-golden-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.json");
    std::fs::write(&path, "{\"name\": \"x\",\n \"optimizer\": 3}").unwrap();
    let error = GoldenCase::load(&path).unwrap_err().to_string();
    assert!(error.contains("bad.json:2"), "{error}");
    let text = std::fs::read_to_string(golden_dir().join("adopt_default.float32.json")).unwrap();
    std::fs::write(&path, text.replace("\"steps\": 25", "\"steps\": 26")).unwrap();
    let error = GoldenCase::load(&path).unwrap_err().to_string();
    assert!(error.contains("steps"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
