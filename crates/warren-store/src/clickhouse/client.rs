//! Talking to a ClickHouse cluster over its HTTP interface: the cluster's
//! URL, one statement to any server (failing over to the next one when a
//! server does not answer), and statements host by host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::StoreError;

/// `clickhouse://[user:password@]host:port,host:port/database?cluster=name`,
/// or `clickhouses://…` for HTTPS, with `&ca=/path/ca.pem` to trust a CA
/// besides the system's.
#[derive(Clone, PartialEq, Eq)]
pub struct ClickHouseUrl {
    /// `http://host:port` (`https://` for `clickhouses://`) of every server named.
    pub hosts: Vec<String>,
    pub database: String,
    /// The cluster's name in the servers' `remote_servers`.
    pub cluster: String,
    pub user: String,
    pub password: String,
    /// A PEM file of certificate authorities to trust for HTTPS, besides
    /// the system's.
    pub ca: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ClickHouseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseUrl")
            .field("hosts", &self.hosts)
            .field("database", &self.database)
            .field("cluster", &self.cluster)
            .field("user", &self.user)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl ClickHouseUrl {
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        let bad =
            |reason: &str| StoreError::UnsupportedUrl { url: redacted(url), reason: reason.to_string() };
        let (rest, scheme, default_port) = match url.split_once("://") {
            Some(("clickhouse", rest)) => (rest, "http", 8123),
            Some(("clickhouses", rest)) => (rest, "https", 8443),
            _ => return Err(bad("expected clickhouse://host:port,host:port/database?cluster=name")),
        };
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (credentials, hosts) =
            authority.rsplit_once('@').map_or((None, authority), |(c, h)| (Some(c), h));
        let (user, password) = match credentials {
            Some(credentials) => {
                let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
                (decode(user), decode(password))
            }
            None => ("default".to_string(), String::new()),
        };
        let hosts: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.contains(':') {
                    format!("{scheme}://{h}")
                } else {
                    format!("{scheme}://{h}:{default_port}")
                }
            })
            .collect();
        if hosts.is_empty() {
            return Err(bad("no servers named"));
        }
        let database = database.trim_end_matches('/');
        if !is_identifier(database) {
            return Err(bad("the path must name the database (letters, digits, _)"));
        }
        let mut cluster = None;
        let mut ca = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("cluster", name)) => cluster = Some(decode(name)),
                Some(("ca", path)) if scheme == "https" => ca = Some(std::path::PathBuf::from(decode(path))),
                Some(("ca", _)) => return Err(bad("ca= is for HTTPS: use clickhouses://")),
                _ => return Err(bad(&format!("unknown option {pair:?}; the options are cluster= and ca="))),
            }
        }
        let cluster = cluster
            .filter(|name| is_identifier(name))
            .ok_or_else(|| bad("cluster= must name the cluster of remote_servers (letters, digits, _)"))?;
        Ok(Self { hosts, database: database.to_string(), cluster, user, password, ca })
    }

    /// Whether both name the same tables: the same database on the same
    /// cluster, reached through at least one same server (a process may
    /// list some of the servers, in any order), whoever connects.
    pub fn same_tables(&self, other: &ClickHouseUrl) -> bool {
        self.database == other.database
            && self.cluster == other.cluster
            && self.hosts.iter().any(|host| other.hosts.contains(host))
    }

    /// The URL without user and password, as the meta store may keep it:
    /// whoever connects brings their own ([`ClickHouseUrl::with_credentials_of`]).
    pub fn without_credentials(&self) -> String {
        let https = self.hosts.first().is_some_and(|host| host.starts_with("https://"));
        let hosts: Vec<&str> = self
            .hosts
            .iter()
            .map(|host| host.split_once("://").map_or(host.as_str(), |(_, rest)| rest))
            .collect();
        let scheme = if https { "clickhouses" } else { "clickhouse" };
        let mut url = format!("{scheme}://{}/{}?cluster={}", hosts.join(","), self.database, self.cluster);
        if let Some(ca) = &self.ca {
            let path: String =
                url::form_urlencoded::byte_serialize(ca.to_string_lossy().as_bytes()).collect();
            url.push_str(&format!("&ca={path}"));
        }
        url
    }

    /// The same servers and tables, reached with `other`'s user and password.
    pub fn with_credentials_of(mut self, other: &ClickHouseUrl) -> Self {
        self.user.clone_from(&other.user);
        self.password.clone_from(&other.password);
        self
    }
}

/// An error and what caused it: a refused certificate says so only in
/// the causes of reqwest's error.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// Names spliced into statements as they are: database and cluster.
fn is_identifier(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map_or_else(|| text.to_string(), |(_, v)| v.into_owned())
}

fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, hosts))) => format!("{scheme}://…@{hosts}"),
        _ => url.to_string(),
    }
}

/// One server of the cluster, as its own `system.macros` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub url: String,
    pub shard: String,
    pub replica: String,
}

/// Statements to the cluster's servers.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    url: ClickHouseUrl,
    /// The server tried first; moves on when one stops answering.
    preferred: AtomicUsize,
}

/// Settings every statement runs with:
/// - inserts through a Distributed table wait until every shard has its
///   rows, so an answer means stored;
/// - writes and reads go to the first replica of each shard that answers,
///   so a read sees what was written before it (a second replica gets the
///   rows by replication, a moment later);
/// - partition operations and `OPTIMIZE` wait for every replica;
/// - 64-bit integers come back as JSON numbers.
const SETTINGS: &[(&str, &str)] = &[
    ("insert_distributed_sync", "1"),
    ("load_balancing", "in_order"),
    ("replication_alter_partitions_sync", "2"),
    ("output_format_json_quote_64bit_integers", "0"),
];

impl Client {
    pub fn new(url: ClickHouseUrl, timeout: Duration) -> Result<Self, StoreError> {
        let mut builder = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5));
        if let Some(path) = &url.ca {
            let unreadable = |reason: String| StoreError::UnsupportedUrl {
                url: format!("ca={}", path.display()),
                reason: format!("the certificate authorities do not read: {reason}"),
            };
            let pem = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
            let authorities =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| unreadable(e.to_string()))?;
            if authorities.is_empty() {
                return Err(unreadable("no certificate in the file".into()));
            }
            for authority in authorities {
                builder = builder.add_root_certificate(authority);
            }
        }
        let http = builder.build().map_err(|e| StoreError::ClickHouse(format!("HTTP client: {e}")))?;
        Ok(Self { http, url, preferred: AtomicUsize::new(0) })
    }

    pub fn url(&self) -> &ClickHouseUrl {
        &self.url
    }

    /// Runs `sql` on any server that answers, with `body` as its data.
    pub async fn execute(&self, sql: &str, body: Option<String>) -> Result<String, StoreError> {
        self.execute_with(sql, body, &[]).await
    }

    /// [`Client::execute`] with `settings` beside the ones every statement has.
    pub async fn execute_with(
        &self,
        sql: &str,
        body: Option<String>,
        settings: &[(&str, String)],
    ) -> Result<String, StoreError> {
        let hosts = &self.url.hosts;
        let first = self.preferred.load(Ordering::Relaxed) % hosts.len();
        let mut last = None;
        for step in 0..hosts.len() {
            let index = (first + step) % hosts.len();
            match self.send(&hosts[index], sql, body.clone(), settings).await {
                Err(StoreError::Unreachable { host, reason }) => {
                    tracing::warn!(%host, %reason, "ClickHouse server did not answer; trying the next");
                    last = Some(StoreError::Unreachable { host, reason });
                }
                answer => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return answer;
                }
            }
        }
        Err(last.unwrap_or_else(|| StoreError::ClickHouse("no servers".into())))
    }

    /// Runs `sql` on the server at `host`.
    pub async fn execute_on(
        &self,
        host: &str,
        sql: &str,
        body: Option<String>,
    ) -> Result<String, StoreError> {
        self.send(host, sql, body, &[]).await
    }

    async fn send(
        &self,
        host: &str,
        sql: &str,
        body: Option<String>,
        settings: &[(&str, String)],
    ) -> Result<String, StoreError> {
        let mut request = self
            .http
            .post(format!("{host}/"))
            .basic_auth(&self.url.user, Some(&self.url.password))
            .query(SETTINGS)
            .query(settings);
        request = match body {
            // The statement goes in the URL when the body carries data.
            Some(body) => request.query(&[("query", sql)]).body(body),
            None => request.body(sql.to_string()),
        };
        let unreachable =
            |e: reqwest::Error| StoreError::Unreachable { host: host.to_string(), reason: with_causes(&e) };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        if status.is_success() {
            Ok(text)
        } else {
            Err(StoreError::ClickHouse(format!("{host}: {}", text.trim())))
        }
    }

    /// The servers named in the URL that answer, with their shard and
    /// replica. Every shard of the cluster (`system.clusters`) needs one,
    /// or host-by-host work would miss it; a replica that is down is left
    /// out, to catch up through replication when it is back.
    pub async fn answering_hosts(&self) -> Result<Vec<Host>, StoreError> {
        let mut hosts = Vec::new();
        for url in &self.url.hosts {
            match self.host(url).await {
                Ok(host) => hosts.push(host),
                Err(StoreError::Unreachable { host, reason }) => {
                    tracing::warn!(%host, %reason, "ClickHouse server left out: it does not answer");
                }
                Err(other) => return Err(other),
            }
        }
        self.covers_every_shard(&hosts).await?;
        Ok(hosts)
    }

    /// Every server named in the URL, each of which must answer: for
    /// statements no server may miss (a schema change).
    pub async fn every_host(&self) -> Result<Vec<Host>, StoreError> {
        let mut hosts = Vec::new();
        for url in &self.url.hosts {
            hosts.push(self.host(url).await?);
        }
        self.covers_every_shard(&hosts).await?;
        Ok(hosts)
    }

    /// One answering server per shard, for statements that replication
    /// carries to the other replicas.
    pub async fn one_host_per_shard(&self) -> Result<Vec<Host>, StoreError> {
        let mut chosen: Vec<Host> = Vec::new();
        for host in self.answering_hosts().await? {
            if !chosen.iter().any(|h| h.shard == host.shard) {
                chosen.push(host);
            }
        }
        Ok(chosen)
    }

    /// The server at `url`, as its own macros name it.
    pub async fn host(&self, url: &str) -> Result<Host, StoreError> {
        let macros =
            self.execute_on(url, "SELECT macro, substitution FROM system.macros FORMAT TSV", None).await?;
        let value = |name: &str| {
            macros.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix('\t').map(str::to_string))
        };
        match (value("shard"), value("replica")) {
            (Some(shard), Some(replica)) => Ok(Host { url: url.to_string(), shard, replica }),
            _ => Err(StoreError::ClickHouse(format!("{url} has no shard and replica macros"))),
        }
    }

    async fn covers_every_shard(&self, hosts: &[Host]) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT count(DISTINCT shard_num) FROM system.clusters WHERE cluster = {} FORMAT TSV",
            quote(&self.url.cluster)
        );
        let shards: usize = self.execute(&sql, None).await?.trim().parse().unwrap_or(0);
        let named: std::collections::BTreeSet<&str> = hosts.iter().map(|h| h.shard.as_str()).collect();
        if shards == 0 {
            return Err(StoreError::ClickHouse(format!(
                "the servers know no cluster {:?}",
                self.url.cluster
            )));
        }
        if named.len() < shards {
            return Err(StoreError::ClickHouse(format!(
                "cluster {:?} has {shards} shards but only servers of {} answer here ({})",
                self.url.cluster,
                named.len(),
                named.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}

/// A ClickHouse string literal.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_servers_database_and_cluster() {
        let url = ClickHouseUrl::parse("clickhouse://warren:p%40ss@h1:9123,h2/events_db?cluster=main")
            .expect("a good URL");
        assert_eq!(url.hosts, vec!["http://h1:9123", "http://h2:8123"]);
        assert_eq!((url.database.as_str(), url.cluster.as_str()), ("events_db", "main"));
        assert_eq!((url.user.as_str(), url.password.as_str()), ("warren", "p@ss"));
        assert!(!format!("{url:?}").contains("p@ss"), "Debug hides the password");

        for bad in [
            "http://h1/db?cluster=c",
            "clickhouse://h1/db?cluster=c&ca=/ca.pem",
            "clickhouse:///db?cluster=c",
            "clickhouse://h1?cluster=c",
            "clickhouse://h1/db",
            "clickhouse://h1/db;drop?cluster=c",
            "clickhouse://h1/db?cluster=c&x=1",
        ] {
            assert!(ClickHouseUrl::parse(bad).is_err(), "{bad}");
        }
        let error = ClickHouseUrl::parse("clickhouse://u:secret@h1/db").expect_err("no cluster").to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn https_urls_name_their_authorities() {
        let url =
            ClickHouseUrl::parse("clickhouses://h1,h2:9443/db?cluster=c&ca=/etc/warren/ca%20bundle.pem")
                .expect("a good URL");
        assert_eq!(url.hosts, vec!["https://h1:8443", "https://h2:9443"]);
        assert_eq!(url.ca, Some(std::path::PathBuf::from("/etc/warren/ca bundle.pem")));
        assert_eq!(ClickHouseUrl::parse("clickhouses://h1/db?cluster=c").expect("no ca").ca, None);
    }

    #[test]
    fn urls_kept_without_credentials_read_back_as_the_same_tables() {
        let url =
            ClickHouseUrl::parse("clickhouses://me:secret@a:8443,b:8443/db?cluster=c&ca=/etc/my%20ca.pem")
                .expect("parse");
        let kept = url.without_credentials();
        assert!(!kept.contains("secret") && !kept.contains("me@"), "{kept}");
        let back = ClickHouseUrl::parse(&kept).expect("parse the kept URL");
        assert!(back.same_tables(&url));
        assert_eq!(back.ca, url.ca);
        assert_eq!(back.with_credentials_of(&url), url);
        let other = ClickHouseUrl::parse("clickhouses://b:8443,z:1/db?cluster=c").expect("parse");
        assert!(other.same_tables(&url), "one server in common");
        let elsewhere = ClickHouseUrl::parse("clickhouses://z:1/db?cluster=c").expect("parse");
        assert!(!elsewhere.same_tables(&url));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(quote(r"it's a \ test"), r"'it\'s a \\ test'");
    }
}
