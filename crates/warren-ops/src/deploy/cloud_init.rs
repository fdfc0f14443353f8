//! cloud-init user data for one VM: installs the binary (checked against
//! its SHA-256 when given), writes the all-in-one systemd unit and
//! configuration of [`super::systemd_units`], and starts Warren.

use serde_json::json;

use super::{yaml, Artefact, ExternalStores, Shape, Size, SystemdPlan};

const BINARY: &str = "/usr/local/bin/warren";

/// `user-data.yaml` for a VM that downloads the binary from `binary_url`.
pub fn cloud_init(
    binary_url: &str,
    binary_sha256: Option<&str>,
    size: Size,
    stores: &ExternalStores,
) -> Artefact {
    let plan = SystemdPlan { shape: Shape::AllInOne, size, binary: BINARY.into(), stores: stores.clone() };
    let units = super::systemd_units(&plan);
    let file = |name: &str| units.iter().find(|a| a.name == name).map(|a| a.text.clone()).unwrap_or_default();
    // runcmd runs as one shell script without `set -e`: the whole install
    // is one command that stops at the first failure, a wrong checksum
    // among them, before anything is started.
    let download = format!("{BINARY}.download");
    let mut steps = vec![format!("curl -fsSL --retry 5 -o {download} '{binary_url}'")];
    if let Some(sha) = binary_sha256 {
        steps.push(format!("echo '{sha}  {download}' | sha256sum -c -"));
    }
    steps.extend([
        format!("install -m 0755 {download} {BINARY}"),
        format!("rm -f {download}"),
        "systemd-sysusers /etc/sysusers.d/warren.conf".to_string(),
        "systemctl daemon-reload".to_string(),
        "systemctl enable --now warren.service".to_string(),
    ]);
    let install = vec![json!(["sh", "-c", format!("set -e; {}", steps.join("; "))])];
    let config = json!({
        "package_update": true,
        "packages": ["ca-certificates", "curl"],
        "write_files": [
            {"path": "/etc/warren/warren.toml", "permissions": "0644", "content": file("warren.toml")},
            {"path": "/etc/systemd/system/warren.service", "permissions": "0644", "content": file("warren.service")},
            {"path": "/etc/sysusers.d/warren.conf", "permissions": "0644", "content": file("warren.sysusers.conf")},
        ],
        "runcmd": install,
    });
    Artefact::new("user-data.yaml", format!("#cloud-config\n{}", yaml(&config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_checked_before_it_runs() {
        let data = cloud_init(
            "https://example.invalid/warren",
            Some("ab12"),
            Size::Small,
            &ExternalStores::default(),
        );
        assert!(data.text.starts_with("#cloud-config\n"));
        let parsed: serde_json::Value = yaml_serde::from_str(&data.text).expect("YAML");
        let script = parsed["runcmd"][0][2].as_str().expect("one install script");
        assert!(script.starts_with("set -e; "), "stops at the first failure: {script}");
        let check = script.find("sha256sum -c").expect("the checksum is checked");
        let start = script.find("enable --now warren.service").expect("the service starts");
        assert!(check < start, "before the binary runs: {script}");
    }
}
