//! Conversational data through a real, non-ChatML chat template (Llama 3.1 Instruct's): TRL's
//! conversational preference records and SFT `messages` records become the template's prompt,
//! with one BOS and the assistant's generation prompt, and responses ended by `<|eot_id|>`; a
//! template that refuses a conversation names the record.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use softalign_data::{LoadOptions, ValidationPolicy, load_bytes};
use softalign_model::{ModelConfig, TextTokenizer};
use softalign_train::encode::Encoder;
use softalign_train::sft_data::load_sft;
use softalign_train::{PromptTemplate, Truncation};

const SPECIALS: [&str; 5] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
];
const WORDS: [&str; 6] = ["What", "is", "two", "plus", "four", "five"];

fn template(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/data/chat_templates")
        .join(format!("{name}.jinja"));
    std::fs::read_to_string(path).unwrap()
}

/// A Llama-3-style tokenizer folder (word-level model, BOS added by the post-processor) with
/// `chat_template` in its tokenizer_config.json.
fn tokenizer_folder(name: &str, chat_template: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("softalign-chat-enc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    let mut added = Vec::new();
    for (i, token) in SPECIALS.iter().chain(WORDS.iter()).enumerate() {
        vocab.insert(token.to_string(), json!(i + 1));
        if i < SPECIALS.len() {
            added.push(
                json!({"id": i + 1, "content": token, "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}),
            );
        }
    }
    let bos = SPECIALS[0];
    let tokenizer = json!({"version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added, "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [1], "tokens": [bos]}}},
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}});
    let config =
        json!({"bos_token": bos, "eos_token": "<|eot_id|>", "chat_template": chat_template});
    for (file, value) in [
        ("tokenizer.json", tokenizer),
        ("tokenizer_config.json", config),
    ] {
        std::fs::write(dir.join(file), serde_json::to_string(&value).unwrap()).unwrap();
    }
    dir
}

fn truncation() -> Truncation {
    Truncation {
        max_length: 512,
        max_prompt_length: 256,
    }
}

/// What Llama 3.1's template renders for a system and a user turn, with the generation prompt.
const LLAMA3_PROMPT: &str = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n\
    Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>\
    <|start_header_id|>user<|end_header_id|>\n\nWhat is two plus two<|eot_id|>\
    <|start_header_id|>assistant<|end_header_id|>\n\n";

#[test]
fn trl_conversational_pairs_and_sft_messages_go_through_the_llama3_template() {
    let dir = tokenizer_folder("llama3", &template("llama-3.1-instruct"));
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let config = ModelConfig::smollm2_135m();
    let data = dir.join("pairs.jsonl");
    let mut encoder =
        Encoder::new(&tok, &config, PromptTemplate::Auto, truncation(), &data).unwrap();
    assert!(encoder.uses_chat_template());
    let id = |t: &str| tok.token_id(t).unwrap();
    let (bos, eot) = (id("<|begin_of_text|>"), id("<|eot_id|>"));
    let prompt_ids = tok.encode_chat(LLAMA3_PROMPT).unwrap();
    assert_eq!(prompt_ids.iter().filter(|&&t| t == bos).count(), 1);

    let record = json!({
        "prompt": [{"role": "system", "content": "Be brief."},
                   {"role": "user", "content": "What is two plus two"}],
        "chosen": [{"role": "assistant", "content": "four"}],
        "rejected": [{"role": "assistant", "content": "five"}],
    });
    let loaded = load_bytes(
        &data,
        record.to_string().as_bytes(),
        &LoadOptions::default(),
    )
    .unwrap();
    let pair = encoder.pair(&loaded.pairs[0]).unwrap();
    assert_eq!(pair.prompt, prompt_ids);
    assert_eq!(pair.chosen, vec![id("four"), eot]);
    assert_eq!(pair.rejected, vec![id("five"), eot]);

    let sft = dir.join("sft.jsonl");
    let record = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is two plus two"},
        {"role": "assistant", "content": "four"},
    ]});
    std::fs::write(&sft, format!("{record}\n")).unwrap();
    let records = load_sft(&sft, ValidationPolicy::Strict).unwrap().records;
    let example = encoder
        .example(&records[0].prompt, &records[0].response, records[0].line)
        .unwrap();
    assert_eq!(example.prompt, prompt_ids);
    assert_eq!(example.response, vec![id("four"), eot]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_template_refusing_a_conversation_names_the_record() {
    // Gemma 2's template refuses a system turn.
    let dir = tokenizer_folder("gemma2", &template("gemma-2-it"));
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let config = ModelConfig::smollm2_135m();
    let data = dir.join("pairs.jsonl");
    let mut encoder =
        Encoder::new(&tok, &config, PromptTemplate::Chat, truncation(), &data).unwrap();
    let records: Vec<Value> = vec![
        json!({"prompt": [{"role": "user", "content": "What is two plus two"}],
               "chosen": [{"role": "assistant", "content": "four"}],
               "rejected": [{"role": "assistant", "content": "five"}]}),
        json!({"prompt": [{"role": "system", "content": "Be brief."},
                          {"role": "user", "content": "What is two plus two"}],
               "chosen": [{"role": "assistant", "content": "four"}],
               "rejected": [{"role": "assistant", "content": "five"}]}),
    ];
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    let loaded = load_bytes(&data, text.as_bytes(), &LoadOptions::default()).unwrap();
    assert!(encoder.pair(&loaded.pairs[0]).is_ok());
    let e = encoder.pair(&loaded.pairs[1]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:2: prompt: {}: chat_template: System role not supported (raised by the template, line 1)",
            data.display(),
            dir.join("tokenizer_config.json").display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
