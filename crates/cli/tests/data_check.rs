//! `softalign data check`: report, exit status 0 for a valid file and 2 for an invalid one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("softalign-data-check");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn check(path: &Path, flags: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(["data", "check"])
        .arg(path)
        .args(flags)
        .output()
        .expect("the softalign binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn json_report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

const GOOD: &str = r#"{"prompt":"p","chosen":"a","rejected":"b","p_chosen":0.7}"#;
const BAD: &str = r#"{"prompt":"p","chosen":"a","rejected":"b","p_chosen":-0.2}"#;

#[test]
fn a_valid_file_exits_zero_with_a_summary_and_histogram() {
    let path = fixture(
        "ok.jsonl",
        &format!(
            "{GOOD}\n{}\n",
            r#"{"prompt":"q","chosen":"yes","rejected":"no"}"#
        ),
    );
    let output = check(&path, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}{}", stderr(&output));
    assert!(
        text.contains("format      native (detected), jsonl"),
        "{text}"
    );
    assert!(
        text.contains("records     2 (valid 2, invalid 0, re-oriented 0)"),
        "{text}"
    );
    assert!(
        text.contains("soft 1 (50.0%), binary 1 (50.0%), mean p̂ 0.8500"),
        "{text}"
    );
    assert!(text.contains("[0.70, 0.75)        1 #"), "{text}");
    assert!(text.contains("[0.95, 1.00]        1 #"), "{text}");
    assert!(!text.contains("problems"), "{text}");
    assert!(stderr(&output).is_empty());
}

#[test]
fn the_contract_bad_file_exits_two_naming_file_and_line() {
    let path = fixture("bad.jsonl", &format!("{GOOD}\n{BAD}\n"));
    let output = check(&path, &[]);
    assert_eq!(output.status.code(), Some(2));
    let text = stdout(&output);
    let expected = format!("{}:2: p_chosen: label -0.2 outside [0, 1]", path.display());
    assert!(text.lines().any(|line| line == expected), "{text}");
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.contains("1 of 2 records invalid (1 problem)"),
        "{error}"
    );
}

#[test]
fn json_output_lists_every_problem() {
    let path = fixture(
        "mixed.jsonl",
        &format!(
            "{BAD}\n{GOOD}\n{}\n\n{}\n",
            r#"{"prompt":"p"}"#, r#"{"prompt":"p","chosen":"x","rejected":"y","p_chosen":0.1}"#
        ),
    );
    let output = check(&path, &["--json"]);
    assert_eq!(output.status.code(), Some(2));
    let report = json_report(&output);
    assert_eq!(report["valid_file"], false);
    assert_eq!(
        (report["records"].as_u64(), report["valid"].as_u64()),
        (Some(4), Some(2))
    );
    assert_eq!(report["reoriented"], 1);
    let problems: Vec<(u64, &str)> = report["problem_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), p["field"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, [(1, "p_chosen"), (3, "chosen"), (3, "rejected")]);
    let counts: Vec<u64> = report["histogram"]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_u64().unwrap())
        .collect();
    assert_eq!(
        counts,
        [0, 0, 0, 0, 1, 0, 0, 0, 1, 0],
        "0.7 and the re-oriented 0.9"
    );
}

#[test]
fn format_and_temperature_flags_reach_the_loader() {
    let record =
        r#"{"prompt":"p","chosen":"a","rejected":"b","score_chosen":7,"score_rejected":5}"#;
    let path = fixture("uf.jsonl", &format!("{record}\n"));
    let mean = |flags: &[&str]| {
        let output = check(&path, flags);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        json_report(&output)["mean_label"].as_f64().unwrap()
    };
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    assert!((mean(&["--json"]) - sigmoid(2.0)).abs() < 1e-12);
    assert!((mean(&["--json", "--temperature", "4"]) - sigmoid(0.5)).abs() < 1e-12);
    // Forced to another format, the same record lacks that format's fields.
    let output = check(&path, &["--format", "votes"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stdout(&output).contains("uf.jsonl:1: votes_chosen: missing field"),
        "{}",
        stdout(&output)
    );
    let output = check(&path, &["--temperature", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("temperature"));
}

#[test]
fn json_array_problems_name_the_record() {
    let records = r#"[
  {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}},
  {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "a"}}
]"#;
    let path = fixture("pairs.json", records);
    let output = check(&path, &["--format", "sharegpt"]);
    assert_eq!(output.status.code(), Some(2));
    let expected = format!(
        "{}:record 2: rejected: identical chosen and rejected",
        path.display()
    );
    assert!(
        stdout(&output).lines().any(|line| line == expected),
        "{}",
        stdout(&output)
    );
}

#[test]
fn unreadable_input_is_one_line_and_exit_two() {
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("does-not-exist.jsonl");
    let output = check(&missing, &[]);
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with("softalign: error: cannot read"),
        "{error}"
    );

    let unknown = fixture("unknown.jsonl", "{\"question\": \"q\"}\n");
    let output = check(&unknown, &[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown.jsonl:1: record: cannot detect the format"));

    let output = check(&unknown, &["--format", "parquet"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap rejects an unknown format"
    );
}
