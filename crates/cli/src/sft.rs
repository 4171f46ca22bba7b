//! `softalign sft`: supervised fine-tuning on prompt → response examples (loss on response
//! tokens only), sharing the training loop, flags and outputs of `align`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use softalign_train::{config_path, run_sft};

use crate::align::{
    TRAIN_KEYS, TrainFlags, abandon_unstarted_run, print_report, read_config, report_error,
    resume_layers, start_run, stop_flag,
};

/// Flags of `softalign sft`.
#[derive(Debug, Args)]
pub struct SftArgs {
    #[command(flatten)]
    train: TrainFlags,
    /// TOML file holding any of the flags (kebab-case keys); flags given on the command line win.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue from a checkpoint folder, or from an output folder's newest checkpoint.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Replace the run that --out already holds (its config, metrics, figures, checkpoints and
    /// model; other files stay); without it such a folder is refused.
    #[arg(long)]
    overwrite: bool,
}

/// Runs `softalign sft`.
pub fn run(args: SftArgs) -> Result<()> {
    let SftArgs {
        mut train,
        config,
        resume,
        overwrite,
    } = args;
    if let Some(path) = &config {
        train.fill_from(&TrainFlags::from_config_file(&read_config(
            path,
            &[TRAIN_KEYS],
        )?)?);
    }
    if let Some(resume) = &resume {
        resume_layers(resume, &[TRAIN_KEYS], &mut train, |_| Ok(()))?;
    }
    let mut settings = train.settings(2e-5)?;
    settings.resume = resume;
    settings.validate()?;
    let out = settings.out_dir.clone();
    let (_lock, created) = start_run(
        &out,
        settings.resume.is_none(),
        overwrite,
        &toml::to_string(&TrainFlags::resolved(&settings))?,
    )?;
    let report = run_sft(&settings, Some(stop_flag()), &mut |line| {
        eprintln!("softalign: {line}")
    })
    .inspect_err(|_| abandon_unstarted_run(&out, created))
    .map_err(report_error)?;
    println!("config {}", config_path(&out).display());
    print_report("sft", &out, &report);
    Ok(())
}
