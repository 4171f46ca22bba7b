//! What a checkpoint of a LoRA run holds besides the adapters and their optimizer state: the
//! adapters' configuration and a fingerprint of the frozen base they were trained on
//! (`lora.json`), so that `--resume` onto another base model, or with other adapter settings, is
//! refused instead of silently training the adapters against the wrong weights.

use std::path::Path;

use serde::{Deserialize, Serialize};
use softalign_model::{CausalLm, LoraConfig};

use crate::error::{Result, TrainError, io_error};

/// Refuses a rank `r` larger than the narrower side of an adapted layer (`min(in, out)` of the
/// narrowest one it adapts): such a rank adds no direction to the update, and a huge one would
/// size the adapters past any memory, or overflow their shape. Checked before any adapter exists.
pub fn check_rank(model: &CausalLm, lora: &LoraConfig) -> Result<()> {
    let narrowest = model
        .linears()
        .into_iter()
        .filter(|named| lora.targets.iter().any(|t| t == named.module))
        .map(|named| (named.linear.shape(), named.module))
        .min_by_key(|&((input, output), _)| input.min(output));
    if let Some(((input, output), module)) = narrowest
        && lora.r > input.min(output)
    {
        return Err(TrainError::Setting {
            name: "lora-r",
            reason: format!(
                "{} is larger than the adapted {module} layers allow ({input} inputs, {output} outputs: a rank of at most {})",
                lora.r,
                input.min(output)
            ),
        });
    }
    Ok(())
}

/// File of the adapters' record inside a checkpoint of a LoRA run.
pub const LORA_FILE: &str = "lora.json";

/// The adapters' shape and the base they belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraRecord {
    /// [`CausalLm::base_fingerprint`] of the base model.
    pub base_fingerprint: String,
    /// Rank.
    pub r: usize,
    /// α.
    pub alpha: f64,
    /// Dropout probability.
    pub dropout: f64,
    /// Adapted modules (PEFT names).
    pub targets: Vec<String>,
}

impl LoraRecord {
    /// The record of `model`'s adapters; `None` for a model without adapters (a full fine-tune).
    pub fn of(model: &CausalLm) -> Option<Self> {
        let config = model.lora_config()?;
        Some(Self {
            base_fingerprint: model.base_fingerprint(),
            r: config.r,
            alpha: config.alpha,
            dropout: config.dropout,
            targets: config.targets,
        })
    }

    /// Writes the record into the checkpoint folder `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(LORA_FILE);
        let text = serde_json::to_vec_pretty(self).expect("lora record serialises");
        std::fs::write(&path, text).map_err(io_error(&path))
    }

    /// The record of the checkpoint `dir`, `None` when it is a full fine-tune's.
    pub fn read(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join(LORA_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).map_err(io_error(&path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|cause| TrainError::Json { path, cause })
    }
}

/// Checks that the checkpoint `dir` fits `model`: both a full fine-tune, or both LoRA with the
/// same adapter settings on the same base weights.
pub fn check_checkpoint_fits(dir: &Path, model: &CausalLm) -> Result<()> {
    let refuse = |problem: String| TrainError::Resume {
        path: dir.to_path_buf(),
        problem,
    };
    match (LoraRecord::read(dir)?, model.lora_config()) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(refuse(
            "the checkpoint holds LoRA adapters but this run fine-tunes every weight (give the run's --lora-r)".into(),
        )),
        (None, Some(_)) => Err(refuse(
            "the checkpoint is a full fine-tune's but this run trains LoRA adapters (--lora-r 0 resumes it)".into(),
        )),
        (Some(saved), Some(config)) => {
            let settings = |r: usize, alpha: f64, dropout: f64, targets: &[String]| {
                format!("r {r}, alpha {alpha}, dropout {dropout}, targets {}", targets.join(","))
            };
            let (ours, theirs) = (
                settings(config.r, config.alpha, config.dropout, &config.targets),
                settings(saved.r, saved.alpha, saved.dropout, &saved.targets),
            );
            if ours != theirs {
                return Err(refuse(format!(
                    "the checkpoint's adapters have {theirs}, this run's {ours}"
                )));
            }
            let fingerprint = model.base_fingerprint();
            if fingerprint != saved.base_fingerprint {
                return Err(refuse(format!(
                    "the checkpoint's adapters belong to another base model (weights fingerprint {}, this --model's {fingerprint})",
                    saved.base_fingerprint
                )));
            }
            Ok(())
        }
    }
}
