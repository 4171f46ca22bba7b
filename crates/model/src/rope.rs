//! Rotary position embeddings: the inverse frequencies and attention factor of every rotary
//! scaling that transformers implements (`default`, `linear`, `dynamic`, `llama3`, `yarn`,
//! `longrope`), plus llama.cpp's per-frequency divisors (`rope_freqs.weight`), read from
//! `config.json` (`rope_parameters` / `rope_scaling`) or GGUF metadata and written back.
//!
//! Each formula follows `transformers.modeling_rope_utils` and is computed in f32 where
//! transformers computes in float32 tensors (so the tables agree to the last bits or nearly);
//! scalar coefficients (`mscale`, correction ranges) are f64 as in Python. The golden file
//! `crates/model/tests/data/rope_references.json` holds transformers' tables for each kind.

use serde_json::{Map, Value, json};

/// How the rotary frequencies are scaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `1 / θ^(2i/d)`.
    None,
    /// Position interpolation: every frequency divided by `factor`.
    Linear {
        /// The divisor.
        factor: f64,
    },
    /// NTK-aware dynamic scaling: once a sequence is longer than `original_max`, the base grows
    /// to `θ·(factor·len/original_max − (factor − 1))^(d/(d−2))`.
    Dynamic {
        /// The scaling factor.
        factor: f64,
        /// The context the checkpoint was trained for.
        original_max: usize,
    },
    /// Llama 3.1's band-wise scaling: low frequencies divided by `factor`, high ones kept, the
    /// band between interpolated smoothly.
    Llama3 {
        /// Divisor of the low frequencies.
        factor: f64,
        /// Wavelengths longer than `original_max / low_freq_factor` are divided.
        low_freq_factor: f64,
        /// Wavelengths shorter than `original_max / high_freq_factor` are kept.
        high_freq_factor: f64,
        /// The context the base model was trained for.
        original_max: usize,
    },
    /// YaRN: interpolation blended with extrapolation by a linear ramp over the rotation counts
    /// `beta_slow..beta_fast`, and an attention factor on the cos/sin tables.
    Yarn {
        /// The context extension.
        factor: f64,
        /// The context the base model was trained for.
        original_max: usize,
        /// Attention factor given explicitly (else from `mscale`).
        attention_factor: Option<f64>,
        /// Ramp end (rotations), default 32.
        beta_fast: f64,
        /// Ramp start (rotations), default 1.
        beta_slow: f64,
        /// DeepSeek-style `mscale`.
        mscale: Option<f64>,
        /// DeepSeek-style `mscale_all_dim`.
        mscale_all_dim: Option<f64>,
        /// Whether the correction range is rounded outwards to whole dimensions.
        truncate: bool,
    },
    /// Phi-3.5 / Phi-4-mini's LongRoPE: per-frequency divisors, the short ones up to
    /// `original_max` positions and the long ones beyond, and an attention factor.
    LongRope {
        /// Divisors for sequences of at most `original_max` positions.
        short_factor: Vec<f64>,
        /// Divisors for longer sequences.
        long_factor: Vec<f64>,
        /// The context the short factors are for.
        original_max: usize,
        /// `factor` from the parameters, if given (else max / original).
        factor: Option<f64>,
        /// Attention factor given explicitly.
        attention_factor: Option<f64>,
    },
    /// llama.cpp's `rope_freqs.weight`: each default frequency divided by its own divisor (how
    /// a GGUF stores Llama 3's scaling).
    Divisors(Vec<f32>),
}

/// The rotary parameters of one kind of layer: base, scaling, and how much of a head rotates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// Base θ of the frequencies.
    pub theta: f64,
    /// Long-context scaling.
    pub scaling: RopeScaling,
}

/// The frequencies for a run of positions: `inv_freq` (one per rotated pair) and the factor
/// the cos/sin tables are multiplied by.
#[derive(Debug, Clone, PartialEq)]
pub struct RotaryFrequencies {
    /// `rotary_dim / 2` inverse frequencies.
    pub inv_freq: Vec<f32>,
    /// Multiplies cos and sin (YaRN, LongRoPE); 1 otherwise.
    pub attention_factor: f32,
}

fn default_inv_freq(theta: f64, dim: usize) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / dim as f32))
        .collect()
}

impl Rope {
    /// The frequencies for sequences of `seq_len` positions (only `dynamic` and `longrope`
    /// depend on it, as transformers' dynamic update does), with `dim` rotated channels per head
    /// and `max_positions` the model's `max_position_embeddings`.
    pub fn frequencies(
        &self,
        dim: usize,
        seq_len: usize,
        max_positions: usize,
    ) -> RotaryFrequencies {
        let theta = self.theta;
        let plain = |inv_freq| RotaryFrequencies {
            inv_freq,
            attention_factor: 1.0,
        };
        match &self.scaling {
            RopeScaling::None => plain(default_inv_freq(theta, dim)),
            RopeScaling::Linear { factor } => plain(
                default_inv_freq(theta, dim)
                    .into_iter()
                    .map(|f| f / *factor as f32)
                    .collect(),
            ),
            RopeScaling::Dynamic {
                factor,
                original_max,
            } => {
                if seq_len <= *original_max {
                    return plain(default_inv_freq(theta, dim));
                }
                let d = dim as f64;
                let base = theta
                    * ((factor * seq_len as f64 / *original_max as f64) - (factor - 1.0))
                        .powf(d / (d - 2.0));
                plain(default_inv_freq(base, dim))
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                let old = *original_max as f32;
                let (factor, low, high) = (
                    *factor as f32,
                    *low_freq_factor as f32,
                    *high_freq_factor as f32,
                );
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                plain(
                    default_inv_freq(theta, dim)
                        .into_iter()
                        .map(|f| {
                            let wavelen = 2.0 * std::f32::consts::PI / f;
                            if wavelen > low_wavelen {
                                f / factor
                            } else if wavelen < high_wavelen {
                                f
                            } else {
                                let smooth = (old / wavelen - low) / (high - low);
                                (1.0 - smooth) * f / factor + smooth * f
                            }
                        })
                        .collect(),
                )
            }
            RopeScaling::Yarn {
                factor,
                original_max,
                attention_factor,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                truncate,
            } => yarn(
                theta,
                dim,
                *factor,
                *original_max,
                YarnShape {
                    attention_factor: *attention_factor,
                    beta_fast: *beta_fast,
                    beta_slow: *beta_slow,
                    mscale: *mscale,
                    mscale_all_dim: *mscale_all_dim,
                    truncate: *truncate,
                },
            ),
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max,
                factor,
                attention_factor,
            } => {
                let factor = factor.unwrap_or(max_positions as f64 / *original_max as f64);
                let attention_factor = attention_factor.unwrap_or_else(|| {
                    if factor <= 1.0 {
                        1.0
                    } else {
                        (1.0 + factor.ln() / (*original_max as f64).ln()).sqrt()
                    }
                });
                let ext = if seq_len > *original_max {
                    long_factor
                } else {
                    short_factor
                };
                let inv_freq = (0..dim / 2)
                    .map(|i| {
                        let shape = (2 * i) as f32 / dim as f32;
                        1.0 / (ext[i] as f32 * (theta as f32).powf(shape))
                    })
                    .collect();
                RotaryFrequencies {
                    inv_freq,
                    attention_factor: attention_factor as f32,
                }
            }
            RopeScaling::Divisors(divisors) => plain(
                default_inv_freq(theta, dim)
                    .into_iter()
                    .zip(divisors)
                    .map(|(f, d)| f / d)
                    .collect(),
            ),
        }
    }

    /// Checks the parameters against the rotated width `dim`; the error is `(field, problem)`.
    pub fn validate(&self, dim: usize) -> std::result::Result<(), (String, String)> {
        let bad = |field: &str, problem: String| Err((field.to_string(), problem));
        if !(self.theta.is_finite() && self.theta > 0.0) {
            return bad("rope_theta", "must be a positive number".into());
        }
        let positive = |field: &str, v: f64| -> std::result::Result<(), (String, String)> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err((field.to_string(), format!("{v} is not a positive number")))
            }
        };
        match &self.scaling {
            RopeScaling::None => Ok(()),
            RopeScaling::Linear { factor } | RopeScaling::Dynamic { factor, .. } => {
                positive("rope_parameters.factor", *factor)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => {
                positive("rope_parameters.factor", *factor)?;
                positive("rope_parameters.low_freq_factor", *low_freq_factor)?;
                positive("rope_parameters.high_freq_factor", *high_freq_factor)?;
                if high_freq_factor <= low_freq_factor {
                    return bad(
                        "rope_parameters.high_freq_factor",
                        "must exceed low_freq_factor".into(),
                    );
                }
                if *original_max == 0 {
                    return bad(
                        "rope_parameters.original_max_position_embeddings",
                        "must be positive".into(),
                    );
                }
                Ok(())
            }
            RopeScaling::Yarn {
                factor,
                original_max,
                ..
            } => {
                positive("rope_parameters.factor", *factor)?;
                if *original_max == 0 {
                    return bad(
                        "rope_parameters.original_max_position_embeddings",
                        "must be positive".into(),
                    );
                }
                Ok(())
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max,
                ..
            } => {
                for (field, factors) in [
                    ("rope_parameters.short_factor", short_factor),
                    ("rope_parameters.long_factor", long_factor),
                ] {
                    if factors.len() != dim / 2 {
                        return bad(
                            field,
                            format!(
                                "{} values, but the rotated width {dim} has {} frequencies",
                                factors.len(),
                                dim / 2
                            ),
                        );
                    }
                    if let Some(v) = factors.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                        return bad(field, format!("{v} is not a positive number"));
                    }
                }
                if *original_max == 0 {
                    return bad(
                        "original_max_position_embeddings",
                        "must be positive".into(),
                    );
                }
                Ok(())
            }
            RopeScaling::Divisors(divisors) => {
                if divisors.len() != dim / 2 {
                    return bad(
                        "rope_freqs.weight",
                        format!(
                            "{} values, but the rotated width {dim} has {} frequencies",
                            divisors.len(),
                            dim / 2
                        ),
                    );
                }
                if let Some(v) = divisors.iter().find(|v| !(v.is_finite() && **v > 0.0)) {
                    return bad("rope_freqs.weight", format!("{v} is not a positive number"));
                }
                Ok(())
            }
        }
    }

    /// The `rope_parameters` object transformers 5 writes (`rope_theta` inside), or `None` for
    /// llama.cpp divisors, which have no `config.json` spelling.
    pub fn to_hf_json(&self) -> Option<Value> {
        let mut params = match &self.scaling {
            RopeScaling::None => json!({"rope_type": "default"}),
            RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
            RopeScaling::Dynamic {
                factor,
                original_max,
            } => json!({"rope_type": "dynamic", "factor": factor,
                        "original_max_position_embeddings": original_max}),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max,
            } => json!({"rope_type": "llama3", "factor": factor,
                        "low_freq_factor": low_freq_factor, "high_freq_factor": high_freq_factor,
                        "original_max_position_embeddings": original_max}),
            RopeScaling::Yarn {
                factor,
                original_max,
                attention_factor,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
                truncate,
            } => {
                let mut p = json!({"rope_type": "yarn", "factor": factor,
                    "original_max_position_embeddings": original_max,
                    "beta_fast": beta_fast, "beta_slow": beta_slow, "truncate": truncate});
                let o = p.as_object_mut().expect("object");
                for (key, value) in [
                    ("attention_factor", attention_factor),
                    ("mscale", mscale),
                    ("mscale_all_dim", mscale_all_dim),
                ] {
                    if let Some(v) = value {
                        o.insert(key.into(), json!(v));
                    }
                }
                p
            }
            RopeScaling::LongRope {
                short_factor,
                long_factor,
                original_max,
                factor,
                attention_factor,
            } => {
                let mut p = json!({"rope_type": "longrope", "short_factor": short_factor,
                    "long_factor": long_factor, "original_max_position_embeddings": original_max});
                let o = p.as_object_mut().expect("object");
                if let Some(f) = factor {
                    o.insert("factor".into(), json!(f));
                }
                if let Some(a) = attention_factor {
                    o.insert("attention_factor".into(), json!(a));
                }
                p
            }
            RopeScaling::Divisors(_) => return None,
        };
        params
            .as_object_mut()
            .expect("object")
            .insert("rope_theta".into(), json!(self.theta));
        Some(params)
    }

    /// Reads one rope parameter object (`rope_parameters`, one of its per-layer-type entries, or
    /// transformers 4's `rope_scaling`), with `theta` the base found elsewhere when the object
    /// has none and `config` the whole `config.json` (for `max_position_embeddings` and Phi-3's
    /// top-level `original_max_position_embeddings`). `field` names the object in errors.
    pub fn from_hf_json(
        params: Option<&Map<String, Value>>,
        theta: f64,
        config: &Map<String, Value>,
        field: &str,
    ) -> std::result::Result<Self, (String, String)> {
        let Some(params) = params else {
            return Ok(Rope {
                theta,
                scaling: RopeScaling::None,
            });
        };
        let name = |key: &str| format!("{field}.{key}");
        let number = |key: &str| -> std::result::Result<Option<f64>, (String, String)> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| (name(key), "expected a number".into())),
            }
        };
        let required = |key: &str| -> std::result::Result<f64, (String, String)> {
            number(key)?.ok_or_else(|| (name(key), "missing".into()))
        };
        let theta = number("rope_theta")?.unwrap_or(theta);
        let max_positions = config
            .get("max_position_embeddings")
            .and_then(Value::as_u64)
            .unwrap_or(2048) as usize;
        let top_original = config
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let inner_original = number("original_max_position_embeddings")?.map(|n| n as usize);
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let factors = |key: &str| -> std::result::Result<Vec<f64>, (String, String)> {
            match params.get(key) {
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_f64()
                            .ok_or_else(|| (name(key), "expected numbers".into()))
                    })
                    .collect(),
                _ => Err((name(key), "missing (a list of numbers)".into())),
            }
        };
        let scaling = match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: required("factor")?,
            },
            "dynamic" => RopeScaling::Dynamic {
                factor: required("factor")?,
                original_max: inner_original.unwrap_or(max_positions),
            },
            "llama3" => RopeScaling::Llama3 {
                factor: required("factor")?,
                low_freq_factor: required("low_freq_factor")?,
                high_freq_factor: required("high_freq_factor")?,
                original_max: inner_original
                    .ok_or_else(|| (name("original_max_position_embeddings"), "missing".into()))?,
            },
            "yarn" => {
                // As transformers: with an explicit original context, the factor is the ratio of
                // the two contexts (DeepSeek-V3's convention).
                let (factor, original_max) = match inner_original {
                    Some(original) if original > 0 => {
                        (max_positions as f64 / original as f64, original)
                    }
                    _ => (required("factor")?, max_positions),
                };
                RopeScaling::Yarn {
                    factor,
                    original_max,
                    attention_factor: number("attention_factor")?,
                    beta_fast: number("beta_fast")?.unwrap_or(32.0),
                    beta_slow: number("beta_slow")?.unwrap_or(1.0),
                    mscale: number("mscale")?,
                    mscale_all_dim: number("mscale_all_dim")?,
                    truncate: params
                        .get("truncate")
                        .and_then(Value::as_bool)
                        .unwrap_or(true),
                }
            }
            "longrope" => RopeScaling::LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                original_max: top_original.or(inner_original).unwrap_or(max_positions),
                factor: if top_original.is_some() {
                    None
                } else {
                    number("factor")?
                },
                attention_factor: number("attention_factor")?,
            },
            other => {
                return Err((
                    name("rope_type"),
                    format!(
                        "{other} is not supported (default, linear, dynamic, llama3, yarn, longrope)"
                    ),
                ));
            }
        };
        Ok(Rope { theta, scaling })
    }
}

struct YarnShape {
    attention_factor: Option<f64>,
    beta_fast: f64,
    beta_slow: f64,
    mscale: Option<f64>,
    mscale_all_dim: Option<f64>,
    truncate: bool,
}

fn yarn(
    theta: f64,
    dim: usize,
    factor: f64,
    original_max: usize,
    shape: YarnShape,
) -> RotaryFrequencies {
    let get_mscale = |scale: f64, mscale: f64| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * mscale * scale.ln() + 1.0
        }
    };
    let attention_factor =
        shape
            .attention_factor
            .unwrap_or_else(|| match (shape.mscale, shape.mscale_all_dim) {
                (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    get_mscale(factor, m) / get_mscale(factor, all)
                }
                _ => get_mscale(factor, 1.0),
            });
    let d = dim as f64;
    let correction_dim = |rotations: f64| {
        (d * (original_max as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln())
            / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (
        correction_dim(shape.beta_fast),
        correction_dim(shape.beta_slow),
    );
    if shape.truncate {
        low = low.floor();
        high = high.ceil();
    }
    let low = low.max(0.0);
    let mut high = high.min(d - 1.0);
    if low == high {
        high += 0.001;
    }
    let inv_freq = (0..dim / 2)
        .map(|i| {
            let pos_freq = (theta as f32).powf((2 * i) as f32 / dim as f32);
            let extrapolation = 1.0 / pos_freq;
            let interpolation = 1.0 / (factor as f32 * pos_freq);
            let ramp = ((i as f32 - low as f32) / (high as f32 - low as f32)).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0 - ramp;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect();
    RotaryFrequencies {
        inv_freq,
        attention_factor: attention_factor as f32,
    }
}
