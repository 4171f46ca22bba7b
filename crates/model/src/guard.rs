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

/// Tensors each decoder block holds: two norms, four attention and three MLP projections.
pub const TENSORS_PER_LAYER: usize = 9;

/// The number of weight tensors `config` needs: the embedding, the final norm, the untied head
/// and [`TENSORS_PER_LAYER`] per block; `None` when that count overflows.
pub fn required_tensor_count(config: &ModelConfig) -> Option<usize> {
    let head = usize::from(!config.tie_word_embeddings);
    config
        .num_hidden_layers
        .checked_mul(TENSORS_PER_LAYER)?
        .checked_add(2 + head)
}

/// Refuses a layer count the weights cannot possibly hold — more blocks than there are tensors —
/// so that a forged `num_hidden_layers` fails before anything is sized by it. A count that is
/// merely a few tensors short passes, so that loading names the exact tensor that is missing.
pub fn check_layers_fit(config: &ModelConfig, available: usize, path: &Path) -> Result<()> {
    if config.num_hidden_layers <= available {
        return Ok(());
    }
    Err(ModelError::Config {
        path: path.to_path_buf(),
        field: "num_hidden_layers".into(),
        problem: format!(
            "{} blocks need {} tensors but the weights hold only {available}",
            config.num_hidden_layers,
            required_tensor_count(config)
                .map_or_else(|| "more than 2^64".to_string(), |n| n.to_string())
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
    fn tensor_count_overflow_is_none_not_a_wrap() {
        let mut config = ModelConfig::smollm2_135m();
        assert_eq!(required_tensor_count(&config), Some(30 * 9 + 2));
        config.num_hidden_layers = usize::MAX;
        assert_eq!(required_tensor_count(&config), None);
        let e = check_layers_fit(&config, 272, Path::new("m")).unwrap_err();
        assert!(e.to_string().contains("num_hidden_layers"), "{e}");
    }
}
