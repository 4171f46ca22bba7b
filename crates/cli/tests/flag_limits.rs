//! Flags past what a run can hold, and output that cannot be written: a LoRA rank larger than
//! the adapted layers (refused before anything is written), integers past what `config.toml`
//! holds (named), and a closed stdout or stderr (exit status 2, never an abort).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{dir, s, softalign, stderr, tiny_pairs};

fn golden_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

/// Asserts exit status 2 and one `softalign: error:` line containing every one of `expect`.
fn assert_refused(output: &std::process::Output, expect: &[&str]) {
    let err = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    let last = err.lines().last().unwrap_or("");
    assert!(last.starts_with("softalign: error: "), "{err}");
    for needle in expect {
        assert!(last.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn a_lora_rank_larger_than_the_adapted_layers_is_refused_before_anything_is_written() {
    let dir = dir("lora-rank-bound");
    let data = tiny_pairs(&dir);
    let out = dir.join("out");
    let align = |r: &str, targets: &str| {
        softalign(&[
            "align",
            "--no-progress",
            "--model",
            s(&golden_llama()),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--heldout-fraction",
            "0",
            "--lora-r",
            r,
            "--lora-targets",
            targets,
        ])
    };
    // The golden Llama: width 64, two key/value heads of 16, so k_proj is 64 → 32.
    for r in ["1000000000", "288230376151711744", "100000", "33"] {
        let output = align(r, "all-linear");
        assert_refused(&output, &["lora-r", r, "k_proj", "at most 32"]);
        assert!(!out.exists(), "--lora-r {r} left {:?}", out.read_dir());
    }
    // Without k_proj and v_proj the narrowest adapted layer is 64 wide.
    let output = align("65", "q_proj,o_proj");
    assert_refused(&output, &["lora-r", "at most 64"]);
    let output = align("64", "q_proj,o_proj");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn integers_past_what_config_toml_holds_name_their_flag() {
    let dir = dir("integer-flags");
    let too_large = "9223372036854775808"; // i64::MAX + 1
    for flag in ["--seed", "--lora-r", "--max-steps", "--save-every"] {
        for command in ["align", "sft"] {
            let output = softalign(&[
                command,
                "--model",
                s(&dir.join("m")),
                "--data",
                s(&dir.join("d.jsonl")),
                "--out",
                s(&dir.join("out")),
                flag,
                too_large,
            ]);
            assert_refused(&output, &[&format!("{flag}: {too_large}")]);
            assert_eq!(stderr(&output).lines().count(), 1, "{}", stderr(&output));
        }
    }
    assert!(!dir.join("out").exists());
}

/// Runs `data check` on an invalid file with stdout and stderr pipes whose reading ends are
/// closed before it writes (as `| head -1` does once it has its line).
fn check_with_closed_pipes(bad: &Path, close_stdout: bool) -> Option<i32> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(["data", "check"])
        .arg(bad)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let stdout = child.stdout.take();
    if close_stdout {
        drop(stdout);
        child.wait().unwrap().code()
    } else {
        let mut stdout = stdout.unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        child.wait().unwrap().code()
    }
}

#[test]
fn a_closed_stdout_or_stderr_ends_with_status_2_never_an_abort() {
    let dir = dir("closed-pipes");
    let bad = dir.join("bad.jsonl");
    let mut lines = String::new();
    for _ in 0..200 {
        lines.push_str(
            "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"p_chosen\": -0.2}\n",
        );
    }
    std::fs::write(&bad, lines).unwrap();
    for run in 0..10 {
        assert_eq!(check_with_closed_pipes(&bad, true), Some(2), "run {run}");
        assert_eq!(check_with_closed_pipes(&bad, false), Some(2), "run {run}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
