//! The progress bar of every long command (training, labelling, evaluation), on stderr.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar `LABEL [elapsed] ███ pos/total UNIT, rate, eta MSG` starting at `start`, or a hidden
/// one when `enabled` is false (`--no-progress`). `unit` is a plural noun ("steps") or empty.
pub fn progress_bar(
    enabled: bool,
    label: &str,
    unit: &str,
    total: usize,
    start: usize,
) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    let unit = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{prefix}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}}{unit}, {{per_sec}}, eta {{eta}} {{msg}}"
        ))
        .expect("the template is valid"),
    );
    bar.set_prefix(label.to_string());
    bar.set_position(start as u64);
    bar.reset_eta();
    bar
}
