//! Starts a test kit ClickHouse cluster on ZooKeeper — 2 shards × 2
//! replicas unless `--shards N` and `--replicas N` say otherwise — and
//! keeps it up until stdin closes or the process is stopped: for benchmarks
//! and for trying Warren on a cluster by hand. Prints the `clickhouse://`
//! URL (database `warren`, or `--database NAME`) as its first line, and
//! ZooKeeper's `host:port` as its second.
//!
//! `cargo run -p warren-testkit --bin clickhouse-cluster [-- --shards 3 --replicas 1]`

use std::io::Read;

use warren_testkit::clickhouse::ClickHouseCluster;

fn main() {
    let (mut shards, mut replicas, mut database) = (2, 2, "warren".to_string());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        let number = || {
            value.parse::<usize>().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                eprintln!("{flag} takes a positive number, not {value:?}");
                std::process::exit(2)
            })
        };
        match flag.as_str() {
            "--shards" => shards = number(),
            "--replicas" => replicas = number(),
            "--database" => database = value.clone(),
            other => {
                eprintln!("unknown option {other}; the options are --shards, --replicas and --database");
                std::process::exit(2)
            }
        }
    }
    let Some(cluster) = ClickHouseCluster::start_shaped(shards, replicas) else {
        eprintln!("clickhouse-server or zookeeper is missing: run scripts/setup-test-deps");
        std::process::exit(1);
    };
    println!("{}", cluster.url(&database));
    println!("127.0.0.1:{}", cluster.zookeeper_port);
    eprintln!("cluster up; close stdin (Ctrl-D) or stop this process to take it down");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(cluster);
}
