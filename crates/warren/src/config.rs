//! Loading [`WarrenConfig`]: defaults, then `warren.toml`, then `WARREN_*`
//! environment variables (`__` separates sections), then flags.

use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use warren_core::config::WarrenConfig;

pub fn load(file: Option<&Path>) -> anyhow::Result<WarrenConfig> {
    let mut figment = Figment::from(Serialized::defaults(WarrenConfig::default()));
    if let Some(path) = file_to_read(file)? {
        figment = figment.merge(Toml::file(path));
    }
    with_environment(figment)
}

/// As [`load`], leaving out the file's keys this build does not know, which
/// it returns (`warren upgrade check` reports them; `load` refuses them).
pub fn load_lenient(file: Option<&Path>) -> anyhow::Result<(WarrenConfig, Vec<String>)> {
    let mut figment = Figment::from(Serialized::defaults(WarrenConfig::default()));
    let mut unknown = Vec::new();
    if let Some(path) = file_to_read(file)? {
        let mut raw: serde_json::Value = Figment::from(Toml::file(&path))
            .extract()
            .with_context(|| format!("reading {}", path.display()))?;
        unknown = warren_ops::upgrade::remove_unknown_keys(&mut raw);
        figment = figment.merge(Serialized::defaults(raw));
    }
    Ok((with_environment(figment)?, unknown))
}

/// The file given, or `warren.toml` in the working directory if present.
fn file_to_read(file: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match file {
        Some(path) => {
            anyhow::ensure!(path.exists(), "configuration file {} does not exist", path.display());
            Ok(Some(path.to_path_buf()))
        }
        None => Ok(Some(PathBuf::from("warren.toml")).filter(|default| default.exists())),
    }
}

fn with_environment(figment: Figment) -> anyhow::Result<WarrenConfig> {
    for name in unknown_environment_keys() {
        eprintln!("warning: ignoring environment variable {name}: not a Warren setting");
    }
    figment
        .merge(Env::prefixed("WARREN_").split("__").filter(|key| is_setting(key.as_str())))
        .extract()
        .context("invalid configuration")
}

/// Whether `WARREN_<key>` names a setting: its section (before any `__`)
/// is a top-level key. Keys inside a section are checked strictly by the
/// config structs, so a typo there is an error.
fn is_setting(key: &str) -> bool {
    // figment hands the filter `section.key`; the raw name has `section__key`.
    let section = key.split("__").next().and_then(|k| k.split('.').next()).unwrap_or_default();
    let section = section.to_ascii_lowercase();
    top_level_keys().contains(&section)
}

/// The sections and top-level settings, read off the config struct itself
/// so a new section needs no second list.
fn top_level_keys() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| match serde_json::to_value(WarrenConfig::default()) {
        Ok(serde_json::Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    })
}

fn unknown_environment_keys() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.strip_prefix("WARREN_").is_some_and(|key| key != "CONFIG" && !is_setting(key)))
        .collect()
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
    fn unrelated_environment_is_ignored_but_typos_in_sections_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("WARREN_SOMETHING_ELSE", "1");
            jail.set_env("WARREN_CAPTURE__MAX_BATCH_BYTES", "1000");
            let config = load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.capture.max_batch_bytes, 1000);
            jail.set_env("WARREN_CAPTURE__MAX_BATCH_BYTEZ", "1000");
            assert!(load(None).is_err(), "a typo inside a section is an error");
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

    #[test]
    fn object_store_options_are_text_however_they_are_written() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("warren.toml", "[event_store.storage_options]\naws_allow_http = true\n")?;
            jail.set_env("WARREN_BACKUP__STORAGE_OPTIONS__AWS_ALLOW_HTTP", "true");
            jail.set_env("WARREN_BACKUP__STORAGE_OPTIONS__AWS_ENDPOINT", "http://127.0.0.1:3900");
            let config = load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.event_store.storage_options["aws_allow_http"], "true");
            assert_eq!(config.backup.storage_options["aws_allow_http"], "true");
            assert_eq!(config.backup.storage_options["aws_endpoint"], "http://127.0.0.1:3900");
            Ok(())
        });
    }
}
