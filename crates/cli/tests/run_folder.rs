//! A run's folder under misuse: a run killed before its first checkpoint starts over (the same
//! command, or `--resume`), two processes on one folder (the second is refused naming the
//! first's pid), a full disk (no `*.partial` left behind), `label` asked to write over its
//! input, and `--config FILE` paths taken relative to the file.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{dir, s, softalign, stderr, tiny_model, tiny_pairs};

/// Runs the binary in `cwd` with `envs` set.
fn softalign_in(cwd: &Path, envs: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softalign"))
        .current_dir(cwd)
        .envs(envs.iter().copied())
        .args(args)
        .output()
        .expect("the softalign binary runs")
}

/// Asserts exit status 2 and one `softalign: error:` line containing every one of `expect`.
fn assert_refused(output: &Output, expect: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("softalign: error: "), "{err}");
    for needle in expect {
        assert!(last.contains(needle), "expected {needle:?} in: {err}");
    }
}

/// The flags of a short tiny-model alignment of `dir`'s model and pairs into `out`, with the
/// (flag, value) pairs of `extra` replacing those flags' values or added.
fn align_args<'a>(dir: &'a Path, out: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "align",
        "--no-progress",
        "--model",
        s(&dir.join("tiny-model")),
        "--data",
        s(&dir.join("pairs.jsonl")),
        "--out",
        out,
        "--max-steps",
        "3",
        "--batch-size",
        "2",
        "--heldout-fraction",
        "0",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    for pair in extra.chunks(2) {
        match args.iter().position(|a| a == pair[0]) {
            Some(at) => args[at + 1] = pair[1].to_string(),
            None => args.extend(pair.iter().map(|a| a.to_string())),
        }
    }
    args
}

fn run(args: &[String], envs: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    softalign_in(Path::new("."), envs, &args)
}

/// `*.partial` files and folders anywhere under `dir`.
fn partials(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.to_string_lossy().contains(".partial") {
                found.push(path.display().to_string());
            }
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

#[test]
fn a_run_killed_before_its_first_checkpoint_starts_over_with_the_same_command_or_resume() {
    let dir = dir("killed-before-checkpoint");
    tiny_model(&dir);
    tiny_pairs(&dir);
    for continuation in ["same command", "resume"] {
        let out = dir.join(continuation.replace(' ', "-"));
        let args = align_args(&dir, s(&out), &[]);
        // The default --save-every 0 checkpoints only at the end: killed after step 1, the
        // folder holds the run's config.toml and metrics but no checkpoint.
        let killed = run(&args, &[("SOFTALIGN_TEST_ABORT_AT", "step:1")]);
        assert_ne!(
            killed.status.code(),
            Some(0),
            "the test hook aborts the run"
        );
        assert!(out.join("config.toml").is_file());
        assert!(!out.join("checkpoints/step-00000001").exists());
        let output = match continuation {
            "same command" => run(&args, &[]),
            _ => softalign(&["align", "--resume", s(&out), "--no-progress"]),
        };
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(0), "{continuation}: {err}");
        if continuation == "resume" {
            assert!(err.contains("starting from the beginning"), "{err}");
        }
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(stdout.contains("steps 3/3"), "{continuation}: {stdout}");
        assert!(out.join("checkpoints/step-00000003").is_dir());
        // A folder that now holds a checkpoint is refused to a fresh run, as before.
        assert_refused(&run(&args, &[]), &["already holds a run", "--resume"]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_process_on_a_run_folder_is_refused_naming_the_first_ones_pid() {
    let dir = dir("two-runs-one-folder");
    tiny_model(&dir);
    tiny_pairs(&dir);
    let out = dir.join("out");
    let args = align_args(&dir, s(&out), &["--max-steps", "1000000"]);
    let mut first = Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    let lock = out.join(".softalign.lock");
    let started = Instant::now();
    while std::fs::read_to_string(&lock).ok().as_deref() != Some(pid.as_str()) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no lock taken"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let holder = format!("pid {pid}");
    // Another fresh run into the folder, and a --resume of it, are both refused.
    let fresh = run(&align_args(&dir, s(&out), &[]), &[]);
    assert_refused(&fresh, &["in use by another softalign run", &holder]);
    assert_eq!(stderr(&fresh).lines().count(), 1, "{}", stderr(&fresh));
    let resumed = softalign(&["align", "--resume", s(&out), "--no-progress"]);
    assert_refused(&resumed, &["in use by another softalign run", &holder]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run is untouched"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    // Once it is gone the folder is free again (one step from wherever it stopped).
    let resumed = softalign(&[
        "align",
        "--resume",
        s(&out),
        "--no-progress",
        "--max-steps",
        "1",
    ]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_full_disk_leaves_no_partial_file_and_keeps_the_runs_config() {
    let dir = dir("full-disk");
    tiny_model(&dir);
    tiny_pairs(&dir);
    let out = dir.join("out");
    let args = align_args(&dir, s(&out), &[]).join(" ");
    // Files may grow to 64 KB: config.toml and the metrics fit, a checkpoint's model does not
    // (EFBIG, as a full disk's ENOSPC, once SIGXFSZ is ignored).
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 128 && exec {} {args}",
            env!("CARGO_BIN_EXE_softalign")
        ))
        .output()
        .unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(
        err.lines()
            .last()
            .map(|l| l.starts_with("softalign: error: ")),
        Some(true),
        "{err}"
    );
    assert_eq!(partials(&out), Vec::<String>::new(), "{err}");
    assert!(out.join("config.toml").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn label_refuses_to_write_over_its_input_naming_both_flags() {
    let dir = dir("label-over-input");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let before = std::fs::read_to_string(&data).unwrap();
    let other_spelling = dir.join("sub/../pairs.jsonl");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for out in [data.clone(), other_spelling] {
        let output = softalign(&[
            "label",
            "--judge",
            s(&model),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--limit",
            "1",
            "--no-progress",
        ]);
        assert_refused(&output, &["out: ", "--data", "choose another --out"]);
        assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
        assert_eq!(std::fs::read_to_string(&data).unwrap(), before);
        assert!(!dir.join("pairs.jsonl.partial").exists());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn config_file_paths_are_relative_to_the_file() {
    let dir = dir("config-relative");
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    tiny_model(&conf);
    tiny_pairs(&conf);
    std::fs::write(
        conf.join("run.toml"),
        "model = \"tiny-model\"\ndata = \"pairs.jsonl\"\nout = \"out\"\nmax-steps = 2\nbatch-size = 2\nheldout-fraction = 0\nno-progress = true\n",
    )
    .unwrap();
    // Run from the folder above: the paths still name the files beside run.toml.
    let output = softalign_in(&dir, &[], &["align", "--config", "conf/run.toml"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(conf.join("out/checkpoints/step-00000002").is_dir());
    assert!(!dir.join("out").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
