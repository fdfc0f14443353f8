//! `warren serve`: the configuration with the command line's flags over
//! it, logging, and the signals that stop the process; `warren_node::serve`
//! does the rest.

use std::path::PathBuf;

use anyhow::Context;
use warren_core::config::{LogFormat, Role, WarrenConfig, DEFAULT_LOG_LEVEL};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// What to run: all (capture, ingest and queries), capture, ingest or query.
    #[arg(long, value_enum)]
    role: Option<RoleArg>,
    /// Where embedded storage lives.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on, `host:port`; port 0 picks a free one.
    #[arg(long)]
    listen: Option<String>,
    /// Project token to create on first start instead of a random one.
    #[arg(long)]
    bootstrap_project_token: Option<String>,
    /// Personal API key to create on first start instead of a random one.
    #[arg(long)]
    bootstrap_api_key: Option<String>,
    /// Open a damaged event log by keeping every intact record.
    #[arg(long)]
    repair: bool,
}

pub async fn serve(config_file: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = crate::config::load(config_file.as_deref())?;
    apply_flags(&mut config, &args);
    init_tracing(config.log_format, &config.log_level);
    // Installed before anything opens: a signal while the stores open
    // stops the start, and one sent right after the listening line is
    // never lost to the default action.
    let shutdown = shutdown_signal()?;
    warren_node::serve(config, args.repair, shutdown).await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    All,
    Capture,
    Ingest,
    Query,
}

fn apply_flags(config: &mut WarrenConfig, args: &ServeArgs) {
    if let Some(role) = args.role {
        config.role = match role {
            RoleArg::All => Role::All,
            RoleArg::Capture => Role::Capture,
            RoleArg::Ingest => Role::Ingest,
            RoleArg::Query => Role::Query,
        };
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(token) = &args.bootstrap_project_token {
        config.bootstrap.project_token = Some(token.clone());
    }
    if let Some(key) = &args.bootstrap_api_key {
        config.bootstrap.api_key = Some(key.clone());
    }
}

/// Logs to stderr, filtered by `RUST_LOG` when it is set (the usual way
/// to look closer for one run), else by the configured `log_level`.
fn init_tracing(format: LogFormat, level: &str) {
    let level =
        std::env::var("RUST_LOG").ok().filter(|l| !l.trim().is_empty()).unwrap_or_else(|| level.to_string());
    let filter = tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|error| {
        eprintln!("invalid log filter {level:?} ({error}); using {DEFAULT_LOG_LEVEL}");
        tracing_subscriber::EnvFilter::new(DEFAULT_LOG_LEVEL)
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed
/// when it is called.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
