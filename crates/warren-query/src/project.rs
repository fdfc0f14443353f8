//! [`ProjectContext`]: who asks and when — the project, its time zone and
//! week start, its test-account filters, the time the query is planned at,
//! and the actions and cohorts it may name. Every planner takes it; it
//! knows local and UTC times of its zone, and nothing about plans.

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::model::PropertyFilter;
use crate::QueryError;

/// Who asks and when: what every query is planned against.
#[derive(Debug, Clone)]
pub struct ProjectContext {
    pub team_id: i64,
    pub time_zone: Tz,
    pub week_starts_monday: bool,
    /// What `filterTestAccounts` removes.
    pub test_account_filters: Vec<PropertyFilter>,
    pub now: DateTime<Utc>,
    /// The actions and cohorts queries may name.
    pub catalog: std::sync::Arc<crate::catalog::Catalog>,
}

impl ProjectContext {
    pub fn new(team_id: i64, time_zone: &str, now: DateTime<Utc>) -> Result<Self, QueryError> {
        let time_zone: Tz =
            time_zone.parse().map_err(|_| QueryError::invalid(format!("unknown time zone {time_zone:?}")))?;
        Ok(Self {
            team_id,
            time_zone,
            week_starts_monday: false,
            test_account_filters: Vec::new(),
            now,
            catalog: Default::default(),
        })
    }

    pub fn local(&self, utc_us: i64) -> NaiveDateTime {
        DateTime::from_timestamp_micros(utc_us)
            .unwrap_or_default()
            .with_timezone(&self.time_zone)
            .naive_local()
    }

    /// The UTC instant of a local wall-clock time; in a DST gap, the first
    /// valid instant after it.
    pub fn utc_us(&self, local: NaiveDateTime) -> i64 {
        let mut candidate = local;
        for _ in 0..4 {
            if let Some(at) = self.time_zone.from_local_datetime(&candidate).earliest() {
                return at.timestamp_micros();
            }
            candidate += Duration::minutes(30);
        }
        Utc.from_utc_datetime(&local).timestamp_micros()
    }

    pub fn now_local(&self) -> NaiveDateTime {
        self.now.with_timezone(&self.time_zone).naive_local()
    }
}
