//! The binary under careless and hostile input: every case is one `softalign: error:` line and
//! exit status 2 (3 for a run stopped by a non-finite value), nothing of the user's lost or
//! half-written, and never a panic (status 101 fails every test here).

mod common;

use common::{dir, s, softalign, stderr, tiny_model, tiny_pairs};

use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary in `cwd` with `envs` set.
fn softalign_in(cwd: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softalign"))
        .current_dir(cwd)
        .envs(envs.iter().copied())
        .args(args)
        .output()
        .expect("the softalign binary runs")
}

/// Asserts exit status `code` and one `softalign: error:` line containing `expect`.
fn assert_one_line_error(output: &Output, code: i32, expect: &str) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("softalign: error: "), "{err}");
    assert!(last.contains(expect), "expected {expect:?} in: {err}");
}

/// The flags of a short tiny-model alignment into `out`, with `changes` (flag, value) replacing
/// the defaults or added.
fn align_args<'a>(
    model: &'a Path,
    data: &'a Path,
    out: &'a Path,
    changes: &[(&'a str, &'a str)],
) -> Vec<&'a str> {
    let mut flags = vec![
        ("--model", s(model)),
        ("--data", s(data)),
        ("--out", s(out)),
        ("--max-steps", "2"),
        ("--batch-size", "2"),
        ("--learning-rate", "1e-3"),
        ("--heldout-fraction", "0"),
    ];
    for &(flag, value) in changes {
        match flags.iter_mut().find(|(f, _)| *f == flag) {
            Some(entry) => entry.1 = value,
            None => flags.push((flag, value)),
        }
    }
    let mut args = vec!["align", "--no-progress"];
    args.extend(flags.into_iter().flat_map(|(f, v)| [f, v]));
    args
}

#[test]
fn usage_errors_and_out_of_range_flags_are_one_prefixed_line() {
    for (args, expect) in [
        (vec!["align", "--bogus"], "--bogus"),
        (
            vec!["repro", "toy", "--chains", "18446744073709551615"],
            "--chains",
        ),
        (vec!["repro", "toy", "--chains", "1000000000"], "--chains"),
        (vec!["align", "--seed", "18446744073709551616"], "--seed"),
        (
            vec![
                "align",
                "--model",
                "m",
                "--data",
                "d",
                "--out",
                "o",
                "--max-grad-norm",
                "-1",
            ],
            "--max-grad-norm",
        ),
    ] {
        let output = softalign(&args);
        assert_eq!(
            stderr(&output).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&output)
        );
        assert_one_line_error(&output, 2, expect);
    }
    // The benchmark's 2·10⁹ parameters need about 80 GB: refused up front wherever they cannot
    // fit (on a machine that holds them, the run would be a legitimate, long benchmark).
    if softalign_model::memory::total_bytes().is_some_and(|total| total < 80_000_000_000) {
        let output = softalign(&["bench", "optim", "--params", "2000000000"]);
        assert_one_line_error(
            &output,
            2,
            "--params 2000000000: the benchmark needs about 80.0 GB",
        );
    }
}

#[test]
fn toml_errors_name_the_line_and_the_key() {
    let dir = dir("hostile-toml");
    let config = dir.join("run.toml");
    std::fs::write(&config, "max-steps = 4\nseed = 18446744073709551616\n").unwrap();
    let output = softalign(&["align", "--config", s(&config)]);
    assert_one_line_error(&output, 2, &format!("{}:2: seed: ", config.display()));
    std::fs::write(&config, "max-steps = 4\nlearning-rate = \"fast\"\n").unwrap();
    let output = softalign(&["align", "--config", s(&config)]);
    assert_one_line_error(
        &output,
        2,
        &format!("{}:2: learning-rate: ", config.display()),
    );
}

#[test]
fn resume_from_a_missing_folder_or_a_file_names_the_flag() {
    let dir = dir("hostile-resume-missing");
    let output = softalign(&["align", "--resume", s(&dir.join("nothing"))]);
    assert_one_line_error(&output, 2, "--resume");
    assert!(stderr(&output).contains("no such folder"));
    let file = dir.join("file.txt");
    std::fs::write(&file, "x").unwrap();
    let output = softalign(&["sft", "--resume", s(&file)]);
    assert_one_line_error(&output, 2, "not a folder");
}

#[test]
fn a_plain_file_as_model_is_named_and_a_data_error_leaves_no_output_folder() {
    let dir = dir("hostile-model-file");
    let data = tiny_pairs(&dir);
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let out = dir.join("out");
    let output = softalign(&[
        "align",
        "--model",
        s(&passwd),
        "--data",
        s(&data),
        "--out",
        s(&out),
    ]);
    assert_one_line_error(
        &output,
        2,
        "passwd: neither a GGUF file nor a Hugging Face model folder",
    );
    assert!(!out.exists(), "a run that never started leaves no folder");

    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\"}\n").unwrap();
    let output = softalign(&[
        "align",
        "--model",
        s(&passwd),
        "--data",
        s(&bad),
        "--out",
        s(&out),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        !out.exists(),
        "a data error leaves no folder holding only config.toml"
    );
}

#[test]
fn data_check_of_one_array_per_line_says_no_records_could_be_read() {
    let dir = dir("hostile-arrays");
    let file = dir.join("arrays.json");
    std::fs::write(&file, "[{\"prompt\": \"a\"}]\n[{\"prompt\": \"b\"}]\n").unwrap();
    let output = softalign(&["data", "check", s(&file)]);
    assert_one_line_error(&output, 2, "no records could be read");
    assert!(!stderr(&output).contains("0 of 0"), "{}", stderr(&output));
}

#[test]
fn batches_larger_than_the_data_or_overflowing_are_refused() {
    let dir = dir("hostile-batch");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let out = dir.join("out");
    for (batch, accum, expect) in [
        (
            "1000000",
            "1",
            "batch-size: 1000000 is more than the 40 training examples",
        ),
        (
            "4611686018427387904",
            "1",
            "is more than the 40 training examples",
        ),
        ("4611686018427387904", "4", "overflows"),
    ] {
        let args = align_args(
            &model,
            &data,
            &out,
            &[("--batch-size", batch), ("--grad-accum", accum)],
        );
        let output = softalign(&args);
        assert_one_line_error(&output, 2, expect);
    }
}

#[test]
fn a_fresh_run_into_a_folder_holding_a_run_is_refused_unless_overwrite() {
    let dir = dir("hostile-overwrite");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let out = dir.join("out");
    let first = softalign(&align_args(&model, &data, &out, &[]));
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();

    let mut args = align_args(&model, &data, &out, &[("--max-steps", "3")]);
    let again = softalign(&args);
    assert_one_line_error(&again, 2, "already holds a run");
    assert!(stderr(&again).contains("--resume") && stderr(&again).contains("--overwrite"));
    assert_eq!(
        std::fs::read_to_string(out.join("config.toml")).unwrap(),
        config
    );

    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    args.push("--overwrite");
    let replaced = softalign(&args);
    assert_eq!(replaced.status.code(), Some(0), "{}", stderr(&replaced));
    let checkpoints: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(checkpoints, vec!["step-00000003".to_string()]);
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );
    // The replaced run resumes (its final checkpoint survived pruning).
    let resumed = softalign(&["align", "--resume", s(&out), "--no-progress"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
}

#[test]
fn resume_from_another_directory_continues_in_the_run_folder() {
    let dir = dir("hostile-resume-cwd");
    tiny_model(&dir);
    tiny_pairs(&dir);
    let relative = [
        "align",
        "--model",
        "tiny-model",
        "--data",
        "pairs.jsonl",
        "--out",
        "runs/x",
        "--max-steps",
        "3",
        "--save-every",
        "1",
        "--batch-size",
        "2",
        "--heldout-fraction",
        "0",
        "--no-progress",
    ];
    let killed = softalign_in(&dir, &[("SOFTALIGN_TEST_ABORT_AT", "step:2")], &relative);
    assert_ne!(
        killed.status.code(),
        Some(0),
        "the test hook aborts the run"
    );
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let resumed = softalign_in(
        &elsewhere,
        &[],
        &["align", "--resume", "../runs/x", "--no-progress"],
    );
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    assert!(dir.join("runs/x/model/model.safetensors").is_file());
    assert!(dir.join("runs/x/checkpoints/step-00000003").is_dir());
    assert!(
        !elsewhere.join("runs").exists(),
        "nothing written relative to the new directory"
    );
}

#[test]
fn a_huge_learning_rate_stops_with_status_3_naming_the_step_and_keeps_a_checkpoint() {
    let dir = dir("hostile-nan");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let out = dir.join("out");
    let args = align_args(
        &model,
        &data,
        &out,
        &[
            ("--learning-rate", "1e30"),
            ("--max-steps", "4"),
            ("--max-grad-norm", "0"),
        ],
    );
    let output = softalign(&args);
    let err = stderr(&output);
    assert_one_line_error(&output, 3, "is not finite");
    assert!(
        err.contains("step ") && err.contains("data positions"),
        "{err}"
    );
    assert!(
        !out.join("model").exists(),
        "no model is exported from a diverged run"
    );
    let checkpoints = std::fs::read_dir(out.join("checkpoints")).unwrap().count();
    assert!(checkpoints >= 1, "{err}");
}

#[test]
fn label_never_renames_a_file_that_is_not_its_own() {
    let dir = dir("hostile-label-out");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let mine = dir.join("mine.jsonl");
    std::fs::write(&mine, "{\"my\": \"notes\"}\n").unwrap();
    let output = softalign(&[
        "label",
        "--judge",
        s(&model),
        "--data",
        s(&data),
        "--out",
        s(&mine),
        "--limit",
        "1",
        "--no-progress",
    ]);
    assert_one_line_error(&output, 2, "mine.jsonl:1: cannot resume");
    assert_eq!(
        std::fs::read_to_string(&mine).unwrap(),
        "{\"my\": \"notes\"}\n"
    );
    assert!(!dir.join("mine.jsonl.partial").exists());
}

#[test]
fn a_huge_response_is_cut_before_tokenizing() {
    let dir = dir("hostile-huge-response");
    let model = tiny_model(&dir);
    let mut data = std::fs::read_to_string(tiny_pairs(&dir)).unwrap();
    // 40 MB of digits: tokenized whole, this takes gigabytes; the run must fit in 1.5 GB.
    data.push_str(&format!(
        "{{\"prompt\": \"123>\", \"chosen\": \"{}\", \"rejected\": \"1\", \"p_chosen\": 0.7}}\n",
        "7".repeat(40_000_000)
    ));
    let file = dir.join("huge.jsonl");
    std::fs::write(&file, data).unwrap();
    let out = dir.join("out");
    let args = align_args(&model, &file, &out, &[("--max-length", "64")]).join(" ");
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -v 1500000 && exec {} {args}",
            env!("CARGO_BIN_EXE_softalign")
        ))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn sigterm_saves_a_checkpoint_like_ctrl_c() {
    let dir = dir("hostile-sigterm");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let out = dir.join("out");
    let args = align_args(
        &model,
        &data,
        &out,
        &[("--max-steps", "100000"), ("--batch-size", "1")],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until training runs (the metrics file has a training record), then SIGTERM.
    let metrics = out.join("metrics.jsonl");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&metrics).is_ok_and(|m| m.contains("\"train\"")) {
        assert!(started.elapsed().as_secs() < 120, "training never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("stopping after this step"),
        "{}",
        stderr(&output)
    );
    let checkpoints: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(checkpoints.len(), 1, "{checkpoints:?}");
    assert!(checkpoints[0].join("trainer_state.json").is_file());
}
