//! The loop on a tiny model: losses decrease, a run resumed from a checkpoint (written every N
//! steps, or at a stop request) is bitwise identical to an uninterrupted one, and a checkpoint
//! left half-written by a killed run is ignored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use softalign_model::{CausalLm, ModelConfig};
use softalign_optim::OptimizerKind;
use softalign_pref::PrefLoss;
use softalign_train::checkpoint::{checkpoint_name, find_checkpoint, list_checkpoints};
use softalign_train::demo::pairs::{encode_pair, label_pair};
use softalign_train::demo::seeded_model;
use softalign_train::demo::task::{self, EOS_ID, PAD_ID, noisy_demonstration, prompt_text};
use softalign_train::metrics::{METRICS_CSV, METRICS_JSONL, MetricRecord};
use softalign_train::{
    EncodedExample, EncodedPair, Item, LoopSettings, Objective, PreferenceObjective, ReferenceMode,
    Replicas, Result, Run, Schedule, SequenceBatch, SftObjective, train_loop,
};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("softalign-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn tiny_config() -> ModelConfig {
    ModelConfig {
        hidden_size: 32,
        intermediate_size: 48,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 16,
        ..task::model_config()
    }
}

fn settings(out: &Path, steps: usize) -> LoopSettings {
    LoopSettings {
        optimizer: OptimizerKind::Adopt,
        weight_decay: 0.01,
        schedule: Schedule {
            peak: 3e-3,
            warmup_steps: 2,
            total_steps: steps,
            min_ratio: 0.1,
        },
        batch_size: 4,
        grad_accum: 2,
        max_grad_norm: Some(0.5),
        eval_every: 2,
        eval_batch_size: 8,
        save_every: 0,
        keep_checkpoints: 10,
        seed: 3,
        out_dir: out.to_path_buf(),
        progress: false,
        label: "test".into(),
        replicas: Default::default(),
    }
}

fn sft_data(n: usize) -> Vec<EncodedExample> {
    let tokenizer = task::tokenizer().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    task::all_prompts()
        .into_iter()
        .step_by(1000 / n)
        .map(|p| {
            let mut response = tokenizer
                .encode(&noisy_demonstration(&p, &mut rng))
                .unwrap();
            response.push(EOS_ID);
            EncodedExample {
                prompt: tokenizer.encode(&prompt_text(&p)).unwrap(),
                response,
                source_line: 0,
            }
        })
        .collect()
}

fn pair_data(n: usize) -> Vec<EncodedPair> {
    let tokenizer = task::tokenizer().unwrap();
    task::all_prompts()
        .into_iter()
        .step_by(1000 / n)
        .filter_map(|p| {
            let copy: String = prompt_text(&p).trim_end_matches('>').to_string();
            label_pair(&p, task::correct_answer(&p), copy)
        })
        .map(|pair| encode_pair(&tokenizer, &pair).unwrap())
        .collect()
}

fn weights(model: &CausalLm) -> Vec<u32> {
    model
        .valid()
        .to_weights()
        .into_iter()
        .flat_map(|(_, t)| t.data.into_iter().map(f32::to_bits))
        .collect()
}

fn fresh_model() -> CausalLm {
    seeded_model(&tiny_config(), 11, &Device::default().autodiff()).unwrap()
}

/// Sets a stop flag once `after` training forwards have run (grad_accum micro-batches per step).
struct StopAfter<O> {
    inner: O,
    calls: AtomicUsize,
    after: usize,
    flag: &'static AtomicBool,
}

impl<O: Objective> Objective for StopAfter<O> {
    type Example = O::Example;
    type Outputs = O::Outputs;

    fn prepare(&mut self, batch: &[Item<'_, O::Example>]) -> Result<()> {
        self.inner.prepare(batch)
    }
    fn shard_sequences(&self, shard: &[Item<'_, O::Example>]) -> SequenceBatch {
        self.inner.shard_sequences(shard)
    }
    fn shard_loss(
        &self,
        logps: Tensor<2>,
        sequences: &SequenceBatch,
        shard: &[Item<'_, O::Example>],
    ) -> Result<(Tensor<1>, O::Outputs)> {
        self.inner.shard_loss(logps, sequences, shard)
    }
    fn normalizer(&self, batch: &[Item<'_, O::Example>]) -> f64 {
        // The loop asks once per training micro-batch (evaluation goes through `forward`).
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.inner.normalizer(batch)
    }
    fn forward(
        &mut self,
        model: &CausalLm,
        batch: &[Item<'_, O::Example>],
    ) -> Result<(Tensor<1>, O::Outputs)> {
        self.inner.forward(model, batch)
    }
    fn absorb(outputs: &mut O::Outputs, more: O::Outputs) {
        O::absorb(outputs, more)
    }
    fn metrics(&self, outputs: &O::Outputs) -> Vec<(&'static str, f64)> {
        self.inner.metrics(outputs)
    }
    fn metric_names(&self) -> Vec<&'static str> {
        self.inner.metric_names()
    }
    fn save_state(&self, dir: &Path) -> Result<()> {
        self.inner.save_state(dir)
    }
    fn load_state(&mut self, dir: &Path) -> Result<()> {
        self.inner.load_state(dir)
    }
}

fn first_and_last(history: &[MetricRecord], split: &str) -> (f64, f64) {
    let losses: Vec<f64> = history
        .iter()
        .filter(|r| r.split == split)
        .map(|r| r.get("loss").unwrap())
        .collect();
    (losses[0], *losses.last().unwrap())
}

#[test]
fn sft_loss_decreases_on_a_tiny_model() {
    let out = temp_dir("sft-decreases");
    let data = sft_data(100);
    let mut s = settings(&out, 30);
    s.eval_every = 0;
    let outcome = train_loop(
        fresh_model(),
        Run {
            objective: &mut SftObjective { pad_id: PAD_ID },
            train: &data[..80],
            eval: &data[80..],
            settings: &s,
            resume: None,
            stop: None,
        },
    )
    .unwrap();
    let (before, after) = first_and_last(&outcome.history, "eval");
    assert!(after < 0.9 * before, "held-out loss {before} → {after}");
    assert!(out.join("metrics.jsonl").is_file() && out.join("metrics.csv").is_file());
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert!(
        csv.starts_with("step,split,loss,tokens,grad_norm,learning_rate\n"),
        "{csv}"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn every_preference_loss_decreases_and_raises_the_margin() {
    let data = pair_data(50);
    for loss in [
        PrefLoss::dpo(),
        PrefLoss::cdpo(),
        PrefLoss::gdpo(),
        PrefLoss::ipo(),
    ] {
        let out = temp_dir(&format!("pref-{}", loss.name()));
        let reference = fresh_model();
        let mut objective =
            PreferenceObjective::new(loss, &reference, ReferenceMode::Cached, PAD_ID);
        let outcome = train_loop(
            reference,
            Run {
                objective: &mut objective,
                train: &data,
                eval: &data[..10],
                settings: &settings(&out, 10),
                resume: None,
                stop: None,
            },
        )
        .unwrap();
        let (before, after) = first_and_last(&outcome.history, "eval");
        assert!(after < before, "{}: loss {before} → {after}", loss.name());
        let margin = outcome
            .history
            .last()
            .unwrap()
            .get("rewards/margins")
            .unwrap();
        assert!(margin > 0.0, "{}: margin {margin}", loss.name());
        std::fs::remove_dir_all(&out).unwrap();
    }
}

fn preference_run(
    out: &Path,
    resume: Option<&Path>,
    stop: Option<&'static AtomicBool>,
    stop_after: usize,
    mode: ReferenceMode,
) -> (Vec<u32>, Vec<MetricRecord>, bool) {
    let data = pair_data(40);
    let reference = fresh_model();
    let inner = PreferenceObjective::new(PrefLoss::gdpo(), &reference, mode, PAD_ID);
    let mut objective = StopAfter {
        inner,
        calls: AtomicUsize::new(0),
        after: stop_after,
        flag: stop.unwrap_or_else(|| Box::leak(Box::new(AtomicBool::new(false)))),
    };
    let mut s = settings(out, 8);
    s.save_every = 3;
    let outcome = train_loop(
        // A fresh model with the same weights, as a new process loading --model has.
        fresh_model(),
        Run {
            objective: &mut objective,
            train: &data,
            eval: &data[..8],
            settings: &s,
            resume,
            stop,
        },
    )
    .unwrap();
    (
        weights(&outcome.model),
        outcome.history,
        outcome.interrupted,
    )
}

#[test]
fn resuming_from_a_periodic_checkpoint_is_bitwise_identical() {
    for mode in [ReferenceMode::Cached, ReferenceMode::OnTheFly] {
        let straight_dir = temp_dir("resume-straight");
        let (straight, history, _) = preference_run(&straight_dir, None, None, 0, mode);
        let checkpoints = list_checkpoints(&straight_dir);
        let steps: Vec<usize> = checkpoints.iter().map(|c| c.0).collect();
        assert_eq!(steps, vec![3, 6, 8]);

        let resumed_dir = temp_dir("resume-resumed");
        let from = straight_dir.join("checkpoints").join(checkpoint_name(3));
        let (resumed, resumed_history, _) =
            preference_run(&resumed_dir, Some(&from), None, 0, mode);
        assert!(
            straight == resumed,
            "{mode:?}: weights differ after resuming"
        );
        assert_eq!(history, resumed_history);
        let lines = |dir: &Path| std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        assert_eq!(lines(&straight_dir), lines(&resumed_dir));
        std::fs::remove_dir_all(&straight_dir).unwrap();
        std::fs::remove_dir_all(&resumed_dir).unwrap();
    }
}

#[test]
fn resuming_in_the_same_folder_drops_the_metrics_written_after_the_checkpoint() {
    let dir = temp_dir("resume-same-folder");
    let (straight, history, _) = preference_run(&dir, None, None, 0, ReferenceMode::Cached);
    let files = |dir: &Path| {
        [METRICS_JSONL, METRICS_CSV].map(|name| std::fs::read_to_string(dir.join(name)).unwrap())
    };
    let uninterrupted = files(&dir);
    assert!(uninterrupted[0].lines().any(|l| l.contains("\"step\":8")));

    // As after a kill at step 8: the metrics files run five steps past the checkpoint of step 3,
    // and the run goes on from there in its own folder, rewriting checkpoints 6 and 8.
    let from = dir.join("checkpoints").join(checkpoint_name(3));
    let (resumed, resumed_history, _) =
        preference_run(&dir, Some(&from), None, 0, ReferenceMode::Cached);
    assert!(straight == resumed, "weights differ after resuming");
    assert_eq!(history, resumed_history);
    let [jsonl, csv] = files(&dir);
    assert_eq!(jsonl, uninterrupted[0], "metrics.jsonl of the resumed run");
    assert_eq!(csv, uninterrupted[1], "metrics.csv of the resumed run");
    let steps: Vec<usize> = list_checkpoints(&dir).iter().map(|c| c.0).collect();
    assert_eq!(steps, vec![3, 6, 8]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stop_request_checkpoints_and_the_resumed_run_is_bitwise_identical() {
    static STOP: AtomicBool = AtomicBool::new(false);
    let straight_dir = temp_dir("stop-straight");
    let (straight, _, _) = preference_run(&straight_dir, None, None, 0, ReferenceMode::Cached);

    // grad_accum = 2: the 10th training forward is in step 5, so the run stops after 5 steps.
    let stopped_dir = temp_dir("stop-stopped");
    let (_, history, interrupted) =
        preference_run(&stopped_dir, None, Some(&STOP), 10, ReferenceMode::Cached);
    assert!(interrupted);
    assert_eq!(
        history
            .iter()
            .rev()
            .find(|r| r.split == "train")
            .unwrap()
            .step,
        5
    );
    let checkpoint = find_checkpoint(&stopped_dir).unwrap();
    assert!(
        checkpoint.ends_with(checkpoint_name(5)),
        "{}",
        checkpoint.display()
    );

    STOP.store(false, Ordering::SeqCst);
    let (resumed, _, interrupted) = preference_run(
        &stopped_dir,
        Some(&checkpoint),
        None,
        0,
        ReferenceMode::Cached,
    );
    assert!(!interrupted);
    assert!(
        straight == resumed,
        "weights differ after a stop and resume"
    );
    std::fs::remove_dir_all(&straight_dir).unwrap();
    std::fs::remove_dir_all(&stopped_dir).unwrap();
}

#[test]
fn a_half_written_checkpoint_is_ignored_and_cleaned_up() {
    let out = temp_dir("partial");
    let (_, _, _) = preference_run(&out, None, None, 0, ReferenceMode::Cached);
    let root = out.join("checkpoints");
    // What a run killed while writing step 9 leaves: a temporary folder (of its process id) with
    // a torn file, and a folder without its trainer state.
    let partial = root.join(format!(".{}.partial-4000001", checkpoint_name(9)));
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("model.bpk"), b"torn").unwrap();
    let torn = root.join(checkpoint_name(10));
    std::fs::create_dir_all(&torn).unwrap();
    std::fs::write(torn.join("model.bpk"), b"torn").unwrap();

    let found = find_checkpoint(&out).unwrap();
    assert!(found.ends_with(checkpoint_name(8)), "{}", found.display());
    // The newest complete checkpoint still loads and resumes (a no-op: the run is complete).
    let (weights_again, _, _) = preference_run(&out, Some(&found), None, 0, ReferenceMode::Cached);
    assert!(!weights_again.is_empty());
    assert!(
        !partial.exists(),
        "the next save removes a leftover temporary folder"
    );
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn resuming_from_nothing_is_a_clear_error() {
    let out = temp_dir("nothing");
    std::fs::create_dir_all(&out).unwrap();
    let error = find_checkpoint(&out).unwrap_err().to_string();
    assert!(error.contains("cannot resume"), "{error}");
    std::fs::remove_dir_all(&out).unwrap();
}

/// Runs three GDPO steps on a rayon pool of `threads` threads and returns the first step's
/// training loss and the final weights.
fn sharded_run(threads: usize, sft: bool) -> (f64, Vec<f32>) {
    replicated_run(threads, Replicas::Threads, sft)
}

/// [`sharded_run`] with the shards placed by `replicas`.
fn replicated_run(threads: usize, replicas: Replicas, sft: bool) -> (f64, Vec<f32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let devices = match &replicas {
            Replicas::Devices(devices) => devices.len(),
            Replicas::Threads => 0,
        };
        // Tests run concurrently and several run the same configuration: a folder per call.
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, Ordering::SeqCst);
        let out = temp_dir(&format!("shards-{threads}-{devices}-{sft}-{run}"));
        let mut s = settings(&out, 3);
        s.eval_every = 0;
        s.replicas = replicas.clone();
        let outcome = if sft {
            let data = sft_data(50);
            train_loop(
                fresh_model(),
                Run {
                    objective: &mut SftObjective { pad_id: PAD_ID },
                    train: &data,
                    eval: &[],
                    settings: &s,
                    resume: None,
                    stop: None,
                },
            )
        } else {
            let data = pair_data(40);
            let reference = fresh_model();
            let mut objective = PreferenceObjective::new(
                PrefLoss::gdpo(),
                &reference,
                ReferenceMode::OnTheFly,
                PAD_ID,
            );
            train_loop(
                reference,
                Run {
                    objective: &mut objective,
                    train: &data,
                    eval: &[],
                    settings: &s,
                    resume: None,
                    stop: None,
                },
            )
        }
        .unwrap();
        std::fs::remove_dir_all(&out).unwrap();
        let first = outcome.history.iter().find(|r| r.split == "train").unwrap();
        let weights = weights(&outcome.model)
            .into_iter()
            .map(f32::from_bits)
            .collect();
        (first.get("loss").unwrap(), weights)
    })
}

#[test]
fn a_batch_split_into_shards_on_threads_trains_like_one_pass() {
    // Each micro-batch of 4 runs as 3 shards (2 + 1 + 1 examples) on 3 threads, each on its own
    // model replica; the summed, normalised shard losses must give the single pass's loss and
    // gradients (up to float rounding), for the per-pair mean (GDPO) and the per-token mean (SFT).
    for sft in [false, true] {
        let (loss_1, weights_1) = sharded_run(1, sft);
        let (loss_3, weights_3) = sharded_run(3, sft);
        assert!(
            (loss_1 - loss_3).abs() <= 1e-5 * loss_1.abs().max(1.0),
            "sft {sft}: first loss {loss_1} on 1 thread vs {loss_3} on 3"
        );
        let worst = weights_1
            .iter()
            .zip(&weights_3)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "sft {sft}: weights differ by {worst} after 3 steps"
        );
    }
}

#[test]
fn a_batch_split_across_devices_trains_like_one_pass() {
    // Data parallel: each micro-batch of 4 as 3 shards (2 + 1 + 1) on 3 device replicas, each
    // device's gradients summed over the 2 micro-batches, then the devices' sums reduced — the
    // code path of `--device cuda:0,cuda:1,cuda:2` up to the collective itself (the devices here
    // are all the CPU, so the reduction is the in-order sum an all-reduce computes).
    for sft in [false, true] {
        let (loss_1, weights_1) = sharded_run(1, sft);
        let (loss_3, weights_3) =
            replicated_run(1, Replicas::Devices(vec![Device::flex(); 3]), sft);
        assert!(
            (loss_1 - loss_3).abs() <= 1e-5 * loss_1.abs().max(1.0),
            "sft {sft}: first loss {loss_1} in one pass vs {loss_3} on 3 devices"
        );
        let worst = weights_1
            .iter()
            .zip(&weights_3)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst < 1e-4,
            "sft {sft}: weights differ by {worst} after 3 steps on 3 devices"
        );
    }
}

#[test]
fn shards_cover_a_batch_in_order_and_as_evenly_as_possible() {
    use softalign_train::shard_ranges;
    assert_eq!(shard_ranges(4, 3), vec![0..1, 1..2, 2..4]);
    assert_eq!(shard_ranges(2, 8), vec![0..1, 1..2]);
    assert_eq!(shard_ranges(5, 1), vec![0..5]);
    assert!(shard_ranges(0, 4).is_empty());
    for (n, parts) in [(7, 3), (64, 5), (3, 3)] {
        let ranges = shard_ranges(n, parts);
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, n);
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        let (shortest, longest) = ranges.iter().fold((usize::MAX, 0), |(lo, hi), r| {
            (lo.min(r.len()), hi.max(r.len()))
        });
        assert!(longest - shortest <= 1, "{n} in {parts}: {ranges:?}");
    }
}

/// Six GDPO steps with checkpoints every three, on a pool of 2 threads (each micro-batch of 4
/// runs as two shards on model replicas), with or without gradient checkpointing: the run's
/// records and its final weights.
fn checkpointing_run(
    out: &Path,
    checkpointing: bool,
    resume: Option<&Path>,
) -> (Vec<MetricRecord>, Vec<u32>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    pool.install(|| {
        let data = pair_data(40);
        let reference = fresh_model();
        let mut objective =
            PreferenceObjective::new(PrefLoss::gdpo(), &reference, ReferenceMode::Cached, PAD_ID);
        let mut s = settings(out, 6);
        s.save_every = 3;
        let model = fresh_model()
            .with_gradient_checkpointing(checkpointing)
            .unwrap();
        let outcome = train_loop(
            model,
            Run {
                objective: &mut objective,
                train: &data,
                eval: &data[..8],
                settings: &s,
                resume,
                stop: None,
            },
        )
        .unwrap();
        assert_eq!(outcome.model.gradient_checkpointing(), checkpointing);
        (outcome.history, weights(&outcome.model))
    })
}

#[test]
fn gradient_checkpointing_trains_like_keeping_the_activations_and_resumes_bitwise() {
    let plain_dir = temp_dir("checkpointing-plain");
    let (plain, plain_weights) = checkpointing_run(&plain_dir, false, None);
    let recomputed_dir = temp_dir("checkpointing-recomputed");
    let (recomputed, recomputed_weights) = checkpointing_run(&recomputed_dir, true, None);

    let train = |h: &[MetricRecord]| -> Vec<(f64, f64)> {
        h.iter()
            .filter(|r| r.split == "train")
            .map(|r| (r.get("loss").unwrap(), r.get("grad_norm").unwrap()))
            .collect()
    };
    let (a, b) = (train(&plain), train(&recomputed));
    assert_eq!(a.len(), 6);
    for (step, ((loss_a, norm_a), (loss_b, norm_b))) in a.iter().zip(&b).enumerate() {
        assert!(
            (loss_a - loss_b).abs() <= 1e-6,
            "step {}: loss {loss_a} kept vs {loss_b} recomputed",
            step + 1
        );
        assert!(
            (norm_a - norm_b).abs() <= 1e-6 * norm_a.max(1.0),
            "step {}: gradient norm {norm_a} kept vs {norm_b} recomputed",
            step + 1
        );
    }
    let worst = plain_weights
        .iter()
        .zip(&recomputed_weights)
        .map(|(&x, &y)| (f32::from_bits(x) - f32::from_bits(y)).abs())
        .fold(0.0f32, f32::max);
    assert!(worst <= 1e-5, "weights differ by {worst} after 6 steps");

    // Resumed from step 3 with checkpointing, the run is bitwise the uninterrupted one.
    let resumed_dir = temp_dir("checkpointing-resumed");
    let from = recomputed_dir.join("checkpoints").join(checkpoint_name(3));
    let (resumed, resumed_weights) = checkpointing_run(&resumed_dir, true, Some(&from));
    assert!(
        resumed_weights == recomputed_weights,
        "weights differ after resuming"
    );
    assert_eq!(resumed, recomputed);
    for dir in [plain_dir, recomputed_dir, resumed_dir] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
