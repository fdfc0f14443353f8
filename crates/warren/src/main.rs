//! The `warren` binary: its command line, configuration loading and
//! logging. `warren-node` wires a process's roles onto their adapters and
//! `warren-ops` runs the chores; this crate only decides what runs and with
//! which settings.

mod backup;
mod bench;
mod clickhouse;
mod config;
mod deploy;
mod doctor;
mod generate;
mod migrate;
mod serve;
mod support;
mod upgrade;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Capture allocates and frees many small objects per event across threads;
/// mimalloc handles that pattern markedly better than the system allocator
/// (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "warren", about = "Self-hostable product analytics", version)]
struct Cli {
    /// Configuration file; `warren.toml` in the working directory if present.
    #[arg(long, global = true, env = "WARREN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run Warren: capture API and event log on the embedded storage.
    Serve(serve::ServeArgs),
    /// Print the version and on-disk format versions.
    Version,
    /// Write a deterministic synthetic dataset, through capture or into the stores.
    Generate(generate::GenerateArgs),
    /// Measure Warren against a load generator.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Show or change the schema of every store: status, up, down.
    Migrate(migrate::MigrateArgs),
    /// Chores of the ClickHouse cluster of `[clickhouse] url`.
    #[command(subcommand)]
    Clickhouse(clickhouse::ClickHouseCommand),
    /// Backups of the deployment: create, list, verify, delete.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore a backup into a new data directory.
    Restore(backup::RestoreArgs),
    /// Write the files that run Warren: Kubernetes manifests per cloud,
    /// systemd units, a compose file, cloud-init user data.
    #[command(subcommand)]
    Deploy(deploy::DeployCommand),
    /// Check a deployment, running or stopped, and say what to fix; exits
    /// 1 when something is critical.
    Doctor(doctor::DoctorArgs),
    /// Help for a support request: `support bundle`.
    #[command(subcommand)]
    Support(support::SupportCommand),
    /// Before an upgrade: `upgrade check`.
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version => {
            println!("warren {}", env!("CARGO_PKG_VERSION"));
            println!("event log segment format {}", warren_log::SEGMENT_FORMAT_VERSION);
            println!("meta store schema (sqlite) {}", warren_meta::Dialect::Sqlite.schema_version());
            println!("meta store schema (postgres) {}", warren_meta::Dialect::Postgres.schema_version());
            Ok(())
        }
        Command::Serve(args) => run_async(serve::serve(cli.config, args)),
        Command::Generate(args) => run_async(generate::run(cli.config, args)),
        Command::Bench(command) => run_async(bench::run(command)),
        Command::Migrate(args) => run_async(migrate::run(cli.config, args)),
        Command::Clickhouse(command) => run_async(clickhouse::run(cli.config, command)),
        Command::Backup(command) => run_async(backup::run(cli.config, command)),
        Command::Restore(args) => run_async(backup::restore(cli.config, args)),
        Command::Deploy(command) => deploy::run(command),
        Command::Support(command) => run_async(support::run(cli.config, command)),
        Command::Upgrade(command) => return report_exit(run_async(upgrade::run(cli.config, command))),
        Command::Doctor(args) => return report_exit(run_async(doctor::run(cli.config, args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => failed(error),
    }
}

/// A report's command (`doctor`, `upgrade check`) fails when its worst
/// finding is critical.
fn report_exit(worst: anyhow::Result<warren_ops::doctor::Severity>) -> ExitCode {
    match worst {
        Ok(warren_ops::doctor::Severity::Critical) => ExitCode::FAILURE,
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => failed(error),
    }
}

fn failed(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

fn run_async<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(work)
}
