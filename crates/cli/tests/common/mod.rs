//! Helpers shared by the command-line tests: a fresh scratch folder and the built binary.

#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// An empty folder `softalign-NAME` under cargo's scratch directory for integration tests.
pub fn dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("softalign-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `softalign` binary of this build with `args`.
pub fn softalign(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_softalign"))
        .args(args)
        .output()
        .expect("the softalign binary runs")
}

/// The standard error of `output` as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}
