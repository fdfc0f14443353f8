//! A real ClickHouse cluster for tests: one ZooKeeper and
//! `clickhouse-server` processes from Debian's packages — two shards of two
//! replicas each unless a test asks for another shape — every process on
//! its own loopback ports (HTTP, and HTTPS with a certificate of the
//! cluster's own authority) with its own data path and config file. Tests
//! that stop a replica or reshard start clusters of their own; the rest
//! share one per test binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::require;
use crate::services::{free_port, wait_for_port, watchdog};

/// The name of the cluster in every server's `remote_servers`.
pub const CLUSTER: &str = "warren";
/// The shape of the shared cluster and of [`ClickHouseCluster::start`]'s.
const SHARDS: usize = 2;
const REPLICAS: usize = 2;
/// Where Debian puts it.
const SERVER: &str = "/usr/sbin/clickhouse-server";
const ZOOKEEPER: &str = "/usr/share/zookeeper/bin/zkServer.sh";

/// One `clickhouse-server` of the cluster.
#[derive(Debug)]
pub struct ClickHouseNode {
    pub shard: usize,
    pub replica: usize,
    pub http_port: u16,
    /// HTTPS, with a certificate of the cluster's own authority.
    pub https_port: u16,
    config: PathBuf,
    process: Mutex<Option<Child>>,
}

impl ClickHouseNode {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }
}

/// Shards of replicas on one ZooKeeper; stopped when dropped (or, for the
/// shared one, when the test process exits).
#[derive(Debug)]
pub struct ClickHouseCluster {
    pub nodes: Vec<ClickHouseNode>,
    /// ZooKeeper's client port on 127.0.0.1.
    pub zookeeper_port: u16,
    dir: PathBuf,
    zookeeper: Mutex<Option<Child>>,
}

/// What a machine without the cluster's programs is told to install.
const MISSING: &str =
    "ClickHouse with ZooKeeper and openssl (Debian packages clickhouse-server, zookeeper, openssl)";

fn installed() -> bool {
    let openssl = Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    Path::new(SERVER).is_file() && Path::new(ZOOKEEPER).is_file() && openssl
}

impl ClickHouseCluster {
    /// The cluster this test binary shares, started on first use; `None`
    /// (after a loud message, for every test that asks, so each is counted
    /// as skipped) when ClickHouse or ZooKeeper is missing.
    pub fn shared() -> Option<&'static ClickHouseCluster> {
        static CLUSTER: OnceLock<Option<ClickHouseCluster>> = OnceLock::new();
        require(installed(), MISSING).then_some(())?;
        CLUSTER.get_or_init(Self::start).as_ref()
    }

    /// A cluster of the caller's own, two shards × two replicas, for tests
    /// that stop its servers.
    pub fn start() -> Option<ClickHouseCluster> {
        Self::start_shaped(SHARDS, REPLICAS)
    }

    /// A cluster of the caller's own of `shards` × `replicas` servers.
    /// Its nodes are listed shard by shard: node `s * replicas + r` is
    /// replica `r + 1` of shard `s + 1`.
    pub fn start_shaped(shards: usize, replicas: usize) -> Option<ClickHouseCluster> {
        require(installed(), MISSING).then_some(())?;
        let dir = tempfile::Builder::new().prefix("warren-clickhouse-").tempdir().expect("temp dir").keep();
        // Each process leaves its pid in `<dir>/<process>/*.pid`.
        watchdog(&format!("kill -9 $(cat '{}'/*/*.pid 2>/dev/null) 2>/dev/null", dir.display()), &dir);
        let zookeeper_port = free_port();
        let zookeeper = start_zookeeper(&dir, zookeeper_port);
        wait_for_port(zookeeper_port, "ZooKeeper", Duration::from_secs(60));

        let ports: Vec<(u16, u16, u16)> =
            (0..shards * replicas).map(|_| (free_port(), free_port(), free_port())).collect();
        let tls = make_certificates(&dir);
        let mut remote = String::new();
        for shard in 0..shards {
            remote.push_str("<shard><internal_replication>true</internal_replication>");
            for replica in 0..replicas {
                let (_, tcp, _) = ports[shard * replicas + replica];
                remote.push_str(&format!("<replica><host>127.0.0.1</host><port>{tcp}</port></replica>"));
            }
            remote.push_str("</shard>");
        }
        let users = dir.join("users.xml");
        std::fs::write(&users, USERS).expect("write users.xml");
        let mut nodes = Vec::new();
        for shard in 0..shards {
            for replica in 0..replicas {
                let (http, tcp, interserver) = ports[shard * replicas + replica];
                let https = free_port();
                let node_dir = dir.join(format!("s{}r{}", shard + 1, replica + 1));
                std::fs::create_dir_all(&node_dir).expect("node dir");
                let config = node_dir.join("config.xml");
                std::fs::write(
                    &config,
                    format!(
                        r#"<yandex>
  <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port><interserver_http_port>{interserver}</interserver_http_port>
  <https_port>{https}</https_port>
  <openSSL><server><certificateFile>{cert}</certificateFile><privateKeyFile>{key}</privateKeyFile>
    <verificationMode>none</verificationMode><loadDefaultCAFile>false</loadDefaultCAFile>
    <disableProtocols>sslv2,sslv3</disableProtocols></server></openSSL>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path><format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <mark_cache_size>134217728</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <remote_servers><{CLUSTER}>{remote}</{CLUSTER}></remote_servers>
  <zookeeper><node><host>127.0.0.1</host><port>{zookeeper_port}</port></node><session_timeout_ms>6000</session_timeout_ms></zookeeper>
  <macros><shard>{s}</shard><replica>s{s}r{r}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
</yandex>
"#,
                        d = node_dir.display(),
                        users = users.display(),
                        cert = tls.join("server.crt").display(),
                        key = tls.join("server.key").display(),
                        s = shard + 1,
                        r = replica + 1,
                    ),
                )
                .expect("write config.xml");
                nodes.push(ClickHouseNode {
                    shard: shard + 1,
                    replica: replica + 1,
                    http_port: http,
                    https_port: https,
                    config,
                    process: Mutex::new(None),
                });
            }
        }
        let cluster =
            ClickHouseCluster { nodes, zookeeper_port, dir, zookeeper: Mutex::new(Some(zookeeper)) };
        for node in 0..cluster.nodes.len() {
            cluster.start_node(node);
        }
        Some(cluster)
    }

    /// Every server's HTTP address.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(ClickHouseNode::url).collect()
    }

    /// The `clickhouse://` URL of the whole cluster for `database`.
    pub fn url(&self, database: &str) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.http_port)).collect();
        format!("clickhouse://{}/{database}?cluster={CLUSTER}", hosts.join(","))
    }

    /// The `clickhouses://` (HTTPS) URL of the whole cluster for
    /// `database`, trusting the cluster's own certificate authority.
    pub fn https_url(&self, database: &str) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.https_port)).collect();
        let ca = self.dir.join("tls/ca.pem");
        format!("clickhouses://{}/{database}?cluster={CLUSTER}&ca={}", hosts.join(","), ca.display())
    }

    /// Kills one server outright, as a crashed machine would go.
    pub fn kill_node(&self, node: usize) {
        // A panic while starting may have poisoned the lock; the process
        // must go all the same.
        let mut process = self.nodes[node].process.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(mut child) = process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills one server, deletes everything it stored (tables, parts,
    /// metadata), and starts it again empty, as a machine whose disk was
    /// replaced comes back. ZooKeeper still knows its replicas.
    pub fn wipe_node(&self, node: usize) {
        self.kill_node(node);
        let data = self.nodes[node].config.with_file_name("data");
        std::fs::remove_dir_all(data).expect("remove the server's data");
        self.start_node(node);
    }

    /// Kills one server and starts a new, empty one in its place: same
    /// address and shard, a replica name ZooKeeper has never seen (the
    /// old name with `-new`), as a new machine replaces a lost one.
    pub fn replace_node(&self, node: usize) {
        self.kill_node(node);
        let config = &self.nodes[node].config;
        std::fs::remove_dir_all(config.with_file_name("data")).expect("remove the server's data");
        let (shard, replica) = (self.nodes[node].shard, self.nodes[node].replica);
        let old = format!("<replica>s{shard}r{replica}</replica>");
        let text = std::fs::read_to_string(config).expect("read config.xml");
        assert!(text.contains(&old), "node {node} was replaced already");
        let renamed = text.replace(&old, &format!("<replica>s{shard}r{replica}-new</replica>"));
        std::fs::write(config, renamed).expect("write config.xml");
        self.start_node(node);
    }

    /// Starts one server (again) and waits until it answers queries. A
    /// port the killed server held can take a moment to be free again, so
    /// a start refused with "Address already in use" is tried again.
    pub fn start_node(&self, node: usize) {
        const ATTEMPTS: u32 = 5;
        for attempt in 1..=ATTEMPTS {
            let logged = self.spawn_node(node);
            match wait_until_answering(&self.nodes[node], logged) {
                Ok(()) => return,
                Err((true, tail)) if attempt < ATTEMPTS && tail.contains("Address already in use") => {
                    self.kill_node(node);
                    std::thread::sleep(Duration::from_secs(2));
                }
                Err((_, tail)) => panic!("{tail}"),
            }
        }
    }

    /// Starts the server; returns the length its error log had before, so
    /// what this start logs can be told from earlier starts'.
    fn spawn_node(&self, node: usize) -> u64 {
        let node = &self.nodes[node];
        let logged = std::fs::metadata(node.config.with_file_name("error.log")).map_or(0, |meta| meta.len());
        let mut process = node.process.lock().expect("node lock");
        assert!(process.is_none(), "node s{}r{} is running", node.shard, node.replica);
        // A server killed mid-insert may hold parts ZooKeeper never heard
        // of, and then refuses to start ("suspicious" parts); the flag has
        // it set them aside and fetch from its replica, as an operator
        // recovering a crashed machine does (the server removes the flag).
        let flags = node.config.with_file_name("data").join("flags");
        std::fs::create_dir_all(&flags).expect("flags dir");
        std::fs::write(flags.join("force_restore_data"), b"").expect("force_restore_data flag");
        let log = std::fs::File::create(node.config.with_file_name("stdout.log")).expect("node log");
        let child = Command::new(SERVER)
            .arg(format!("--config-file={}", node.config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start clickhouse-server");
        std::fs::write(node.config.with_file_name("server.pid"), format!("{}\n", child.id()))
            .expect("pid file");
        *process = Some(child);
        logged
    }
}

impl Drop for ClickHouseCluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.kill_node(node);
        }
        if let Some(mut child) =
            self.zookeeper.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority (`tls/ca.pem`) and a server certificate it
/// signed for 127.0.0.1 (`tls/server.crt`, `tls/server.key`), made with
/// the `openssl` command.
fn make_certificates(dir: &Path) -> PathBuf {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    std::fs::write(
        tls.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n\
         keyUsage=digitalSignature,keyEncipherment\n",
    )
    .expect("write server.ext");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "7",
            "-subj",
            "/CN=warren-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "7",
            "-extfile",
            "server.ext",
        ],
    ];
    for args in steps {
        let output = Command::new("openssl").args(args).current_dir(&tls).output().expect("run openssl");
        assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    tls
}

fn start_zookeeper(dir: &Path, port: u16) -> Child {
    let zk = dir.join("zookeeper");
    std::fs::create_dir_all(zk.join("data")).expect("zookeeper dir");
    let config = zk.join("zoo.cfg");
    std::fs::write(
        &config,
        format!(
            "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             admin.enableServer=false\nmaxClientCnxns=0\n",
            zk.join("data").display()
        ),
    )
    .expect("write zoo.cfg");
    let log = std::fs::File::create(zk.join("zookeeper.log")).expect("zookeeper log");
    let child = Command::new(ZOOKEEPER)
        .arg("start-foreground")
        .arg(&config)
        .env("ZOO_LOG_DIR", &zk)
        .env("JVMFLAGS", "-Xmx256m")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start zookeeper");
    // `start-foreground` execs java, so this pid is ZooKeeper's own.
    std::fs::write(zk.join("zookeeper.pid"), format!("{}\n", child.id())).expect("pid file");
    child
}

/// Until `SELECT 1` answers over HTTP: the port opens before the server
/// has loaded its tables. Generous: eight servers starting at once on two
/// cores (a test's own cluster beside the shared one) take their time.
/// `Err((exited, tail))`: whether the server exited, and the end of what
/// it logged since `logged` bytes of its error log.
fn wait_until_answering(node: &ClickHouseNode, logged: u64) -> Result<(), (bool, String)> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if http_select_one(node.http_port) {
            return Ok(());
        }
        let exited = node
            .process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
            .is_some_and(|child| child.try_wait().is_ok_and(|status| status.is_some()));
        if exited || Instant::now() > deadline {
            let log = std::fs::read(node.config.with_file_name("error.log")).unwrap_or_default();
            let log = String::from_utf8_lossy(log.get(logged as usize..).unwrap_or_default());
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let what = if exited { "exited" } else { "did not answer within 180 s" };
            let message = format!(
                "clickhouse-server s{}r{} {what}; its error log ends:\n{}",
                node.shard,
                node.replica,
                tail.join("\n")
            );
            return Err((exited, message));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_select_one(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /?query=SELECT%201 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

const USERS: &str = r#"<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#;
