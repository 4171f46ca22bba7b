//! Checks that sizes read from untrusted files (config.json, GGUF metadata, tokenizer.json) are
//! justified by the weights actually present, before anything is allocated from them.
//!
//! A configuration is only a claim: `num_hidden_layers = 10⁹` would otherwise size a vector of
//! layers (or a list of tensor names) long before the first missing tensor is noticed, and a
//! token id at or past the embedding's rows would panic inside the embedding lookup at the first
//! prompt that contains it. Each check here turns such a claim into a one-line error naming the
//! file and the field.

use std::path::Path;

use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::tokenizer::TextTokenizer;

/// Refuses a configuration with more blocks than the weights hold tensors (`available`), so
/// that a forged layer count fails before anything (layers, tensor names) is sized by it. Each
/// block needs several tensors; a count within this bound but still short of tensors fails on the
/// first missing one, by name.
pub fn check_layers_fit(config: &ModelConfig, available: usize, path: &Path) -> Result<()> {
    if config.num_hidden_layers <= available {
        return Ok(());
    }
    Err(ModelError::Config {
        path: path.to_path_buf(),
        field: "num_hidden_layers".into(),
        problem: format!(
            "{} blocks, but the weights hold only {available} tensors",
            config.num_hidden_layers
        ),
    })
}

/// Refuses widths whose products overflow (`num_attention_heads × head_dim`, `vocab_size ×
/// hidden_size`, …): they size every projection, and a wrapped product would pass the shape checks
/// against a forged tensor.
pub fn check_products(config: &ModelConfig, path: &Path) -> Result<()> {
    let c = config;
    for (field, a, b) in [
        ("head_dim", c.num_attention_heads, c.head_dim),
        ("head_dim", c.num_key_value_heads, c.head_dim),
        ("vocab_size", c.vocab_size, c.hidden_size),
        ("intermediate_size", c.intermediate_size, c.hidden_size),
        (
            "hidden_size",
            c.num_attention_heads.saturating_mul(c.head_dim),
            c.hidden_size,
        ),
    ] {
        if a.checked_mul(b).is_none_or(|n| n > isize::MAX as usize / 4) {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                field: field.into(),
                problem: format!("{a} × {b} values do not fit in memory"),
            });
        }
    }
    Ok(())
}

/// Refuses token ids the embedding has no row for: every id of the tokenizer's vocabulary
/// (added tokens included) and the configuration's BOS and EOS ids must be below `vocab_size`.
pub fn check_token_ids(tokenizer: &TextTokenizer, config: &ModelConfig, path: &Path) -> Result<()> {
    let rows = config.vocab_size;
    let vocabulary = tokenizer.inner().get_vocab(true);
    if let Some((token, &id)) = vocabulary
        .iter()
        .filter(|(_, id)| **id as usize >= rows)
        .max_by_key(|(_, id)| **id)
    {
        return Err(ModelError::Tokenizer {
            path: tokenizer.source().to_path_buf(),
            problem: format!(
                "token {token:?} has id {id}, but the model's embedding ({}) has only {rows} rows",
                path.display()
            ),
        });
    }
    let special = config.bos_token_id.iter().map(|&id| ("bos_token_id", id));
    let special = special.chain(config.eos_token_ids.iter().map(|&id| ("eos_token_id", id)));
    for (field, id) in special {
        if id as usize >= rows {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                field: field.into(),
                problem: format!("{id} is not below vocab_size {rows}"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_counts_beyond_the_tensors_are_refused() {
        let mut config = ModelConfig::smollm2_135m();
        assert!(check_layers_fit(&config, 272, Path::new("m")).is_ok());
        config.num_hidden_layers = usize::MAX;
        let e = check_layers_fit(&config, 272, Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
    }
}
