//! Each format parses a small fixture written here, and auto detection picks the right format.

use std::path::PathBuf;

use softalign_data::{
    Format, LoadOptions, LoadedPairs, Message, PreferencePair, Prompt, Role, load,
};

/// Writes `contents` to a fresh file under Cargo's per-test temporary folder.
fn fixture(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("softalign-data-formats");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn load_auto(name: &str, contents: &str) -> LoadedPairs {
    load(fixture(name, contents), &LoadOptions::default()).unwrap()
}

fn text(prompt: &str) -> Prompt {
    Prompt::Text(prompt.into())
}

fn user(content: &str) -> Message {
    Message::new(Role::User, content)
}

fn assistant(content: &str) -> Message {
    Message::new(Role::Assistant, content)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn native_label_defaults_to_binary_and_low_labels_are_reoriented() {
    let loaded = load_auto(
        "native.jsonl",
        concat!(
            r#"{"prompt": "2+2?", "chosen": "4", "rejected": "5", "p_chosen": 0.8}"#,
            "\n\n",
            r#"{"prompt": "3+3?", "chosen": "6", "rejected": "7"}"#,
            "\n",
            r#"{"prompt": "1+1?", "chosen": "3", "rejected": "2", "p_chosen": 0.3}"#,
            "\n",
        ),
    );
    assert_eq!(loaded.format, Some(Format::Native));
    assert_eq!(loaded.records, 3);
    assert_eq!(
        loaded.pairs,
        vec![
            PreferencePair {
                prompt: text("2+2?"),
                chosen: "4".into(),
                rejected: "5".into(),
                soft_label: 0.8,
                source_line: 1,
            },
            PreferencePair {
                prompt: text("3+3?"),
                chosen: "6".into(),
                rejected: "7".into(),
                soft_label: 1.0,
                source_line: 3,
            },
            PreferencePair {
                prompt: text("1+1?"),
                chosen: "2".into(),
                rejected: "3".into(),
                soft_label: 0.7,
                source_line: 4,
            },
        ]
    );
    assert_eq!(loaded.reoriented, 1);
}

#[test]
fn trl_conversational_with_explicit_and_implicit_prompts() {
    let explicit = concat!(
        r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Sky colour?"}], "#,
        r#""chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "Green."}]}]}"#,
    );
    let implicit = concat!(
        r#"{"chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], "#,
        r#""rejected": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}], "p_chosen": 0.9}"#,
    );
    let loaded = load_auto("trl.jsonl", &format!("{explicit}\n{implicit}\n"));
    assert_eq!(loaded.format, Some(Format::Trl));
    let [first, second] = &loaded.pairs[..] else {
        panic!("expected two pairs, got {:?}", loaded.problems)
    };
    assert_eq!(
        first.prompt,
        Prompt::Chat(vec![
            Message::new(Role::System, "Be brief."),
            user("Sky colour?")
        ])
    );
    assert_eq!(
        (first.chosen.as_str(), first.rejected.as_str()),
        ("Blue.", "Green.")
    );
    assert_eq!(second.prompt, Prompt::Chat(vec![user("Hi")]));
    assert_eq!(
        (second.chosen.as_str(), second.rejected.as_str()),
        ("Hello!", "Go away.")
    );
    assert_eq!(second.soft_label, 0.9);
}

#[test]
fn trl_implicit_prompt_in_plain_text_is_the_shared_prefix_as_trl_extracts_it() {
    // TRL's documented implicit-prompt form: the prompt is the characters chosen and rejected
    // share, less a space that ends it (TRL's `extract_prompt` keeps it in the responses).
    let records = [
        r#"{"chosen": "The sky is blue.", "rejected": "The sky is green."}"#,
        r#"{"chosen": "2+2 is 4", "rejected": "2+2 is 5", "p_chosen": 0.8}"#,
        r#"{"chosen": "Déjà vu: oui", "rejected": "Déjà vu: non"}"#,
    ];
    let contents = format!("{}\n", records.join("\n"));
    let loaded = load_auto("trl-implicit-text.jsonl", &contents);
    assert_eq!(loaded.format, Some(Format::Trl), "{:?}", loaded.problems);
    let got: Vec<(Prompt, &str, &str, f64)> = loaded
        .pairs
        .iter()
        .map(|p| {
            (
                p.prompt.clone(),
                p.chosen.as_str(),
                p.rejected.as_str(),
                p.soft_label,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (text("The sky is"), " blue.", " green.", 1.0),
            (text("2+2 is"), " 4", " 5", 0.8),
            (text("Déjà vu:"), " oui", " non", 1.0),
        ]
    );
    // Named explicitly, the same file reads the same way.
    let path = fixture("trl-implicit-text-named.jsonl", &contents);
    let named = load(&path, &LoadOptions::default().with_format(Format::Trl)).unwrap();
    assert_eq!(named.pairs.len(), 3, "{:?}", named.problems);
    assert_eq!(named.pairs[0].prompt, text("The sky is"));
    // Texts that share nothing have no prompt to extract: the record is refused, naming it.
    let path = fixture(
        "trl-implicit-disjoint.jsonl",
        "{\"chosen\": \"Yes.\", \"rejected\": \"No.\"}\n",
    );
    let error = load(&path, &LoadOptions::default().with_format(Format::Trl))
        .unwrap_err()
        .to_string();
    assert!(error.contains("prompt"), "{error}");
}

#[test]
fn hh_dialogues_split_at_the_last_assistant_turn() {
    let chosen =
        "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 6, since 3+3=6.";
    let rejected = "\n\nHuman: What is 2+2?\n\nAssistant: 4.\n\nHuman: And 3+3?\n\nAssistant: 7.";
    let record = serde_json::json!({"chosen": chosen, "rejected": rejected});
    let loaded = load_auto("hh.jsonl", &format!("{record}\n"));
    assert_eq!(loaded.format, Some(Format::Hh));
    let pair = &loaded.pairs[0];
    assert_eq!(
        pair.prompt,
        Prompt::Chat(vec![
            user("What is 2+2?"),
            assistant("4."),
            user("And 3+3?")
        ])
    );
    assert_eq!(pair.chosen, "6, since 3+3=6.");
    assert_eq!(pair.rejected, "7.");
    assert_eq!(pair.soft_label, 1.0);
}

#[test]
fn hh_responses_sharing_their_first_words_keep_them() {
    // The common prefix runs past "Assistant:" into the responses; the cut is still at the marker.
    let record = serde_json::json!({
        "chosen": "\n\nHuman: Name a colour.\n\nAssistant: I like blue.",
        "rejected": "\n\nHuman: Name a colour.\n\nAssistant: I like bananas.",
    });
    let loaded = load_auto("hh-shared.jsonl", &format!("{record}\n"));
    assert_eq!(loaded.pairs[0].chosen, "I like blue.");
    assert_eq!(loaded.pairs[0].rejected, "I like bananas.");
}

#[test]
fn shp_label_is_the_winner_share_of_scores() {
    let a_wins = serde_json::json!({"history": "Best pet?", "human_ref_A": "Cats.", "human_ref_B": "Rocks.",
        "score_A": 30, "score_B": 10, "labels": 1});
    let b_wins = serde_json::json!({"history": "Best fruit?", "human_ref_A": "Soap.", "human_ref_B": "Mango.",
        "score_A": 2, "score_B": 6, "labels": 0});
    let loaded = load_auto("shp.jsonl", &format!("{a_wins}\n{b_wins}\n"));
    assert_eq!(loaded.format, Some(Format::Shp));
    let [a, b] = &loaded.pairs[..] else {
        panic!("{:?}", loaded.problems)
    };
    assert_eq!(
        (a.chosen.as_str(), a.rejected.as_str(), a.soft_label),
        ("Cats.", "Rocks.", 0.75)
    );
    assert_eq!(
        (b.chosen.as_str(), b.rejected.as_str(), b.soft_label),
        ("Mango.", "Soap.", 0.75)
    );
    assert_eq!(a.prompt, text("Best pet?"));
}

#[test]
fn ultrafeedback_label_is_a_tempered_sigmoid_of_the_score_gap() {
    let record = serde_json::json!({
        "prompt": "Write a haiku.",
        "chosen": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "Old pond, frog."}],
        "rejected": [{"role": "user", "content": "Write a haiku."}, {"role": "assistant", "content": "No."}],
        "score_chosen": 8.0, "score_rejected": 6.0,
    });
    let path = fixture("ultrafeedback.jsonl", &format!("{record}\n"));
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (temperature, expected) in [
        (1.0, sigmoid(2.0)),
        (2.0, sigmoid(1.0)),
        (4.0, sigmoid(0.5)),
    ] {
        let options = LoadOptions::default().with_temperature(temperature);
        let loaded = load(&path, &options).unwrap();
        assert_eq!(loaded.format, Some(Format::UltraFeedback));
        let pair = &loaded.pairs[0];
        assert!(
            close(pair.soft_label, expected),
            "τ={temperature}: {}",
            pair.soft_label
        );
        assert_eq!(pair.prompt, text("Write a haiku."));
        assert_eq!(
            (pair.chosen.as_str(), pair.rejected.as_str()),
            ("Old pond, frog.", "No.")
        );
    }
}

#[test]
fn votes_label_is_the_vote_fraction() {
    let loaded = load_auto(
        "votes.jsonl",
        concat!(
            r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": 3, "votes_rejected": 1}"#,
            "\n",
            r#"{"prompt": "q", "chosen": "c", "rejected": "d", "votes_chosen": 2, "votes_rejected": 8}"#,
            "\n",
        ),
    );
    assert_eq!(loaded.format, Some(Format::Votes));
    assert_eq!(loaded.pairs[0].soft_label, 0.75);
    // 2 of 10 votes for "c": re-oriented so that "d" is chosen with p̂ = 0.8.
    assert_eq!(loaded.pairs[1].chosen, "d");
    assert!(close(loaded.pairs[1].soft_label, 0.8));
    assert_eq!(loaded.reoriented, 1);
}

#[test]
fn sharegpt_array_numbers_records_from_one() {
    let records = serde_json::json!([
        {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello!"},
         "rejected": {"from": "gpt", "value": "Bye."}},
        {"conversations": [{"from": "system", "value": "Be terse."}, {"from": "human", "value": "Q1"},
                           {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}],
         "chosen": {"from": "gpt", "value": "A2"}, "rejected": {"from": "gpt", "value": "Dunno"}, "p_chosen": 0.6},
        {"system": "You are kind.", "conversations": [{"from": "human", "value": "Hey"}],
         "chosen": {"from": "gpt", "value": "Hey there"}, "rejected": {"from": "gpt", "value": "What"}}
    ]);
    let loaded = load_auto(
        "sharegpt.json",
        &serde_json::to_string_pretty(&records).unwrap(),
    );
    assert_eq!(loaded.format, Some(Format::ShareGpt));
    assert_eq!(loaded.layout, softalign_data::Layout::JsonArray);
    let lines: Vec<usize> = loaded.pairs.iter().map(|p| p.source_line).collect();
    assert_eq!(lines, [1, 2, 3]);
    assert_eq!(
        loaded.pairs[1].prompt,
        Prompt::Chat(vec![
            Message::new(Role::System, "Be terse."),
            user("Q1"),
            assistant("A1"),
            user("Q2"),
        ])
    );
    assert_eq!(loaded.pairs[1].soft_label, 0.6);
    assert_eq!(
        loaded.pairs[2].prompt,
        Prompt::Chat(vec![
            Message::new(Role::System, "You are kind."),
            user("Hey")
        ])
    );
}

#[test]
fn auto_detection_reads_the_first_record_keys() {
    let cases = [
        (
            r#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 0.6}"#,
            Format::Native,
        ),
        (
            r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#,
            Format::Native,
        ),
        (
            r#"{"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
            Format::Trl,
        ),
        (
            r#"{"chosen": "\n\nHuman: p\n\nAssistant: a", "rejected": "\n\nHuman: p\n\nAssistant: b"}"#,
            Format::Hh,
        ),
        (
            r#"{"history": "p", "human_ref_A": "a", "human_ref_B": "b", "score_A": 1, "score_B": 2, "labels": 0}"#,
            Format::Shp,
        ),
        (
            r#"{"prompt": "p", "chosen": "a", "rejected": "b", "score_chosen": 5, "score_rejected": 1}"#,
            Format::UltraFeedback,
        ),
        (
            r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": 5, "votes_rejected": 1}"#,
            Format::Votes,
        ),
        (
            r#"{"conversations": [{"from": "human", "value": "p"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}}"#,
            Format::ShareGpt,
        ),
    ];
    for (index, (record, format)) in cases.into_iter().enumerate() {
        // A malformed first line must not stop detection from using the next record.
        let loaded = load(
            fixture(
                &format!("auto-{index}.jsonl"),
                &format!("{{oops\n{record}\n"),
            ),
            &LoadOptions::default().with_policy(softalign_data::ValidationPolicy::Skip),
        )
        .unwrap();
        assert_eq!(loaded.format, Some(format), "{record}");
        assert_eq!(loaded.pairs.len(), 1, "{record}: {:?}", loaded.problems);
        assert_eq!(loaded.pairs[0].source_line, 2);
    }
}

#[test]
fn a_named_format_overrides_detection() {
    // Detected as votes, read as native: the vote fields are ignored and the label is binary.
    let path = fixture(
        "forced.jsonl",
        "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\", \"votes_chosen\": 1, \"votes_rejected\": 3}\n",
    );
    let auto = load(&path, &LoadOptions::default()).unwrap();
    assert_eq!(
        (auto.pairs[0].chosen.as_str(), auto.pairs[0].soft_label),
        ("b", 0.75)
    );
    let native = load(&path, &LoadOptions::default().with_format(Format::Native)).unwrap();
    assert_eq!(native.format, Some(Format::Native));
    assert_eq!(
        (native.pairs[0].chosen.as_str(), native.pairs[0].soft_label),
        ("a", 1.0)
    );
}

#[test]
fn format_names_round_trip() {
    for format in Format::ALL {
        assert_eq!(format.name().parse::<Format>().unwrap(), format);
    }
    assert!("parquet".parse::<Format>().is_err());
}

mod properties {
    use proptest::prelude::*;
    use softalign_data::{LoadOptions, load_bytes};

    proptest! {
        /// Any label in [0, 1] loads to p̂ ∈ [0.5, 1]; the pair is swapped exactly when p < 0.5, and
        /// (chosen, p̂) then describes the same preference as the record.
        #[test]
        fn reorientation_preserves_the_preference(labels in prop::collection::vec(0.0f64..=1.0, 1..20)) {
            let text: String = labels
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    serde_json::json!({"prompt": format!("q{i}"), "chosen": "first", "rejected": "second", "p_chosen": p})
                        .to_string() + "\n"
                })
                .collect();
            let loaded = load_bytes("prop.jsonl", text.as_bytes(), &LoadOptions::default()).unwrap();
            prop_assert_eq!(loaded.pairs.len(), labels.len());
            prop_assert_eq!(loaded.reoriented, labels.iter().filter(|&&p| p < 0.5).count());
            for (pair, &p) in loaded.pairs.iter().zip(&labels) {
                prop_assert!((0.5..=1.0).contains(&pair.soft_label));
                let p_first = if pair.chosen == "first" { pair.soft_label } else { 1.0 - pair.soft_label };
                prop_assert!((p_first - p).abs() < 1e-12);
                prop_assert_eq!(pair.chosen == "second", p < 0.5);
            }
        }
    }
}
