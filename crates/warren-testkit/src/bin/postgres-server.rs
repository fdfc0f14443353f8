//! Starts a test kit PostgreSQL server and keeps it up until stdin closes
//! or the process is stopped: for benchmarks and for trying Warren's
//! PostgreSQL meta store by hand. Prints one `postgres://` URL of a new,
//! empty database per line — one unless `--databases N` says otherwise.
//!
//! `cargo run -p warren-testkit --bin postgres-server [-- --databases 3]`

use std::io::Read;

use warren_testkit::services::PostgresServer;

fn main() {
    let mut databases = 1;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--databases" => {
                databases = value.parse::<usize>().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    eprintln!("--databases takes a positive number, not {value:?}");
                    std::process::exit(2)
                })
            }
            other => {
                eprintln!("unknown option {other}; the option is --databases");
                std::process::exit(2)
            }
        }
    }
    let Some(server) = PostgresServer::own() else {
        eprintln!("PostgreSQL is missing: run scripts/setup-test-deps");
        std::process::exit(1);
    };
    for _ in 0..databases {
        println!("{}", server.fresh_database());
    }
    eprintln!("PostgreSQL up; close stdin (Ctrl-D) or stop this process to take it down");
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
    server.stop();
}
