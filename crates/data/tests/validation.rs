//! Every validation problem is reported with its line (or record) and field; strict vs skip.

use std::path::PathBuf;

use softalign_data::{
    DataError, Format, LoadOptions, LoadedPairs, Location, ProblemKind, ValidationPolicy, load,
};

fn fixture(name: &str, contents: &[u8]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("softalign-data-validation");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn skip() -> LoadOptions {
    LoadOptions::default().with_policy(ValidationPolicy::Skip)
}

/// The problems as `LINE: FIELD: PROBLEM`, without the folder part of the path.
fn reported(loaded: &LoadedPairs) -> Vec<String> {
    let prefix = format!("{}:", loaded.path.display());
    loaded
        .problems
        .iter()
        .map(|p| p.to_string().strip_prefix(&prefix).unwrap().to_owned())
        .collect()
}

const GOOD: &str = r#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 0.7}"#;

#[test]
fn every_bad_jsonl_record_is_reported_with_line_and_field() {
    let mut text: Vec<u8> = Vec::new();
    let lines: [&[u8]; 12] = [
        GOOD.as_bytes(),                                                          // 1
        br#"{"prompt": "p", "rejected": "b"}"#,                                   // 2
        br#"{"prompt": "p", "chosen": "a", "rejected": 7}"#,                      // 3
        br#"{"prompt": "p", "chosen": "  ", "rejected": "b"}"#,                   // 4
        br#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": 1.5}"#,   // 5
        b"{\"prompt\": \"p\", \"chosen\": \"\xff\", \"rejected\": \"b\"}",        // 6
        br#"{"prompt": "p", "chosen": "a", "rejected": }"#,                       // 7
        br#"{"prompt": "p", "chosen": "same", "rejected": "same"}"#,              // 8
        b"   ",                                                                   // 9
        br#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": NaN}"#,   // 10
        br#"{"prompt": "p", "chosen": "a", "rejected": "b", "p_chosen": "0.9"}"#, // 11
        br#"["not", "an", "object"]"#,                                            // 12
    ];
    for line in lines {
        text.extend_from_slice(line);
        text.push(b'\n');
    }
    let loaded = load(
        fixture("bad.jsonl", &text),
        &skip().with_format(Format::Native),
    )
    .unwrap();
    assert_eq!(
        reported(&loaded),
        [
            "2: chosen: missing field",
            "3: rejected: wrong type: expected a string, found a number",
            "4: chosen: empty response",
            "5: p_chosen: label 1.5 outside [0, 1]",
            "6: record: invalid UTF-8 at byte 27",
            "7: record: malformed JSON: expected value (column 44)",
            "8: rejected: identical chosen and rejected",
            "10: p_chosen: label is not a finite number",
            "11: p_chosen: wrong type: expected a number, found a string",
            "12: record: wrong type: expected a JSON object, found an array",
        ]
    );
    assert_eq!(loaded.records, 11, "the blank line 9 is no record");
    assert_eq!(loaded.invalid_records, 10);
    assert_eq!(loaded.pairs.len(), 1);
    assert_eq!(loaded.pairs[0].source_line, 1);
}

#[test]
fn a_record_with_several_problems_reports_each() {
    let path = fixture(
        "several.jsonl",
        br#"{"chosen": "", "rejected": "", "p_chosen": -0.2, "prompt": 3}"#,
    );
    let loaded = load(&path, &skip().with_format(Format::Native)).unwrap();
    assert_eq!(
        reported(&loaded),
        [
            "1: prompt: wrong type: expected a string, found a number",
            "1: p_chosen: label -0.2 outside [0, 1]",
            "1: chosen: empty response",
            "1: rejected: empty response",
        ]
    );
    assert_eq!(loaded.invalid_records, 1);
}

#[test]
fn strict_fails_with_every_problem_and_skip_keeps_the_good_records() {
    let text = format!(
        "{GOOD}\n{}\n{GOOD}\n{}\n",
        r#"{"prompt":"p","chosen":"a","rejected":"b","p_chosen":-0.2}"#,
        r#"{"prompt":"p","chosen":"a"}"#
    );
    let path = fixture("strict.jsonl", text.as_bytes());
    let error = load(&path, &LoadOptions::default()).unwrap_err();
    let DataError::Invalid { problems, .. } = &error else {
        panic!("expected invalid, got {error}")
    };
    let places: Vec<(usize, &str)> = problems
        .iter()
        .map(|p| (p.location.number(), p.field.as_str()))
        .collect();
    assert_eq!(places, [(2, "p_chosen"), (4, "rejected")]);
    let message = error.to_string();
    assert!(message.contains("2 problem(s)"), "{message}");
    assert!(
        message.contains("strict.jsonl:2: p_chosen: label -0.2 outside [0, 1]"),
        "{message}"
    );

    let loaded = load(&path, &skip()).unwrap();
    assert_eq!(
        (loaded.records, loaded.pairs.len(), loaded.invalid_records),
        (4, 2, 2)
    );
    let lines: Vec<usize> = loaded.pairs.iter().map(|p| p.source_line).collect();
    assert_eq!(lines, [1, 3]);
}

#[test]
fn json_array_problems_name_the_record() {
    let records = serde_json::json!([
        {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
         "rejected": {"from": "gpt", "value": "b"}},
        {"conversations": [{"from": "human", "value": "q"}], "rejected": {"from": "gpt", "value": "b"}},
        {"conversations": [{"from": "robot", "value": "q"}], "chosen": {"from": "human", "value": "a"},
         "rejected": {"from": "gpt"}},
    ]);
    let path = fixture(
        "records.json",
        serde_json::to_string_pretty(&records).unwrap().as_bytes(),
    );
    let loaded = load(&path, &skip()).unwrap();
    assert_eq!(
        reported(&loaded),
        [
            "record 2: chosen: missing field",
            "record 3: conversations[0].from: unknown role \"robot\"",
            "record 3: chosen.from: expected gpt, found user",
            "record 3: rejected.value: missing field",
        ]
    );
    assert_eq!(loaded.problems[0].location, Location::Record(2));
}

#[test]
fn a_broken_json_array_is_one_problem_at_its_line() {
    let path = fixture(
        "broken.json",
        b"[\n  {\"prompt\": \"p\",\n  \"chosen\" \"a\"}\n]\n",
    );
    let loaded = load(&path, &skip()).unwrap();
    assert_eq!(
        reported(&loaded),
        ["3: record: malformed JSON: expected `:` (column 12)"]
    );
    assert_eq!((loaded.records, loaded.pairs.len()), (0, 0));
    let invalid_utf8 = fixture("utf8.json", b"[\n{\"prompt\": \"\xc3\x28\"}]");
    let loaded = load(&invalid_utf8, &skip()).unwrap();
    assert_eq!(reported(&loaded), ["2: record: invalid UTF-8 at byte 12"]);
    assert!(matches!(
        load(&invalid_utf8, &LoadOptions::default()),
        Err(DataError::Invalid { .. })
    ));
}

#[test]
fn conversational_problems_point_into_the_messages() {
    let lines = [
        // A message without content, and one with an unknown role.
        r#"{"prompt": [{"role": "user"}], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "wizard", "content": "b"}]}"#,
        // Implicit prompt with nothing shared: no prompt.
        r#"{"chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        // The response is a user turn.
        r#"{"prompt": "p", "chosen": [{"role": "user", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        // Mixed kinds.
        r#"{"prompt": "p", "chosen": "a", "rejected": [{"role": "assistant", "content": "b"}]}"#,
        // Two turns after the shared prefix.
        r#"{"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "c"}], "rejected": [{"role": "assistant", "content": "b"}]}"#,
        // Identical conversations.
        r#"{"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "a"}]}"#,
    ];
    let path = fixture("trl-bad.jsonl", lines.join("\n").as_bytes());
    let loaded = load(&path, &skip().with_format(Format::Trl)).unwrap();
    assert_eq!(
        reported(&loaded),
        [
            "1: prompt[0].content: missing field",
            "1: rejected[0].role: unknown role \"wizard\"",
            "2: prompt: missing field",
            "3: chosen[0].role: expected assistant, found user",
            "4: rejected: wrong type: expected a string, as chosen, found an array",
            "5: chosen: expected one assistant message after the 0 shared prompt message(s), found 2",
            "6: rejected: identical chosen and rejected",
        ]
    );
}

#[test]
fn derived_label_problems_name_their_fields() {
    let lines = [
        r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": 0, "votes_rejected": 0}"#,
        r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": -1, "votes_rejected": 2}"#,
        r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": 1}"#,
        r#"{"prompt": "p", "chosen": "a", "rejected": "b", "votes_chosen": Infinity, "votes_rejected": 1}"#,
    ];
    let loaded = load(
        fixture("votes-bad.jsonl", lines.join("\n").as_bytes()),
        &skip(),
    )
    .unwrap();
    assert_eq!(loaded.format, Some(Format::Votes));
    assert_eq!(
        reported(&loaded),
        [
            "1: votes_chosen: vote counts sum to zero, no preference",
            "2: votes_chosen: vote counts must be non-negative",
            "3: votes_rejected: missing field",
            "4: votes_chosen: Infinity is not a finite number",
        ]
    );

    let shp = [
        r#"{"history": "h", "human_ref_A": "a", "human_ref_B": "b", "score_A": 0, "score_B": 0, "labels": 1}"#,
        r#"{"history": "h", "human_ref_A": "a", "human_ref_B": "b", "score_A": 3, "score_B": 1, "labels": 2}"#,
    ];
    let loaded = load(fixture("shp-bad.jsonl", shp.join("\n").as_bytes()), &skip()).unwrap();
    assert_eq!(
        reported(&loaded),
        [
            "1: score_A: scores sum to zero, no preference",
            "2: labels: expected 0 or 1, found 2",
        ]
    );
}

#[test]
fn hh_dialogues_that_differ_early_are_reported() {
    let lines = [
        serde_json::json!({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "no turns at all"}),
        serde_json::json!({
            "chosen": "\n\nHuman: q\n\nAssistant: x\n\nHuman: more\n\nAssistant: y",
            "rejected": "\n\nHuman: q\n\nAssistant: z\n\nHuman: more\n\nAssistant: y",
        }),
    ];
    let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
    let loaded = load(fixture("hh-bad.jsonl", text.join("\n").as_bytes()), &skip()).unwrap();
    assert_eq!(loaded.format, Some(Format::Hh));
    assert_eq!(
        reported(&loaded),
        [
            "1: chosen: no \"\\n\\nAssistant:\" turn shared by chosen and rejected",
            "2: chosen: response holds a further Human turn: the dialogues differ before their last assistant turn",
            "2: rejected: response holds a further Human turn: the dialogues differ before their last assistant turn",
        ]
    );
}

#[test]
fn file_level_errors() {
    let empty = fixture("empty.jsonl", b"\n  \n");
    assert!(matches!(
        load(&empty, &LoadOptions::default()),
        Err(DataError::NoRecords { .. })
    ));
    let empty_array = fixture("empty.json", b"[]");
    assert!(matches!(
        load(&empty_array, &skip()),
        Err(DataError::NoRecords { .. })
    ));
    let unknown = fixture("unknown.jsonl", br#"{"question": "q", "answer": "a"}"#);
    let error = load(&unknown, &LoadOptions::default()).unwrap_err();
    assert!(matches!(
        error,
        DataError::UnknownFormat {
            location: Location::Line(1),
            ..
        }
    ));
    assert!(error.to_string().contains("[answer, question]"), "{error}");
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-file.jsonl");
    assert!(matches!(
        load(&missing, &LoadOptions::default()),
        Err(DataError::Io { .. })
    ));
    let good = fixture("good.jsonl", GOOD.as_bytes());
    for temperature in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let options = LoadOptions::default().with_temperature(temperature);
        assert!(matches!(
            load(&good, &options),
            Err(DataError::Setting {
                name: "temperature",
                ..
            })
        ));
    }
    // Every kind of problem has a lowercase, one-line message.
    for kind in [
        ProblemKind::MissingField,
        ProblemKind::LabelNotFinite,
        ProblemKind::EmptyResponse,
    ] {
        let message = kind.to_string();
        assert!(!message.contains('\n') && message.chars().next().unwrap().is_lowercase());
    }
}

#[test]
fn windows_line_endings_and_a_byte_order_mark_are_accepted() {
    let text = format!("\u{feff}{GOOD}\r\n{GOOD}\r\n");
    let loaded = load(
        fixture("crlf.jsonl", text.as_bytes()),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.pairs.len(), 2);
}
