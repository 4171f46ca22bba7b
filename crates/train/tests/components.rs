//! The pieces: the demo's true reward, demonstrations and Bradley–Terry labels; the truncation
//! policy; the schedule; the data order; global gradient-norm clipping; SFT data errors.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use softalign_data::ValidationPolicy;
use softalign_model::CausalLm;
use softalign_train::demo::pairs::{bradley_terry, label_pair};
use softalign_train::demo::seeded_model;
use softalign_train::demo::task::{
    self, all_prompts, correct_answer, noisy_demonstration, true_reward,
};
use softalign_train::sft_data::load_sft;
use softalign_train::{
    Schedule, TrainError, Truncation, clip_global_grad_norm, example_at, global_grad_norm,
};

#[test]
fn the_true_reward_is_zero_only_for_the_correct_answer() {
    for prompt in all_prompts().into_iter().step_by(37) {
        let correct = correct_answer(&prompt);
        assert_eq!(true_reward(&prompt, &correct), 0.0);
        let copy: String = prompt.iter().map(|d| char::from(b'0' + d)).collect();
        assert_eq!(true_reward(&prompt, &copy), -1.0);
        for wrong in ["", "12", "abc", &format!("{correct}0")] {
            assert!(true_reward(&prompt, wrong) < 0.0, "{wrong:?}");
        }
        // Cyclic: 9 → 0 is one step, so a response 9 off on one digit costs 1/3.
        assert!(true_reward(&prompt, &correct[..2]) <= -5.0 / 3.0);
    }
}

#[test]
fn the_most_common_demonstration_is_the_copy_not_the_correct_answer() {
    let prompt = [4, 7, 9];
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut counts = std::collections::HashMap::<String, usize>::new();
    for _ in 0..4000 {
        *counts
            .entry(noisy_demonstration(&prompt, &mut rng))
            .or_default() += 1;
    }
    let mode = counts.iter().max_by_key(|(_, c)| **c).unwrap().0.clone();
    assert_eq!(mode, "479");
    assert!(counts["479"] > counts[&correct_answer(&prompt)]);
    let mean: f64 = counts
        .iter()
        .map(|(r, c)| true_reward(&prompt, r) * *c as f64)
        .sum::<f64>()
        / 4000.0;
    assert!(
        (mean - task::demonstration_expected_reward()).abs() < 0.03,
        "{mean}"
    );
}

#[test]
fn bradley_terry_labels_are_oriented_and_modestly_confident() {
    let prompt = [1, 2, 3];
    // One digit better: p̂ = σ(1.5/3) ≈ 0.62, whichever order the responses come in.
    for (a, b) in [("234", "233"), ("233", "234")] {
        let pair = label_pair(&prompt, a.into(), b.into()).unwrap();
        assert_eq!(
            (pair.chosen.as_str(), pair.rejected.as_str()),
            ("234", "233")
        );
        assert!((pair.soft_label - bradley_terry(0.0, -1.0 / 3.0)).abs() < 1e-12);
        assert!((0.6..0.65).contains(&pair.soft_label));
    }
    // Equal rewards (the copy and +2 are both one off per digit) carry no preference.
    assert!(label_pair(&prompt, "123".into(), "345".into()).is_none());
    assert!(label_pair(&prompt, "234".into(), "234".into()).is_none());
    // All three digits better: the most confident label the demo produces from copies.
    let sure = label_pair(&prompt, "234".into(), "123".into()).unwrap();
    assert!(
        (0.8..0.85).contains(&sure.soft_label),
        "{}",
        sure.soft_label
    );
}

#[test]
fn truncation_cuts_the_prompt_from_the_left_then_the_response_from_the_right() {
    let t = Truncation {
        max_length: 8,
        max_prompt_length: 3,
    };
    // Fits: untouched.
    let (mut p, mut r) = (vec![1, 2, 3], vec![4, 5, 6, 7, 8]);
    assert!(!t.apply(&mut p, &mut [&mut r]));
    // The prompt gives way first, keeping its end, but not below max_prompt_length.
    let (mut p, mut r) = (vec![1, 2, 3, 4, 5, 6], vec![7, 8, 9]);
    assert!(t.apply(&mut p, &mut [&mut r]));
    assert_eq!((p, r), (vec![2, 3, 4, 5, 6], vec![7, 8, 9]));
    let (mut p, mut r1, mut r2) = (vec![1, 2, 3, 4, 5, 6], vec![7; 9], vec![8; 2]);
    assert!(t.apply(&mut p, &mut [&mut r1, &mut r2]));
    assert_eq!(p, vec![4, 5, 6]);
    assert_eq!((r1.len(), r2.len()), (5, 2));
    assert!(
        Truncation {
            max_length: 1,
            max_prompt_length: 1
        }
        .validate()
        .is_err()
    );
}

#[test]
fn the_schedule_warms_up_then_decays_to_its_floor() {
    let s = Schedule {
        peak: 1.0,
        warmup_steps: 4,
        total_steps: 20,
        min_ratio: 0.1,
    };
    let lrs: Vec<f64> = (0..20).map(|t| s.learning_rate(t)).collect();
    assert_eq!(&lrs[..4], &[0.25, 0.5, 0.75, 1.0]);
    assert!(lrs[4..].windows(2).all(|w| w[1] <= w[0]));
    assert!(lrs[19] > 0.1 && lrs[19] < 0.12);
    let bad = Schedule {
        warmup_steps: 20,
        ..s
    };
    assert!(matches!(
        bad.validate(),
        Err(TrainError::Setting {
            name: "warmup-steps",
            ..
        })
    ));
}

#[test]
fn the_data_order_is_a_permutation_per_epoch_determined_by_seed_and_position() {
    let n = 13;
    for epoch in 0..3 {
        let mut seen: Vec<usize> = (epoch * n..(epoch + 1) * n)
            .map(|p| example_at(p, n, 9))
            .collect();
        seen.sort();
        assert_eq!(seen, (0..n).collect::<Vec<_>>());
    }
    let a: Vec<usize> = (0..n).map(|p| example_at(p, n, 9)).collect();
    let b: Vec<usize> = (n..2 * n).map(|p| example_at(p, n, 9)).collect();
    let c: Vec<usize> = (0..n).map(|p| example_at(p, n, 10)).collect();
    assert_ne!(a, b, "epochs are reshuffled");
    assert_ne!(a, c, "the seed matters");
}

#[test]
fn clipping_scales_the_global_norm_to_the_limit() {
    let device = Device::default().autodiff();
    let model: CausalLm = seeded_model(&task::model_config(), 2, &device).unwrap();
    let tokens =
        Tensor::<2, Int>::from_data(TensorData::new(vec![3i64, 4, 5, 12, 6, 7], [1, 6]), &device);
    let loss = model.forward(tokens).powi_scalar(2).sum();
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let norm = global_grad_norm(&model, &grads);
    assert!(norm > 1.0, "{norm}");
    let before = clip_global_grad_norm(&model, &mut grads, 0.5);
    assert_eq!(before, norm);
    let after = global_grad_norm(&model, &grads);
    assert!((after - 0.5).abs() < 1e-4, "{after}");
    // Below the limit nothing changes.
    let unchanged = clip_global_grad_norm(&model, &mut grads, 10.0);
    assert!((global_grad_norm(&model, &grads) - unchanged).abs() < 1e-9);
    let _ = model.valid();
}

#[test]
fn sft_data_problems_name_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("softalign-sft-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sft.jsonl");
    std::fs::write(
        &path,
        concat!(
            "{\"prompt\": \"2+2?\", \"response\": \"4\"}\n",
            "{\"prompt\": \"3+3?\"}\n",
            "\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}]}\n",
            "not json\n",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n",
        ),
    )
    .unwrap();
    let Err(TrainError::Invalid { problems, .. }) = load_sft(&path, ValidationPolicy::Strict)
    else {
        panic!("strict loading of a bad file succeeded");
    };
    let shown = path.display();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0], format!("{shown}:2: response: missing field"));
    assert!(problems[1].starts_with(&format!("{shown}:5: record: invalid json")));
    assert_eq!(
        problems[2],
        format!("{shown}:6: messages: the last message must be the assistant's response")
    );
    let skipped = load_sft(&path, ValidationPolicy::Skip).unwrap();
    assert_eq!(skipped.records.len(), 2);
    assert_eq!(skipped.records[1].line, 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
