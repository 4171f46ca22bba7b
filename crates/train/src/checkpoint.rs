//! Checkpoints of a run: `OUT/checkpoints/step-NNNNNNNN/` holding the model and optimizer state
//! (`model.bpk`, `optimizer.bpk`, from `softalign_optim::checkpoint`), the trainer state
//! (`trainer_state.json`: step, seed, metric history) and the objective's state. A LoRA run's
//! `model.bpk` holds only its adapters, and `lora.json` the base they belong to
//! ([`crate::lora`]).
//!
//! Each checkpoint is written durably (`softalign_durable::replace_dir_atomic`: a temporary
//! folder `.step-NNNNNNNN.partial-PID/`, renamed into place once every file is synced), so a run
//! killed at any moment leaves its earlier checkpoints intact and at worst a temporary folder,
//! which readers ignore and the next save (or the next run to lock the folder) removes.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};
use softalign_model::CausalLm;
use softalign_optim::checkpoint::{
    CheckpointError, MODEL_FILE, load_training_state, save_training_state,
};

use crate::error::{Result, TrainError, io_error};
use crate::lora::{LoraRecord, check_checkpoint_fits};
use crate::metrics::MetricRecord;

/// Folder of checkpoints inside the output folder.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// File of the trainer state inside a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";

/// What the loop needs besides weights and optimizer state to continue a run exactly. The data
/// order is a function of the seed and the step ([`crate::example_at`]), so no RNG state is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    /// Seed of the data order.
    pub seed: u64,
    /// Steps of the whole run.
    pub total_steps: usize,
    /// Metric records so far (stored as f64 bit patterns, so they read back exactly).
    #[serde(with = "exact_history")]
    pub history: Vec<MetricRecord>,
}

/// Metric values as their f64 bits: JSON's decimal floats need not read back to the same bits.
mod exact_history {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::metrics::MetricRecord;

    #[derive(Serialize, Deserialize)]
    struct Stored {
        step: usize,
        split: String,
        metrics: Vec<(String, u64)>,
    }

    pub fn serialize<S: Serializer>(history: &[MetricRecord], s: S) -> Result<S::Ok, S::Error> {
        let stored: Vec<Stored> = history
            .iter()
            .map(|r| Stored {
                step: r.step,
                split: r.split.clone(),
                metrics: r
                    .metrics
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_bits()))
                    .collect(),
            })
            .collect();
        stored.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<MetricRecord>, D::Error> {
        let stored = Vec::<Stored>::deserialize(d)?;
        Ok(stored
            .into_iter()
            .map(|r| MetricRecord {
                step: r.step,
                split: r.split,
                metrics: r
                    .metrics
                    .into_iter()
                    .map(|(k, bits)| (k, f64::from_bits(bits)))
                    .collect(),
            })
            .collect())
    }
}

/// The folder name of the checkpoint after `step` steps.
pub fn checkpoint_name(step: usize) -> String {
    format!("step-{step:08}")
}

fn checkpoint_step(name: &str) -> Option<usize> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Complete checkpoints under `out_dir/checkpoints`, oldest first: folders named `step-N` (not
/// `.partial`) that hold a trainer state and a model file.
pub fn list_checkpoints(out_dir: &Path) -> Vec<(usize, PathBuf)> {
    let dir = out_dir.join(CHECKPOINTS_DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = checkpoint_step(&name)?;
            let path = e.path();
            (path.join(TRAINER_STATE_FILE).is_file() && path.join(MODEL_FILE).is_file())
                .then_some((step, path))
        })
        .collect();
    found.sort();
    found
}

/// The checkpoint folder that `path` names: a checkpoint itself (it holds `trainer_state.json`),
/// or an output folder, whose newest complete checkpoint is taken.
pub fn find_checkpoint(path: &Path) -> Result<PathBuf> {
    if path.join(TRAINER_STATE_FILE).is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.exists() {
        return Err(TrainError::Resume {
            path: path.to_path_buf(),
            problem: "no such folder".into(),
        });
    }
    list_checkpoints(path)
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| TrainError::Resume {
            path: path.to_path_buf(),
            problem: format!(
                "neither a checkpoint ({TRAINER_STATE_FILE}) nor an output folder with a complete checkpoint in {CHECKPOINTS_DIR}/"
            ),
        })
}

/// Writes the checkpoint of `step` atomically, then removes all but the newest `keep` complete
/// checkpoints and any leftover temporary folder. Returns the checkpoint's folder.
pub fn save_checkpoint(
    out_dir: &Path,
    model: &CausalLm,
    optim: &ModuleOptimizer,
    state: &TrainerState,
    objective_state: impl FnOnce(&Path) -> Result<()>,
    keep: usize,
) -> Result<PathBuf> {
    let root = out_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&root).map_err(io_error(&root))?;
    let dir = root.join(checkpoint_name(state.step));
    let lora = LoraRecord::of(model);
    let extra = |partial: &Path| {
        let path = partial.join(TRAINER_STATE_FILE);
        let text = serde_json::to_vec(state).expect("trainer state serialises");
        std::fs::write(&path, text).map_err(|cause| CheckpointError::Io {
            path: path.clone(),
            cause,
        })?;
        let record = |e: crate::TrainError| CheckpointError::Record {
            path: partial.to_path_buf(),
            message: e.to_string(),
        };
        if let Some(lora) = &lora {
            lora.write(partial).map_err(record)?;
        }
        objective_state(partial).map_err(record)?;
        crate::test_hook::reached("checkpoint");
        Ok(())
    };
    // A LoRA run's checkpoint holds its adapters only: the base is frozen and is the --model.
    // A failed write (a full disk) leaves no half-written checkpoint behind: the durable write
    // removes its temporary folder.
    match &lora {
        Some(_) => save_training_state(&dir, &model.adapters(), optim, extra),
        None => save_training_state(&dir, model, optim, extra),
    }?;
    prune_checkpoints(out_dir, keep)?;
    Ok(dir)
}

/// Removes all but the newest `keep` complete checkpoints, and any temporary folder an
/// interrupted save or prune left behind. A checkpoint is moved aside to a temporary name before
/// it is deleted, so a kill in the middle of the deletion leaves a folder that no reader takes for
/// a checkpoint and the next save removes.
fn prune_checkpoints(out_dir: &Path, keep: usize) -> Result<()> {
    let complete = list_checkpoints(out_dir);
    let excess = complete.len().saturating_sub(keep);
    for (_, old) in complete.into_iter().take(excess) {
        let doomed = softalign_durable::move_aside(&old)?;
        crate::test_hook::reached("prune");
        std::fs::remove_dir_all(&doomed).map_err(io_error(&doomed))?;
    }
    softalign_durable::remove_temporaries(&out_dir.join(CHECKPOINTS_DIR))?;
    Ok(())
}

/// Reads a checkpoint into a freshly built `model` (same architecture) and optimizer. For a
/// LoRA run, `model` is the base with fresh adapters: the checkpoint's adapters replace them,
/// after checking that the checkpoint was taken on the same base with the same adapter settings.
pub fn load_checkpoint(
    dir: &Path,
    model: CausalLm,
    optim: ModuleOptimizer,
) -> Result<(CausalLm, ModuleOptimizer, TrainerState)> {
    let path = dir.join(TRAINER_STATE_FILE);
    let bytes = std::fs::read(&path).map_err(io_error(&path))?;
    let state: TrainerState = serde_json::from_slice(&bytes).map_err(|cause| TrainError::Json {
        path: path.clone(),
        cause,
    })?;
    check_checkpoint_fits(dir, &model)?;
    let (model, optim) = if model.has_adapters() {
        let (adapters, optim) = load_training_state(dir, model.adapters(), optim)?;
        (model.set_adapters(adapters), optim)
    } else {
        load_training_state(dir, model, optim)?
    };
    Ok((model, optim, state))
}
