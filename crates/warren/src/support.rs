//! `warren support bundle`: the doctor's report, the redacted
//! configuration, metrics, schema state, store sizes and log tails in one
//! archive for a support request (`warren_ops::support`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use warren_ops::doctor::{self, Examination};
use warren_ops::support::{self, BundleInputs};

#[derive(Debug, Subcommand)]
pub enum SupportCommand {
    /// Write a support bundle: never event or person data, every secret
    /// redacted, checked before it is written.
    Bundle(BundleArgs),
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Where to write the archive.
    #[arg(long, default_value = "warren-support.tar.gz")]
    out: PathBuf,
    #[command(flatten)]
    deployment: crate::doctor::DeploymentArgs,
    /// A log file whose end to include (Warren logs to stderr: give the file
    /// it is captured in, or `journalctl -u warren > warren.log` first).
    #[arg(long = "log")]
    logs: Vec<PathBuf>,
    /// How much of the end of each log to include.
    #[arg(long, default_value_t = 16)]
    log_tail_mib: u64,
}

pub async fn run(config_path: Option<PathBuf>, command: SupportCommand) -> anyhow::Result<()> {
    let SupportCommand::Bundle(args) = command;
    let mut config = crate::config::load(config_path.as_deref())?;
    let (processes, timeout) = args.deployment.resolve(&mut config).await;
    eprintln!("examining the deployment");
    let report =
        doctor::examine(&Examination { config: &config, processes: processes.clone(), timeout }).await;
    let inputs = BundleInputs {
        config: &config,
        report: &report,
        processes: &processes,
        logs: &args.logs,
        log_tail_bytes: args.log_tail_mib.saturating_mul(1024 * 1024),
        timeout,
    };
    let summary = support::bundle(&inputs, &args.out, |step| eprintln!("  {step}")).await?;
    println!("wrote {} ({} bytes): {}", summary.path.display(), summary.bytes, summary.entries.join(", "));
    Ok(())
}
