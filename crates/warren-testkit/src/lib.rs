//! Test support shared by Warren's integration tests (never shipped).
//!
//! [`TestServer`] runs the real `warren` binary on a free loopback port with
//! its own data dir; [`read_log`] opens that data dir's event log once the
//! server is stopped; [`require`] decides what a missing peer means: a
//! failure under `CI=true` or `scripts/test`, a loud skip elsewhere,
//! recorded in [`SKIP_FILE_VAR`]'s file so a run's summary can count it.
//! [`services`] starts the real PostgreSQL and S3 (Garage) servers that
//! adapter suites run against; [`clickhouse`] a real ClickHouse cluster.

pub mod clickhouse;
pub mod services;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use warren_core::CapturedEvent;
use warren_log::{EventLog, LogRecord, SegmentLog, SegmentLogOptions};

pub const TOKEN: &str = "phc_testkit_project_token";
pub const API_KEY: &str = "phx_testkit_personal_api_key";

/// Whether a missing peer must fail the run: under CI, and under
/// `scripts/test`, which installs every peer first.
pub fn peers_required() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "true" || v == "1");
    set("CI") || set("TESTKIT_REQUIRE_PEERS")
}

/// The environment variable naming a file that gets one line per skipped
/// test (`<test>: <missing peer>`); `scripts/test` sets it and counts them.
/// A skipped test returns early, so cargo counts it as passed.
pub const SKIP_FILE_VAR: &str = "TESTKIT_SKIP_FILE";

/// Returns true when `available`; otherwise panics under CI, or prints a
/// loud skip notice, records the skip, and returns false. A test calls it
/// once and returns when it answers false.
pub fn require(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    if peers_required() {
        panic!("{what} is missing; scripts/setup-test-deps installs it");
    }
    eprintln!("\n!!! SKIPPED: {what} is missing (run scripts/setup-test-deps); CI would fail here !!!\n");
    record_skip(what);
    false
}

/// Appends the skip to the file of [`SKIP_FILE_VAR`], if set. The test
/// thread is named after the test (an async test's body runs on it too).
fn record_skip(what: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os(SKIP_FILE_VAR) else { return };
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let line = format!("{test}: {what} is missing\n");
    // One write of one short line to a file opened for appending: lines of
    // tests running at once do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| file.write_all(line.as_bytes()));
    if let Err(error) = written {
        eprintln!("could not record the skip in {}: {error}", Path::new(&path).display());
    }
}

/// A running `warren serve`.
pub struct TestServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    extra_env: Vec<(String, String)>,
    child: Option<Child>,
    pub url: String,
    /// What the last start printed before it listened (on a first start,
    /// where the credentials file is, never the secrets themselves).
    pub banner: Vec<String>,
}

impl TestServer {
    /// Starts `binary serve` on a fresh data dir with the testkit's token.
    pub fn start(binary: impl Into<PathBuf>) -> Self {
        Self::start_with_env(binary, &[])
    }

    /// As [`start`](Self::start), with extra `WARREN_*` settings.
    pub fn start_with_env(binary: impl Into<PathBuf>, env: &[(&str, &str)]) -> Self {
        Self::start_in(binary, tempfile::tempdir().expect("temp dir"), env)
    }

    /// As [`start_with_env`](Self::start_with_env), on `dir` as it is (a
    /// restored data dir, say).
    pub fn start_in(binary: impl Into<PathBuf>, dir: tempfile::TempDir, env: &[(&str, &str)]) -> Self {
        let mut server = Self {
            binary: binary.into(),
            dir,
            extra_env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            child: None,
            url: String::new(),
            banner: Vec::new(),
        };
        server.launch();
        server
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the first start wrote to the data dir's credentials file, by
    /// name (`project_token`, `personal_api_key`, `dashboard_email`,
    /// `dashboard_password`).
    pub fn first_start_credentials(&self) -> HashMap<String, String> {
        read_credentials(&self.dir.path().join(warren_core::FIRST_START_CREDENTIALS))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("server is running")
    }

    fn launch(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .args(["--bootstrap-project-token", TOKEN, "--bootstrap-api-key", API_KEY])
            .env("WARREN_LOG_LEVEL", std::env::var("WARREN_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            // Tests count what they sent; Warren's own events would join
            // them. The tests of self-monitoring turn it back on.
            .env("WARREN_SELF_MONITORING__ENABLED", "false")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("starting warren");
        let stdout = child.stdout.take().expect("stdout");
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix(warren_core::LISTENING_LINE) {
                    Some(url) => {
                        let _ = found.send((url.to_string(), std::mem::take(&mut banner)));
                    }
                    None => banner.push(line),
                }
            }
        });
        let (url, banner) = address
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("warren did not start listening; status {:?}", child.try_wait()));
        self.url = url;
        self.banner = banner;
        self.child = Some(child);
    }

    /// SIGTERM, then waits; asserts a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).expect("SIGTERM");
            let status = child.wait().expect("wait");
            assert!(status.success(), "warren exited with {status} after SIGTERM");
        }
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets a `WARREN_*` variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != key);
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    /// Starts the server again on the same data dir (a new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.launch();
    }

    /// Every record of the event log, in partition then offset order.
    /// The server must be stopped.
    pub fn read_log(&self) -> Vec<CapturedEvent> {
        assert!(self.child.is_none(), "stop the server before reading its log");
        read_log(&self.dir.path().join("log"))
            .into_iter()
            .map(|record| serde_json::from_slice(&record.value).expect("log record is a CapturedEvent"))
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a first-start credentials file: `name = "value"` lines, values in
/// JSON's (and TOML's) string syntax, `#` comments.
pub fn read_credentials(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the credentials file {}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (name, value) =
                line.split_once(" = ").unwrap_or_else(|| panic!("not `name = value`: {line}"));
            let value: String =
                serde_json::from_str(value).unwrap_or_else(|e| panic!("{name}: not a string ({e}): {value}"));
            (name.to_string(), value)
        })
        .collect()
}

/// Opens the segment log at `dir` and reads every record. Runs on a thread
/// of its own, so it can be called from sync and async tests alike.
pub fn read_log(dir: &Path) -> Vec<LogRecord> {
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let log = SegmentLog::open(SegmentLogOptions::new(&dir)).expect("open event log");
            let mut out = Vec::new();
            for partition in 0..log.partitions() {
                out.extend(warren_log::read_partition(&log, partition).await.expect("read"));
            }
            log.close().await.expect("close");
            out
        })
    })
    .join()
    .expect("reading the log")
}
