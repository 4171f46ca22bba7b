//! `softalign eval` (GDPO paper §4.2): greedy responses of a model to held-out prompts, judged
//! by AI feedback in both orders against the data's reference responses (its `chosen`) or
//! against another model's greedy responses; binary and percentage win rates with 95%
//! intervals; and, given a reference model, the preference-classification accuracy of the
//! model's implicit reward `σ(β δ)` on the file's labelled pairs.

use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::{Device, TensorData};
use serde::Serialize;
use softalign_data::{Format, LoadOptions, PreferencePair, ValidationPolicy};
use softalign_model::{CausalLm, GenerationConfig, Pretrained, Sampling, generate};
use softalign_pref::{preference_accuracy, preference_margin, response_logps};
use softalign_train::encode::Encoder;
use softalign_train::progress_bar;
use softalign_train::{PromptTemplate, SequenceBatch, Truncation};

use crate::error::{Result, setting};
use crate::judge::{Judge, JudgeItem};
use crate::label::write_atomic;
use crate::winrate::WinRates;

/// What to evaluate on and how.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSettings {
    /// The held-out preference file: its prompts, reference responses (`chosen`) and labels.
    pub data: PathBuf,
    /// Its format (`None` detects it).
    pub format: Option<Format>,
    /// Strict or skip bad records.
    pub validation: ValidationPolicy,
    /// Use only the first this many pairs.
    pub limit: Option<usize>,
    /// Most new tokens per greedy response.
    pub max_new_tokens: usize,
    /// Prompt tokens kept (the end) for generation and for the implicit-reward accuracy.
    pub max_prompt_tokens: usize,
    /// Most tokens of prompt + response for the implicit-reward accuracy.
    pub max_length: usize,
    /// β of the implicit reward.
    pub beta: f64,
    /// Prompt rendering of the evaluated models.
    pub template: PromptTemplate,
    /// Progress bars on stderr.
    pub progress: bool,
}

impl EvalSettings {
    /// Defaults for `data`: 128 new tokens, 256 prompt tokens, β 0.1.
    pub fn new(data: PathBuf) -> Self {
        Self {
            data,
            format: None,
            validation: ValidationPolicy::Strict,
            limit: None,
            max_new_tokens: 128,
            max_prompt_tokens: 256,
            max_length: 512,
            beta: 0.1,
            template: PromptTemplate::Auto,
            progress: true,
        }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens == 0 {
            return Err(setting("max-tokens", "must be at least 1"));
        }
        if self.max_prompt_tokens == 0 {
            return Err(setting("max-prompt-tokens", "must be at least 1"));
        }
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(setting(
                "beta",
                format!("must be positive and finite, got {}", self.beta),
            ));
        }
        if self.limit == Some(0) {
            return Err(setting("limit", "must be at least 1"));
        }
        Ok(())
    }

    /// Reads the data file.
    pub fn load_pairs(&self) -> Result<Vec<PreferencePair>> {
        let options = LoadOptions {
            format: self.format,
            temperature: 1.0,
            policy: self.validation,
        };
        let mut pairs = softalign_data::load(&self.data, &options)?.pairs;
        if let Some(limit) = self.limit {
            pairs.truncate(limit);
        }
        Ok(pairs)
    }
}

/// One judged prompt.
#[derive(Debug, Clone, Serialize)]
pub struct EvalRecord {
    /// The input record.
    pub source_line: usize,
    /// The evaluated model's greedy response.
    pub response: String,
    /// The opponent's response (reference or the other model's greedy one).
    pub opponent_response: String,
    /// P(response ≻ opponent), averaged over both orders.
    pub p: f64,
    /// With the response shown first.
    pub p_order_ab: f64,
    /// With the response shown second.
    pub p_order_ba: f64,
}

/// Preference-classification accuracy of the implicit reward.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RewardAccuracy {
    /// Pairs counted (labels of exactly ½ carry no preference and are left out).
    pub pairs: usize,
    /// Share of pairs where `σ(β δ) > ½` agrees with `p̂ > ½`.
    pub accuracy: f64,
    /// β used.
    pub beta: f64,
    /// Mean margin δ.
    pub mean_margin: f64,
}

/// The result of `softalign eval`.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// The evaluated model.
    pub model: PathBuf,
    /// `reference responses` or the other model's path.
    pub opponent: String,
    /// The judge model.
    pub judge: Option<PathBuf>,
    /// Win rates of the model against the opponent.
    pub win_rates: Option<WinRates>,
    /// Mean P(model ≻ opponent) with the model's response shown first and second (the
    /// difference is the judge's position bias).
    pub order_means: Option<[f64; 2]>,
    /// Prompts where the model's response is the opponent's, word for word.
    pub identical_responses: usize,
    /// Implicit-reward accuracy, when a reference model was given.
    pub reward_accuracy: Option<RewardAccuracy>,
    /// Every judged prompt.
    pub records: Vec<EvalRecord>,
    /// Seconds spent generating.
    pub generation_seconds: f64,
    /// Seconds spent judging.
    pub judge_seconds: f64,
}

/// Greedy responses of `model` to the prompts of `pairs`: the prompt rendered by the model's
/// chat template (per `settings.template`), cut to its last `max_prompt_tokens` tokens, decoded
/// until end of turn or `max_new_tokens`.
pub fn greedy_responses(
    model: &Pretrained,
    pairs: &[PreferencePair],
    settings: &EvalSettings,
    label: &str,
) -> Result<Vec<String>> {
    let truncation = Truncation {
        max_length: settings.max_prompt_tokens + settings.max_new_tokens,
        max_prompt_length: settings.max_prompt_tokens,
    };
    let encoder = Encoder::new(
        &model.tokenizer,
        &model.model.config,
        settings.template,
        truncation,
        &settings.data,
    )?;
    let config = GenerationConfig {
        max_new_tokens: settings.max_new_tokens,
        sampling: Sampling::Greedy,
        seed: 0,
        stop_tokens: model.stop_tokens(encoder.uses_chat_template()),
    };
    let progress = progress_bar(settings.progress, label, "", pairs.len(), 0);
    // Prompts are independent: decoded concurrently (one per thread), collected in order.
    let responses = pairs
        .par_iter()
        .map(|pair| {
            let mut ids = encoder.prompt_ids(&pair.prompt)?;
            if ids.len() > settings.max_prompt_tokens {
                ids.drain(..ids.len() - settings.max_prompt_tokens);
            }
            let tokens = generate(&model.model, &ids, &config, |_| Ok(true))?;
            let text = model.tokenizer.decode(&tokens, true)?.trim().to_string();
            progress.inc(1);
            Ok(text)
        })
        .collect::<Result<Vec<_>>>()?;
    progress.finish_and_clear();
    Ok(responses)
}

/// Sequence log-probabilities `[chosen, rejected]` of each encoded pair under `model`.
fn pair_logps(model: &CausalLm, pairs: &[softalign_train::EncodedPair], pad: u32) -> Vec<[f64; 2]> {
    let device = model.embed_tokens.val().device();
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(4) {
        let n = chunk.len();
        let sequences = chunk
            .iter()
            .map(|p| (p.prompt.as_slice(), p.chosen.as_slice()))
            .chain(
                chunk
                    .iter()
                    .map(|p| (p.prompt.as_slice(), p.rejected.as_slice())),
            );
        let batch = SequenceBatch::new(sequences, pad);
        let tokens = batch.token_tensor(&device);
        let token_logps = model.next_token_logps(tokens);
        let values: Vec<f64> = response_logps(token_logps, batch.mask_tensor(&device))
            .into_data()
            .convert::<f64>()
            .try_into_vec::<f64>()
            .expect("f64 log-probabilities");
        out.extend((0..n).map(|i| [values[i], values[n + i]]));
    }
    out
}

/// The preference-classification accuracy of `policy`'s implicit reward against `reference` on
/// the labelled `pairs` (both models share the policy's tokenizer).
pub fn reward_accuracy(
    policy: &Pretrained,
    reference: &CausalLm,
    pairs: &[PreferencePair],
    settings: &EvalSettings,
) -> Result<RewardAccuracy> {
    let truncation = Truncation {
        max_length: settings.max_length,
        max_prompt_length: settings.max_prompt_tokens,
    };
    let mut encoder = Encoder::new(
        &policy.tokenizer,
        &policy.model.config,
        settings.template,
        truncation,
        &settings.data,
    )?;
    let encoded = pairs
        .iter()
        .map(|p| encoder.pair(p))
        .collect::<softalign_train::Result<Vec<_>>>()?;
    let pad = policy.model.config.pad_token_id();
    let progress = progress_bar(settings.progress, "implicit reward", "", 2, 0);
    let policy_logps = pair_logps(&policy.model, &encoded, pad);
    progress.inc(1);
    let reference_logps = pair_logps(reference, &encoded, pad);
    progress.finish_and_clear();
    // A few numbers per pair: on the CPU, whatever device scored them.
    let device = Device::flex();
    let column = |f: &dyn Fn(&[f64; 2]) -> f64, v: &[[f64; 2]]| {
        let values: Vec<f32> = v.iter().map(|x| f(x) as f32).collect();
        let n = values.len();
        burn::tensor::Tensor::<1>::from_data(TensorData::new(values, [n]), &device)
    };
    let margins: Vec<f64> = preference_margin(
        column(&|x| x[0], &policy_logps),
        column(&|x| x[1], &policy_logps),
        column(&|x| x[0], &reference_logps),
        column(&|x| x[1], &reference_logps),
    )
    .into_data()
    .convert::<f64>()
    .try_into_vec::<f64>()
    .expect("f64 margins");
    let labels: Vec<f64> = pairs.iter().map(|p| p.soft_label).collect();
    let counted = labels.iter().filter(|&&p| p != 0.5).count();
    let accuracy = preference_accuracy(&margins, &labels, settings.beta).unwrap_or(f64::NAN);
    Ok(RewardAccuracy {
        pairs: counted,
        accuracy,
        beta: settings.beta,
        mean_margin: margins.iter().sum::<f64>() / margins.len().max(1) as f64,
    })
}

/// Judges `responses` against `opponents` on the prompts of `pairs`, in both orders.
pub fn judge_responses(
    judge: &Judge,
    pairs: &[PreferencePair],
    responses: &[String],
    opponents: &[String],
    settings: &EvalSettings,
) -> Result<Vec<EvalRecord>> {
    let progress = progress_bar(settings.progress, "judge", "", pairs.len(), 0);
    let mut records = Vec::with_capacity(pairs.len());
    let batch = judge.settings().batch_size;
    for (c, chunk) in pairs.chunks(batch).enumerate() {
        let start = c * batch;
        let items: Vec<JudgeItem<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, p)| JudgeItem {
                context: &p.prompt,
                first: &responses[start + i],
                second: &opponents[start + i],
                line: p.source_line,
            })
            .collect();
        for (i, j) in judge.judge(&items, &settings.data)?.into_iter().enumerate() {
            records.push(EvalRecord {
                source_line: chunk[i].source_line,
                response: responses[start + i].clone(),
                opponent_response: opponents[start + i].clone(),
                p: j.p,
                p_order_ab: j.p_order_ab,
                p_order_ba: j.p_order_ba,
            });
        }
        progress.inc(chunk.len() as u64);
    }
    progress.finish_and_clear();
    Ok(records)
}

/// What to compare the model with.
#[derive(Debug)]
pub enum Opponent<'a> {
    /// The data's reference responses (`chosen`).
    Reference,
    /// Another model's greedy responses.
    Model(&'a Pretrained),
}

/// Runs the evaluation: greedy responses of `model`, judged against `opponent` when a judge is
/// given, and the implicit-reward accuracy against `reference` when one is given.
pub fn evaluate(
    model: &Pretrained,
    opponent: Opponent<'_>,
    judge: Option<(&Judge, &Path)>,
    reference: Option<&CausalLm>,
    settings: &EvalSettings,
) -> Result<EvalReport> {
    settings.validate()?;
    if judge.is_none() && reference.is_none() {
        return Err(setting(
            "judge",
            "nothing to evaluate: give --judge (win rates) or --reference (implicit-reward accuracy)",
        ));
    }
    let pairs = settings.load_pairs()?;
    let started = Instant::now();
    let mut report = EvalReport {
        model: model.source.clone(),
        opponent: match &opponent {
            Opponent::Reference => "reference responses".into(),
            Opponent::Model(other) => other.source.display().to_string(),
        },
        judge: judge.map(|(_, path)| path.to_path_buf()),
        win_rates: None,
        order_means: None,
        identical_responses: 0,
        reward_accuracy: None,
        records: Vec::new(),
        generation_seconds: 0.0,
        judge_seconds: 0.0,
    };
    if let Some((judge, _)) = judge {
        let responses = greedy_responses(model, &pairs, settings, "model")?;
        let opponents = match opponent {
            Opponent::Reference => pairs.iter().map(|p| p.chosen.clone()).collect(),
            Opponent::Model(other) => greedy_responses(other, &pairs, settings, "versus")?,
        };
        report.generation_seconds = started.elapsed().as_secs_f64();
        let judging = Instant::now();
        let records = judge_responses(judge, &pairs, &responses, &opponents, settings)?;
        report.judge_seconds = judging.elapsed().as_secs_f64();
        let p: Vec<f64> = records.iter().map(|r| r.p).collect();
        report.win_rates = Some(WinRates::of(&p));
        let n = records.len().max(1) as f64;
        report.order_means = Some([
            records.iter().map(|r| r.p_order_ab).sum::<f64>() / n,
            records.iter().map(|r| r.p_order_ba).sum::<f64>() / n,
        ]);
        report.identical_responses = records
            .iter()
            .filter(|r| r.response == r.opponent_response)
            .count();
        report.records = records;
    }
    if let Some(reference) = reference {
        report.reward_accuracy = Some(reward_accuracy(model, reference, &pairs, settings)?);
    }
    Ok(report)
}

impl EvalReport {
    /// A readable table of the results.
    pub fn table(&self) -> String {
        let mut lines = vec![format!(
            "model     {}\nopponent  {}",
            self.model.display(),
            self.opponent
        )];
        if let Some(w) = &self.win_rates {
            lines.push(format!(
                "{:<22} {:>8} {:>18} {:>6}",
                "metric", "value", "95% interval", "n"
            ));
            for (name, e) in [
                ("binary win rate", &w.binary),
                ("percentage win rate", &w.percentage),
            ] {
                lines.push(format!(
                    "{:<22} {:>7.1}% {:>8.1}% – {:>5.1}% {:>6}",
                    name,
                    100.0 * e.value,
                    100.0 * e.low,
                    100.0 * e.high,
                    w.n
                ));
            }
            lines.push(format!(
                "{:<22} {:>8} of {} (p̂ = ½, counted as wins); identical responses: {}",
                "ties", w.ties, w.n, self.identical_responses
            ));
            if let Some([ab, ba]) = self.order_means {
                lines.push(format!(
                    "{:<22} {:>7.1}% (model shown first) / {:.1}% (shown second)",
                    "one-order mean p̂",
                    100.0 * ab,
                    100.0 * ba
                ));
            }
        }
        if let Some(a) = &self.reward_accuracy {
            lines.push(format!(
                "{:<22} {:>7.1}% on {} labelled pairs (β {}, mean δ {:.3})",
                "implicit-reward acc.",
                100.0 * a.accuracy,
                a.pairs,
                a.beta,
                a.mean_margin
            ));
        }
        lines.push(format!(
            "generation {:.1} s, judging {:.1} s",
            self.generation_seconds, self.judge_seconds
        ));
        lines.join("\n")
    }

    /// Writes `DIR/eval.json` atomically and returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(crate::error::io_error(dir))?;
        let path = dir.join("eval.json");
        let text = serde_json::to_string_pretty(self).expect("the report serialises");
        write_atomic(&path, text.as_bytes())?;
        Ok(path)
    }
}
