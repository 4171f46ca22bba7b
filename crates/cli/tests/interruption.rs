//! A training run killed at any moment and resumed ends bitwise equal to one never interrupted.
//!
//! `softalign align` on a tiny model is killed (1) deterministically at each dangerous point —
//! after an optimizer step, with a checkpoint's files written but not yet renamed, in the middle
//! of pruning an old checkpoint, with the exported model written but not yet renamed — through
//! the test hook `SOFTALIGN_TEST_ABORT_AT` (`softalign_train::test_hook`), and (2) with SIGKILL
//! at seeded random moments. After each kill the run is continued the way a user would: with
//! `--resume OUT`, or, when no checkpoint was complete yet, by running the original command
//! again with `--overwrite`. The exported weights and the metrics must equal the straight run's
//! byte for byte, and no temporary (`.NAME.partial-PID`, `.NAME.old-PID`) may be left.
//!
//! The same holds for `align --online` (self-preference labels of two samples per prompt drawn
//! from the policy each step), which runs through the same loop; and an online step whose
//! values turn non-finite stops with status 3, keeping a checkpoint.

mod common;

use common::{dir, s, stderr, tiny_model, tiny_pairs};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use softalign_train::test_hook::ABORT_AT_VAR;

struct Setup {
    model: PathBuf,
    data: PathBuf,
    online: bool,
}

/// Flags that make a run online: self-preference labels (no judge needed), DPO so that the
/// labels of ½ at the reference still move the policy, short samples.
const ONLINE: [&str; 8] = [
    "--online",
    "--label-by",
    "self",
    "--loss",
    "dpo",
    "--max-new-tokens",
    "6",
    "--seed",
];

impl Setup {
    fn fresh_args(&self, out: &Path) -> Vec<String> {
        let mut args = self.offline_args(out);
        if self.online {
            args.extend(ONLINE.map(String::from));
            args.push("3".into());
        }
        args
    }

    fn offline_args(&self, out: &Path) -> Vec<String> {
        [
            "align",
            "--model",
            s(&self.model),
            "--data",
            s(&self.data),
            "--out",
            s(out),
            "--max-steps",
            "6",
            "--save-every",
            "2",
            "--keep-checkpoints",
            "2",
            "--batch-size",
            "2",
            "--learning-rate",
            "1e-3",
            "--heldout-fraction",
            "0.2",
            "--eval-every",
            "3",
            "--no-progress",
        ]
        .map(String::from)
        .to_vec()
    }
}

fn command(args: &[String], abort_at: Option<&str>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_softalign"));
    command
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(point) = abort_at {
        command.env(ABORT_AT_VAR, point);
    }
    command
}

fn run(args: &[String], abort_at: Option<&str>) -> Output {
    command(args, abort_at).output().unwrap()
}

/// Whether `out` holds a complete checkpoint to resume from.
fn has_checkpoint(out: &Path) -> bool {
    !softalign_train::checkpoint::list_checkpoints(out).is_empty()
}

/// The command that continues an interrupted run into `out`.
fn continuation(setup: &Setup, out: &Path) -> Vec<String> {
    if has_checkpoint(out) {
        ["align", "--resume", s(out), "--no-progress"]
            .map(String::from)
            .to_vec()
    } else {
        let mut args = setup.fresh_args(out);
        args.push("--overwrite".into());
        args
    }
}

/// Continues the run in `out` until it finishes; every attempt must end in success or a kill.
fn finish(setup: &Setup, out: &Path) {
    let output = run(&continuation(setup, out), None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Outputs that must be identical to the straight run's.
fn results(out: &Path) -> (Vec<u8>, String) {
    let weights = std::fs::read(out.join("model").join("model.safetensors")).unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    (weights, metrics)
}

fn assert_no_leftovers(out: &Path) {
    let mut folders: Vec<PathBuf> = vec![out.to_path_buf(), out.join("checkpoints")];
    folders.retain(|f| f.is_dir());
    for folder in folders {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !softalign_durable::is_temporary(&name),
                "{} left in {}",
                name.display(),
                folder.display()
            );
        }
    }
}

/// A small seeded generator (splitmix64), so the kill moments are the same on every run.
struct Moments(u64);

impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

#[test]
fn runs_killed_anywhere_resume_to_bitwise_the_uninterrupted_result() {
    killed_anywhere_resumes_bitwise("interruption", false);
}

#[test]
fn online_runs_killed_anywhere_resume_to_bitwise_the_uninterrupted_result() {
    killed_anywhere_resumes_bitwise("interruption-online", true);
}

#[test]
fn an_online_step_that_turns_non_finite_stops_with_status_3_and_keeps_a_checkpoint() {
    let dir = dir("interruption-online-nan");
    let setup = Setup {
        model: tiny_model(&dir),
        data: tiny_pairs(&dir),
        online: true,
    };
    let out = dir.join("out");
    let mut args = setup.fresh_args(&out);
    let lr = args.iter().position(|a| a == "--learning-rate").unwrap();
    args[lr + 1] = "1e30".into();
    args.extend(["--max-grad-norm", "0"].map(String::from));
    let output = run(&args, None);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains("is not finite") && err.contains("step "),
        "{err}"
    );
    let errors = err.lines().filter(|l| l.starts_with("softalign: error:"));
    assert_eq!(errors.count(), 1, "{err}");
    assert!(
        !out.join("model").exists(),
        "no model is exported from a diverged run"
    );
    assert!(has_checkpoint(&out), "{err}");
}

fn killed_anywhere_resumes_bitwise(name: &str, online: bool) {
    let dir = dir(name);
    let setup = Setup {
        model: tiny_model(&dir),
        data: tiny_pairs(&dir),
        online,
    };
    let straight = dir.join("straight");
    let started = Instant::now();
    let output = run(&setup.fresh_args(&straight), None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let duration = started.elapsed();
    let expected = results(&straight);

    // (1) Deterministic kills at each dangerous point (saves happen at steps 2, 4, 6 and 6's
    // final one; pruning starts with the third save).
    for point in [
        "step:1",
        "step:3",
        "checkpoint:1",
        "checkpoint:2",
        "prune:1",
        "export:1",
    ] {
        let out = dir.join(format!("hook-{}", point.replace(':', "-")));
        let killed = run(&setup.fresh_args(&out), Some(point));
        assert_ne!(
            killed.status.code(),
            Some(0),
            "{point}: the hook did not fire"
        );
        assert!(
            stderr(&killed).contains("test hook: aborting"),
            "{point}: {}",
            stderr(&killed)
        );
        finish(&setup, &out);
        assert!(
            results(&out) == expected,
            "{point}: resumed run differs from the straight one"
        );
        assert_no_leftovers(&out);
    }

    // (2) SIGKILL at seeded random moments, up to three per run, then resumed to the end.
    let mut moments = Moments(15);
    for round in 0..3 {
        let out = dir.join(format!("sigkill-{round}"));
        let mut args = setup.fresh_args(&out);
        for _ in 0..3 {
            let delay = duration.mul_f64(0.1 + 0.9 * moments.next_fraction());
            let mut child = command(&args, None).spawn().unwrap();
            std::thread::sleep(delay);
            let _ = child.kill(); // SIGKILL; the run may already have finished
            let status = child.wait().unwrap();
            assert_ne!(status.code(), Some(101), "round {round}: a panic");
            if status.success() {
                break;
            }
            args = continuation(&setup, &out);
        }
        finish_or_done(&setup, &out);
        assert!(
            results(&out) == expected,
            "round {round}: resumed run differs"
        );
        assert_no_leftovers(&out);
    }
}

/// Finishes the run in `out` unless a previous attempt already completed it.
fn finish_or_done(setup: &Setup, out: &Path) {
    let done = out.join("model").join("model.safetensors").is_file()
        && softalign_train::checkpoint::list_checkpoints(out)
            .last()
            .is_some_and(|(step, _)| *step == 6);
    if !done {
        finish(setup, out);
    }
}

#[test]
fn the_online_demo_killed_after_its_sft_stage_resumes_bitwise() {
    let dir = dir("interruption-online-demo");
    let args = |out: &Path| -> Vec<String> {
        [
            "align",
            "--online",
            "--max-steps",
            "6",
            "--batch-size",
            "4",
            "--save-every",
            "2",
            "--eval-every",
            "3",
            "--no-progress",
            "--out",
            s(out),
        ]
        .map(String::from)
        .to_vec()
    };
    let straight = dir.join("straight");
    let output = run(&args(&straight), None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let out = dir.join("killed");
    // The SFT stage takes 400 steps; the 404th is the online run's fourth, after the
    // checkpoint of step 2: the resumed run takes its reference from the finished SFT stage.
    let killed = run(&args(&out), Some("step:404"));
    assert!(stderr(&killed).contains("test hook: aborting"));
    assert!(has_checkpoint(&out));
    let resume = ["align", "--resume", s(&out), "--no-progress"].map(String::from);
    let output = run(&resume, None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("resuming from"));
    assert!(results(&out) == results(&straight), "resumed demo differs");
    let metrics = results(&straight).1;
    assert!(metrics.contains("eval/reward") && metrics.contains("sample/reward"));
}
