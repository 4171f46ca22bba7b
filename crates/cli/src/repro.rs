//! `softalign repro …`: the papers' reproductions.

use clap::Subcommand;

/// The reproductions.
#[derive(Debug, Subcommand)]
pub enum ReproCommand {}

/// Run one reproduction.
pub fn run(command: ReproCommand) -> anyhow::Result<()> {
    match command {}
}
