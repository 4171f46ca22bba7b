//! The online tasks: [`PromptTask`] samples a real model's responses to the prompts of a
//! preference file (labelled by the judge or by self-preference); [`DemoTask`] is the built-in
//! demo (labelled by its true reward or by self-preference).

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use softalign_data::Prompt;
use softalign_model::{CausalLm, GenerationConfig, Pretrained, Sampling, TextTokenizer, generate};
use softalign_optim::OptimizerKind;
use softalign_train::checkpoint::{list_checkpoints, load_checkpoint};
use softalign_train::demo::{pairs as demo_pairs, seeded_model, task as demo_task};
use softalign_train::encode::Encoder;
use softalign_train::{
    EncodedExample, EncodedPair, LoopSettings, PromptTemplate, Run, Schedule, SftObjective,
    Truncation, train_loop,
};

use super::OnlineTask;
use crate::error::{Result, setting};
use crate::judge::{Judge, JudgeItem};

/// Online alignment of a real model on the prompts of a preference file.
pub struct PromptTask<'a> {
    /// The policy's tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Encodes prompts (chat template) and responses, with truncation.
    pub encoder: Encoder<'a>,
    /// The training prompts.
    pub prompts: Vec<Prompt>,
    /// Tokens that end a sampled response.
    pub stop_tokens: Vec<u32>,
    /// Most new tokens per sample.
    pub max_new_tokens: usize,
    /// The judge, for `LabelSource::Judge`.
    pub judge: Option<&'a Judge>,
    /// Names the prompt file in errors.
    pub source: PathBuf,
    /// Where the policy's base model came from (named in an exported LoRA adapter).
    pub base_model: PathBuf,
}

impl<'a> PromptTask<'a> {
    /// A task over `prompts` for the loaded `policy`.
    pub fn new(
        policy: &'a Pretrained,
        prompts: Vec<Prompt>,
        truncation: Truncation,
        max_new_tokens: usize,
        judge: Option<&'a Judge>,
        source: &Path,
    ) -> Result<Self> {
        let encoder = Encoder::new(
            &policy.tokenizer,
            &policy.model.config,
            PromptTemplate::Auto,
            truncation,
            source,
        )?;
        let stop_tokens = policy.stop_tokens(encoder.uses_chat_template());
        Ok(Self {
            tokenizer: &policy.tokenizer,
            encoder,
            prompts,
            stop_tokens,
            max_new_tokens,
            judge,
            source: source.to_path_buf(),
            base_model: policy.source.clone(),
        })
    }

    fn prompt_ids(&self, index: usize) -> Result<Vec<u32>> {
        let mut ids = self.encoder.prompt_ids(&self.prompts[index])?;
        let keep = 256usize;
        if ids.len() > keep {
            ids.drain(..ids.len() - keep);
        }
        Ok(ids)
    }
}

impl OnlineTask for PromptTask<'_> {
    fn prompts(&self) -> usize {
        self.prompts.len()
    }

    fn sample(
        &self,
        policy: &CausalLm,
        index: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<String> {
        let config = GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling,
            seed,
            stop_tokens: self.stop_tokens.clone(),
        };
        let tokens = generate(policy, &self.prompt_ids(index)?, &config, |_| Ok(true))?;
        Ok(self.tokenizer.decode(&tokens, true)?)
    }

    fn encode(
        &self,
        index: usize,
        chosen: &str,
        rejected: &str,
        soft_label: f64,
    ) -> Result<EncodedPair> {
        let mut prompt = self.prompt_ids(index)?;
        let mut chosen = self.encoder.response_ids(chosen)?;
        let mut rejected = self.encoder.response_ids(rejected)?;
        let budget = self.prompt_limit();
        budget.apply(&mut prompt, &mut [&mut chosen, &mut rejected]);
        Ok(EncodedPair {
            prompt,
            chosen,
            rejected,
            soft_label,
            source_line: index + 1,
        })
    }

    fn judge_labels(&self, pairs: &[(usize, String, String)]) -> Result<Vec<f64>> {
        let Some(judge) = self.judge else {
            return Err(setting("label-by", "judge labels need --judge"));
        };
        let items: Vec<JudgeItem<'_>> = pairs
            .iter()
            .map(|(i, a, b)| JudgeItem {
                context: &self.prompts[*i],
                first: a,
                second: b,
                line: i + 1,
            })
            .collect();
        Ok(judge
            .judge(&items, &self.source)?
            .into_iter()
            .map(|j| j.p)
            .collect())
    }

    fn tokenizer(&self) -> &TextTokenizer {
        self.tokenizer
    }

    fn base_model(&self) -> &Path {
        &self.base_model
    }
}

impl PromptTask<'_> {
    fn prompt_limit(&self) -> Truncation {
        Truncation {
            max_length: 256 + self.max_new_tokens + 1,
            max_prompt_length: 256,
        }
    }
}

/// The built-in demo as an online task: prompts of the digit task, samples of up to six
/// tokens, Bradley–Terry labels on the true reward, held-out greedy true reward as evaluation.
pub struct DemoTask {
    tokenizer: TextTokenizer,
    train: Vec<demo_task::Prompt>,
    heldout: Vec<demo_task::Prompt>,
}

/// Settings of the demo's supervised stage (the reference of online alignment).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoReferenceSettings {
    /// Seed of the prompt split, demonstrations, initial weights.
    pub seed: u64,
    /// Held-out prompts.
    pub heldout_prompts: usize,
    /// Noisy demonstrations per training prompt.
    pub demonstrations_per_prompt: usize,
    /// SFT steps.
    pub steps: usize,
    /// SFT batch size.
    pub batch_size: usize,
    /// SFT peak learning rate.
    pub learning_rate: f64,
    /// SFT output folder.
    pub out_dir: PathBuf,
    /// Progress bar.
    pub progress: bool,
    /// Where the reference trains.
    pub device: burn::tensor::Device,
    /// Take the reference from the finished SFT checkpoint in `out_dir` when it holds one of
    /// these settings (resuming an online run: the reference is then bitwise the one the run
    /// started with, whatever the thread count now), instead of training it again.
    pub reuse_finished: bool,
}

/// The final checkpoint of the demo's SFT stage in `settings.out_dir`, when it may be reused and
/// was trained with these settings.
fn finished_reference(settings: &DemoReferenceSettings) -> Option<PathBuf> {
    if !settings.reuse_finished {
        return None;
    }
    let (step, dir) = list_checkpoints(&settings.out_dir).pop()?;
    let state = std::fs::read(dir.join(softalign_train::checkpoint::TRAINER_STATE_FILE)).ok()?;
    let state: softalign_train::checkpoint::TrainerState = serde_json::from_slice(&state).ok()?;
    (step == settings.steps && state.seed == settings.seed && state.total_steps == settings.steps)
        .then_some(dir)
}

impl DemoTask {
    /// Trains the demo's SFT reference (as `softalign align` with no data does) and returns it
    /// (on the autodiff device) with the task.
    pub fn with_reference(settings: &DemoReferenceSettings) -> Result<(Self, CausalLm)> {
        let tokenizer = demo_task::tokenizer()?;
        let device = settings.device.clone().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
        let mut prompts = demo_task::all_prompts();
        prompts.shuffle(&mut rng);
        let (heldout, train) = prompts.split_at(settings.heldout_prompts.min(prompts.len() - 1));
        let encode = |prompt: &demo_task::Prompt, response: &str| -> Result<EncodedExample> {
            let mut ids = tokenizer.encode(response)?;
            ids.push(demo_task::EOS_ID);
            Ok(EncodedExample {
                prompt: tokenizer.encode(&demo_task::prompt_text(prompt))?,
                response: ids,
                source_line: 0,
            })
        };
        let mut examples = Vec::new();
        for prompt in train {
            for _ in 0..settings.demonstrations_per_prompt {
                examples.push(encode(
                    prompt,
                    &demo_task::noisy_demonstration(prompt, &mut rng),
                )?);
            }
        }
        let loop_settings = LoopSettings {
            optimizer: OptimizerKind::Adopt,
            weight_decay: 0.0,
            schedule: Schedule {
                peak: settings.learning_rate,
                warmup_steps: settings.steps / 10,
                total_steps: settings.steps,
                min_ratio: 0.1,
            },
            batch_size: settings.batch_size,
            grad_accum: 1,
            max_grad_norm: Some(1.0),
            eval_every: 0,
            eval_batch_size: 256,
            save_every: 0,
            keep_checkpoints: 1,
            seed: settings.seed,
            out_dir: settings.out_dir.clone(),
            progress: settings.progress,
            label: "sft".into(),
            replicas: Default::default(),
        };
        let initial = seeded_model(&demo_task::model_config(), settings.seed, &device)?;
        let reference = match finished_reference(settings) {
            Some(dir) => {
                let optimizer = loop_settings
                    .optimizer
                    .module_optimizer(loop_settings.weight_decay, None);
                load_checkpoint(&dir, initial, optimizer)?.0
            }
            None => {
                train_loop(
                    initial,
                    Run {
                        objective: &mut SftObjective {
                            pad_id: demo_task::PAD_ID,
                        },
                        train: &examples,
                        eval: &[],
                        settings: &loop_settings,
                        resume: None,
                        stop: None,
                    },
                )?
                .model
            }
        };
        let task = Self {
            tokenizer,
            train: train.to_vec(),
            heldout: heldout.to_vec(),
        };
        Ok((task, reference))
    }
}

impl OnlineTask for DemoTask {
    fn prompts(&self) -> usize {
        self.train.len()
    }

    fn sample(
        &self,
        policy: &CausalLm,
        index: usize,
        sampling: Sampling,
        seed: u64,
    ) -> Result<String> {
        Ok(demo_pairs::sample_response(
            policy,
            &self.tokenizer,
            &self.train[index],
            sampling,
            seed,
        )?)
    }

    fn encode(
        &self,
        index: usize,
        chosen: &str,
        rejected: &str,
        soft_label: f64,
    ) -> Result<EncodedPair> {
        let pair = demo_pairs::LabelledPair {
            prompt: self.train[index],
            chosen: chosen.to_string(),
            rejected: rejected.to_string(),
            soft_label,
        };
        Ok(demo_pairs::encode_pair(&self.tokenizer, &pair)?)
    }

    fn task_label(&self, index: usize, first: &str, second: &str) -> Result<Option<f64>> {
        let prompt = &self.train[index];
        let (r1, r2) = (
            demo_task::true_reward(prompt, first),
            demo_task::true_reward(prompt, second),
        );
        Ok((r1 != r2).then(|| demo_pairs::bradley_terry(r1, r2)))
    }

    fn sample_reward(&self, index: usize, response: &str) -> Option<f64> {
        Some(demo_task::true_reward(&self.train[index], response))
    }

    fn evaluate(&self, policy: &CausalLm) -> Result<Vec<(&'static str, f64)>> {
        let mut total = 0.0;
        let mut exact = 0usize;
        for prompt in &self.heldout {
            let answer =
                demo_pairs::sample_response(policy, &self.tokenizer, prompt, Sampling::Greedy, 0)?;
            let reward = demo_task::true_reward(prompt, &answer);
            total += reward;
            exact += usize::from(reward == 0.0);
        }
        let n = self.heldout.len().max(1) as f64;
        Ok(vec![
            ("eval/reward", total / n),
            ("eval/exact", exact as f64 / n),
        ])
    }

    fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    fn base_model(&self) -> &Path {
        Path::new("built-in demo")
    }
}
