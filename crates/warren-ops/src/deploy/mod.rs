//! `warren deploy`: the files that run Warren somewhere — Kubernetes
//! manifests per cloud, systemd units, a compose file, cloud-init user
//! data. Each writer turns a [`Plan`] into named files; nothing here talks
//! to a cluster or a machine, so every artefact can be read, diffed and
//! validated offline before it is applied.
//!
//! Two shapes exist today. `all-in-one` is one process with every role on
//! a volume. `roles` runs the writer (capture and ingest, which share the
//! embedded event log and so one volume) apart from a fleet of query
//! processes reading the shared stores: PostgreSQL, S3 and, when
//! configured, a ClickHouse cluster, which is always referenced, never
//! deployed here.

mod cloud_init;
mod compose;
mod kubernetes;
mod systemd;

pub use cloud_init::cloud_init;
pub use compose::compose;
pub use kubernetes::{kubernetes, Cloud, KubernetesPlan};
pub use systemd::{systemd_units, SystemdPlan};

/// One written artefact: a file name and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artefact {
    pub name: String,
    pub text: String,
}

impl Artefact {
    fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { name: name.into(), text: text.into() }
    }
}

/// Which processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One process, every role, one volume.
    AllInOne,
    /// The writer (capture + ingest) on its volume, query processes apart.
    Roles,
}

/// Resources for one process, from a size profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Small,
    Medium,
    Large,
}

/// What a size profile gives each process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u32,
    pub memory_mib: u64,
    pub volume_gib: u64,
    /// `[query] memory_limit_mb`: half the memory, leaving the rest to
    /// ingest's batches, capture's buffers and the page cache.
    pub query_memory_mb: u64,
}

impl Size {
    pub fn resources(self) -> Resources {
        let (cpus, memory_mib, volume_gib) = match self {
            Size::Small => (2, 4096, 50),
            Size::Medium => (4, 16384, 200),
            Size::Large => (8, 32768, 1000),
        };
        Resources { cpus, memory_mib, volume_gib, query_memory_mb: memory_mib / 2 }
    }
}

/// Where the shared stores are, for the `roles` shape and any deployment
/// that uses them. Secrets (passwords, keys) never go here: the writers
/// take them from a Secret, an environment file or a credentials file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExternalStores {
    /// `s3://bucket/prefix` for the events table.
    pub event_store_url: Option<String>,
    /// `s3://bucket/prefix` for session recordings.
    pub recordings_url: Option<String>,
}

/// The `warren.toml` a deployed process reads. Settings that hold secrets
/// come from the environment (`WARREN_META_URL`, `WARREN_CLICKHOUSE__URL`,
/// `WARREN_EVENT_STORE__STORAGE_OPTIONS__…`), never from this file.
/// With `admin` (an address), `/metrics` and the probes are served there,
/// kept off the public listener.
pub(crate) fn config_file(
    data_dir: &str,
    role: &str,
    resources: Resources,
    stores: &ExternalStores,
    admin: Option<&str>,
) -> String {
    let mut text = format!(
        "# Written by `warren deploy`; see docs/configuration.md for every setting.\n\
         role = \"{role}\"\n\
         listen = \"0.0.0.0:8000\"\n\
         data_dir = \"{data_dir}\"\n\
         log_format = \"json\"\n"
    );
    if let Some(admin) = admin {
        text.push_str(&format!("\n[http]\nadmin_listen = \"{admin}\"\n"));
    }
    text.push_str(&format!("\n[query]\nmemory_limit_mb = {}\n", resources.query_memory_mb));
    if let Some(url) = &stores.event_store_url {
        text.push_str(&format!("\n[event_store]\nurl = \"{url}\"\n"));
    }
    if let Some(url) = &stores.recordings_url {
        text.push_str(&format!("\n[recordings]\nurl = \"{url}\"\n"));
    }
    text
}

/// YAML for a value, as the writers emit documents.
pub(crate) fn yaml(value: &serde_json::Value) -> String {
    // Serialising a JSON value to YAML cannot fail: every key is a string.
    yaml_serde::to_string(value).unwrap_or_default()
}

/// Several YAML documents in one file.
pub(crate) fn documents(values: &[serde_json::Value]) -> String {
    values.iter().map(yaml).collect::<Vec<_>>().join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_parses_and_keeps_secrets_out() {
        let stores = ExternalStores {
            event_store_url: Some("s3://events/warren".into()),
            recordings_url: Some("s3://recordings/warren".into()),
        };
        let text =
            config_file("/var/lib/warren", "query", Size::Medium.resources(), &stores, Some("0.0.0.0:9090"));
        let config: warren_core::config::WarrenConfig =
            toml_value(&text).expect("the written warren.toml is a valid configuration");
        assert_eq!(config.role, warren_core::config::Role::Query);
        assert_eq!(config.query.memory_limit_mb, 8192);
        assert_eq!(config.event_store.url.as_deref(), Some("s3://events/warren"));
        assert_eq!(config.http.admin_listen.as_deref(), Some("0.0.0.0:9090"));
        assert!(config.meta_url.is_none(), "secrets come from the environment");
    }

    fn toml_value(text: &str) -> Result<warren_core::config::WarrenConfig, String> {
        // The same rules as the binary's loader: defaults, then the file.
        use figment::providers::{Format, Serialized, Toml};
        figment::Figment::from(Serialized::defaults(warren_core::config::WarrenConfig::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|error| error.to_string())
    }
}
