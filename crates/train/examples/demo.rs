//! Runs the built-in demo with its default settings: `cargo run --release -p softalign-train --example demo [OUT]`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut settings = softalign_train::demo::DemoSettings::default();
    if let Some(out) = std::env::args().nth(1) {
        settings.out_dir = out.into();
    }
    let env = |name: &str| std::env::var(name).ok();
    if let Some(v) = env("ALIGN_LR") {
        settings.align_learning_rate = v.parse()?;
    }
    if let Some(v) = env("ALIGN_STEPS") {
        settings.align_steps = v.parse()?;
    }
    if let Some(v) = env("SFT_STEPS") {
        settings.sft_steps = v.parse()?;
    }
    settings.progress = false;
    let report = softalign_train::demo::run_demo(&settings, &mut |line| eprintln!("{line}"))?;
    println!("{}", report.table());
    Ok(())
}
