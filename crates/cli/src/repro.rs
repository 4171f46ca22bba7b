//! `softalign repro …`: the papers' reproductions.

use clap::Subcommand;

pub use crate::repro_real::{AllArgs, LmArgs, MnistArgs};

/// The reproductions.
#[derive(Debug, Subcommand)]
pub enum ReproCommand {
    /// ADOPT's toy convex problem (Fig. 1 and 3): Adam, AMSGrad, ADOPT and its ablations.
    ///
    /// Writes DIR/toy.json (median and quartiles of θ per optimizer, k and β₂) and DIR/toy.png.
    Toy {
        /// Steps per chain.
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
        steps: u64,
        /// Independent chains per (optimizer, k, β₂), at most 100000 (the cells run one per
        /// thread, each holding its chains' states and trajectories).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        chains: u64,
        /// Seed of the gradient draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder.
        #[arg(long, default_value = "out/toy")]
        out: std::path::PathBuf,
    },
    /// 1-D bandit (GDPO paper §3.3): DPO, cDPO and GDPO fitted to soft Bradley–Terry labels.
    Bandit {
        /// Seed of the pair sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for bandit.json and bandit.png.
        #[arg(long, default_value = "out/bandit")]
        out: std::path::PathBuf,
    },
    /// MNIST / Fashion-MNIST MLP (ADOPT paper §5): Adam, AMSGrad and ADOPT over several seeds.
    Mnist(MnistArgs),
    /// Byte-level Llama pretrained on English text (ADOPT's GPT-2 experiment, small): AdamW vs ADOPT.
    Lm(LmArgs),
    /// Soft labels across label regimes and β (GDPO's claim, tested on the demo's task): a paired
    /// experiment over seeds with verdict rules fixed in advance.
    ///
    /// Writes DIR/soft_labels.json and DIR/soft_labels.png and prints the tables and the verdict.
    #[command(
        after_help = "Per seed: one SFT reference, the same sampled pairs relabelled under R0 (the demo: κ 1.5, ties \
dropped), R1 (ties kept), R2 (κ 0.5), R3 (κ 4.5) and R4 (5 raters' votes); DPO, cDPO and GDPO at β 0.1, 0.3, 0.9, 2.7; \
β chosen on validation prompts, everything reported on test prompts. Defaults (5 seeds) take about 10 minutes on 2 \
idle cores, --quick (3 seeds, R1 and R2) about 2."
    )]
    SoftLabels(SoftLabelArgs),
    /// Every reproduction in turn (skipping, with a note, any whose data is not fetched), then REPORT.md.
    All(AllArgs),
}

/// Run one reproduction.
pub fn run(command: ReproCommand) -> anyhow::Result<()> {
    match command {
        ReproCommand::Toy {
            steps,
            chains,
            seed,
            out,
        } => toy(steps as usize, chains as usize, seed, &out),
        ReproCommand::Bandit { seed, out } => bandit(seed, &out),
        ReproCommand::Mnist(args) => crate::repro_real::mnist(&args).map(|_| ()),
        ReproCommand::Lm(args) => crate::repro_real::lm(&args).map(|_| ()),
        ReproCommand::SoftLabels(args) => soft_labels(&args).map(|_| ()),
        ReproCommand::All(args) => crate::repro_real::all(&args),
    }
}

/// `softalign repro soft-labels`.
#[derive(Debug, clap::Args)]
pub struct SoftLabelArgs {
    /// Seeds [default 5, or 3 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=30))]
    pub seeds: Option<u64>,
    /// Regimes R1 and R2 only, 3 seeds unless --seeds: a look in under two minutes.
    #[arg(long)]
    pub quick: bool,
    /// Add the IPO (IPO, cIPO, GIPO) and ROPO (ROPO, GROPO) families.
    #[arg(long)]
    pub all_losses: bool,
    /// Output folder.
    #[arg(long, default_value = "out/soft-labels")]
    pub out: std::path::PathBuf,
}

/// Runs the soft-label study, writes its JSON and figure, prints its tables and verdict.
pub fn soft_labels(
    args: &SoftLabelArgs,
) -> anyhow::Result<softalign_repro::soft_labels::SoftLabelReport> {
    use softalign_repro::soft_labels;
    let config = soft_labels::SoftLabelConfig::new(
        args.seeds.map(|s| s as usize),
        args.quick,
        args.all_losses,
        args.out.join("runs"),
    );
    eprintln!(
        "soft-labels: verdict rules (fixed before the run): {}",
        soft_labels::RULES
    );
    let report = soft_labels::run(&config, &mut |line| eprintln!("soft-labels: {line}"))?;
    soft_labels::write(&report, &args.out)?;
    println!("{}", soft_labels::markdown(&report));
    eprintln!(
        "soft-labels: {} seeds in {:.0} s; wrote {}",
        report.seeds.len(),
        report.seconds,
        args.out.join("soft_labels.{json,png}").display()
    );
    Ok(report)
}

/// `softalign repro bandit`: run, write DIR/bandit.json and DIR/bandit.png, print the summary.
fn bandit(seed: u64, out: &std::path::Path) -> anyhow::Result<()> {
    use softalign_repro::bandit;
    let report = bandit::run(&bandit::BanditConfig {
        seed,
        ..Default::default()
    })?;
    bandit::write(&report, out)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// `softalign repro toy`: run, write DIR/toy.json and DIR/toy.png, print the final medians.
fn toy(steps: usize, chains: usize, seed: u64, out: &std::path::Path) -> anyhow::Result<()> {
    use softalign_repro::toy;
    let started = std::time::Instant::now();
    let report = toy::run(&toy::ToyConfig {
        steps,
        chains,
        seed,
        ..Default::default()
    })?;
    toy::write(&report, out)?;
    println!(
        "{:<24} {:>3} {:>6} {:>8} {:>8} {:>8}",
        "optimizer", "k", "beta2", "median", "q25", "q75"
    );
    for r in &report.results {
        println!(
            "{:<24} {:>3} {:>6} {:>+8.3} {:>+8.3} {:>+8.3}",
            r.optimizer, r.k, r.beta2, r.median, r.q25, r.q75
        );
    }
    eprintln!(
        "{} steps x {} chains in {:.1} s; wrote {} and {}",
        steps,
        chains,
        started.elapsed().as_secs_f64(),
        out.join("toy.json").display(),
        out.join("toy.png").display()
    );
    Ok(())
}
