//! End-to-end tests of the judge, the labeller, evaluation and online alignment on the golden
//! tiny Llama (../../../shared/golden/hf-tiny-llama, random weights, byte-level BPE).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use softalign_data::{LoadOptions, Prompt};
use softalign_judge::online::{
    DemoReferenceSettings, DemoTask, LabelSource, OnlineSettings, OnlineTask, run_online,
};
use softalign_judge::{
    EvalSettings, Judge, JudgeItem, JudgeSettings, JudgeTemplate, LabelSettings, Opponent,
    evaluate, label_file,
};
use softalign_model::{Pretrained, load_pretrained};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;
use softalign_train::{LoopSettings, Schedule};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/golden/hf-tiny-llama")
}

fn tiny() -> Pretrained {
    load_pretrained(&golden(), &Device::default()).expect("the golden tiny llama loads")
}

fn template() -> JudgeTemplate {
    JudgeTemplate::parse(
        "Q: {context}\nA1: {output_1}\nA2: {output_2}\n{assistant}Best: ",
        Path::new("test-template"),
    )
    .unwrap()
}

fn judge(batch_size: usize) -> Judge {
    let settings = JudgeSettings {
        max_context_tokens: 40,
        max_output_tokens: 24,
        chat: false,
        batch_size,
    };
    Judge::new(tiny(), template(), settings).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-judge-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const PAIRS: [(&str, &str, &str); 6] = [
    ("2+2?", "4", "five"),
    ("capital of France?", "Paris", "Rome, I think"),
    ("say hi", "hello there", "no"),
    ("sky colour?", "blue", "green and purple"),
    ("3*3?", "nine", "6"),
    ("opposite of up?", "down", "sideways"),
];

fn write_pairs(path: &Path, pairs: &[(&str, &str, &str)]) {
    let lines: Vec<String> = pairs
        .iter()
        .map(|(p, c, r)| serde_json::json!({"prompt": p, "chosen": c, "rejected": r}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn items(
    pairs: &[(&'static str, &'static str, &'static str)],
) -> (Vec<Prompt>, Vec<(&'static str, &'static str)>) {
    (
        pairs
            .iter()
            .map(|p| Prompt::Text(p.0.to_string()))
            .collect(),
        pairs.iter().map(|p| (p.1, p.2)).collect(),
    )
}

#[test]
fn cached_and_batched_scoring_agree_and_orders_are_averaged() {
    let (prompts, outputs) = items(&PAIRS);
    let list: Vec<JudgeItem<'_>> = prompts
        .iter()
        .zip(&outputs)
        .enumerate()
        .map(|(i, (context, (a, b)))| JudgeItem {
            context,
            first: a,
            second: b,
            line: i + 1,
        })
        .collect();
    let cached = judge(1).judge(&list, Path::new("t")).unwrap();
    let batched = judge(4).judge(&list, Path::new("t")).unwrap();
    let mut disagreeing = 0;
    for (c, b) in cached.iter().zip(&batched) {
        assert!((c.p_order_ab - b.p_order_ab).abs() < 1e-4, "{c:?} vs {b:?}");
        assert!((c.p_order_ba - b.p_order_ba).abs() < 1e-4, "{c:?} vs {b:?}");
        assert!((c.p - 0.5 * (c.p_order_ab + c.p_order_ba)).abs() < 1e-12);
        disagreeing += usize::from(c.p_order_ab != c.p_order_ba);
    }
    // A random judge has a position bias: the two orders give different probabilities.
    assert!(disagreeing > 0);
    // Judging (b, a) gives 1 − p of (a, b): the same two prompts, read from the other side.
    let reversed: Vec<JudgeItem<'_>> = list
        .iter()
        .map(|i| JudgeItem {
            first: i.second,
            second: i.first,
            ..*i
        })
        .collect();
    for (x, y) in cached
        .iter()
        .zip(judge(1).judge(&reversed, Path::new("t")).unwrap())
    {
        assert!((x.p + y.p - 1.0).abs() < 1e-9);
        assert!((x.p_order_ab + y.p_order_ba - 1.0).abs() < 1e-9);
    }
}

#[test]
fn labels_are_oriented_so_the_winner_is_chosen() {
    let dir = temp_dir("orient");
    let judge = judge(1);
    // Put the judge's loser first in every input record: each must come out swapped.
    let (prompts, outputs) = items(&PAIRS);
    let list: Vec<JudgeItem<'_>> = prompts
        .iter()
        .zip(&outputs)
        .map(|(context, (a, b))| JudgeItem {
            context,
            first: a,
            second: b,
            line: 0,
        })
        .collect();
    let verdicts = judge.judge(&list, Path::new("t")).unwrap();
    let losers_first: Vec<(&str, &str, &str)> = PAIRS
        .iter()
        .zip(&verdicts)
        .map(|(&(p, a, b), v)| if v.p >= 0.5 { (p, b, a) } else { (p, a, b) })
        .collect();
    let data = dir.join("pairs.jsonl");
    write_pairs(&data, &losers_first);
    let settings = LabelSettings {
        data: data.clone(),
        format: None,
        validation: Default::default(),
        out: dir.join("labels.jsonl"),
        limit: None,
        progress: false,
    };
    let report = label_file(&judge, &settings, None).unwrap();
    assert_eq!(report.pairs, PAIRS.len());
    let flipped_expected = verdicts.iter().filter(|v| v.p != 0.5).count();
    assert_eq!(report.flipped, flipped_expected);
    let text = std::fs::read_to_string(dir.join("labels.jsonl")).unwrap();
    for ((line, verdict), (_, a, b)) in text.lines().zip(&verdicts).zip(PAIRS) {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = record["p_chosen"].as_f64().unwrap();
        assert!(p >= 0.5);
        let winner = if verdict.p >= 0.5 { a } else { b };
        assert_eq!(record["chosen"], winner);
        assert!((p - verdict.p.max(1.0 - verdict.p)).abs() < 1e-9);
        let (ab, ba) = (
            record["p_order_ab"].as_f64().unwrap(),
            record["p_order_ba"].as_f64().unwrap(),
        );
        assert!((p - 0.5 * (ab + ba)).abs() < 1e-12);
    }
    // The output is a preference file the loader reads back with the same labels.
    let back = softalign_data::load(dir.join("labels.jsonl"), &LoadOptions::default()).unwrap();
    assert_eq!(back.reoriented, 0);
    assert!(
        back.pairs
            .iter()
            .all(|p| p.soft_label >= 0.5 && p.soft_label < 1.0)
    );
    assert!(report.figure.as_ref().unwrap().is_file());
    assert!(report.summary.as_ref().unwrap().is_file());
}

#[test]
fn an_interrupted_run_resumes_to_the_same_file() {
    let dir = temp_dir("resume");
    let data = dir.join("pairs.jsonl");
    write_pairs(&data, &PAIRS);
    let judge = judge(1);
    let settings = |out: &str| LabelSettings {
        data: data.clone(),
        format: None,
        validation: Default::default(),
        out: dir.join(out),
        limit: None,
        progress: false,
    };
    let whole = label_file(&judge, &settings("whole.jsonl"), None).unwrap();
    assert_eq!((whole.resumed, whole.judged), (0, PAIRS.len()));
    let expected = std::fs::read_to_string(dir.join("whole.jsonl")).unwrap();
    // Simulate a crash after k records, in the middle of writing record k + 1.
    let k = 2;
    let lines: Vec<&str> = expected.lines().collect();
    let mut torn = lines[..k].join("\n") + "\n";
    torn.push_str(&lines[k][..lines[k].len() / 2]);
    std::fs::write(dir.join("again.jsonl.partial"), torn).unwrap();
    let resumed = label_file(&judge, &settings("again.jsonl"), None).unwrap();
    assert_eq!((resumed.resumed, resumed.judged), (k, PAIRS.len() - k));
    assert_eq!(
        std::fs::read_to_string(dir.join("again.jsonl")).unwrap(),
        expected
    );
    assert!(!dir.join("again.jsonl.partial").exists());
    assert_eq!(resumed.histogram, whole.histogram);
    assert_eq!(resumed.flipped, whole.flipped);
    // A finished file is complete: a rerun judges nothing and keeps it.
    let rerun = label_file(&judge, &settings("again.jsonl"), None).unwrap();
    assert_eq!((rerun.resumed, rerun.judged), (PAIRS.len(), 0));
    assert_eq!(
        std::fs::read_to_string(dir.join("again.jsonl")).unwrap(),
        expected
    );
    // An earlier output of another file is refused, naming its line.
    write_pairs(&data, &PAIRS[1..]);
    let err = label_file(&judge, &settings("whole.jsonl"), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("whole.jsonl:1: cannot resume: its responses are not those of input record 1"),
        "{err}"
    );
    // … and left exactly where and as it was: only a label file of this data is ever renamed.
    assert_eq!(
        std::fs::read_to_string(dir.join("whole.jsonl")).unwrap(),
        expected
    );
    assert!(!dir.join("whole.jsonl.partial").exists());
}

#[test]
fn bad_input_is_one_line_naming_the_record() {
    let dir = temp_dir("bad");
    let data = dir.join("bad.jsonl");
    std::fs::write(
        &data,
        "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n{\"prompt\": \"a\", \"chosen\": 3, \"rejected\": \"c\"}\n",
    )
    .unwrap();
    let settings = LabelSettings {
        data: data.clone(),
        format: None,
        validation: Default::default(),
        out: dir.join("out.jsonl"),
        limit: None,
        progress: false,
    };
    let err = label_file(&judge(1), &settings, None)
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\n'));
    assert!(err.contains("bad.jsonl:2: chosen"), "{err}");
    assert!(!dir.join("out.jsonl").exists() && !dir.join("out.jsonl.partial").exists());
}

#[test]
fn evaluation_against_references_and_implicit_reward_accuracy() {
    let dir = temp_dir("eval");
    let data = dir.join("heldout.jsonl");
    write_pairs(&data, &PAIRS[..4]);
    let mut settings = EvalSettings::new(data);
    settings.max_new_tokens = 3;
    settings.max_prompt_tokens = 32;
    settings.progress = false;
    let model = tiny();
    let judge = judge(1);
    let report = evaluate(
        &model,
        Opponent::Reference,
        Some((&judge, Path::new("judge"))),
        Some(&model.model),
        &settings,
    )
    .unwrap();
    let w = report.win_rates.unwrap();
    assert_eq!(w.n, 4);
    let mean = report.records.iter().map(|r| r.p).sum::<f64>() / 4.0;
    assert!((w.percentage.value - mean).abs() < 1e-12);
    assert_eq!(w.wins, report.records.iter().filter(|r| r.p >= 0.5).count());
    assert_eq!(report.records[0].opponent_response, PAIRS[0].1);
    // The model against itself as reference: δ = 0 on every pair, so σ(βδ) = ½ is never > ½.
    let accuracy = report.reward_accuracy.unwrap();
    assert_eq!(accuracy.pairs, 4);
    assert_eq!(accuracy.mean_margin, 0.0);
    assert_eq!(accuracy.accuracy, 0.0);
    let table = report.table();
    assert!(table.contains("binary win rate") && table.contains("implicit-reward acc."));
    assert!(report.write(&dir).unwrap().is_file());
}

fn online_settings(labels: LabelSource, out: PathBuf) -> OnlineSettings {
    OnlineSettings {
        loss: PrefLoss::gdpo(),
        labels,
        temperature: 1.0,
        top_p: 1.0,
        train: LoopSettings {
            optimizer: OptimizerKind::Adopt,
            weight_decay: 0.0,
            schedule: Schedule {
                peak: 1e-3,
                warmup_steps: 0,
                total_steps: 3,
                min_ratio: 0.0,
            },
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            eval_every: 0,
            eval_batch_size: 8,
            save_every: 0,
            keep_checkpoints: 2,
            seed: 0,
            out_dir: out,
            progress: false,
            label: "gdpo".into(),
            replicas: Default::default(),
        },
        resume: None,
        merge: false,
    }
}

#[test]
fn online_alignment_on_the_demo_task_with_true_reward_and_self_labels() {
    let dir = temp_dir("online");
    let (task, reference) = DemoTask::with_reference(&DemoReferenceSettings {
        seed: 1,
        heldout_prompts: 10,
        demonstrations_per_prompt: 1,
        steps: 20,
        batch_size: 16,
        learning_rate: 3e-3,
        out_dir: dir.join("sft"),
        progress: false,
        device: burn::tensor::Device::flex(),
        reuse_finished: false,
    })
    .unwrap();
    let frozen = burn::module::Module::valid(&reference);
    let report = run_online(
        reference.clone(),
        &frozen,
        &task,
        &online_settings(LabelSource::Task, dir.join("true")),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(report.steps, 3);
    let train: Vec<_> = report
        .history
        .iter()
        .filter(|r| r.split == "train")
        .collect();
    assert_eq!(train.len(), 3);
    for record in &train {
        let pairs = record.get("pairs").unwrap();
        let skipped = record.get("skipped").unwrap();
        assert_eq!(pairs + skipped, 8.0);
        if pairs > 0.0 {
            // Bradley–Terry labels on distinct rewards, oriented: strictly above ½.
            assert!(record.get("label/mean_p").unwrap() > 0.5);
        }
        assert!(record.get("sample/reward").is_some());
    }
    assert_eq!(
        report.history.iter().filter(|r| r.split == "eval").count(),
        2
    );
    assert!(dir.join("true/model/config.json").is_file());
    assert!(dir.join("true/metrics.jsonl").is_file());

    // Self-preference: at the first step the policy is the reference, δ = 0, every label ½.
    let report = run_online(
        reference.clone(),
        &frozen,
        &task,
        &online_settings(LabelSource::SelfPreference, dir.join("self")),
        None,
        &mut |_| {},
    )
    .unwrap();
    let first = report.history.iter().find(|r| r.split == "train").unwrap();
    if first.get("pairs").unwrap() > 0.0 {
        assert_eq!(first.get("label/mean_p").unwrap(), 0.5);
    }
    // Judge labels need a judge.
    let err = run_online(
        reference,
        &frozen,
        &task,
        &online_settings(LabelSource::Judge, dir.join("judge")),
        None,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("judge"), "{err}");
    assert!(task.prompts() > 0);
}
