//! `warren upgrade check`: what running this build on the deployment will
//! change, and whether it is safe (`warren_ops::upgrade`). Exits 1 when it
//! is not: a downgrade, or a configuration `serve` would refuse.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use warren_ops::doctor::Severity;
use warren_ops::upgrade::{self, UpgradeInputs};

#[derive(Debug, Subcommand)]
pub enum UpgradeCommand {
    /// Before running this build on existing data: the migrations it will
    /// run, configuration keys it does not know, a recent backup, and a
    /// refusal of any downgrade.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    deployment: crate::doctor::DeploymentArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The worst severity found: critical means the upgrade is unsafe.
pub async fn run(config_path: Option<PathBuf>, command: UpgradeCommand) -> anyhow::Result<Severity> {
    let UpgradeCommand::Check(args) = command;
    let (mut config, unknown_keys) = crate::config::load_lenient(config_path.as_deref())?;
    let (processes, timeout) = args.deployment.resolve(&mut config).await;
    let inputs =
        UpgradeInputs { config: &config, unknown_keys: &unknown_keys, processes: &processes, timeout };
    let report = upgrade::check(&inputs).await;
    let refused = report.worst() == Severity::Critical;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        crate::doctor::print(&report);
        println!(
            "{}",
            if refused { "not safe to upgrade: fix the critical findings first" } else { "safe to upgrade" }
        );
    }
    Ok(report.worst())
}
