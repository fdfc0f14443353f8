//! Real services for tests: PostgreSQL and Garage (S3) — ClickHouse has its
//! own module — started on free
//! loopback ports in throwaway directories, one per test binary, and stopped
//! by a watchdog when the test process exits (statics are never dropped).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::require;

/// A loopback port nobody listens on right now, below the kernel's
/// ephemeral range (32768 and up): a service the tests stop and start
/// again on its port must not find it taken meanwhile as the local port of
/// some client's connection, which the kernel picks from that range.
///
/// A port is handed out once per test process: a service that is stopped
/// and started again keeps its port free of the other services the same
/// binary starts meanwhile.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = rand::random_range(20_000..32_000);
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.push(port);
            return port;
        }
    }
}

pub(crate) fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Kills a service and removes `dir` once this test process is gone, so no
/// service outlives the tests that started it.
#[expect(clippy::zombie_processes, reason = "the watchdog must outlive this process; init reaps it")]
pub(crate) fn watchdog(kill_command: &str, dir: &Path) {
    let script = format!(
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; {kill_command}; sleep 1; rm -rf '{dir}'",
        parent = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog");
}

pub(crate) fn wait_for_port(port: u16, what: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on {port} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn running_as_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A PostgreSQL server from the distribution's packages.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    port: u16,
    data: PathBuf,
}

impl PostgresServer {
    /// The server this test binary shares, started on first use; `None`
    /// (after a loud message, for every test that asks, so each is counted
    /// as skipped) when PostgreSQL is not installed locally.
    pub fn shared() -> Option<&'static PostgresServer> {
        static SERVER: OnceLock<PostgresServer> = OnceLock::new();
        let bin = postgres_bin_dir();
        require(bin.is_some(), "PostgreSQL (Debian package postgresql)").then_some(())?;
        let bin = bin?;
        Some(SERVER.get_or_init(|| Self::start(bin)))
    }

    /// A server of the test's own, which it may stop; `None` as for
    /// [`shared`](Self::shared).
    pub fn own() -> Option<PostgresServer> {
        let bin = postgres_bin_dir();
        require(bin.is_some(), "PostgreSQL (Debian package postgresql)").then_some(())?;
        Some(Self::start(bin?))
    }

    /// Stops the server (a fast shutdown) and waits until its port is
    /// closed.
    pub fn stop(&self) {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("postmaster.pid");
        let pid: i32 = pid.lines().next().and_then(|line| line.trim().parse().ok()).expect("a pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGINT)
            .expect("SIGINT");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(std::time::Instant::now() < deadline, "PostgreSQL did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[expect(clippy::zombie_processes, reason = "runs until the watchdog stops it after the tests")]
    fn start(bin: PathBuf) -> Self {
        let dir = tempfile::Builder::new().prefix("warren-pg-").tempdir().expect("temp dir").keep();
        let port = free_port();
        let data = dir.join("data");
        if running_as_root() {
            // PostgreSQL refuses to run as root; the package's user owns it.
            run(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir), "chown pg dir");
        }
        let as_owner = |program: &Path| {
            if running_as_root() {
                let mut command = Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(program);
                command
            } else {
                Command::new(program)
            }
        };
        run(
            as_owner(&bin.join("initdb"))
                .args(["--auth=trust", "--username=warren", "--encoding=UTF8", "--no-sync", "-D"])
                .arg(&data),
            "initdb",
        );
        let log = std::fs::File::create(dir.join("postgres.log")).expect("pg log");
        if running_as_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(dir.join("postgres.log")), "chown log");
        }
        as_owner(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
            // Test databases are throwaway; skip the flushes that make a
            // real deployment crash-safe.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        watchdog(&format!("kill -QUIT $(head -1 '{}/postmaster.pid')", data.display()), &dir);
        wait_for_port(port, "PostgreSQL", Duration::from_secs(30));
        // The port opens before the server takes connections ("the
        // database system is starting up"), which `createdb` would fail on.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|status| status.success())
        {
            assert!(std::time::Instant::now() < deadline, "PostgreSQL did not accept connections");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { bin, port, data }
    }

    /// A new, empty database on the shared server, as a `postgres://` URL.
    pub fn fresh_database(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("warren_{}_{n}", std::process::id());
        let mut command = Command::new(self.bin.join("createdb"));
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "warren", &name]);
        run(&mut command, "createdb");
        format!("postgres://warren@127.0.0.1:{}/{name}", self.port)
    }
}

fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// A single-node Garage S3 server with one bucket and one key.
#[derive(Debug)]
pub struct GarageServer {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl GarageServer {
    /// The server this test binary shares, started on first use; `None`
    /// (after a loud message, for every test that asks, so each is counted
    /// as skipped) when `garage` is not installed locally.
    pub fn shared() -> Option<&'static GarageServer> {
        static SERVER: OnceLock<GarageServer> = OnceLock::new();
        let binary = garage_binary();
        require(binary.is_some(), "Garage (cargo install garage --locked)").then_some(())?;
        let binary = binary?;
        Some(SERVER.get_or_init(|| Self::start(&binary)))
    }

    #[expect(clippy::zombie_processes, reason = "runs until the watchdog stops it after the tests")]
    fn start(binary: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("warren-garage-").tempdir().expect("temp dir").keep();
        let (rpc, s3, admin) = (free_port(), free_port(), free_port());
        let secret: String = (0..32).map(|_| format!("{:02x}", rand::random::<u8>())).collect();
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
"#,
                dir = dir.display()
            ),
        )
        .expect("write garage.toml");
        let log = std::fs::File::create(dir.join("garage.log")).expect("garage log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start garage");
        watchdog(&format!("kill {}", child.id()), &dir);
        wait_for_port(s3, "Garage", Duration::from_secs(30));
        let cli = |args: &[&str]| {
            let mut command = Command::new(binary);
            command.arg("-c").arg(&config).args(args);
            run(&mut command, &format!("garage {}", args.join(" ")))
        };
        let node = retry(|| {
            let status = cli(&["node", "id", "-q"]);
            status.split('@').next().map(|id| id.trim().to_string()).filter(|id| !id.is_empty())
        });
        cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        cli(&["layout", "apply", "--version", "1"]);
        let bucket = "warren-test".to_string();
        retry(|| Some(cli(&["bucket", "create", &bucket])));
        let key = cli(&["key", "create", "warren-test-key"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|line| {
                    line.trim().strip_prefix(name).map(|rest| rest.trim_start_matches(':').trim().to_string())
                })
                .unwrap_or_else(|| panic!("no {name} in `garage key create` output:\n{key}"))
        };
        let (access_key_id, secret_access_key) = (field("Key ID"), field("Secret key"));
        cli(&["bucket", "allow", "--read", "--write", "--owner", &bucket, "--key", "warren-test-key"]);
        Self {
            endpoint: format!("http://127.0.0.1:{s3}"),
            region: "garage".into(),
            bucket,
            access_key_id,
            secret_access_key,
        }
    }
}

/// Garage answers its CLI only once its RPC layer is up.
fn retry<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut attempt));
        match outcome {
            Ok(Some(value)) => return value,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
            Ok(None) => panic!("Garage did not become ready"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

fn garage_binary() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin"));
    }
    candidates.into_iter().map(|dir| dir.join("garage")).find(|path| path.is_file())
}
