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
        ReproCommand::All(args) => crate::repro_real::all(&args),
    }
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
