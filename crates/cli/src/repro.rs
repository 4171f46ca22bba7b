//! `softalign repro …`: the papers' reproductions.

use clap::Subcommand;

/// The reproductions.
#[derive(Debug, Subcommand)]
pub enum ReproCommand {
    /// 1-D bandit (GDPO paper §3.3): DPO, cDPO and GDPO fitted to soft Bradley–Terry labels.
    Bandit {
        /// Seed of the pair sampler.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder for bandit.json and bandit.png.
        #[arg(long, default_value = "out/bandit")]
        out: std::path::PathBuf,
    },
}

/// Run one reproduction.
pub fn run(command: ReproCommand) -> anyhow::Result<()> {
    match command {
        ReproCommand::Bandit { seed, out } => bandit(seed, &out),
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
