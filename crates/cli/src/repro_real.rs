//! `softalign repro mnist | lm | all`: the reproductions on real data, and the report.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use softalign_optim::OptimizerKind;
use softalign_repro::{lm, mnist, report};

/// `softalign repro mnist`.
#[derive(Debug, Args)]
#[command(
    after_help = "Defaults (10 epochs × 3 seeds × 3 optimizers of a 784-256-10 MLP, batch 128, on all \
60,000 training images) take about 2 minutes on 2 cores. Fetch the data with scripts/fetch-repro-data.sh."
)]
pub struct MnistArgs {
    /// Folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte (plain or .gz), e.g. .cache/mnist.
    #[arg(long)]
    pub data: PathBuf,
    /// Which data set the folder holds (names the outputs: mnist.json or fashion.json).
    #[arg(long, default_value = "mnist", value_parser = ["mnist", "fashion"])]
    pub dataset: String,
    /// Passes over the training set.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Seeds (initialisation and minibatch order) per optimizer; intervals are over seeds.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub seeds: u64,
    /// Minibatch size.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Hidden units of the MLP.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub hidden: u64,
    /// Constant learning rate of every optimizer.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Use only the first N training images (quick looks); all by default.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Output folder.
    #[arg(long, default_value = "out/mnist")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: crate::device::DeviceArg,
}

/// `softalign repro lm`.
#[derive(Debug, Args)]
#[command(
    after_help = "A spike is a maximal run of consecutive steps whose training loss exceeds the median \
of the --spike-window losses before it by more than --spike-threshold nats. Defaults (4 runs of 300 steps: \
AdamW and ADOPT at batches 4 and 16 of 64 bytes, a 4-layer 128-wide byte-level Llama, 0.9M parameters) take \
about 4 minutes on 2 cores. Fetch text with scripts/fetch-repro-data.sh text."
)]
pub struct LmArgs {
    /// English text file (any bytes; the vocabulary is the 256 byte values), e.g.
    /// .cache/text/shakespeare.txt. Its last 5% is held out for validation.
    #[arg(long)]
    pub text: PathBuf,
    /// Optimizer steps per run.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub steps: u64,
    /// The small batch (windows per step).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub small_batch: u64,
    /// The large batch (windows per step).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    pub large_batch: u64,
    /// Bytes per window.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..))]
    pub seq_len: u64,
    /// Decoder blocks.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub layers: u64,
    /// Model width (a multiple of 32).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..))]
    pub width: u64,
    /// Peak learning rate (linear warmup, then cosine to a tenth).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Warmup steps.
    #[arg(long, default_value_t = 40)]
    pub warmup: u64,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    pub clip_norm: f64,
    /// β₂ of AdamW (nanoGPT's 0.95; ADOPT keeps its 0.9999).
    #[arg(long, default_value_t = 0.95)]
    pub adam_beta2: f64,
    /// The optimizers compared, comma-separated (adopt, adam, adamw, amsgrad).
    #[arg(long, default_value = "adamw,adopt", value_delimiter = ',')]
    pub optimizers: Vec<OptimizerKind>,
    /// Running-median window of the spike counter, in steps.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub spike_window: u64,
    /// Nats above the running median that make a spike.
    #[arg(long, default_value_t = 0.3)]
    pub spike_threshold: f64,
    /// Seed of the initial weights and the windows drawn.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output folder.
    #[arg(long, default_value = "out/lm")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: crate::device::DeviceArg,
}

/// `softalign repro all`.
#[derive(Debug, Args)]
#[command(
    after_help = "Runs toy, bandit, mnist, fashion and lm at their defaults (about 20 minutes on 2 cores), \
writing DIR/<name>/, then copies the figures to --figures and writes --report. A reproduction whose data is \
missing under --data-dir is skipped with a note (fetch with scripts/fetch-repro-data.sh)."
)]
pub struct AllArgs {
    /// Output folder; each reproduction writes into its own subfolder.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// The fetch script's cache: mnist/, fashion-mnist/, text/shakespeare.txt.
    #[arg(long, default_value = ".cache")]
    pub data_dir: PathBuf,
    /// Where the report's figures are copied.
    #[arg(long, default_value = "docs/figures")]
    pub figures: PathBuf,
    /// The report written at the end.
    #[arg(long, default_value = "REPORT.md")]
    pub report: PathBuf,
    /// Skip these reproductions (comma-separated: toy, bandit, mnist, fashion, lm, align, soft-labels).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Run nothing: rewrite the report from the results of an earlier `repro all` (DIR/all.json).
    #[arg(long)]
    pub report_only: bool,
}

fn progress_line(line: &str) {
    eprintln!("{line}");
}

/// Runs the MNIST comparison, writes its JSON and figure, prints the last epoch's table.
pub fn mnist(args: &MnistArgs) -> anyhow::Result<mnist::MnistReport> {
    let dataset: mnist::Dataset = args.dataset.parse()?;
    let mut data = mnist::load(&args.data)?;
    if let Some(limit) = args.train_limit {
        data.train = data.train.truncated(limit);
    }
    let config = mnist::MnistConfig {
        dataset,
        epochs: args.epochs as usize,
        seeds: args.seeds as usize,
        batch_size: args.batch_size as usize,
        hidden: args.hidden as usize,
        learning_rate: args.lr,
        device: args.device.open("repro mnist")?,
        ..Default::default()
    };
    let report = mnist::run(&config, &data, &mut |line| progress_line(line))?;
    mnist::write(&report, &args.out)?;
    println!("{}", report::mnist_table(&report));
    eprintln!(
        "{} in {:.0} s; wrote {}",
        dataset.title(),
        report.seconds,
        args.out
            .join(format!("{}.{{json,png}}", dataset.name()))
            .display()
    );
    Ok(report)
}

/// Runs the language-model comparison, writes its JSON and figure, prints the table.
pub fn lm(args: &LmArgs) -> anyhow::Result<lm::LmReport> {
    let config = lm::LmConfig {
        layers: args.layers as usize,
        width: args.width as usize,
        seq_len: args.seq_len as usize,
        batch_sizes: vec![args.small_batch as usize, args.large_batch as usize],
        steps: args.steps as usize,
        learning_rate: args.lr,
        warmup_steps: args.warmup as usize,
        clip_norm: args.clip_norm,
        adam_beta2: args.adam_beta2,
        optimizers: args.optimizers.clone(),
        spike_window: args.spike_window as usize,
        spike_threshold: args.spike_threshold,
        seed: args.seed,
        device: args.device.open("repro lm")?,
        ..Default::default()
    };
    let corpus = lm::Corpus::read(&args.text, &config)?;
    let report = lm::run(&config, &corpus, &mut |line| progress_line(line))?;
    lm::write(&report, &args.out)?;
    println!("{}", report::lm_table(&report));
    eprintln!(
        "language model in {:.0} s; wrote {}",
        report.seconds,
        args.out.join("lm.{json,png}").display()
    );
    Ok(report)
}

/// Runs every reproduction whose inputs exist, then writes the report.
pub fn all(args: &AllArgs) -> anyhow::Result<()> {
    let manifest = args.out.join("all.json");
    let sections = if args.report_only {
        report::Sections::read(&manifest)?
    } else {
        let sections = run_all(args);
        softalign_repro::write_json_atomic(&manifest, &sections)?;
        sections
    };
    let written = report::write_report(&sections, &args.figures, &args.report)
        .with_context(|| format!("writing {}", args.report.display()))?;
    eprintln!(
        "repro all: wrote {} ({} figures under {})",
        args.report.display(),
        written,
        args.figures.display()
    );
    Ok(())
}

/// Runs every reproduction in turn; a failure or missing data becomes a note, not an error.
fn run_all(args: &AllArgs) -> report::Sections {
    let skip = |name: &str| args.skip.iter().any(|s| s == name);
    let mut sections = report::Sections::default();
    let timed = |name: &str, f: &mut dyn FnMut() -> anyhow::Result<report::Outcome>| {
        if skip(name) {
            eprintln!("repro all: {name}: skipped (--skip)");
            return report::Outcome::Skipped("skipped with --skip".to_string());
        }
        eprintln!("repro all: {name} …");
        let started = Instant::now();
        match f() {
            Ok(outcome) => {
                eprintln!(
                    "repro all: {name} done in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                outcome
            }
            Err(error) => {
                eprintln!("repro all: {name}: failed: {error:#}");
                report::Outcome::Skipped(format!("failed: {error:#}"))
            }
        }
    };

    sections.toy = timed("toy", &mut || {
        use softalign_repro::toy;
        let started = Instant::now();
        let result = toy::run(&toy::ToyConfig::default())?;
        let out = args.out.join("toy");
        toy::write(&result, &out)?;
        Ok(report::Outcome::Done(report::Run {
            dir: out,
            command: "softalign repro toy --out out/toy".to_string(),
            seconds: started.elapsed().as_secs_f64(),
        }))
    });
    sections.bandit = timed("bandit", &mut || {
        use softalign_repro::bandit;
        let started = Instant::now();
        let result = bandit::run(&bandit::BanditConfig::default())?;
        let out = args.out.join("bandit");
        bandit::write(&result, &out)?;
        Ok(report::Outcome::Done(report::Run {
            dir: out,
            command: "softalign repro bandit --out out/bandit".to_string(),
            seconds: started.elapsed().as_secs_f64(),
        }))
    });
    for (name, folder) in [("mnist", "mnist"), ("fashion", "fashion-mnist")] {
        let outcome = timed(name, &mut || {
            let data = args.data_dir.join(folder);
            if !data.is_dir() {
                return Ok(missing(&data));
            }
            let out = args.out.join(name);
            let mnist_args = MnistArgs {
                data: data.clone(),
                dataset: name.to_string(),
                out: out.clone(),
                ..defaults::<MnistArgs>(&["--data", "-"])
            };
            let report = mnist(&mnist_args)?;
            Ok(report::Outcome::Done(report::Run {
                dir: out.clone(),
                command: format!(
                    "softalign repro mnist --data {} --dataset {name} --out {}",
                    data.display(),
                    out.display()
                ),
                seconds: report.seconds,
            }))
        });
        match name {
            "mnist" => sections.mnist = outcome,
            _ => sections.fashion = outcome,
        }
    }
    sections.lm = timed("lm", &mut || {
        let text = args.data_dir.join("text/shakespeare.txt");
        if !text.is_file() {
            return Ok(missing(&text));
        }
        let out = args.out.join("lm");
        let lm_args = LmArgs {
            text: text.clone(),
            out: out.clone(),
            ..defaults::<LmArgs>(&["--text", "-"])
        };
        let report = lm(&lm_args)?;
        Ok(report::Outcome::Done(report::Run {
            dir: out.clone(),
            command: format!(
                "softalign repro lm --text {} --out {}",
                text.display(),
                out.display()
            ),
            seconds: report.seconds,
        }))
    });
    sections.soft_labels = timed("soft-labels", &mut || {
        let out = args.out.join("soft-labels");
        let study = crate::repro::SoftLabelArgs {
            seeds: None,
            quick: false,
            all_losses: false,
            out: out.clone(),
        };
        let report = crate::repro::soft_labels(&study)?;
        Ok(report::Outcome::Done(report::Run {
            dir: out.clone(),
            command: format!("softalign repro soft-labels --out {}", out.display()),
            seconds: report.seconds,
        }))
    });
    sections.align = timed("align", &mut || {
        use softalign_train::demo::{DemoSettings, run_demo};
        let out = args.out.join("align");
        let settings = DemoSettings {
            out_dir: out.clone(),
            progress: false,
            ..Default::default()
        };
        let report = run_demo(&settings, &mut |line| eprintln!("align: {line}"))?;
        Ok(report::Outcome::Done(report::Run {
            dir: out.clone(),
            command: format!("softalign align --out {}", out.display()),
            seconds: report.seconds,
        }))
    });

    sections
}

fn missing(path: &Path) -> report::Outcome {
    eprintln!(
        "repro all: {} not found; fetch it with scripts/fetch-repro-data.sh",
        path.display()
    );
    report::Outcome::Skipped(format!(
        "{} not found; fetch it with scripts/fetch-repro-data.sh",
        path.display()
    ))
}

/// A command's defaults as clap parses them (so `repro all` runs exactly what `--help` shows),
/// given its required flags.
fn defaults<A: clap::Args + clap::FromArgMatches>(required: &[&str]) -> A {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper<A: clap::Args> {
        #[command(flatten)]
        args: A,
    }
    Wrapper::<A>::parse_from(std::iter::once("softalign").chain(required.iter().copied())).args
}
