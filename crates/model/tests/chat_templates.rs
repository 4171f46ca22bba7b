//! Chat templates rendered as transformers renders them: the strings of transformers 5.25's
//! `apply_chat_template(messages, tokenize=False, add_generation_prompt=…)` for the real
//! templates of Llama 3.1, Gemma 2 and 3, Phi-3.5, Qwen2.5, Qwen3, Mistral Nemo and SmolLM2, byte
//! for byte, and the exceptions those templates raise (data/chat_templates/expected.json, made by
//! scripts/golden/chat_templates.py; its header names the versions and the command). Then the
//! tokenizer's side: where the template comes from, BOS not doubled, the end-of-turn token, and a
//! saved tokenizer keeping its template.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use softalign_model::chat_template::{ChatTemplate, TemplateTokens};
use softalign_model::{ChatMessage, TextTokenizer};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/chat_templates")
}

fn template_text(name: &str) -> String {
    std::fs::read_to_string(data().join(format!("{name}.jinja"))).unwrap()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(data().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn messages(list: &Value) -> Vec<ChatMessage> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

fn token(v: &Value) -> Option<String> {
    v.as_str().map(String::from)
}

#[test]
fn renderings_match_transformers_byte_for_byte() {
    let expected = expected();
    let conversations = &expected["conversations"];
    let templates = expected["templates"].as_object().unwrap();
    assert_eq!(templates.len(), 8);
    let mut checked = 0;
    for (name, spec) in templates {
        let path = data().join(format!("{name}.jinja"));
        let template = ChatTemplate::new(template_text(name), &path, "chat_template");
        let tokens = TemplateTokens {
            bos_token: token(&spec["bos_token"]),
            eos_token: token(&spec["eos_token"]),
        };
        for case in spec["cases"].as_array().unwrap() {
            let conversation = case["conversation"].as_str().unwrap();
            let add_generation_prompt = case["add_generation_prompt"].as_bool().unwrap();
            let turns = messages(&conversations[conversation]);
            let got = template.render(&turns, add_generation_prompt, &tokens);
            let label =
                format!("{name} {conversation} add_generation_prompt={add_generation_prompt}");
            match (case.get("text"), case.get("error")) {
                (Some(text), None) => {
                    assert_eq!(got.unwrap(), text.as_str().unwrap(), "{label}");
                }
                (None, Some(error)) => {
                    let message = got.expect_err(&label).to_string();
                    let want = format!(
                        "{}: chat_template: {} (raised by the template, line ",
                        path.display(),
                        error.as_str().unwrap()
                    );
                    assert!(message.starts_with(&want), "{label}: {message}");
                    assert!(!message.contains('\n'), "{label}: {message}");
                }
                _ => panic!("{label}: a case holds a text or an error"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 8 * 8 * 2);
}

#[test]
fn llama_3_2_dates_its_system_turn_with_strftime_now() {
    // Llama 3.2's template is 3.1's with `strftime_now("%d %b %Y")` for 3.1's fixed date.
    let expected = expected();
    let turns = messages(&expected["conversations"]["system_user"]);
    let tokens = TemplateTokens {
        bos_token: Some("<|begin_of_text|>".into()),
        eos_token: Some("<|eot_id|>".into()),
    };
    let path = data().join("llama-3.2-instruct.jinja");
    let template = ChatTemplate::new(template_text("llama-3.2-instruct"), &path, "chat_template");
    let before = today();
    let text = template.render(&turns, true, &tokens).unwrap();
    let after = today();
    let case = expected["templates"]["llama-3.1-instruct"]["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation"] == "system_user" && c["add_generation_prompt"] == true)
        .unwrap();
    let fixed = case["text"].as_str().unwrap();
    let dated =
        |date: &str| fixed.replace("Today Date: 26 Jul 2024", &format!("Today Date: {date}"));
    assert!(text == dated(&before) || text == dated(&after), "{text}");
}

/// Today's date as `%d %b %Y` (UTC), computed apart from the crate's own formatter.
fn today() -> String {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let (mut year, mut day) = (1970u64, days);
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    while day >= if leap(year) { 366 } else { 365 } {
        day -= if leap(year) { 366 } else { 365 };
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let names = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut month = 0;
    while day >= lengths[month] {
        day -= lengths[month];
        month += 1;
    }
    format!("{:02} {} {year}", day + 1, names[month])
}

/// A word-level `tokenizer.json` whose special tokens are `specials` (ids 1…), with `bos`
/// prepended by the post-processor when given (as Llama's and Gemma's tokenizers do).
fn tokenizer_json(specials: &[&str], bos: Option<&str>) -> Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("[UNK]".into(), json!(0));
    let mut added = Vec::new();
    for (i, s) in specials.iter().enumerate() {
        vocab.insert(s.to_string(), json!(i + 1));
        added.push(
            json!({"id": i + 1, "content": s, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": false, "special": true}),
        );
    }
    let post_processor = match bos {
        Some(bos) => {
            let id = specials.iter().position(|s| *s == bos).unwrap() + 1;
            json!({"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [id], "tokens": [bos]}}})
        }
        None => Value::Null,
    };
    json!({"version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
           "normalizer": null, "pre_tokenizer": {"type": "Whitespace"},
           "post_processor": post_processor, "decoder": null,
           "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}})
}

fn temp_folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-chat-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

const LLAMA3_SPECIALS: [&str; 4] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
];

/// A Llama 3.1 Instruct folder's tokenizer files, with `<|eot_id|>` as the EOS and the BOS as
/// an AddedToken object, as Meta's tokenizer_config.json writes them.
fn llama3_folder(name: &str) -> PathBuf {
    let dir = temp_folder(name);
    let mut specials = LLAMA3_SPECIALS.to_vec();
    specials.push("<|eot_id|>");
    write_json(
        &dir.join("tokenizer.json"),
        &tokenizer_json(&specials, Some("<|begin_of_text|>")),
    );
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({"bos_token": {"content": "<|begin_of_text|>", "lstrip": false},
                "eos_token": "<|eot_id|>",
                "chat_template": template_text("llama-3.1-instruct")}),
    );
    dir
}

#[test]
fn llama3_prompt_has_one_bos_and_turns_end_with_eot() {
    let dir = llama3_folder("llama3");
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let turns = [ChatMessage::new("user", "Hello")];
    let text = tok.apply_chat_template(&turns, true).unwrap();
    assert!(
        text.starts_with("<|begin_of_text|><|start_header_id|>system"),
        "{text}"
    );
    assert!(
        text.ends_with("<|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{text}"
    );
    let bos = tok.token_id("<|begin_of_text|>").unwrap();
    let ids = tok.encode_chat(&text).unwrap();
    assert_eq!(ids[0], bos);
    assert_eq!(ids.iter().filter(|&&id| id == bos).count(), 1, "{ids:?}");
    // Plain text still gets the post-processor's BOS.
    assert_eq!(tok.encode("Hello").unwrap()[0], bos);
    assert_eq!(
        tok.end_of_turn_ids()[0],
        tok.token_id("<|eot_id|>").unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn each_family_ends_a_reply_with_its_own_turn_token() {
    let cases = [
        (
            "gemma-3-it",
            vec!["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
            "<end_of_turn>",
        ),
        (
            "phi-3.5-mini-instruct",
            vec![
                "<s>",
                "<|endoftext|>",
                "<|user|>",
                "<|assistant|>",
                "<|end|>",
            ],
            "<|end|>",
        ),
        (
            "mistral-nemo-instruct",
            vec!["<s>", "</s>", "[INST]", "[/INST]"],
            "</s>",
        ),
        (
            "qwen2.5-instruct",
            vec!["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            "<|im_end|>",
        ),
        (
            "qwen3",
            vec!["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            "<|im_end|>",
        ),
    ];
    let expected = expected();
    for (name, specials, turn_end) in cases {
        let dir = temp_folder(name);
        write_json(
            &dir.join("tokenizer.json"),
            &tokenizer_json(&specials, None),
        );
        let spec = &expected["templates"][name];
        write_json(
            &dir.join("tokenizer_config.json"),
            &json!({"bos_token": spec["bos_token"], "eos_token": spec["eos_token"]}),
        );
        // The template as transformers ≥ 4.43 saves it, in its own file.
        std::fs::write(dir.join("chat_template.jinja"), template_text(name)).unwrap();
        let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        assert_eq!(
            tok.end_of_turn_ids()[0],
            tok.token_id(turn_end).unwrap(),
            "{name}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn template_sources_follow_transformers_priority() {
    let dir = temp_folder("sources");
    write_json(&dir.join("tokenizer.json"), &tokenizer_json(&["<s>"], None));
    let config = dir.join("tokenizer_config.json");
    let load = || TextTokenizer::from_file(&dir.join("tokenizer.json"));
    let one = [ChatMessage::new("user", "x")];

    // A list of named templates: the "default" one.
    write_json(
        &config,
        &json!({"chat_template": [{"name": "tool_use", "template": "tools"},
                                  {"name": "default", "template": "default:{{ messages[0].content }}"}]}),
    );
    assert_eq!(
        load().unwrap().apply_chat_template(&one, false).unwrap(),
        "default:x"
    );
    // chat_template.jinja beside it wins, as in transformers.
    std::fs::write(
        dir.join("chat_template.jinja"),
        "jinja:{{ messages[0].content }}",
    )
    .unwrap();
    assert_eq!(
        load().unwrap().apply_chat_template(&one, false).unwrap(),
        "jinja:x"
    );
    std::fs::remove_file(dir.join("chat_template.jinja")).unwrap();

    // Malformed fields are one-line errors naming the file and the field.
    write_json(
        &config,
        &json!({"chat_template": [{"name": "tool_use", "template": "t"}]}),
    );
    let e = load().unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: chat_template: a list of named templates without a \"default\" one",
            config.display()
        )
    );
    write_json(&config, &json!({"chat_template": 3}));
    let e = load().unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: chat_template: expected a string",
            config.display()
        )),
        "{e}"
    );

    // No template: ChatML, the tokenizer's BOS kept as for plain text.
    write_json(&config, &json!({"eos_token": "<s>"}));
    let tok = load().unwrap();
    assert_eq!(
        tok.apply_chat_template(&one, true).unwrap(),
        "<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_saved_tokenizer_keeps_its_template_and_special_tokens() {
    let dir = llama3_folder("save-src");
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let out = temp_folder("save-out");
    let turns = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", " Hi "),
    ];
    tok.save(&out).unwrap();
    let back = TextTokenizer::from_file(&out.join("tokenizer.json")).unwrap();
    assert_eq!(back.chat_template(), tok.chat_template());
    assert_eq!(
        back.apply_chat_template(&turns, true).unwrap(),
        tok.apply_chat_template(&turns, true).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(out.join("chat_template.jinja")).unwrap(),
        template_text("llama-3.1-instruct")
    );
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["bos_token"], "<|begin_of_text|>");
    assert_eq!(config["eos_token"], "<|eot_id|>");

    // A tokenizer without a template saved over that folder removes the stale template file.
    let plain_dir = temp_folder("save-plain");
    write_json(
        &plain_dir.join("tokenizer.json"),
        &tokenizer_json(&["<s>"], None),
    );
    let plain = TextTokenizer::from_file(&plain_dir.join("tokenizer.json")).unwrap();
    plain.save(&out).unwrap();
    assert!(!out.join("chat_template.jinja").exists());
    let back = TextTokenizer::from_file(&out.join("tokenizer.json")).unwrap();
    assert_eq!(back.chat_template(), None);
    for d in [dir, out, plain_dir] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
