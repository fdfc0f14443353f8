//! Starts the test kit's 2-shard × 2-replica ClickHouse cluster on ZooKeeper
//! and keeps it up until stdin closes or the process is stopped: for
//! benchmarks and for trying Warren on a cluster by hand. Prints the
//! `clickhouse://` URL (database `warren`) as its first line.
//!
//! `cargo run -p warren-testkit --bin clickhouse-cluster`

use std::io::Read;

use warren_testkit::clickhouse::ClickHouseCluster;

fn main() {
    let Some(cluster) = ClickHouseCluster::start() else {
        eprintln!("clickhouse-server or zookeeper is missing: run scripts/setup-test-deps");
        std::process::exit(1);
    };
    println!("{}", cluster.url("warren"));
    eprintln!("cluster up; close stdin (Ctrl-D) or stop this process to take it down");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    drop(cluster);
}
