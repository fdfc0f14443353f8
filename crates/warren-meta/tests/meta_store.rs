//! The MetaStore conformance suite, run against every dialect: SQLite in a
//! temp dir and a real PostgreSQL server started by the test kit.

use async_trait::async_trait;
use warren_meta::conformance::MetaFactory;
use warren_meta::{MetaSchema, SqlMeta};

async fn connect(url: &str) -> SqlMeta {
    let store = SqlMeta::connect(url).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    store.migrate().await.expect("migrate");
    store
}

mod sqlite {
    use super::*;

    struct SqliteFactory {
        dir: tempfile::TempDir,
    }

    impl SqliteFactory {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().expect("temp dir") }
        }

        fn url(&self) -> String {
            format!("sqlite://{}", self.dir.path().join("meta.db").display())
        }
    }

    #[async_trait]
    impl MetaFactory for SqliteFactory {
        type Store = SqlMeta;

        async fn create(&self) -> SqlMeta {
            connect(&self.url()).await
        }

        async fn reconnect(&self, store: SqlMeta) -> SqlMeta {
            drop(store);
            connect(&self.url()).await
        }
    }

    warren_meta::meta_store_conformance!(Some(SqliteFactory::new()));
}

mod postgres {
    use super::*;
    use warren_testkit::services::PostgresServer;

    /// One fresh database per test on the shared server.
    struct PostgresFactory {
        url: String,
    }

    impl PostgresFactory {
        /// `None` when PostgreSQL is missing locally (CI fails instead).
        fn new() -> Option<Self> {
            PostgresServer::shared().map(|server| Self { url: server.fresh_database() })
        }
    }

    #[async_trait]
    impl MetaFactory for PostgresFactory {
        type Store = SqlMeta;

        async fn create(&self) -> SqlMeta {
            connect(&self.url).await
        }

        async fn reconnect(&self, store: SqlMeta) -> SqlMeta {
            drop(store);
            connect(&self.url).await
        }
    }

    warren_meta::meta_store_conformance!(PostgresFactory::new());
}

#[test]
fn urls_pick_the_dialect() {
    use warren_meta::Dialect;
    assert_eq!(Dialect::from_url("sqlite:///tmp/x.db").ok(), Some(Dialect::Sqlite));
    assert_eq!(Dialect::from_url("postgres://u@h/db").ok(), Some(Dialect::Postgres));
    assert_eq!(Dialect::from_url("postgresql://u@h/db").ok(), Some(Dialect::Postgres));
    assert!(Dialect::from_url("mysql://u@h/db").is_err());
}
