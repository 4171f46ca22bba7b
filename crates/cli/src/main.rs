//! `softalign`: soft-label preference alignment and the ADOPT optimizer, in one binary.
//!
//! Glue only: flags are parsed here (clap), validated into the libraries' settings, and handed
//! to library functions. Every error ends the process with one line on stderr and exit status 2.

use clap::{Parser, Subcommand};

mod align;
mod bench;
mod data;
mod eval;
mod generate;
mod label;
mod online;
mod repro;
mod repro_real;
mod sft;

/// Soft-label preference alignment (DPO, cDPO, GDPO, …) and the ADOPT optimizer.
#[derive(Debug, Parser)]
#[command(name = "softalign", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure speed (`bench optim`: one optimizer step per parameter, against burn's AdamW;
    /// `bench step`: one preference-training step of a 135M-parameter model).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Reproduce the papers' analyses (toy problem, bandit, …).
    #[command(subcommand)]
    Repro(repro::ReproCommand),
    /// Inspect preference data files (`data check FILE`).
    #[command(subcommand)]
    Data(data::DataCommand),
    /// Continue a prompt with a model (Hugging Face folder or .gguf); text streams to stdout.
    Generate(generate::GenerateArgs),
    /// Supervised fine-tuning on prompt → response data (loss on response tokens only).
    Sft(Box<sft::SftArgs>),
    /// Preference alignment (DPO, cDPO, GDPO, … with soft labels); with no --model and --data,
    /// the built-in demo.
    Align(Box<align::AlignArgs>),
    /// Soft preference labels by AI feedback: a judge model scores both orders of every pair.
    Label(label::LabelArgs),
    /// Win rates of a model's greedy responses (against references or --versus a model), judged by
    /// AI feedback in both orders; implicit-reward accuracy with --reference.
    Eval(eval::EvalArgs),
}

fn main() {
    softalign_model::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Repro(command) => repro::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Data(command) => data::run(command),
        Command::Generate(args) => generate::run(args),
        Command::Sft(args) => sft::run(*args),
        Command::Align(args) => align::run(*args),
        Command::Label(args) => label::run(args),
        Command::Eval(args) => eval::run(args),
    };
    if let Err(error) = result {
        // One line: the chain of causes joined by ": ".
        eprintln!("softalign: error: {error:#}");
        std::process::exit(2);
    }
}
