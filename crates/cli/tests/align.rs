//! `softalign align` end to end: strict data errors (one `FILE:LINE: FIELD: PROBLEM` line each,
//! exit status 2), bad flags and config keys (one line, exit 2), and a tiny model aligned,
//! checkpointed, resumed bitwise and exported in Hugging Face layout.

mod common;

use common::{dir, s, softalign, stderr, tiny_model, tiny_pairs};

use std::path::Path;

use burn::tensor::Device;

#[test]
fn strict_mode_reports_every_bad_record_and_exits_2() {
    let dir = dir("align-strict");
    let data = dir.join("bad.jsonl");
    std::fs::write(
        &data,
        concat!(
            "{\"prompt\": \"2+2?\", \"chosen\": \"4\", \"rejected\": \"5\", \"p_chosen\": 0.8}\n",
            "{\"prompt\": \"3+3?\", \"chosen\": \"6\"}\n",
            "{\"prompt\": \"4+4?\", \"chosen\": \"8\", \"rejected\": \"9\", \"p_chosen\": 1.5}\n",
        ),
    )
    .unwrap();
    let out = dir.join("out");
    let output = softalign(&[
        "align",
        "--model",
        s(&dir.join("no-model")),
        "--data",
        s(&data),
        "--out",
        s(&out),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    let lines: Vec<&str> = err.lines().collect();
    let shown = data.display().to_string();
    assert!(
        lines[0].starts_with(&format!("{shown}:2: rejected: ")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{shown}:3: p_chosen: ")),
        "{err}"
    );
    assert!(lines[2].starts_with("softalign: error: "), "{err}");
    assert_eq!(lines.len(), 3, "{err}");
    assert!(!out.join("checkpoints").exists());
}

#[test]
fn bad_flags_and_config_keys_are_one_line_errors_with_status_2() {
    let dir = dir("align-flags");
    let common = ["align", "--model", "m", "--data", "d.jsonl", "--out"];
    let out = dir.join("out");
    for (extra, expect) in [
        (vec!["--loss", "kto"], "--loss"),
        (vec!["--beta", "-1"], "beta"),
        (vec!["--optimizer", "sgd"], "--optimizer"),
        (vec!["--max-length", "1"], "max-length"),
        (vec!["--warmup-ratio", "1.5"], "warmup-ratio"),
        (vec!["--loss", "dpo", "--alpha", "2"], "--alpha"),
    ] {
        let mut args: Vec<&str> = common.to_vec();
        args.push(s(&out));
        args.extend(&extra);
        let output = softalign(&args);
        assert_eq!(output.status.code(), Some(2), "{extra:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        assert!(err.contains(expect), "{extra:?}: {err}");
    }
    let config = dir.join("run.toml");
    std::fs::write(&config, "max-steps = 4\nlearning-rat = 0.1\n").unwrap();
    let output = softalign(&["align", "--config", s(&config)]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("learning-rat: unknown setting"),
        "{}",
        stderr(&output)
    );
    let output = softalign(&["align", "--loss", "dpo"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "the demo takes no training flags"
    );
}

#[test]
fn a_tiny_model_aligns_resumes_bitwise_and_exports() {
    let dir = dir("align-tiny");
    let model = tiny_model(&dir);
    let data = tiny_pairs(&dir);
    let config = dir.join("run.toml");
    std::fs::write(
        &config,
        "learning-rate = 1e-3\nbatch-size = 2\ngrad-accum = 2\n",
    )
    .unwrap();
    let straight = dir.join("straight");
    let args = |out: &Path| {
        vec![
            "align".to_string(),
            "--model".into(),
            s(&model).into(),
            "--data".into(),
            s(&data).into(),
            "--config".into(),
            s(&config).into(),
            "--max-steps".into(),
            "6".into(),
            "--save-every".into(),
            "3".into(),
            "--keep-checkpoints".into(),
            "3".into(),
            "--heldout-fraction".into(),
            "0.2".into(),
            "--eval-every".into(),
            "2".into(),
            "--out".into(),
            s(out).into(),
            "--no-progress".into(),
        ]
    };
    let a: Vec<String> = args(&straight);
    let output = softalign(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let resolved = std::fs::read_to_string(straight.join("config.toml")).unwrap();
    for line in [
        "loss = \"gdpo\"",
        "beta = 0.3",
        "learning-rate = 0.001",
        "grad-accum = 2",
        "max-steps = 6",
    ] {
        assert!(resolved.contains(line), "{line} not in\n{resolved}");
    }
    let metrics = std::fs::read_to_string(straight.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().filter(|l| l.contains("\"train\"")).count(),
        6
    );
    assert!(metrics.contains("\"rewards/margins\""));
    for figure in ["loss.png", "reward_margins.png", "logratios.png"] {
        assert!(straight.join(figure).is_file(), "{figure}");
    }
    let exported = straight.join("model");
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(exported.join(file).is_file(), "{file}");
    }

    // Resume from the step-3 checkpoint into another folder: the same final weights, bit for bit.
    let resumed = dir.join("resumed");
    let checkpoint = straight.join("checkpoints").join("step-00000003");
    let output = softalign(&[
        "align",
        "--resume",
        s(&checkpoint),
        "--out",
        s(&resumed),
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let weights = |out: &Path| std::fs::read(out.join("model").join("model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&resumed),
        "resumed weights differ"
    );
    assert_eq!(
        std::fs::read_to_string(resumed.join("metrics.jsonl")).unwrap(),
        metrics
    );
    // The exported model loads back.
    softalign_model::load_pretrained(&exported, &Device::default()).unwrap();
}
