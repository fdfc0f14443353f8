//! `warren doctor`: checks the deployment this configuration describes and
//! prints each finding with its severity and fix (`warren_ops::doctor`).
//! Exits 1 when something is critical, so scripts and CI can gate on it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use warren_core::config::WarrenConfig;
use warren_ops::doctor::{self, Examination, Finding, Report, Severity};

/// Which deployment a command examines: the doctor's, the support
/// bundle's and the upgrade check's arguments.
#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// A running process to examine (its public or admin address); repeat
    /// for each process. Without one, the configuration's own address is
    /// tried, and a deployment that does not answer is examined as stopped.
    #[arg(long = "url")]
    urls: Vec<String>,
    /// The data dir to examine (the configuration's when unset).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How long each store and process may take to answer.
    #[arg(long, default_value_t = 10)]
    timeout_secs: u64,
}

impl DeploymentArgs {
    /// Applies the data dir to `config`; the processes to examine and the
    /// timeout.
    pub async fn resolve(self, config: &mut WarrenConfig) -> (Vec<String>, Duration) {
        if let Some(dir) = self.data_dir {
            config.data_dir = dir;
        }
        let timeout = Duration::from_secs(self.timeout_secs.max(1));
        let processes =
            if self.urls.is_empty() { answering_default(config, timeout).await } else { self.urls };
        (processes, timeout)
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    deployment: DeploymentArgs,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The worst severity found.
pub async fn run(config_path: Option<PathBuf>, args: DoctorArgs) -> anyhow::Result<Severity> {
    let report = match crate::config::load(config_path.as_deref()) {
        Ok(mut config) => {
            let (processes, timeout) = args.deployment.resolve(&mut config).await;
            doctor::examine(&Examination { config: &config, processes, timeout }).await
        }
        // A configuration that does not load is the finding; nothing else
        // can be checked without it.
        Err(error) => Report {
            warren_version: env!("CARGO_PKG_VERSION").to_string(),
            findings: vec![Finding::new("config.load", Severity::Critical, format!("{error:#}"))
                .fix("correct the file or environment variable it names (docs/configuration.md)")],
        },
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(report.worst())
}

/// The configuration's admin (else public) address, if Warren answers
/// there.
async fn answering_default(config: &WarrenConfig, timeout: Duration) -> Vec<String> {
    let address = config.http.admin_listen.as_deref().unwrap_or(&config.listen);
    // A wildcard listener answers on loopback.
    let address = address.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]");
    let url = format!("http://{address}");
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap_or_default();
    // Only Warren answers its liveness probe with a success; another
    // service on the port is not taken for a running deployment.
    match client.get(format!("{url}/_liveness")).send().await {
        Ok(answer) if answer.status().is_success() => vec![url],
        _ => Vec::new(),
    }
}

pub fn print(report: &Report) {
    println!("warren doctor {}", report.warren_version);
    for finding in &report.findings {
        let mark = match finding.severity {
            Severity::Ok => "ok      ",
            Severity::Info => "info    ",
            Severity::Warning => "WARNING ",
            Severity::Critical => "CRITICAL",
        };
        println!("{mark} {:<24} {}", finding.check, finding.summary);
        if let Some(fix) = &finding.fix {
            println!("{:<34}fix: {fix}", "");
        }
    }
    let count = |severity| report.findings.iter().filter(|f| f.severity == severity).count();
    println!(
        "{} critical, {} warnings, {} notes, {} fine",
        count(Severity::Critical),
        count(Severity::Warning),
        count(Severity::Info),
        count(Severity::Ok)
    );
}
