//! `softalign`: soft-label preference alignment and the ADOPT optimizer, in one binary.
//!
//! Glue only: flags are parsed here (clap), validated into the libraries' settings, and handed
//! to library functions. Every error ends the process with one line on stderr and exit status 2.

use clap::{Parser, Subcommand};

mod align;
mod bench;
mod config_file;
mod data;
mod device;
mod eval;
mod generate;
mod label;
mod online;
mod repro;
mod repro_real;
mod score;
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
    /// Per-token log-probabilities of texts, their sum and perplexity (`--json` for scripts).
    Score(score::ScoreArgs),
    /// Win rates of a model's greedy responses (against references or --versus a model), judged by
    /// AI feedback in both orders; implicit-reward accuracy with --reference.
    Eval(eval::EvalArgs),
}

/// Exit status of bad input and failed commands.
const EXIT_ERROR: i32 = 2;
/// Exit status of a training run stopped by a non-finite loss, gradient or weight.
const EXIT_NON_FINITE: i32 = 3;
/// Exit status of a panic: a bug, never an answer to input (tests treat it as a failure).
const EXIT_PANIC: i32 = 101;

fn main() {
    // Every device this binary computes on is chosen by `--device`; what burn itself places on
    // its default device (optimizer state read from a checkpoint, moved to the parameters'
    // device at the next step) goes to the CPU, never to a lazily created GPU device.
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    softalign_model::keep_freed_memory();
    std::panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let (status, line) = panic_outcome(&message, &location);
        if let Some(line) = line {
            print_error_line(&line);
        }
        std::process::exit(status);
    }));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => exit_on_usage_error(error),
    };
    let result = match cli.command {
        Command::Repro(command) => repro::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Data(command) => data::run(command),
        Command::Generate(args) => generate::run(args),
        Command::Sft(args) => sft::run(*args),
        Command::Align(args) => align::run(*args),
        Command::Label(args) => label::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Score(args) => score::run(args),
    };
    if let Err(error) = result {
        // One line: the chain of causes joined by ": ".
        print_error_line(&format!("softalign: error: {error:#}"));
        let non_finite = matches!(
            error.downcast_ref::<softalign_train::TrainError>(),
            Some(softalign_train::TrainError::NonFinite { .. })
        );
        std::process::exit(if non_finite {
            EXIT_NON_FINITE
        } else {
            EXIT_ERROR
        });
    }
}

/// The exit status and the stderr line of a panic with `message` (raised at `location`):
///
/// - output that can no longer be written (a closed pipe, a closed stderr): the standard
///   library's print macros panic then; status 2 and nothing more to print;
/// - a GPU out of memory (burn's backends panic on a failed device allocation): bad input for
///   this device, status 2 and one `softalign: error:` line saying what to lower;
/// - anything else is a bug: status 101 and one `internal error` line.
fn panic_outcome(message: &str, location: &str) -> (i32, Option<String>) {
    if message.starts_with("failed printing to std") {
        return (EXIT_ERROR, None);
    }
    let lower = message.to_lowercase();
    let out_of_memory = [
        "out of device memory",
        "out-of-memory",
        "outofmemory",
        "out of memory",
    ]
    .iter()
    .any(|needle| lower.contains(needle));
    if out_of_memory {
        let first = message.lines().next().unwrap_or_default().trim();
        return (
            EXIT_ERROR,
            Some(format!(
                "softalign: error: the device ran out of memory ({first}); lower --batch-size or --max-length, or train with --gradient-checkpointing or --lora-r"
            )),
        );
    }
    let first = message.lines().next().unwrap_or_default();
    (
        EXIT_PANIC,
        Some(format!(
            "softalign: internal error (a bug; please report it){location}: {first}"
        )),
    )
}

/// Writes `line` to stderr, ignoring a stderr that is closed or a broken pipe: the exit status
/// still tells the outcome, and printing must never turn an error into a crash.
fn print_error_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Help and version go to stdout with status 0; a usage error is one `softalign: error:` line
/// (clap's first line, which names the flag) and status 2.
fn exit_on_usage_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        error.exit();
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = error.print();
        std::process::exit(EXIT_ERROR);
    }
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    print_error_line(&format!("softalign: error: {first} (see softalign --help)"));
    std::process::exit(EXIT_ERROR);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_one_line_and_only_a_bug_is_status_101() {
        // What burn's CUDA and wgpu backends panic with on a failed device allocation
        // (cubecl's `IoError::OutOfMemory` and `LaunchError::OutOfMemory`, unwrapped).
        for message in [
            "called `Result::unwrap()` on an `Err` value: out of device memory allocating 274877906944 bytes\nbacktrace …",
            "An out-of-memory error happened during launch\nCaused by:\n  pool exhausted",
            "called `Result::unwrap()` on an `Err` value: OutOfMemory { size: 1024 }",
        ] {
            let (status, line) = panic_outcome(message, " at x.rs:1");
            let line = line.unwrap();
            assert_eq!(status, EXIT_ERROR, "{message}");
            assert!(
                line.starts_with("softalign: error: the device ran out of memory")
                    && line.contains("--batch-size")
                    && !line.contains('\n'),
                "{line}"
            );
        }
        assert_eq!(
            panic_outcome("failed printing to stdout: Broken pipe (os error 32)", ""),
            (EXIT_ERROR, None)
        );
        let (status, line) = panic_outcome("index out of bounds\nmore", " at x.rs:1");
        assert_eq!(status, EXIT_PANIC);
        assert_eq!(
            line.unwrap(),
            "softalign: internal error (a bug; please report it) at x.rs:1: index out of bounds"
        );
    }
}
