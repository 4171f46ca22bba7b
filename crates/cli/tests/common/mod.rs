//! Helpers shared by the command-line tests: a fresh scratch folder and the built binary.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn::module::Module;
use burn::tensor::Device;
use softalign_train::demo::{seeded_model, task};

/// An empty folder `softalign-NAME` under cargo's scratch directory for integration tests.
pub fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("softalign-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `softalign` binary of this build with `args`.
pub fn softalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(args)
        .output()
        .expect("the softalign binary runs")
}

/// The standard error of `output` as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// `path` as `&str` (test paths are UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tiny random Llama with the demo's tokenizer, saved in Hugging Face layout.
pub fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-model");
    let model = seeded_model(&task::model_config(), 4, &Device::default()).unwrap();
    softalign_model::save_pretrained(&model.valid(), &task::tokenizer().unwrap(), &path).unwrap();
    path
}

/// Forty preference pairs of the demo's task (`p_chosen` 0.7) as JSONL in `dir/pairs.jsonl`.
pub fn tiny_pairs(dir: &Path) -> PathBuf {
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
