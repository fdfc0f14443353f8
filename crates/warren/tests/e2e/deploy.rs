//! `warren deploy`'s artefacts, each checked by its target's own validator:
//! Kubernetes manifests for every cloud and shape against the schemas of
//! each supported Kubernetes version (kubernetes-validate, strict), systemd
//! units with `systemd-analyze verify`, the compose file against the
//! compose specification's schema, user data with `cloud-init schema`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{repo_root, BIN};

/// The Kubernetes versions the manifests are written for.
const KUBERNETES_VERSIONS: [&str; 7] = ["1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"];
const CLOUDS: [&str; 6] = ["aws", "gcp", "azure", "digitalocean", "ibm", "metal"];

fn deploy(args: &[&str], out: &Path) {
    let output =
        Command::new(BIN).arg("deploy").args(args).arg("--out").arg(out).output().expect("run warren");
    assert!(output.status.success(), "warren deploy {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Runs a validator; it must exit 0 and, when `quiet`, print nothing on
/// stderr (systemd-analyze warns about unknown keys without failing).
fn validate(program: &Path, args: &[&str], files: &[PathBuf], quiet: bool) {
    let output = Command::new(program).args(args).args(files).output().expect("run the validator");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && (!quiet || stderr.trim().is_empty()),
        "{} {args:?} refused:\n{}\n{stderr}",
        program.display(),
        String::from_utf8_lossy(&output.stdout)
    );
}

fn tool(path: PathBuf, what: &str) -> Option<PathBuf> {
    warren_testkit::require(path.exists(), what).then_some(path)
}

fn on_path(name: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| name.into())
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("read dir").map(|entry| entry.expect("entry").path()).collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_for_every_cloud_shape_and_version() {
    let Some(validator) =
        tool(repo_root().join(".venv/bin/kubernetes-validate"), "kubernetes-validate (PyPI)")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let mut manifests = Vec::new();
    for cloud in CLOUDS {
        for (shape, extra) in
            [("all-in-one", &[][..]), ("roles", &["--event-store-url", "s3://events/warren"][..])]
        {
            let out = dir.path().join(format!("{cloud}-{shape}"));
            let mut args = vec!["kubernetes", "--cloud", cloud, "--shape", shape, "--size", "medium"];
            args.extend_from_slice(extra);
            deploy(&args, &out);
            manifests.extend(files_in(&out));
        }
    }
    assert_eq!(manifests.len(), CLOUDS.len() * (2 + 4), "two files all-in-one, four with roles");
    for version in KUBERNETES_VERSIONS {
        validate(&validator, &["--strict", "--quiet", "-k", version], &manifests, false);
    }

    // The validator is not a rubber stamp: a field no version knows fails.
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&manifests[1]).expect("read").replace("replicas: 1", "replica: 1");
    std::fs::write(&broken, text).expect("write");
    let refused =
        Command::new(&validator).args(["--strict", "--quiet", "-k", "1.37.0"]).arg(&broken).output();
    assert!(!refused.expect("run").status.success(), "a misspelt field must be refused");
}

#[test]
fn the_roles_shape_needs_the_shared_events_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BIN)
        .args(["deploy", "kubernetes", "--cloud", "aws", "--shape", "roles", "--out"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--event-store-url"));
}

#[test]
fn systemd_units_verify() {
    let Some(analyze) = tool(on_path("systemd-analyze"), "systemd-analyze (Debian's systemd)") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    // The units name the real binary: systemd-analyze checks it exists.
    let binary = std::fs::canonicalize(BIN).expect("binary");
    let binary = binary.to_str().expect("UTF-8 path");
    for shape in ["all-in-one", "roles"] {
        let out = dir.path().join(shape);
        deploy(
            &["systemd", "--shape", shape, "--event-store-url", "s3://events/warren", "--binary", binary],
            &out,
        );
        let mut units: Vec<PathBuf> =
            files_in(&out).into_iter().filter(|p| p.extension().is_some_and(|e| e == "service")).collect();
        // A template is verified as one of its instances.
        for unit in units.iter_mut() {
            if unit.to_string_lossy().ends_with("@.service") {
                let instance = unit.with_file_name("warren-query@8001.service");
                std::fs::copy(&*unit, &instance).expect("copy");
                *unit = instance;
            }
        }
        assert_eq!(units.len(), if shape == "roles" { 2 } else { 1 });
        validate(&analyze, &["verify"], &units, true);
    }
}

#[test]
fn the_compose_file_matches_the_compose_specification() {
    let Some(checker) = tool(repo_root().join(".venv/bin/check-jsonschema"), "check-jsonschema (PyPI)")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    deploy(&["compose", "--size", "medium"], dir.path());
    validate(
        &checker,
        &["--builtin-schema", "vendor.compose-spec"],
        &[dir.path().join("compose.yaml")],
        false,
    );
}

#[test]
fn cloud_init_user_data_matches_its_schema() {
    let Some(cloud_init) = tool(on_path("cloud-init"), "cloud-init (Debian)") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    deploy(
        &[
            "cloud-init",
            "--binary-url",
            "https://downloads.example/warren",
            "--binary-sha256",
            &"0".repeat(64),
        ],
        dir.path(),
    );
    validate(&cloud_init, &["schema", "--config-file"], &[dir.path().join("user-data.yaml")], false);

    // What goes into the install script's quotes is checked first.
    let good = "https://downloads.example/warren";
    for (url, sha) in [(good, "abc'; reboot; '"), ("https://x/'a", "0")] {
        let sha = if sha == "0" { "0".repeat(64) } else { sha.to_string() };
        let refused = Command::new(BIN)
            .args(["deploy", "cloud-init", "--binary-url", url, "--binary-sha256", &sha, "--out"])
            .arg(dir.path())
            .output()
            .expect("run");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && said.contains("must be"), "{url} {sha}: {said}");
    }
}
