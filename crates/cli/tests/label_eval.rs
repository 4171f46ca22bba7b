//! `softalign label`, `eval` and `align --online`: a real run on the golden tiny Llama, and one
//! error line with exit status 2 for bad input.

mod common;

use common::{dir, softalign, stderr};

use std::path::{Path, PathBuf};
use std::process::Output;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

fn error_line(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = stderr(output);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

const PAIRS: &str = "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"five\"}\n{\"prompt\": \"say hi\", \"chosen\": \"hello\", \"rejected\": \"no\"}\n";

#[test]
fn label_then_eval_on_the_tiny_model() {
    let d = dir("label-eval");
    let data = d.join("pairs.jsonl");
    std::fs::write(&data, PAIRS).unwrap();
    let (judge, out) = (golden(), d.join("labels.jsonl"));
    let output = softalign(&[
        "label",
        "--judge",
        judge.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
        "--max-output-tokens",
        "16",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 2);
    assert!(d.join("labels_histogram.png").is_file());
    let output = softalign(&[
        "eval",
        "--model",
        judge.to_str().unwrap(),
        "--judge",
        judge.to_str().unwrap(),
        "--data",
        out.to_str().unwrap(),
        "--max-tokens",
        "3",
        "--out",
        d.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("binary win rate") && stdout.contains("percentage win rate"));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["win_rates"]["n"], 2);
}

#[test]
fn bad_input_gives_one_line_and_status_2() {
    let d = dir("label-bad");
    let judge = golden();
    let bad = d.join("bad.jsonl");
    std::fs::write(&bad, "{\"prompt\": \"a\", \"chosen\": \"b\"}\n").unwrap();
    let line = error_line(&softalign(&[
        "label",
        "--judge",
        judge.to_str().unwrap(),
        "--data",
        bad.to_str().unwrap(),
        "--out",
        d.join("o.jsonl").to_str().unwrap(),
    ]));
    assert!(line.contains("bad.jsonl:1: rejected"), "{line}");
    assert!(!d.join("o.jsonl").exists());
    let line = error_line(&softalign(&[
        "eval",
        "--model",
        judge.to_str().unwrap(),
        "--data",
        d.join("missing.jsonl").to_str().unwrap(),
        "--judge",
        judge.to_str().unwrap(),
    ]));
    assert!(line.contains("missing.jsonl: no such file"), "{line}");
    let template = d.join("template.txt");
    std::fs::write(&template, "{context} {output_1}").unwrap();
    let good = d.join("good.jsonl");
    std::fs::write(&good, PAIRS).unwrap();
    let line = error_line(&softalign(&[
        "label",
        "--judge",
        judge.to_str().unwrap(),
        "--data",
        good.to_str().unwrap(),
        "--out",
        d.join("o.jsonl").to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
    ]));
    assert!(
        line.contains("template: missing placeholder {output_2}"),
        "{line}"
    );
    let line = error_line(&softalign(&["align", "--online", "--label-by", "judge"]));
    assert!(line.contains("judge"), "{line}");
    let line = error_line(&softalign(&[
        "align",
        "--online",
        "--model",
        judge.to_str().unwrap(),
        "--data",
        good.to_str().unwrap(),
    ]));
    assert!(line.contains("--online needs --judge"), "{line}");
}

#[test]
fn online_demo_runs_end_to_end_quickly() {
    let d = dir("online-demo");
    let output = softalign(&[
        "align",
        "--online",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--out",
        d.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("held-out greedy true reward"), "{stdout}");
    assert!(d.join("model/config.json").is_file() && d.join("metrics.jsonl").is_file());
}
