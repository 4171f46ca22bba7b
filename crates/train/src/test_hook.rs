//! A fault-injection hook for the interruption tests: with `SOFTALIGN_TEST_ABORT_AT=POINT:N` in
//! the environment, the process aborts (`SIGABRT`: no destructors, no flushing, like `kill -9`)
//! the `N`th time the run reaches the named point. Without the variable every call is a no-op.
//!
//! Points: `step` (after an optimizer step is applied), `checkpoint` (a checkpoint's files are
//! written under `.partial/`, not yet renamed), `prune` (an old checkpoint is being deleted),
//! `export` (the exported model is written under its temporary name, not yet renamed).
//!
//! This exists so that `crates/cli/tests/interruption.rs` reaches each dangerous moment
//! deterministically; it is a test hook, not a feature.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The environment variable that arms the hook.
pub const ABORT_AT_VAR: &str = "SOFTALIGN_TEST_ABORT_AT";

fn armed() -> Option<&'static (String, usize)> {
    static ARMED: OnceLock<Option<(String, usize)>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var(ABORT_AT_VAR).ok()?;
            let (point, n) = value.split_once(':')?;
            Some((point.to_string(), n.parse().ok()?))
        })
        .as_ref()
}

/// Counts one arrival at `point`; aborts the process if the hook is armed for this arrival.
pub fn reached(point: &str) {
    static ARRIVALS: AtomicUsize = AtomicUsize::new(0);
    let Some((armed_point, armed_n)) = armed() else {
        return;
    };
    if armed_point == point && ARRIVALS.fetch_add(1, Ordering::SeqCst) + 1 == *armed_n {
        eprintln!("softalign: test hook: aborting at {point} #{armed_n}");
        std::process::abort();
    }
}
