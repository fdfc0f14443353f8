//! `warren migrate status|up|down`: the schema of every store this
//! configuration names — the meta store (forward only, applied by sqlx)
//! and the ClickHouse cluster (operation by operation, resumable).

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use warren_store::migrations::OperationStatus;
use warren_store::{ClickHouseStore, ClickHouseStoreOptions};

use crate::config;

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The data dir whose stores to migrate (the configuration's when unset).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: MigrateAction,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Every migration of every store, and where it stands.
    Status,
    /// Applies what is pending; Ctrl-C stops after the operation running,
    /// and the next `up` goes on from there.
    Up,
    /// Undoes the ClickHouse migrations after `--to` (the meta store's
    /// migrations are forward only).
    Down {
        #[arg(long)]
        to: u32,
    },
}

pub async fn run(config_path: Option<PathBuf>, args: MigrateArgs) -> anyhow::Result<()> {
    let mut config = config::load(config_path.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let meta = match args.action {
        MigrateAction::Status => warren_node::adapters::connect_meta(&config).await?,
        // Opening the meta store applies its migrations.
        MigrateAction::Up | MigrateAction::Down { .. } => warren_node::adapters::open_meta(&config).await?,
    };
    let clickhouse = match ClickHouseStoreOptions::from_config(&config.clickhouse)? {
        // After a reshard, the layout in use rather than the one it left
        // (which may be dropped).
        Some(options) => Some(ClickHouseStore::connect(options.in_use(meta.as_ref()).await?, meta.clone())?),
        None => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping after the operation that is running");
            on_signal.store(true, Ordering::SeqCst);
        }
    });
    let progress = |op: &OperationStatus| {
        println!(
            "  {} {} #{} {}: {}",
            op.version,
            op.migration,
            op.operation,
            op.description,
            op.state.as_str()
        );
        if stop.load(Ordering::SeqCst) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    match args.action {
        MigrateAction::Status => {
            println!("meta store:");
            let migrations = meta.migration_status().await?;
            for migration in &migrations {
                println!("  {} {}: {:?}", migration.version, migration.description, migration.state);
            }
            let meta_current = migrations.iter().all(|m| m.state == warren_meta::MigrationState::Applied);
            if let (Some(store), false) = (&clickhouse, meta_current) {
                println!(
                    "clickhouse ({}): its state is kept in the meta store; `warren migrate up` first",
                    store_name(store)
                );
            } else if let Some(store) = &clickhouse {
                println!("clickhouse ({}):", store_name(store));
                for op in store.migrator().status().await? {
                    let error = op.error.as_deref().map(|e| format!(" — {e}")).unwrap_or_default();
                    println!(
                        "  {} {} #{} {}: {}{error}",
                        op.version,
                        op.migration,
                        op.operation,
                        op.description,
                        op.state.as_str()
                    );
                }
            }
        }
        MigrateAction::Up => {
            println!("meta store: up to date");
            if let Some(store) = &clickhouse {
                println!("clickhouse ({}):", store_name(store));
                let done = store.migrator().up(progress).await.context("a ClickHouse migration failed")?;
                println!("clickhouse: {done} operations applied");
            }
        }
        MigrateAction::Down { to } => {
            let store = clickhouse.as_ref().context("no ClickHouse cluster configured ([clickhouse] url)")?;
            println!("clickhouse ({}): down to version {to}", store_name(store));
            let undone = store.migrator().down(to, progress).await.context("a ClickHouse rollback failed")?;
            println!("clickhouse: {undone} operations rolled back");
        }
    }
    Ok(())
}

fn store_name(store: &ClickHouseStore) -> String {
    let url = store.url();
    format!("{} on cluster {}", url.database, url.cluster)
}
