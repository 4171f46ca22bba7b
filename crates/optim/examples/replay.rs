//! Replay a golden trajectory through the burn optimizer and report the largest errors.
//!
//! ```text
//! cargo run --release -p softalign-optim --example replay -- ../shared/golden/optim/adopt_default.float32.json
//! {"case":"adopt_default","optimizer":"adopt","steps":25,"max_abs_err":…,"max_rel_err":…}
//! ```
//!
//! Parameters are compared at every step; the relative error is |got − want| / max(|want|, 0.1),
//! as the golden README defines it. Exit status 2 with one line on stderr for a bad file.

use std::path::PathBuf;

use burn::tensor::Device;
use softalign_optim::golden::{GoldenCase, UpdatePath, replay_burn};

/// One output line, fields in the documented order.
#[derive(serde::Serialize)]
struct Line<'a> {
    case: &'a str,
    optimizer: &'a str,
    steps: usize,
    max_abs_err: f64,
    max_rel_err: f64,
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (Some(path), None) = (args.next(), args.next()) else {
        eprintln!("usage: replay FILE.json");
        std::process::exit(2);
    };
    let path = PathBuf::from(path);
    let case = match GoldenCase::load(&path) {
        Ok(case) => case,
        Err(error) => {
            eprintln!("replay: error: {error}");
            std::process::exit(2);
        }
    };
    let comparison = replay_burn(&case, &Device::flex(), UpdatePath::Fused).compare(&case);
    let line = Line {
        case: &case.name,
        optimizer: &case.optimizer,
        steps: case.steps,
        max_abs_err: comparison.max_abs_err,
        max_rel_err: comparison.max_rel_err,
    };
    println!(
        "{}",
        serde_json::to_string(&line).expect("plain data serializes")
    );
}
