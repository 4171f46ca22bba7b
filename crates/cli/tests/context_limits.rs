//! `score` and `generate` at the edges of a model's context and of UTF-8: a text or prompt past
//! `max_position_embeddings` is refused with the limit named (and `--max-length` goes past
//! it), generation stops at the context, a 5 MB text is refused instead of exhausting memory,
//! and generated text that ends inside a UTF-8 sequence is printed as transformers' `decode`
//! prints it. The model is `../shared/golden/hf-tiny-llama` (256 positions, byte-level BPE).

mod common;

use std::path::{Path, PathBuf};

use common::{dir, s, softalign, stderr};
use softalign_model::weights::write_safetensors;
use softalign_model::{TextTokenizer, WeightMap};

fn golden_llama() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

fn tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(&golden_llama().join("tokenizer.json")).unwrap()
}

/// A text of exactly `tokens` tokens under the golden tokenizer.
fn text_of(tokens: usize) -> String {
    let tokenizer = tokenizer();
    let mut text = String::new();
    while tokenizer.encode(&text).unwrap().len() < tokens {
        text.push_str(" a");
    }
    assert_eq!(tokenizer.encode(&text).unwrap().len(), tokens);
    text
}

/// The byte-level token of the lone byte 0xE2 (`â`), the first byte of a three-byte character.
const LEAD_BYTE_TOKEN: usize = 159;

/// A copy of the golden Llama whose every greedy step picks [`LEAD_BYTE_TOKEN`]: each block adds
/// nothing to the residual stream (zero output projections), every embedding is all ones, so the
/// final hidden state is all ones, and only that token's head row is non-zero.
fn lead_byte_model(dir: &Path) -> PathBuf {
    let model = dir.join("lead-byte-model");
    std::fs::create_dir_all(&model).unwrap();
    for file in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(golden_llama().join(file), model.join(file)).unwrap();
    }
    let mut weights =
        WeightMap::read_safetensors(&golden_llama().join("model.safetensors")).unwrap();
    let width = weights.tensors["model.norm.weight"].data.len();
    for (name, tensor) in weights.tensors.iter_mut() {
        if name.ends_with("o_proj.weight") || name.ends_with("down_proj.weight") {
            tensor.data.fill(0.0);
        } else if name == "model.embed_tokens.weight" || name == "model.norm.weight" {
            tensor.data.fill(1.0);
        } else if name == "lm_head.weight" {
            tensor.data.fill(0.0);
            let row = LEAD_BYTE_TOKEN * width;
            tensor.data[row..row + width].fill(1.0);
        }
    }
    let mut tensors: Vec<_> = weights.tensors.into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_safetensors(&model.join("model.safetensors"), &tensors).unwrap();
    model
}

#[test]
fn generated_text_ending_inside_a_utf8_sequence_is_printed_as_decode_prints_it() {
    let dir = dir("utf8-tail");
    let model = lead_byte_model(&dir);
    for n in [1, 3] {
        let max = n.to_string();
        let output = softalign(&[
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "hi",
            "--max-tokens",
            &max,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let want = tokenizer()
            .decode(&vec![LEAD_BYTE_TOKEN as u32; n], true)
            .unwrap();
        assert!(want.contains('\u{fffd}'), "{want:?}");
        assert_eq!(
            String::from_utf8(output.stdout).unwrap(),
            want,
            "{n} tokens"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn generation_stops_at_the_context_and_a_prompt_filling_it_is_refused() {
    let dir = dir("generate-context");
    let model = lead_byte_model(&dir);
    let generate = |prompt: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            s(&model),
            "--prompt",
            prompt,
            "--max-tokens",
            "50",
        ];
        args.extend_from_slice(extra);
        softalign(&args)
    };
    // 250 prompt tokens leave 6 of the 256 positions: generation stops there and says so.
    let output = generate(&text_of(250), &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("stopped at 256 tokens"), "{err}");
    let printed = String::from_utf8(output.stdout).unwrap();
    let want = tokenizer()
        .decode(&[LEAD_BYTE_TOKEN as u32; 6], true)
        .unwrap();
    assert_eq!(printed, want);
    // A prompt of the whole context is refused, naming the limit and the override.
    let output = generate(&text_of(300), &[]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 2, "a load line and one error: {err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("softalign: error: --prompt: 300 tokens")
            && last.contains("256")
            && last.contains("--max-length"),
        "{err}"
    );
    // --max-length goes past it.
    let output = generate(&text_of(300), &["--max-length", "310"]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{err}");
    assert!(err.contains("stopped at 310 tokens"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn score_refuses_a_text_past_the_context_naming_the_limit_and_max_length_overrides() {
    let dir = dir("score-context");
    let model = golden_llama();
    let long = text_of(300);
    let output = softalign(&["score", "--model", s(&model), "--text", &long]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("softalign: error: --text: 300 tokens")
            && err.contains("256")
            && err.contains("--max-length")
            && err.lines().count() == 1,
        "{err}"
    );
    let output = softalign(&[
        "score",
        "--model",
        s(&model),
        "--text",
        &long,
        "--max-length",
        "300",
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["texts"][0]["tokens"], 300);
    // A text at the limit is scored as before.
    let output = softalign(&["score", "--model", s(&model), "--text", &text_of(256)]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // In a file, the refusal names the file and the line.
    let file = dir.join("texts.jsonl");
    let short = serde_json::json!({"text": "a short one"});
    let five_mb = serde_json::json!({"text": "word ".repeat(1_000_000)});
    std::fs::write(&file, format!("{short}\n{five_mb}\n")).unwrap();
    let output = softalign(&["score", "--model", s(&model), "--file", s(&file)]);
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{}:2: text: ", file.display()))
            && err.contains("more than the model's context of 256 positions")
            && err.lines().count() == 1,
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
