//! `softalign sft`: supervised fine-tuning on prompt → response examples (loss on response
//! tokens only), sharing the training loop, flags and outputs of `align`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use softalign_train::{config_path, run_sft};

use crate::align::{
    TRAIN_KEYS, TrainFlags, layer, print_report, read_config, report_error, resume_out_dir,
    stop_flag, write_atomic,
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
}

/// Runs `softalign sft`.
pub fn run(args: SftArgs) -> Result<()> {
    let SftArgs {
        mut train,
        config,
        resume,
    } = args;
    if let Some(path) = &config {
        train.fill_from(&layer(path, &read_config(path, &[TRAIN_KEYS])?)?);
    }
    if let Some(resume) = &resume {
        let saved = config_path(&resume_out_dir(resume));
        if saved.is_file() {
            train.fill_from(&layer(&saved, &read_config(&saved, &[TRAIN_KEYS])?)?);
        } else if train.out.is_none() {
            train.out = Some(resume_out_dir(resume));
        }
    }
    let mut settings = train.settings(2e-5)?;
    settings.resume = resume;
    settings.validate()?;
    let out = settings.out_dir.clone();
    write_atomic(
        &config_path(&out),
        &toml::to_string(&TrainFlags::resolved(&settings))?,
    )?;
    let report = run_sft(&settings, Some(stop_flag()), &mut |line| {
        eprintln!("softalign: {line}")
    })
    .map_err(report_error)?;
    println!("config {}", config_path(&out).display());
    print_report("sft", &out, &report);
    Ok(())
}
