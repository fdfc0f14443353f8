//! `warren deploy kubernetes|systemd|compose|cloud-init`: writes the files
//! that run Warren on a target (`warren_ops::deploy` makes them) into a
//! directory, for people to read and apply.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use warren_ops::deploy::{self, Artefact, Cloud, ExternalStores, KubernetesPlan, Shape, Size, SystemdPlan};

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Kubernetes manifests for a cloud (plain YAML, applied in file order).
    Kubernetes {
        #[arg(long, value_enum)]
        cloud: CloudArg,
        #[arg(long, default_value = "warren")]
        namespace: String,
        /// The container image to run.
        #[arg(long, default_value = concat!("warren:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Query processes to start with (roles shape); the autoscaler
        /// goes up to four times as many.
        #[arg(long, default_value_t = 2)]
        query_replicas: u32,
        /// Load balancers on the private network only.
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// systemd units, the configuration and the user they run as.
    Systemd {
        /// Where the binary is installed on the machine.
        #[arg(long, default_value = "/usr/local/bin/warren")]
        binary: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A compose file with PostgreSQL and an S3 server beside Warren.
    Compose {
        #[arg(long, default_value = concat!("warren:", env!("CARGO_PKG_VERSION")))]
        image: String,
        #[arg(long, value_enum, default_value_t = SizeArg::Small)]
        size: SizeArg,
        #[arg(long, default_value = "deploy")]
        out: PathBuf,
    },
    /// cloud-init user data for one VM running every role.
    CloudInit {
        /// Where the VM downloads the `warren` binary from.
        #[arg(long)]
        binary_url: String,
        /// The binary's SHA-256, checked before it runs.
        #[arg(long)]
        binary_sha256: Option<String>,
        #[arg(long, value_enum, default_value_t = SizeArg::Small)]
        size: SizeArg,
        #[arg(long, default_value = "deploy")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    #[arg(long, value_enum, default_value_t = ShapeArg::AllInOne)]
    shape: ShapeArg,
    /// Resources per process: small (2 CPUs, 4 GiB), medium (4, 16 GiB),
    /// large (8, 32 GiB).
    #[arg(long, value_enum, default_value_t = SizeArg::Small)]
    size: SizeArg,
    /// The events table's S3 URL (`s3://bucket/prefix`); required for the
    /// roles shape, whose processes share it.
    #[arg(long)]
    event_store_url: Option<String>,
    /// Session recordings' S3 URL.
    #[arg(long)]
    recordings_url: Option<String>,
    /// The directory to write into.
    #[arg(long, default_value = "deploy")]
    out: PathBuf,
}

impl CommonArgs {
    fn stores(&self) -> anyhow::Result<ExternalStores> {
        let shape = Shape::from(self.shape);
        anyhow::ensure!(
            shape == Shape::AllInOne || self.event_store_url.is_some(),
            "the roles shape shares the events table between processes: give --event-store-url s3://…"
        );
        Ok(ExternalStores {
            event_store_url: self.event_store_url.clone(),
            recordings_url: self.recordings_url.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CloudArg {
    Aws,
    Gcp,
    Azure,
    Digitalocean,
    Ibm,
    Metal,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShapeArg {
    AllInOne,
    Roles,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SizeArg {
    Small,
    Medium,
    Large,
}

impl From<CloudArg> for Cloud {
    fn from(arg: CloudArg) -> Self {
        match arg {
            CloudArg::Aws => Cloud::Aws,
            CloudArg::Gcp => Cloud::Gcp,
            CloudArg::Azure => Cloud::Azure,
            CloudArg::Digitalocean => Cloud::DigitalOcean,
            CloudArg::Ibm => Cloud::Ibm,
            CloudArg::Metal => Cloud::Metal,
        }
    }
}

impl From<ShapeArg> for Shape {
    fn from(arg: ShapeArg) -> Self {
        match arg {
            ShapeArg::AllInOne => Shape::AllInOne,
            ShapeArg::Roles => Shape::Roles,
        }
    }
}

impl From<SizeArg> for Size {
    fn from(arg: SizeArg) -> Self {
        match arg {
            SizeArg::Small => Size::Small,
            SizeArg::Medium => Size::Medium,
            SizeArg::Large => Size::Large,
        }
    }
}

pub fn run(command: DeployCommand) -> anyhow::Result<()> {
    let (files, out) = match command {
        DeployCommand::Kubernetes { cloud, namespace, image, query_replicas, internal, common } => {
            let plan = KubernetesPlan {
                cloud: cloud.into(),
                shape: common.shape.into(),
                size: common.size.into(),
                namespace,
                image,
                query_replicas,
                internal,
                stores: common.stores()?,
            };
            (deploy::kubernetes(&plan), common.out)
        }
        DeployCommand::Systemd { binary, common } => {
            let plan = SystemdPlan {
                shape: common.shape.into(),
                size: common.size.into(),
                binary,
                stores: common.stores()?,
            };
            (deploy::systemd_units(&plan), common.out)
        }
        DeployCommand::Compose { image, size, out } => (deploy::compose(&image, size.into()), out),
        DeployCommand::CloudInit { binary_url, binary_sha256, size, out } => {
            // Both go into the install script's quotes.
            anyhow::ensure!(
                !binary_url.contains(['\'', '\n']) && binary_url.contains("://"),
                "--binary-url must be a URL without quotes"
            );
            if let Some(sha) = &binary_sha256 {
                anyhow::ensure!(
                    sha.len() == 64 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                    "--binary-sha256 must be the 64 hex digits `sha256sum` prints"
                );
            }
            let data = deploy::cloud_init(
                &binary_url,
                binary_sha256.as_deref(),
                size.into(),
                &ExternalStores::default(),
            );
            (vec![data], out)
        }
    };
    write(&out, &files)
}

fn write(out: &Path, files: &[Artefact]) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for file in files {
        let path = out.join(&file.name);
        std::fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
