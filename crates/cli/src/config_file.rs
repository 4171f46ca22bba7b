//! TOML config files (`--config FILE`, a run's `config.toml`): keys checked against the known
//! settings, and every error one `FILE:LINE: KEY: PROBLEM` line.
//!
//! Self-contained (anyhow, serde and toml only), so that the fuzz target `toml_config` compiles
//! it as it is.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

/// Keys a `--config` file may hold for `sft`.
pub const TRAIN_KEYS: &[&str] = &[
    "model",
    "data",
    "out",
    "format",
    "skip-invalid",
    "label-temperature",
    "heldout-fraction",
    "max-eval-examples",
    "template",
    "max-length",
    "max-prompt-length",
    "optimizer",
    "learning-rate",
    "weight-decay",
    "warmup-ratio",
    "min-lr-ratio",
    "epochs",
    "max-steps",
    "batch-size",
    "grad-accum",
    "max-grad-norm",
    "eval-every",
    "eval-batch-size",
    "save-every",
    "keep-checkpoints",
    "seed",
    "no-progress",
    "gradient-checkpointing",
    "lora-r",
    "lora-alpha",
    "lora-dropout",
    "lora-targets",
    "adapter",
    "merge",
    "device",
];

/// The loss keys a `--config` file may also hold for `align`.
pub const LOSS_KEYS: &[&str] = &["loss", "beta", "alpha", "gamma", "reference"];

/// A TOML config file, parsed, with its text kept so that errors can name the line.
pub struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// `FILE:LINE: KEY: PROBLEM` for an error of the toml crate (the key is the one on the line
    /// the error points at, when there is one).
    fn error(&self, error: &toml::de::Error) -> anyhow::Error {
        let at = error
            .span()
            .map_or(0, |span| span.start.min(self.text.len()));
        let line = self.text.as_bytes()[..at]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        let key = self
            .text
            .lines()
            .nth(line - 1)
            .and_then(|l| l.split_once('='))
            .map(|(key, _)| format!("{}: ", key.trim()))
            .unwrap_or_default();
        anyhow!(
            "{}:{line}: {key}{}",
            self.path.display(),
            error.message().trim_end()
        )
    }
}

/// Reads a TOML config file, rejecting keys outside `known`.
pub fn read_config(path: &Path, known: &[&[&str]]) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    ConfigFile::parse(path, text, known)
}

impl ConfigFile {
    /// Parses `text` (the contents of `path`), rejecting keys outside `known`.
    pub fn parse(path: &Path, text: String, known: &[&[&str]]) -> Result<ConfigFile> {
        let file = ConfigFile {
            path: path.to_path_buf(),
            text,
        };
        file.check_keys(known)?;
        Ok(file)
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_keys(&self, known: &[&[&str]]) -> Result<()> {
        let table: toml::Table = self.text.parse().map_err(|e| self.error(&e))?;
        for key in table.keys() {
            if !known.iter().any(|keys| keys.contains(&key.as_str())) {
                let line = self
                    .text
                    .lines()
                    .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key))
                    .map_or(String::new(), |i| format!(":{}", i + 1));
                bail!("{}{line}: {key}: unknown setting", self.path.display());
            }
        }
        Ok(())
    }
}

/// Deserializes one layer of flags from a config file.
pub fn layer<T: serde::de::DeserializeOwned>(file: &ConfigFile) -> Result<T> {
    toml::from_str(&file.text).map_err(|e| file.error(&e))
}
