//! Loading [`WarrenConfig`]: defaults, then `warren.toml`, then `WARREN_*`
//! environment variables (`__` separates sections), then flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use warren_core::config::WarrenConfig;

pub fn load(file: Option<&Path>) -> anyhow::Result<WarrenConfig> {
    let mut figment = Figment::from(Serialized::defaults(WarrenConfig::default()));
    match file {
        Some(path) => {
            anyhow::ensure!(path.exists(), "configuration file {} does not exist", path.display());
            figment = figment.merge(Toml::file(path));
        }
        None => {
            let default = PathBuf::from("warren.toml");
            if default.exists() {
                figment = figment.merge(Toml::file(default));
            }
        }
    }
    figment
        .merge(Env::prefixed("WARREN_").split("__").ignore(&["config"]))
        .extract()
        .context("invalid configuration")
}

#[cfg(test)]
// figment's Jail closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "warren.toml",
                "listen = \"0.0.0.0:9000\"\n[event_log]\npartitions = 3\nsegment_bytes = 1000\n",
            )?;
            jail.set_env("WARREN_EVENT_LOG__PARTITIONS", "5");
            let config = load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.listen, "0.0.0.0:9000");
            assert_eq!(config.event_log.partitions, 5, "environment beats the file");
            assert_eq!(config.event_log.segment_bytes, 1000);
            assert_eq!(config.capture.max_batch_bytes, 20 * 1024 * 1024, "defaults fill the rest");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("warren.toml", "[event_log]\npartitons = 3\n")?;
            let error = load(None).err().map(|e| format!("{e:#}")).unwrap_or_default();
            assert!(error.contains("partitons"), "{error}");
            Ok(())
        });
    }
}
