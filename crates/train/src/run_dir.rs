//! The output folder of a run: whether it already holds one, and clearing it on request.
//!
//! A fresh run into a folder that holds another would mix the two: the old checkpoints stay and
//! pruning then deletes the new run's own final checkpoint. So a fresh run claims its folder
//! first: an empty or unrelated folder is fine, one holding a run is refused unless the caller
//! asks to overwrite it, and then only the files a run writes are removed.

use std::path::{Path, PathBuf};

use crate::checkpoint::CHECKPOINTS_DIR;
use crate::error::{Result, TrainError, io_error};
use crate::metrics::{METRICS_CSV, METRICS_JSONL};
use crate::pipeline::MODEL_DIR;

/// The files and folders a run writes into its output folder (figures included).
pub const RUN_OUTPUTS: &[&str] = &[
    "config.toml",
    METRICS_JSONL,
    METRICS_CSV,
    CHECKPOINTS_DIR,
    MODEL_DIR,
    "model.partial",
    "model.old",
    "loss.png",
    "reward_margins.png",
    "logratios.png",
];

/// The run outputs present in `out_dir` (empty when it holds no run, or does not exist).
pub fn run_outputs(out_dir: &Path) -> Vec<PathBuf> {
    RUN_OUTPUTS
        .iter()
        .map(|name| out_dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// Makes `out_dir` ready for a fresh run: refuses a folder that holds another run (naming what
/// it found and the two ways on) unless `overwrite`, in which case that run's outputs — and
/// nothing else in the folder — are removed.
pub fn claim_out_dir(out_dir: &Path, overwrite: bool) -> Result<()> {
    let found = run_outputs(out_dir);
    let Some(first) = found.first() else {
        return Ok(());
    };
    if !overwrite {
        return Err(TrainError::Setting {
            name: "out",
            reason: format!(
                "{} already holds a run ({}); continue it with --resume {}, replace it with --overwrite, or choose another --out",
                out_dir.display(),
                first
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                out_dir.display()
            ),
        });
    }
    for path in found {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io_error(&path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_a_run_is_refused_and_overwrite_keeps_other_files() {
        let dir = std::env::temp_dir().join(format!("softalign-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join(CHECKPOINTS_DIR).join("step-00000001")).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let e = claim_out_dir(&dir, false).unwrap_err().to_string();
        assert!(e.starts_with("out: ") && e.contains("--resume"), "{e}");
        claim_out_dir(&dir, true).unwrap();
        assert!(!dir.join(CHECKPOINTS_DIR).exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );
        claim_out_dir(&dir, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
