//! [`DayDigest`]: how two stores are shown to hold the same rows of a UTC
//! day — how many, and a checksum of their content that does not depend
//! on their order, parts or shards — computed by a ClickHouse statement
//! over a cluster's table and by Rust over the Delta table, identically.
//!
//! A row's fingerprint is SipHash-2-4 with both keys 0 (what ClickHouse's
//! `sipHash64` computes, on every version Warren supports) of its project,
//! uuid, event, distinct id, person, time in µs and properties, as text
//! joined by newlines. A day's checksum is the wrapping sum of its rows'
//! fingerprints: a lost, doubled or changed row changes it.
//!
//! Backups keep a checksum of their own ([`crate::DaySummary`], a SHA-256
//! over length-prefixed fields), which ClickHouse 18.16 cannot compute;
//! this one is what a cluster is compared with.

use std::hash::Hasher;

use chrono::NaiveDate;
use siphasher::sip::SipHasher24;

/// One UTC day of a store: its rows and their checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayDigest {
    pub day: NaiveDate,
    pub rows: u64,
    pub checksum: u64,
}

/// Which rows a digest takes. A comparison of two stores that ingest
/// writes one after the other, a moment apart, takes the rows capture
/// received before a moment both have surely passed: newer rows may be
/// between their two writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    All,
    /// Rows received (`created_at`) before this time, in µs.
    ReceivedBefore(i64),
    /// Rows received from the first time (included) to the second, in µs:
    /// what reached two stores between two comparisons. Checksums add up,
    /// so a day equal on both sides before the first time and over this
    /// window is equal before the second.
    ReceivedBetween(i64, i64),
}

impl Cut {
    /// Rows received until `margin` before now.
    pub fn settled_for(margin: std::time::Duration) -> Self {
        Self::ReceivedBefore(Self::settled_moment(margin))
    }

    /// The moment `margin` before now, in µs.
    pub fn settled_moment(margin: std::time::Duration) -> i64 {
        let margin_us = i64::try_from(margin.as_micros()).unwrap_or(i64::MAX);
        warren_core::unix_millis().saturating_mul(1000).saturating_sub(margin_us)
    }

    /// The received times this cut takes, in µs: from (included), before.
    pub fn bounds(self) -> (Option<i64>, Option<i64>) {
        match self {
            Self::All => (None, None),
            Self::ReceivedBefore(before) => (None, Some(before)),
            Self::ReceivedBetween(from, before) => (Some(from), Some(before)),
        }
    }
}

/// The fingerprint of a row of the cluster's events tables, as a
/// ClickHouse expression; [`Fingerprint`] computes the same.
pub(crate) const FINGERPRINT_SQL: &str = "sipHash64(concat(toString(team_id), '\\n', toString(uuid), '\\n', \
     event, '\\n', distinct_id, '\\n', toString(person_id), '\\n', toString(timestamp_us), '\\n', properties))";

/// The fields of one row whose fingerprint is taken, as the stores hold
/// them (uuids as lowercase hyphenated text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fingerprint<'a> {
    pub team_id: i64,
    pub uuid: &'a str,
    pub event: &'a str,
    pub distinct_id: &'a str,
    pub person_id: &'a str,
    pub timestamp_us: i64,
    pub properties: &'a str,
}

impl Fingerprint<'_> {
    pub fn hash(&self) -> u64 {
        let mut hasher = SipHasher24::new_with_keys(0, 0);
        let (team, at) = (self.team_id.to_string(), self.timestamp_us.to_string());
        let parts = [&team, self.uuid, self.event, self.distinct_id, self.person_id, &at, self.properties];
        for (index, part) in parts.into_iter().enumerate() {
            if index > 0 {
                hasher.write(b"\n");
            }
            // `write`, not `write_str`: the latter appends a byte that
            // ClickHouse's hash of the text does not see.
            hasher.write(part.as_bytes());
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SipHash-2-4's own test vector (key 0..16, empty input) pins the
    /// algorithm; the rest of the agreement with ClickHouse is checked
    /// against a real cluster in the store's tests.
    #[test]
    fn the_hash_is_siphash_2_4() {
        let key: Vec<u8> = (0..16).collect();
        let k0 = u64::from_le_bytes(key[..8].try_into().expect("8 bytes"));
        let k1 = u64::from_le_bytes(key[8..].try_into().expect("8 bytes"));
        let mut hasher = SipHasher24::new_with_keys(k0, k1);
        hasher.write(b"");
        assert_eq!(hasher.finish(), 0x726f_db47_dd0e_0e31);
    }

    #[test]
    fn every_field_changes_the_fingerprint() {
        let row = Fingerprint {
            team_id: 1,
            uuid: "0190c3f2-0000-7000-8000-000000000001",
            event: "$pageview",
            distinct_id: "u1",
            person_id: "0190c3f2-0000-7000-8000-000000000002",
            timestamp_us: 1_700_000_000_000_000,
            properties: "{}",
        };
        let base = row.hash();
        let changed = [
            Fingerprint { team_id: 2, ..row },
            Fingerprint { event: "signup", ..row },
            Fingerprint { distinct_id: "u2", ..row },
            Fingerprint { timestamp_us: 1, ..row },
            Fingerprint { properties: "{\"a\":1}", ..row },
            // The separator keeps a shifted boundary from hashing alike.
            Fingerprint { event: "$pageview\nu1", distinct_id: "", ..row },
        ];
        for other in changed {
            assert_ne!(other.hash(), base, "{other:?}");
        }
    }
}
