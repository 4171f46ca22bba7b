//! A deterministic train/held-out split that keeps all pairs of one prompt on the same side.

use crate::DataError;
use crate::pair::{PreferencePair, Prompt};

/// Pairs divided into a training part and a held-out part, each in its original order.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Pairs to train on.
    pub train: Vec<PreferencePair>,
    /// Pairs to evaluate on.
    pub heldout: Vec<PreferencePair>,
}

/// Holds out about `heldout_fraction` of the distinct prompts (all their pairs), chosen by `seed`.
///
/// Prompts are ranked by a keyed hash of (seed, prompt) and the first round(fraction × prompts)
/// go to the held-out side: at least one when the fraction is positive and there are two prompts
/// or more, and never all of them. The result depends only on the seed and the set of pairs, not
/// on the platform, and no prompt's pairs straddle the two sides (no leakage between them).
///
/// ```
/// use softalign_data::{PreferencePair, Prompt, split_train_heldout};
/// let pairs: Vec<_> = (0..20)
///     .map(|i| PreferencePair {
///         prompt: Prompt::Text(format!("question {i}")),
///         chosen: "yes".into(),
///         rejected: "no".into(),
///         soft_label: 1.0,
///         source_line: i + 1,
///     })
///     .collect();
/// let split = split_train_heldout(pairs.clone(), 0.25, 7).unwrap();
/// assert_eq!((split.train.len(), split.heldout.len()), (15, 5));
/// assert_eq!(split, split_train_heldout(pairs, 0.25, 7).unwrap());
/// ```
pub fn split_train_heldout(
    pairs: Vec<PreferencePair>,
    heldout_fraction: f64,
    seed: u64,
) -> Result<Split, DataError> {
    if !(0.0..1.0).contains(&heldout_fraction) {
        return Err(DataError::Setting {
            name: "heldout_fraction",
            reason: format!("must be in [0, 1), got {heldout_fraction}"),
        });
    }
    let keys: Vec<u64> = pairs
        .iter()
        .map(|pair| prompt_hash(&pair.prompt, seed))
        .collect();
    let mut distinct = keys.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let prompts = distinct.len();
    let mut heldout_prompts = (heldout_fraction * prompts as f64).round() as usize;
    if heldout_fraction > 0.0 && prompts >= 2 {
        heldout_prompts = heldout_prompts.max(1);
    }
    heldout_prompts = heldout_prompts.min(prompts.saturating_sub(1));
    let mut split = Split {
        train: Vec::new(),
        heldout: Vec::new(),
    };
    // The held-out prompts are those whose key ranks below `heldout_prompts`.
    let threshold = distinct.get(heldout_prompts).copied().unwrap_or(u64::MAX);
    for (pair, key) in pairs.into_iter().zip(keys) {
        if key < threshold {
            split.heldout.push(pair);
        } else {
            split.train.push(pair);
        }
    }
    Ok(split)
}

/// FNV-1a over a canonical encoding of the prompt, finished with SplitMix64 keyed by the seed.
/// (Distinct prompts colliding in 64 bits would share a side, which is harmless.)
fn prompt_hash(prompt: &Prompt, seed: u64) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    };
    match prompt {
        Prompt::Text(text) => {
            feed(b"T");
            feed(text.as_bytes());
        }
        Prompt::Chat(messages) => {
            for message in messages {
                feed(b"M");
                feed(message.role.as_str().as_bytes());
                feed(&[0]);
                feed(message.content.as_bytes());
                feed(&[0]);
            }
        }
    }
    splitmix64(hash ^ splitmix64(seed))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(prompt: &str, line: usize) -> PreferencePair {
        PreferencePair {
            prompt: Prompt::Text(prompt.into()),
            chosen: "a".into(),
            rejected: "b".into(),
            soft_label: 0.8,
            source_line: line,
        }
    }

    fn prompts(pairs: &[PreferencePair]) -> Vec<String> {
        pairs
            .iter()
            .map(|p| match &p.prompt {
                Prompt::Text(t) => t.clone(),
                Prompt::Chat(_) => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn pairs_of_one_prompt_stay_together() {
        let pairs: Vec<_> = (0..60).map(|i| pair(&format!("p{}", i % 20), i)).collect();
        let split = split_train_heldout(pairs, 0.3, 1).unwrap();
        assert_eq!(split.heldout.len(), 18, "6 of 20 prompts, 3 pairs each");
        let held = prompts(&split.heldout);
        assert!(prompts(&split.train).iter().all(|p| !held.contains(p)));
    }

    #[test]
    fn order_is_kept_and_seed_matters() {
        let pairs: Vec<_> = (0..100).map(|i| pair(&format!("p{i}"), i)).collect();
        let a = split_train_heldout(pairs.clone(), 0.1, 1).unwrap();
        let b = split_train_heldout(pairs.clone(), 0.1, 2).unwrap();
        assert_eq!(a.heldout.len(), 10);
        assert_ne!(a.heldout, b.heldout);
        assert!(
            a.train
                .windows(2)
                .all(|w| w[0].source_line < w[1].source_line)
        );
        // Shuffling the input does not change which prompts are held out.
        let mut reversed = pairs;
        reversed.reverse();
        let c = split_train_heldout(reversed, 0.1, 1).unwrap();
        let mut held_a = prompts(&a.heldout);
        let mut held_c = prompts(&c.heldout);
        held_a.sort();
        held_c.sort();
        assert_eq!(held_a, held_c);
    }

    #[test]
    fn fraction_edges() {
        let pairs: Vec<_> = (0..3).map(|i| pair(&format!("p{i}"), i)).collect();
        let none = split_train_heldout(pairs.clone(), 0.0, 5).unwrap();
        assert_eq!((none.train.len(), none.heldout.len()), (3, 0));
        let tiny = split_train_heldout(pairs.clone(), 0.01, 5).unwrap();
        assert_eq!(tiny.heldout.len(), 1);
        let most = split_train_heldout(pairs.clone(), 0.99, 5).unwrap();
        assert_eq!(most.train.len(), 1);
        assert!(split_train_heldout(pairs.clone(), 1.0, 5).is_err());
        assert!(split_train_heldout(pairs, f64::NAN, 5).is_err());
    }
}
