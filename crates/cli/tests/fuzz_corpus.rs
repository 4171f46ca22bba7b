//! Replays the committed fuzz corpora (`fuzz/corpus/TARGET/`) and every crasher the fuzzers ever
//! found (`fuzz/regressions/TARGET/`) through the very functions the fuzz targets run
//! (`fuzz/src/lib.rs`): each input must end in success or a clean error, never a panic. So the
//! normal test suite keeps every fuzzing finding fixed without needing a fuzzer.

#[path = "../../../fuzz/src/lib.rs"]
mod fuzz;

use std::path::{Path, PathBuf};

/// A fuzz target's body.
type Target = fn(&[u8]) -> fuzz::Outcome;

const TARGETS: [(&str, Target); 6] = [
    ("gguf", fuzz::gguf),
    ("hf_folder", fuzz::hf_folder),
    ("preference_data", fuzz::preference_data),
    ("toml_config", fuzz::toml_config),
    ("idx", fuzz::idx),
    ("checkpoint", fuzz::checkpoint),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn inputs(folder: &str, target: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_and_fuzzing_regression_is_handled_without_a_panic() {
    for (target, run) in TARGETS {
        let corpus = inputs("corpus", target);
        assert!(!corpus.is_empty(), "fuzz/corpus/{target} is empty");
        for path in corpus.iter().chain(&inputs("regressions", target)) {
            let bytes = std::fs::read(path).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&bytes));
            assert!(outcome.is_ok(), "{target}: {} panics", path.display());
        }
    }
    remove_scratch();
}

/// Removes the scratch folders the targets wrote their files into.
fn remove_scratch() {
    for name in ["gguf", "hf", "checkpoint"] {
        let _ = std::fs::remove_dir_all(fuzz::scratch(name));
    }
}

/// Writes the seed of the `checkpoint` target: a real checkpoint of the fuzz harness's tiny
/// model after one optimizer step, its three files joined by the harness's separator. Run by
/// hand (`-- --ignored`) when the checkpoint format changes.
#[test]
#[ignore]
fn write_checkpoint_seed() {
    use burn::optim::GradientsParams;
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use softalign_train::checkpoint::{TrainerState, save_checkpoint};

    let device = Device::default().autodiff();
    let model = softalign_model::CausalLm::init(&fuzz::tiny_config(), &device);
    let mut optim = softalign_optim::OptimizerKind::Adopt.module_optimizer(0.0, None);
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64, 2, 3], [1, 3]), &device);
    let grads = GradientsParams::from_grads(model.forward(tokens).sum().backward(), &model);
    let model = optim.step(1e-3, model, grads);
    let out = std::env::temp_dir().join(format!("softalign-seed-{}", std::process::id()));
    let state = TrainerState {
        step: 1,
        seed: 0,
        total_steps: 2,
        history: Vec::new(),
    };
    let dir = save_checkpoint(&out, &model, &optim, &state, |_| Ok(()), 1).unwrap();
    let mut seed = Vec::new();
    for (i, name) in ["model.bpk", "optimizer.bpk", "trainer_state.json"]
        .iter()
        .enumerate()
    {
        if i > 0 {
            seed.extend_from_slice(fuzz::PART_SEPARATOR);
        }
        seed.extend(std::fs::read(dir.join(name)).unwrap());
    }
    let target = fuzz_dir().join("corpus").join("checkpoint");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("seed-tiny-checkpoint"), seed).unwrap();
    std::fs::remove_dir_all(&out).unwrap();
}

/// A coverage-less mutation fuzzer on stable Rust, for machines where cargo-fuzz cannot build
/// (fuzz/README.md says when and how it was run): mutates the corpus of `FUZZ_TARGET` for
/// `FUZZ_EXECS` executions (seeded by `FUZZ_SEED`), keeps every input whose outcome (the error
/// message with its digits masked) was not seen before as a corpus entry in memory (at most
/// [`MAX_CORPUS`]), and
/// writes each input that panics to `fuzz/regressions/TARGET/`. Prints the execution count.
#[test]
#[ignore]
fn mutate() {
    let target = std::env::var("FUZZ_TARGET").expect("FUZZ_TARGET=gguf|hf_folder|…");
    let execs: u64 = std::env::var("FUZZ_EXECS").map_or(1_000_000, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("FUZZ_SEED").map_or(1, |v| v.parse().unwrap());
    let max_len: usize = std::env::var("FUZZ_MAX_LEN").map_or(8192, |v| v.parse().unwrap());
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("known target");
    let mut corpus: Vec<Vec<u8>> = inputs("corpus", &target)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let mut seen = std::collections::HashSet::new();
    let mut rng = Rng(seed);
    let mut crashes = 0;
    std::panic::set_hook(Box::new(|_| {}));
    let started = std::time::Instant::now();
    for exec in 0..execs {
        let base = &corpus[rng.below(corpus.len())];
        let input = mutated(base, &corpus, &mut rng, max_len);
        match std::panic::catch_unwind(|| run(&input)) {
            Ok(outcome) => {
                let class: String = outcome
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .take(160)
                    .collect();
                // New behaviour joins the corpus; past the cap it replaces a random entry, so
                // memory stays bounded however many outcomes the target has.
                if seen.insert(class) {
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input);
                    } else {
                        let at = rng.below(corpus.len());
                        corpus[at] = input;
                    }
                }
            }
            Err(_) => {
                crashes += 1;
                let dir = fuzz_dir().join("regressions").join(&target);
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("crash-{seed}-{exec}")), &input).unwrap();
            }
        }
    }
    let _ = std::panic::take_hook();
    remove_scratch();
    eprintln!(
        "fuzz {target}: {execs} executions in {:.0} s, {} outcome classes, corpus {}, {crashes} crashes",
        started.elapsed().as_secs_f64(),
        seen.len(),
        corpus.len()
    );
    assert_eq!(crashes, 0, "crashers written to fuzz/regressions/{target}/");
}

/// Inputs the mutation runner keeps in memory at most.
const MAX_CORPUS: usize = 4096;

/// xorshift64*: a small seeded generator for the mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break size arithmetic: zero, one, powers of two and their neighbours, the
/// largest values of each width.
const INTERESTING: [u64; 12] = [
    0,
    1,
    7,
    32,
    255,
    65_535,
    (1 << 31) - 1,
    (1 << 32) - 1,
    1 << 40,
    1 << 62,
    u64::MAX - 7,
    u64::MAX,
];

/// One to four random edits of `base`: bit flips, byte sets, interesting little-endian
/// integers, deletions, duplications and splices from another corpus entry.
fn mutated(base: &[u8], corpus: &[Vec<u8>], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut out = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let at = rng.below(len);
                out[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                out[at] = [0, 0xff, 0x7f, 0x80, b'"', b'[', b'{', b'\n'][rng.below(8)];
            }
            2 if len >= 8 => {
                let at = rng.below(len - 7);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                out[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
            }
            3 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                out.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let chunk = out[at..at + n].to_vec();
                let to = rng.below(len);
                out.splice(to..to, chunk);
            }
            5 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let at = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - at).min(256));
                    let to = rng.below(len + 1);
                    out.splice(to..to, other[at..at + n].iter().copied());
                }
            }
            _ if len > 0 => {
                out.truncate(rng.below(len));
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out.truncate(max_len);
    out
}
