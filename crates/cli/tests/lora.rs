//! LoRA from the command line: `align --lora-r` trains adapters, exports them in PEFT's layout
//! (and the merged model with `--merge`), resumes bitwise and refuses another base; `generate
//! --adapter` loads PEFT's own adapter and ours; bad LoRA settings and adapters are one-line
//! errors with status 2.

mod common;

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::Device;
use common::{dir, softalign, stderr};
use softalign_model::{GenerationConfig, Sampling, generate, load_adapter, load_pretrained};
use softalign_train::demo::seeded_model;
use softalign_train::demo::task;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/peft-tiny-lora")
}

/// A tiny random Llama with the demo's tokenizer, saved in Hugging Face layout.
fn tiny_model(dir: &Path, seed: u64) -> PathBuf {
    let path = dir.join(format!("tiny-model-{seed}"));
    let model = seeded_model(&task::model_config(), seed, &Device::default()).unwrap();
    softalign_model::save_pretrained(&model.valid(), &task::tokenizer().unwrap(), &path).unwrap();
    path
}

fn pairs(dir: &Path) -> PathBuf {
    let data = dir.join("pairs.jsonl");
    let mut lines = String::new();
    for n in (0..1000).step_by(25) {
        let p = [(n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8];
        let prompt: String = p.iter().map(|d| char::from(b'0' + d)).collect();
        lines.push_str(&format!(
            "{{\"prompt\": \"{prompt}>\", \"chosen\": \"{}\", \"rejected\": \"{prompt}\", \"p_chosen\": 0.7}}\n",
            task::correct_answer(&p)
        ));
    }
    std::fs::write(&data, lines).unwrap();
    data
}

fn generated(args: &[&str]) -> String {
    let output = softalign(args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn align_with_lora_exports_a_peft_adapter_and_the_merged_model_and_resumes_bitwise() {
    let dir = dir("lora-align");
    let model = tiny_model(&dir, 4);
    let data = pairs(&dir);
    let straight = dir.join("straight");
    let args = |out: &Path| {
        [
            "align",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--learning-rate",
            "1e-2",
            "--batch-size",
            "2",
            "--max-steps",
            "6",
            "--save-every",
            "3",
            "--keep-checkpoints",
            "3",
            "--lora-r",
            "4",
            "--lora-targets",
            "q_proj,v_proj,down_proj",
            "--merge",
            "--out",
            s(out),
            "--no-progress",
        ]
        .map(String::from)
    };
    let output = softalign(&args(&straight).each_ref().map(String::as_str));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let resolved = std::fs::read_to_string(straight.join("config.toml")).unwrap();
    for line in [
        "lora-r = 4",
        "lora-alpha = 8.0",
        "lora-targets = \"q_proj,v_proj,down_proj\"",
        "merge = true",
    ] {
        assert!(resolved.contains(line), "{line} not in\n{resolved}");
    }
    let adapter = straight.join("adapter");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    assert_eq!(config["base_model_name_or_path"], s(&model));
    let merged = straight.join("model");
    assert!(merged.join("model.safetensors").is_file());

    // The adapter on its base generates what the merged model does.
    let prompt = ["--prompt", "123>", "--max-tokens", "8"];
    let with_adapter = generated(
        &[
            ["generate", "--model", s(&model), "--adapter", s(&adapter)].as_slice(),
            &prompt,
        ]
        .concat(),
    );
    let from_merged =
        generated(&[["generate", "--model", s(&merged)].as_slice(), &prompt].concat());
    assert_eq!(with_adapter, from_merged);

    // Resume from step 3: the same adapter, bit for bit.
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
    let weights =
        |out: &Path| std::fs::read(out.join("adapter").join("adapter_model.safetensors")).unwrap();
    assert!(
        weights(&straight) == weights(&resumed),
        "resumed adapter differs"
    );

    // Resuming onto another base model is refused.
    let other = tiny_model(&dir, 5);
    let output = softalign(&[
        "align",
        "--resume",
        s(&checkpoint),
        "--model",
        s(&other),
        "--out",
        s(&dir.join("other")),
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let error = stderr(&output);
    let errors: Vec<&str> = error.lines().filter(|l| l.contains("error")).collect();
    assert_eq!(errors.len(), 1, "{error}");
    assert!(errors[0].contains("another base model"), "{error}");

    // Continue training the exported adapter with --adapter.
    let more = dir.join("more");
    let output = softalign(&[
        "align",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--adapter",
        s(&adapter),
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--out",
        s(&more),
        "--no-progress",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        more.join("adapter")
            .join("adapter_model.safetensors")
            .is_file()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generate_with_peft_adapter_decodes_what_the_library_computes() {
    let base = golden().join("base");
    let adapter = golden().join("adapter");
    let device = Device::default();
    let loaded = load_pretrained(&base, &device).unwrap();
    let model = load_adapter(loaded.model.clone(), &adapter).unwrap();
    let prompt = "Soft preference labels";
    let settings = GenerationConfig {
        max_new_tokens: 12,
        sampling: Sampling::new(0.0, 1.0, None).unwrap(),
        seed: 0,
        stop_tokens: Vec::new(),
    };
    let decode = |m| {
        let ids = generate(
            m,
            &loaded.tokenizer.encode(prompt).unwrap(),
            &settings,
            |_| Ok(true),
        )
        .unwrap();
        loaded.tokenizer.decode(&ids, true).unwrap()
    };
    let (want, without) = (decode(&model), decode(&loaded.model));
    assert_ne!(want, without, "the adapter changes the greedy continuation");
    let got = generated(&[
        "generate",
        "--model",
        s(&base),
        "--adapter",
        s(&adapter),
        "--prompt",
        prompt,
        "--max-tokens",
        "12",
    ]);
    assert_eq!(got.trim_end(), want.trim_end());
}

#[test]
fn bad_lora_settings_and_adapters_are_one_line_errors_with_status_2() {
    let dir = dir("lora-errors");
    let base = golden().join("base");
    let data = pairs(&dir);
    let out = dir.join("out");
    let train = |extra: &[&str]| {
        let mut args = vec![
            "align",
            "--model",
            s(&base),
            "--data",
            s(&data),
            "--out",
            s(&out),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        softalign(&args)
    };
    for (extra, needle) in [
        (
            &["--lora-r", "4", "--lora-dropout", "1.5"][..],
            "lora-dropout",
        ),
        (&["--lora-r", "4", "--lora-alpha", "0"][..], "lora-alpha"),
        (
            &[
                "--lora-r",
                "4",
                "--lora-dropout",
                "0.1",
                "--gradient-checkpointing",
            ][..],
            "lora-dropout: is 0.1; gradient checkpointing recomputes each block",
        ),
        (
            &["--lora-r", "4", "--lora-targets", "lm_head"][..],
            "lm_head",
        ),
        (&["--lora-alpha", "16"][..], "--lora-r"),
        (&["--merge"][..], "merge: needs LoRA adapters"),
        (
            &["--adapter", s(&golden().join("adapter")), "--lora-r", "8"][..],
            "adapter: takes",
        ),
    ] {
        let output = train(extra);
        let error = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {error}");
        assert!(
            error.contains(needle) && error.lines().count() == 1,
            "{extra:?}: {error}"
        );
    }
    // An adapter whose tensors do not fit the base names the tensor.
    let bad = dir.join("bad-adapter");
    std::fs::create_dir_all(&bad).unwrap();
    let config = std::fs::read_to_string(golden().join("adapter/adapter_config.json")).unwrap();
    std::fs::write(
        bad.join("adapter_config.json"),
        config.replace("\"r\": 4", "\"r\": 2"),
    )
    .unwrap();
    std::fs::copy(
        golden().join("adapter/adapter_model.safetensors"),
        bad.join("adapter_model.safetensors"),
    )
    .unwrap();
    let output = softalign(&[
        "generate",
        "--model",
        s(&base),
        "--adapter",
        s(&bad),
        "--prompt",
        "x",
    ]);
    let error = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{error}");
    assert!(
        error.contains("lora_A.weight") && error.lines().count() == 1,
        "{error}"
    );
    assert!(!out.join("adapter").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
