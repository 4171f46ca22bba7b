//! The GPU code, held to the CPU and to the reference implementations, on the device named by
//! `SOFTALIGN_TEST_DEVICE` (`wgpu` when unset; `cuda`, `cuda:1`, `wgpu:0` …).
//!
//! Built only with `--features wgpu` (or `cuda`); CI runs it on wgpu over Mesa's software OpenGL
//! driver (llvmpipe), which computes what a GPU would, slowly; on a machine with an NVIDIA GPU
//! the same tests run on CUDA:
//!
//! ```sh
//! SOFTALIGN_WGPU_API=gl cargo test --release --workspace --features softalign/wgpu --test gpu
//! SOFTALIGN_TEST_DEVICE=cuda cargo test --release --workspace --features softalign/cuda --test gpu
//! ```
//!
//! A device that cannot be opened fails every test: nothing here is skipped.
//!
//! - every float32 golden optimizer trajectory through the one-pass cubecl kernel (and the
//!   composed path) at the CPU's tolerance;
//! - the tiny Llama of `../shared/golden/hf-tiny-llama` against transformers' logits (1e-4),
//!   its KV-cache decoding, and greedy generation equal to the CPU's;
//! - `softalign align --device D` whose per-step losses equal the CPU run's (1e-3), and its
//!   checkpoint resumed on the CPU; `softalign generate --device D` equal to the CPU's.

#![cfg(any(feature = "wgpu", feature = "cuda"))]

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::{dir, s, softalign, stderr, tiny_pairs};
use serde_json::Value;
use softalign_model::{DeviceSpec, GenerationConfig, KvCache, Sampling, generate, load_pretrained};
use softalign_optim::golden::{GoldenCase, UpdatePath, replay_burn};

/// The device under test, as `--device` spells it.
fn device_name() -> String {
    std::env::var("SOFTALIGN_TEST_DEVICE").unwrap_or_else(|_| "wgpu".into())
}

/// The device under test (wgpu opens once per process; the first test to ask opens it).
fn gpu() -> Device {
    let spec: DeviceSpec = device_name().parse().unwrap();
    spec.open_one("the GPU tests").unwrap_or_else(|e| {
        panic!("{e} (CI installs Mesa's llvmpipe and sets SOFTALIGN_WGPU_API=gl)")
    })
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/golden")
        .join(name)
}

/// The README's tolerance for a correct f32 optimizer.
const F32_TOLERANCE: f64 = 1e-5;

fn float32_cases() -> Vec<GoldenCase> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(golden("optim"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".float32.json"))
        .collect();
    paths.sort();
    assert_eq!(paths.len(), 8, "eight float32 golden cases");
    paths.iter().map(|p| GoldenCase::load(p).unwrap()).collect()
}

#[test]
fn golden_trajectories_pass_through_the_one_pass_gpu_kernel() {
    let device = gpu();
    for case in float32_cases() {
        let before = softalign_optim::cube::kernel_launches();
        let got = replay_burn(&case, &device, UpdatePath::Fused).compare(&case);
        let launched = softalign_optim::cube::kernel_launches() - before;
        let tensors = case.init.len() * case.grads.len();
        assert!(
            launched >= tensors as u64,
            "{}: {launched} kernel launches for {tensors} tensor steps: the composed fallback ran",
            case.name
        );
        eprintln!("{}: one-pass kernel {got:?}", case.name);
        assert!(got.max_rel_err <= F32_TOLERANCE, "{}: {got:?}", case.name);
        assert!(
            got.state_max_rel_err <= F32_TOLERANCE,
            "{}: state {got:?}",
            case.name
        );
    }
}

#[test]
fn golden_trajectories_pass_through_the_composed_path_on_the_gpu() {
    let device = gpu();
    for case in float32_cases() {
        let got = replay_burn(&case, &device, UpdatePath::Composed).compare(&case);
        assert!(got.max_rel_err <= F32_TOLERANCE, "{}: {got:?}", case.name);
        assert!(
            got.state_max_rel_err <= F32_TOLERANCE,
            "{}: state {got:?}",
            case.name
        );
    }
}

fn expected_logits(fixture: &str) -> (Vec<u32>, Vec<f32>) {
    let text = std::fs::read_to_string(golden(fixture).join("expected_logits.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids = v["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let logits = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    (ids, logits)
}

fn token_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let data: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(data, [1, ids.len()]), device)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn the_tiny_llama_on_the_gpu_matches_transformers_and_decodes_with_its_cache() {
    let device = gpu();
    let (ids, want) = expected_logits("hf-tiny-llama");
    let loaded = load_pretrained(&golden("hf-tiny-llama"), &device).unwrap();
    let logits = loaded.model.forward(token_tensor(&ids, &device));
    let got: Vec<f32> = logits.into_data().iter::<f32>().collect();
    let err = max_abs_diff(&got, &want);
    eprintln!("{}: max |logit − transformers| = {err:.3e}", device_name());
    assert!(err <= 1e-4, "max abs logit error {err}");

    // Decoding token by token through the KV cache gives the full pass's last row.
    let mut cache = KvCache::new(&loaded.model);
    let mut last = Vec::new();
    for &id in &ids {
        last = loaded
            .model
            .forward_cached(token_tensor(&[id], &device), &mut cache)
            .into_data()
            .iter::<f32>()
            .collect();
    }
    let vocab = last.len();
    let err = max_abs_diff(&last, &want[want.len() - vocab..]);
    assert!(err <= 1e-4, "cached decoding differs by {err}");
}

#[test]
fn greedy_generation_on_the_gpu_equals_the_cpu() {
    let (ids, _) = expected_logits("hf-tiny-llama");
    let config = GenerationConfig {
        max_new_tokens: 12,
        sampling: Sampling::Greedy,
        seed: 0,
        stop_tokens: Vec::new(),
    };
    let run = |device: &Device| {
        let loaded = load_pretrained(&golden("hf-tiny-llama"), device).unwrap();
        generate(&loaded.model, &ids, &config, |_| Ok(true)).unwrap()
    };
    let cpu = run(&Device::flex());
    let gpu = run(&gpu());
    assert_eq!(cpu.len(), 12);
    assert_eq!(
        gpu,
        cpu,
        "greedy tokens on {} differ from the CPU's",
        device_name()
    );
}

/// The per-step training losses of a run's `metrics.jsonl`.
fn train_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["split"] == "train")
        .map(|r| r["loss"].as_f64().unwrap())
        .collect()
}

fn align_args<'a>(model: &'a str, data: &'a str, out: &'a str, device: &'a str) -> Vec<&'a str> {
    vec![
        "align",
        "--model",
        model,
        "--data",
        data,
        "--out",
        out,
        "--device",
        device,
        "--loss",
        "gdpo",
        "--max-steps",
        "4",
        "--save-every",
        "2",
        "--batch-size",
        "2",
        "--learning-rate",
        "1e-3",
        "--heldout-fraction",
        "0",
        "--max-length",
        "32",
        "--template",
        "plain",
        "--no-progress",
    ]
}

#[test]
fn align_on_the_gpu_trains_like_the_cpu_and_its_checkpoint_resumes_on_the_cpu() {
    let dir = dir("gpu-align");
    let name = device_name();
    let model = golden("hf-tiny-llama");
    let data = tiny_pairs(&dir);
    let (model, data) = (s(&model), s(&data));
    let (cpu, gpu, moved) = (dir.join("cpu"), dir.join("gpu"), dir.join("moved"));

    let output = softalign(&align_args(model, data, s(&cpu), "cpu"));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = softalign(&align_args(model, data, s(&gpu), &name));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (on_cpu, on_gpu) = (train_losses(&cpu), train_losses(&gpu));
    eprintln!("losses cpu {on_cpu:?}\nlosses {name} {on_gpu:?}");
    assert_eq!(on_cpu.len(), 4);
    assert_eq!(on_gpu.len(), 4);
    for (step, (a, b)) in on_cpu.iter().zip(&on_gpu).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3,
            "step {}: loss {b} on {name}, {a} on the CPU",
            step + 1
        );
    }

    // The GPU run's step-2 checkpoint, continued on the CPU, ends where the CPU run did.
    let output = softalign(&align_args(model, data, s(&moved), &name));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let checkpoints = softalign_train::checkpoint::list_checkpoints(&moved);
    let (_, step_2) = checkpoints
        .iter()
        .find(|(step, _)| *step == 2)
        .expect("a step-2 checkpoint");
    for (step, path) in &checkpoints {
        if *step != 2 {
            std::fs::remove_dir_all(path).unwrap();
        }
    }
    let output = softalign(&[
        "align",
        "--resume",
        s(step_2),
        "--device",
        "cpu",
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let resumed = train_losses(&moved);
    assert_eq!(resumed.len(), 4, "{resumed:?}");
    for (step, (a, b)) in on_cpu.iter().zip(&resumed).enumerate() {
        assert!(
            (a - b).abs() <= 1e-3,
            "step {}: loss {b} resumed on the CPU from {name}, {a} on the CPU",
            step + 1
        );
    }
}

#[test]
fn generate_on_the_gpu_streams_the_cpus_text() {
    let model = golden("hf-tiny-llama");
    let run = |device: &str| {
        let output = softalign(&[
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "The capital of France is",
            "--max-tokens",
            "8",
            "--device",
            device,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let cpu = run("cpu");
    assert!(!cpu.is_empty());
    assert_eq!(run(&device_name()), cpu);
}

#[test]
fn head_log_probabilities_in_chunks_on_the_gpu_match_the_cpu_kernel_with_gradients() {
    use burn::tensor::Distribution;
    use softalign_model::fused::head_token_logps;
    // A vocabulary large enough that the GPU path splits 300 rows into chunks (a whole batch's
    // logits can exceed a GPU buffer), checked against the CPU's fused kernel.
    let (rows, width, vocab) = (300, 16, 40_000);
    let cpu = Device::flex();
    let hidden = Tensor::<2>::random([rows, width], Distribution::Normal(0.0, 1.0), &cpu);
    let weight = Tensor::<2>::random([vocab, width], Distribution::Normal(0.0, 0.3), &cpu);
    let ids: Vec<i64> = (0..rows as i64)
        .map(|i| (i * 7919) % vocab as i64)
        .collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(ids, [rows]), &cpu);
    let weights: Vec<f32> = (0..rows).map(|i| 1.0 + (i % 5) as f32).collect();
    let run = |device: &Device| {
        let ad = device.clone().autodiff();
        let h = Tensor::<2>::from_data(hidden.to_data(), &ad).require_grad();
        let w = Tensor::<2>::from_data(weight.to_data(), &ad).require_grad();
        let t = Tensor::<1, Int>::from_data(targets.to_data(), &ad);
        let g = Tensor::<1>::from_data(TensorData::new(weights.clone(), [rows]), &ad);
        let logps = head_token_logps(h.clone(), w.clone(), t);
        let grads = (logps.clone() * g).sum().backward();
        let values = |x: Tensor<2>| x.into_data().iter::<f32>().collect::<Vec<f32>>();
        (
            logps.into_data().iter::<f32>().collect::<Vec<f32>>(),
            values(h.grad(&grads).unwrap()),
            values(w.grad(&grads).unwrap()),
        )
    };
    let (want, want_h, want_w) = run(&cpu);
    let (got, got_h, got_w) = run(&gpu());
    for (what, a, b, tolerance) in [
        ("log-probabilities", &got, &want, 1e-3),
        ("hidden gradient", &got_h, &want_h, 1e-3),
        ("head gradient", &got_w, &want_w, 1e-3),
    ] {
        let err = max_abs_diff(a, b);
        eprintln!("{what}: max |gpu − cpu| = {err:.2e}");
        assert!(err <= tolerance, "{what} differ by {err}");
    }
}
