//! [`Dialect`]: which database a [`super::SqlMeta`] talks to, its
//! migrations, and the limits its statements must keep.

use std::sync::LazyLock;

use sqlx::migrate::Migrator;

use crate::MetaError;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`SqlMeta`] talks to, picked from the URL's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    pub fn from_url(url: &str) -> Result<Self, MetaError> {
        if url.starts_with("sqlite:") {
            Ok(Dialect::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Dialect::Postgres)
        } else {
            Err(MetaError::UnsupportedUrl(url.to_string()))
        }
    }

    pub(super) fn migrations(self) -> &'static Migrator {
        match self {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    /// The schema version this build migrates the dialect to: its newest
    /// migration.
    pub fn schema_version(self) -> i64 {
        static VERSIONS: LazyLock<[i64; 2]> = LazyLock::new(|| {
            let newest = |m: &Migrator| m.iter().map(|migration| migration.version).max().unwrap_or(0);
            [newest(&SQLITE_MIGRATIONS), newest(&POSTGRES_MIGRATIONS)]
        });
        VERSIONS[self as usize]
    }

    /// Most bound parameters one statement may carry; SQLite's limit is
    /// the lower.
    pub(super) const fn max_parameters(self) -> usize {
        match self {
            Dialect::Sqlite => 32_000,
            Dialect::Postgres => 65_000,
        }
    }
}
