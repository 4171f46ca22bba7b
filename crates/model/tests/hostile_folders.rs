//! Broken and forged Hugging Face model folders (copies of ../shared/golden/hf-tiny-llama with
//! one thing changed): each load is one clean error naming the file and field, never a panic or
//! an allocation sized by a forged number.

use std::path::{Path, PathBuf};

use serde_json::Value;
use softalign_model::load_pretrained;

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

/// A fresh copy of the golden folder under cargo's scratch directory.
fn copy(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(golden()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, serde_json::to_string(&value).unwrap()).unwrap();
}

/// The one-line error of loading `dir`; a panic or a success fails the test.
fn load_error(dir: &Path) -> String {
    let e = load_pretrained(dir, &burn::tensor::Device::default())
        .expect_err("a broken folder must not load")
        .to_string();
    assert!(!e.contains('\n'), "{e}");
    e
}

#[test]
fn an_added_token_past_the_embedding_is_refused_at_load() {
    let dir = copy("added-token");
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["added_tokens"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "id": 330, "content": "<extra>", "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true
            }));
    });
    let e = load_error(&dir);
    assert!(
        e.contains("tokenizer.json: tokenizer: token \"<extra>\" has id 330")
            && e.contains("330 rows"),
        "{e}"
    );
}

#[test]
fn an_eos_id_past_the_embedding_is_refused_at_load() {
    let dir = copy("eos");
    edit_json(&dir.join("config.json"), |c| {
        c["eos_token_id"] = 4000.into()
    });
    let e = load_error(&dir);
    assert!(
        e.contains("config.json: eos_token_id: 4000 is not below vocab_size 330"),
        "{e}"
    );
}

#[test]
fn huge_layer_counts_are_refused_before_anything_is_sized_by_them() {
    for layers in [1_000_000_000u64, u64::MAX] {
        let dir = copy("layers");
        edit_json(&dir.join("config.json"), |c| {
            c["num_hidden_layers"] = layers.into()
        });
        let e = load_error(&dir);
        assert!(
            e.contains("num_hidden_layers") && e.contains("tensors"),
            "{e}"
        );
    }
}

#[test]
fn widths_whose_products_overflow_are_refused() {
    let dir = copy("widths");
    edit_json(&dir.join("config.json"), |c| {
        c["vocab_size"] = u64::MAX.into();
    });
    let e = load_error(&dir);
    assert!(e.contains("config.json: vocab_size"), "{e}");
}

#[test]
fn a_tensor_in_two_shards_is_refused() {
    let dir = copy("shards");
    std::fs::copy(
        dir.join("model.safetensors"),
        dir.join("model-00002-of-00002.safetensors"),
    )
    .unwrap();
    let e = load_error(&dir);
    assert!(e.contains("is also in another *.safetensors file"), "{e}");
}

#[test]
fn a_plain_file_is_neither_a_gguf_nor_a_model_folder() {
    let dir = copy("plain");
    let file = dir.join("passwd");
    std::fs::write(&file, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let e = load_pretrained(&file, &burn::tensor::Device::default())
        .expect_err("a plain file is no model")
        .to_string();
    assert!(
        e.contains("passwd: neither a GGUF file nor a Hugging Face model folder"),
        "{e}"
    );
    // A file of the folder still names the folder.
    assert!(load_pretrained(&dir.join("config.json"), &burn::tensor::Device::default()).is_ok());
}
