//! The output folder of a run: who is running in it, whether it already holds a run, and
//! clearing it on request.
//!
//! Two processes in one folder would overwrite each other's checkpoints, so a run first locks its
//! folder ([`lock_out_dir`], an advisory lock the system drops when the process ends, however it
//! ends). A fresh run into a folder that holds another would mix the two: the old checkpoints
//! stay and pruning then deletes the new run's own final checkpoint. So a fresh run then claims
//! its folder: an empty or unrelated folder is fine, and so is one left by a run that was stopped
//! before its first checkpoint (nothing in it can be resumed, so it starts over); one holding a
//! checkpoint or an exported model is refused unless the caller asks to overwrite it, and then
//! only the files a run writes are removed.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{CHECKPOINTS_DIR, list_checkpoints};
use crate::error::{Result, TrainError, io_error};
use crate::metrics::{METRICS_CSV, METRICS_JSONL};
use crate::pipeline::{ADAPTER_DIR, MODEL_DIR};

/// The files and folders a run writes into its output folder (figures included).
pub const RUN_OUTPUTS: &[&str] = &[
    "config.toml",
    METRICS_JSONL,
    METRICS_CSV,
    CHECKPOINTS_DIR,
    MODEL_DIR,
    ADAPTER_DIR,
    "loss.png",
    "reward_margins.png",
    "logratios.png",
];

/// The file a running run holds locked in its output folder; it holds the process id.
pub const LOCK_FILE: &str = ".softalign.lock";

/// The lock on a run folder: held while this value lives (and dropped by the system if the
/// process dies).
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Locks `out_dir` (created if needed) for this process, or refuses, naming the process id of
/// the run that holds it. Holding the lock, it removes the temporaries that writers killed in the
/// middle left in the folder and its `checkpoints/` (no other process can be writing them).
pub fn lock_out_dir(out_dir: &Path) -> Result<RunLock> {
    std::fs::create_dir_all(out_dir).map_err(io_error(out_dir))?;
    let path = out_dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = std::process::id().to_string();
            file.set_len(0)
                .and_then(|_| file.rewind())
                .and_then(|_| file.write_all(pid.as_bytes()))
                .map_err(io_error(&path))?;
            let lock = RunLock { _file: file };
            softalign_durable::remove_temporaries(out_dir)?;
            softalign_durable::remove_temporaries(&out_dir.join(CHECKPOINTS_DIR))?;
            Ok(lock)
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_string()
            } else {
                format!("pid {holder}")
            };
            Err(TrainError::Setting {
                name: "out",
                reason: format!(
                    "{} is in use by another softalign run ({holder}); wait for it to end or choose another --out",
                    out_dir.display()
                ),
            })
        }
        Err(TryLockError::Error(cause)) => Err(io_error(&path)(cause)),
    }
}

/// The run outputs present in `out_dir` (empty when it holds no run, or does not exist).
pub fn run_outputs(out_dir: &Path) -> Vec<PathBuf> {
    RUN_OUTPUTS
        .iter()
        .map(|name| out_dir.join(name))
        .filter(|path| path.exists())
        .collect()
}

/// What in `out_dir` a fresh run would destroy: a complete checkpoint, or an exported model or
/// adapter (`None` for a folder whose run stopped before any of them, or that holds none).
fn kept_output(out_dir: &Path) -> Option<PathBuf> {
    if let Some((_, checkpoint)) = list_checkpoints(out_dir).pop() {
        return Some(checkpoint);
    }
    [MODEL_DIR, ADAPTER_DIR]
        .iter()
        .map(|name| out_dir.join(name))
        .find(|path| path.exists())
}

/// Makes `out_dir` ready for a fresh run: refuses a folder that holds another run's checkpoint or
/// exported model (naming what it found and the two ways on) unless `overwrite`. Then that run's
/// outputs — and nothing else in the folder — are removed; so a folder whose run was stopped
/// before its first checkpoint starts over without `overwrite`. Call it holding the folder's
/// [`lock_out_dir`].
pub fn claim_out_dir(out_dir: &Path, overwrite: bool) -> Result<()> {
    let found = run_outputs(out_dir);
    if found.is_empty() {
        return Ok(());
    }
    if let Some(first) = kept_output(out_dir)
        && !overwrite
    {
        return Err(TrainError::Setting {
            name: "out",
            reason: format!(
                "{} already holds a run ({}); continue it with --resume {}, replace it with --overwrite, or choose another --out",
                out_dir.display(),
                first.strip_prefix(out_dir).unwrap_or(&first).display(),
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
    use crate::checkpoint::TRAINER_STATE_FILE;
    use softalign_optim::checkpoint::MODEL_FILE;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("softalign-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        dir
    }

    #[test]
    fn a_folder_with_a_run_is_refused_and_overwrite_keeps_other_files() {
        let dir = scratch("claim");
        let checkpoint = dir.join(CHECKPOINTS_DIR).join("step-00000001");
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join(TRAINER_STATE_FILE), "{}").unwrap();
        std::fs::write(checkpoint.join(MODEL_FILE), "").unwrap();
        let e = claim_out_dir(&dir, false).unwrap_err().to_string();
        assert!(e.starts_with("out: ") && e.contains("--resume"), "{e}");
        assert!(e.contains("step-00000001"), "{e}");
        claim_out_dir(&dir, true).unwrap();
        assert!(!dir.join(CHECKPOINTS_DIR).exists());
        assert_eq!(
            std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
            "mine"
        );
        claim_out_dir(&dir, false).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_stopped_before_its_first_checkpoint_starts_over_but_an_exported_model_is_kept() {
        let dir = scratch("claim-unstarted");
        std::fs::write(dir.join("config.toml"), "seed = 1\n").unwrap();
        std::fs::write(dir.join(METRICS_JSONL), "{}\n").unwrap();
        std::fs::create_dir_all(dir.join(CHECKPOINTS_DIR).join("step-00000001")).unwrap();
        claim_out_dir(&dir, false).unwrap();
        assert!(run_outputs(&dir).is_empty(), "{:?}", run_outputs(&dir));
        assert!(dir.join("notes.txt").exists());
        std::fs::create_dir_all(dir.join(MODEL_DIR)).unwrap();
        let e = claim_out_dir(&dir, false).unwrap_err().to_string();
        assert!(e.contains("model"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn locking_a_folder_removes_what_killed_writers_left_and_nothing_else() {
        let dir = scratch("lock-leftovers");
        // A run killed while exporting its model and while writing a checkpoint (another pid).
        let export = dir.join(".model.partial-4000001");
        let checkpoint = dir
            .join(CHECKPOINTS_DIR)
            .join(".step-00000004.partial-4000001");
        std::fs::create_dir_all(&export).unwrap();
        std::fs::create_dir_all(&checkpoint).unwrap();
        std::fs::write(checkpoint.join(MODEL_FILE), "torn").unwrap();
        let held = lock_out_dir(&dir).unwrap();
        assert!(!export.exists() && !checkpoint.exists());
        assert!(dir.join("notes.txt").exists() && dir.join(CHECKPOINTS_DIR).exists());
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_locked_folder_is_refused_naming_the_holder() {
        let dir = scratch("lock");
        let held = lock_out_dir(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join(LOCK_FILE)).unwrap(),
            std::process::id().to_string()
        );
        let e = lock_out_dir(&dir).unwrap_err().to_string();
        assert!(
            e.contains(&format!("pid {}", std::process::id())) && e.contains("in use"),
            "{e}"
        );
        drop(held);
        let again = lock_out_dir(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
