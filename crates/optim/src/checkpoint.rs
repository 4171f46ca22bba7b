//! Saving and restoring a model together with its optimizer state, atomically.
//!
//! Optimizer state is keyed by parameter id, so the model is saved in burn's burnpack format,
//! which keeps the ids: a fresh model loaded from the checkpoint lines up with the loaded
//! optimizer state, and training resumes bitwise where it stopped.
//!
//! A checkpoint is a folder holding `model.bpk` and `optimizer.bpk`. It is written durably
//! (`softalign_durable::replace_dir_atomic`: a temporary folder beside it, every file synced, then
//! renamed into place), so a reader (or a run killed mid-write) never sees a half-written
//! checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use burn::store::burn_pack::{Bytes, Reader};
use burn::store::{BurnpackStore, ModuleSnapshot};

/// File of the model's parameters inside a checkpoint folder.
pub const MODEL_FILE: &str = "model.bpk";
/// File of the optimizer's state inside a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";

/// Errors saving or loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file-system operation failed.
    #[error("{path}: {cause}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// The underlying error (part of the message, not a separate cause, so the
        /// one-line report names it once).
        cause: std::io::Error,
    },
    /// burn could not write or read a record.
    #[error("{path}: {message}")]
    Record {
        /// The file at fault.
        path: PathBuf,
        /// What burn reported.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |cause| CheckpointError::Io {
        path: path.to_path_buf(),
        cause,
    }
}

fn record(path: &Path, error: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Record {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// Write `model` and `optim` to the checkpoint folder `dir`, replacing it atomically.
///
/// Extra files the caller wants in the same checkpoint (trainer state, metrics) can be written
/// by `extra` into the folder before it is renamed into place.
pub fn save_training_state<M: ModuleSnapshot>(
    dir: &Path,
    model: &M,
    optim: &ModuleOptimizer,
    extra: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    softalign_durable::replace_dir_atomic(dir, |partial| {
        let model_path = partial.join(MODEL_FILE);
        let mut store = BurnpackStore::from_file(&model_path)
            .auto_extension(false)
            .overwrite(true);
        model
            .save_into(&mut store)
            .map_err(|e| record(&model_path, e))?;
        let optim_path = partial.join(OPTIMIZER_FILE);
        let bytes = optim.into_bytes().map_err(|e| record(&optim_path, e))?;
        std::fs::write(&optim_path, &*bytes).map_err(io(&optim_path))?;
        extra(partial)
    })
}

impl From<softalign_durable::WriteError> for CheckpointError {
    fn from(error: softalign_durable::WriteError) -> Self {
        CheckpointError::Io {
            path: error.path,
            cause: error.cause,
        }
    }
}

/// Refuses optimizer state that does not fit `model`: every state tensor (a moment, a maximum)
/// must belong to one of the model's parameters and have its shape. burn itself would attach a
/// differently shaped state to a parameter with the same id and train on silently.
fn check_state_shapes<M: ModuleSnapshot>(
    model: &M,
    bytes: &[u8],
    path: &Path,
) -> Result<(), CheckpointError> {
    let shapes: HashMap<u64, Vec<usize>> = model
        .collect(None, None, false)
        .into_iter()
        .filter_map(|t| Some((t.param_id?, t.shape.to_vec())))
        .collect();
    let reader = Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .and_then(Reader::into_tensors)
        .map_err(|e| record(path, e))?;
    for tensor in reader {
        let Some(id) = tensor.param_id else {
            return Err(record(
                path,
                format!("state tensor {} names no parameter", tensor.name),
            ));
        };
        match shapes.get(&id) {
            Some(shape) if shape.as_slice() == tensor.shape.as_slice() => {}
            Some(shape) => {
                return Err(record(
                    path,
                    format!(
                        "state tensor {} has shape {:?} but its parameter has {shape:?}; the checkpoint is of a different model",
                        tensor.name,
                        tensor.shape.as_slice()
                    ),
                ));
            }
            None => {
                return Err(record(
                    path,
                    format!(
                        "state tensor {} belongs to no parameter of the model; the checkpoint is of a different model",
                        tensor.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Load a checkpoint written by [`save_training_state`] into a freshly built `model` and
/// optimizer (built from the same configuration as the saved ones).
pub fn load_training_state<M: ModuleSnapshot>(
    dir: &Path,
    mut model: M,
    optim: ModuleOptimizer,
) -> Result<(M, ModuleOptimizer), CheckpointError> {
    let model_path = dir.join(MODEL_FILE);
    if !model_path.is_file() {
        return Err(io(&model_path)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such checkpoint file",
        )));
    }
    let mut store = BurnpackStore::from_file(&model_path).auto_extension(false);
    model
        .load_from(&mut store)
        .map_err(|e| record(&model_path, e))?;
    let optim_path = dir.join(OPTIMIZER_FILE);
    let bytes = std::fs::read(&optim_path).map_err(io(&optim_path))?;
    check_state_shapes(&model, &bytes, &optim_path)?;
    let optim = optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| record(&optim_path, e))?;
    Ok((model, optim))
}
