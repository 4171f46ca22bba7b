//! The soft-label study's design: relabelling, votes, β selection, reuse and verdict rules.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use softalign_pref::PrefLoss;
use softalign_repro::soft_labels::{
    Comparison, RunResult, regimes, relabel, run_key, tuned_run, verdict,
};
use softalign_repro::stats::paired_difference;
use softalign_train::demo::pairs::{Labelling, SampledPair};
use softalign_train::demo::report::AnswerQuality;

fn pair(prompt: [u8; 3], first: &str, second: &str) -> SampledPair {
    SampledPair {
        prompt,
        first: first.into(),
        second: second.into(),
    }
}

/// Pairs with gaps of one, two and three digits, both orders, and two ties of distinct texts.
fn sampled() -> Vec<SampledPair> {
    vec![
        pair([4, 7, 9], "580", "581"),
        pair([4, 7, 9], "581", "580"),
        pair([1, 2, 3], "234", "133"),
        pair([1, 2, 3], "123", "345"),
        pair([0, 0, 0], "111", "000"),
        pair([5, 5, 5], "667", "766"),
        pair([9, 9, 9], "000", "111"),
    ]
}

#[test]
fn relabelling_keeps_the_same_pairs_in_the_same_order_across_regimes() {
    let pairs = sampled();
    let ties = pairs.iter().filter(|p| p.reward_gap() == 0.0).count();
    assert_eq!(ties, 2, "the fixture has two ties");
    for regime in regimes() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let labelled = relabel(&pairs, &regime.labelling, &mut rng);
        let kept: Vec<&SampledPair> = if regime.name == "R0" {
            pairs.iter().filter(|p| p.reward_gap() != 0.0).collect()
        } else {
            pairs.iter().collect()
        };
        assert_eq!(labelled.len(), kept.len(), "{}", regime.name);
        for (label, sample) in labelled.iter().zip(kept) {
            assert_eq!(label.prompt, sample.prompt, "{}", regime.name);
            let mut texts = [label.chosen.as_str(), label.rejected.as_str()];
            let mut sampled = [sample.first.as_str(), sample.second.as_str()];
            texts.sort();
            sampled.sort();
            assert_eq!(texts, sampled, "{}: the same two responses", regime.name);
            assert!((0.5..=1.0).contains(&label.soft_label));
        }
    }
}

#[test]
fn exact_regimes_differ_only_in_label_confidence() {
    let pairs = sampled();
    let rng = ChaCha8Rng::seed_from_u64(0);
    let labels = |scale| {
        relabel(
            &pairs,
            &Labelling::BradleyTerry {
                scale,
                keep_ties: true,
            },
            &mut rng.clone(),
        )
    };
    let (near, modest, sure) = (labels(0.5), labels(1.5), labels(4.5));
    for ((a, b), c) in near.iter().zip(&modest).zip(&sure) {
        assert_eq!((&a.chosen, &a.rejected), (&b.chosen, &b.rejected));
        assert_eq!((&b.chosen, &b.rejected), (&c.chosen, &c.rejected));
        if b.soft_label > 0.5 {
            assert!(a.soft_label < b.soft_label && b.soft_label < c.soft_label);
        } else {
            assert_eq!((a.soft_label, c.soft_label), (0.5, 0.5));
        }
    }
    // One digit better (Δr = 1/3) at κ 1.5: σ(0.5).
    assert!((modest[0].soft_label - 0.622_459).abs() < 1e-6);
}

#[test]
fn votes_are_unbiased_for_the_true_probability() {
    // Δr = 1/3 at κ 1.5: p* = σ(0.5) = 0.622459; p̂ = k/5 with k ~ Bin(5, p*).
    let votes = Labelling::Votes {
        scale: 1.5,
        raters: 5,
    };
    let sample = pair([4, 7, 9], "580", "581");
    let reversed = pair([4, 7, 9], "581", "580");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let draws = 40_000;
    let (mut sum, mut sum_reversed) = (0.0, 0.0);
    for _ in 0..draws {
        let p = votes.probability(&sample, &mut rng).unwrap();
        assert!(
            (p * 5.0 - (p * 5.0).round()).abs() < 1e-12,
            "a share of five votes"
        );
        sum += p;
        sum_reversed += votes.probability(&reversed, &mut rng).unwrap();
    }
    let p_star = 0.622_459;
    // Standard error of the mean of k/5: sqrt(p*(1 − p*)/5 / draws) ≈ 0.00108; allow 5 of them.
    let bound = 5.0 * (p_star * (1.0 - p_star) / 5.0 / draws as f64).sqrt();
    assert!(
        (sum / draws as f64 - p_star).abs() < bound,
        "{}",
        sum / draws as f64
    );
    assert!((sum_reversed / draws as f64 - (1.0 - p_star)).abs() < bound);
}

fn quality(reward: f64) -> AnswerQuality {
    AnswerQuality {
        mean_true_reward: reward,
        exact_match: 0.0,
        malformed: 0.0,
        win_rate: 0.0,
        tie_rate: 0.0,
        loss_rate: 0.0,
        percentage_win_rate: 0.5,
    }
}

fn result(seed: u64, loss: &str, beta: f64, validation: f64, test: f64) -> RunResult {
    RunResult {
        seed,
        regime: "R1".into(),
        loss: loss.into(),
        beta,
        validation: quality(validation),
        test: quality(test),
        preference_accuracy: None,
        logratio_chosen: None,
        logratio_rejected: None,
        reused_from: None,
    }
}

#[test]
fn beta_is_chosen_on_validation_rewards_never_on_test_rewards() {
    // Test rewards would pick β 0.1 (−0.1); validation picks β 0.9 (−0.2).
    let runs = vec![
        result(0, "gdpo", 0.9, -0.2, -0.8),
        result(0, "gdpo", 0.1, -0.5, -0.1),
        result(0, "gdpo", 0.3, -0.4, -0.3),
        result(1, "gdpo", 0.1, -0.3, -0.9),
        result(0, "dpo", 0.1, -0.1, -0.1),
    ];
    let tuned = tuned_run(&runs, 0, "R1", "gdpo").unwrap();
    assert_eq!(tuned.beta, 0.9);
    assert_eq!(tuned.test.mean_true_reward, -0.8);
    // A tie on validation goes to the smaller β, whatever the order of the runs.
    let tie = vec![
        result(0, "gdpo", 2.7, -0.2, -0.1),
        result(0, "gdpo", 0.3, -0.2, -0.9),
    ];
    assert_eq!(tuned_run(&tie, 0, "R1", "gdpo").unwrap().beta, 0.3);
    assert!(tuned_run(&runs, 0, "R2", "gdpo").is_none());
}

#[test]
fn dpo_runs_are_shared_by_regimes_with_the_same_binarized_labels_and_soft_losses_are_not() {
    let pairs = sampled();
    let regimes = regimes();
    let labelled = |name: &str| {
        let regime = regimes.iter().find(|r| r.name == name).unwrap();
        relabel(&pairs, &regime.labelling, &mut ChaCha8Rng::seed_from_u64(0))
    };
    let (r1, r2, r3) = (labelled("R1"), labelled("R2"), labelled("R3"));
    let key = |loss: PrefLoss, l: &[_]| run_key(loss, l, l);
    assert_eq!(key(PrefLoss::dpo(), &r1), key(PrefLoss::dpo(), &r2));
    assert_eq!(key(PrefLoss::dpo(), &r1), key(PrefLoss::dpo(), &r3));
    assert_ne!(key(PrefLoss::cdpo(), &r1), key(PrefLoss::cdpo(), &r2));
    assert_ne!(key(PrefLoss::gdpo(), &r1), key(PrefLoss::gdpo(), &r3));
    assert_ne!(
        key(PrefLoss::dpo(), &r1),
        key(PrefLoss::dpo().with_beta(0.3), &r1)
    );
    assert_ne!(
        key(PrefLoss::dpo(), &r1),
        key(PrefLoss::dpo(), &labelled("R0"))
    );
}

fn comparison(regime: &str, baseline: &str, differences: &[f64]) -> Comparison {
    let zeros = vec![0.0; differences.len()];
    Comparison {
        regime: regime.into(),
        loss: "gdpo".into(),
        baseline: baseline.into(),
        tuned: paired_difference(differences, &zeros),
        default: paired_difference(differences, &zeros),
    }
}

#[test]
fn verdict_rules_follow_the_intervals() {
    let clear = [0.10, 0.12, 0.11, 0.09, 0.10];
    let noisy = [0.2, -0.1, 0.05, -0.05, 0.1];
    let small = [0.01, -0.01, 0.0, 0.02, -0.02];
    let all = |r1: &[f64], r2: &[f64], r3: &[f64], r4: &[f64]| {
        let mut v = Vec::new();
        for (regime, d) in [("R1", r1), ("R2", r2), ("R3", r3), ("R4", r4)] {
            v.push(comparison(regime, "dpo", d));
            v.push(comparison(regime, "cdpo", d));
        }
        v
    };
    assert_eq!(
        verdict(&all(&clear, &clear, &small, &noisy)).outcome,
        "reproduces"
    );
    // R3 does not shrink toward 0.
    assert_eq!(
        verdict(&all(&clear, &clear, &clear, &noisy)).outcome,
        "inconclusive"
    );
    // Only one soft regime clearly positive.
    assert_eq!(
        verdict(&all(&clear, &noisy, &small, &noisy)).outcome,
        "inconclusive"
    );
    let below = [-0.10, -0.12, -0.11, -0.09, -0.10];
    assert_eq!(
        verdict(&all(&clear, &below, &small, &clear)).outcome,
        "refutes"
    );
    // A quick run (R1, R2 only) can refute but not reproduce.
    let quick: Vec<Comparison> = all(&clear, &clear, &small, &clear)
        .into_iter()
        .filter(|c| c.regime == "R1" || c.regime == "R2")
        .collect();
    assert_eq!(verdict(&quick).outcome, "undecided");
}
