//! [`EventRow`]: one row of the events table, as ingest hands it over,
//! and [`EventKey`]: what names one stored row when it is read back.

use uuid::Uuid;
use warren_core::person::{PersonMode, TeamId};

/// Group slots per event (`$group_0` … `$group_4`).
pub const GROUP_SLOTS: usize = 5;

/// An event with its person, ready to store. Text fields that PostHog keeps
/// as empty strings when absent (`elements_chain`, session, window, group
/// keys) are empty strings here too, so queries read the same on every
/// backend.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub uuid: Uuid,
    pub event: String,
    /// The event's properties, compact JSON.
    pub properties: String,
    /// Event time after clock-skew correction, microseconds since the epoch.
    pub timestamp_us: i64,
    pub team_id: TeamId,
    pub distinct_id: String,
    pub elements_chain: String,
    /// When capture received the event, microseconds since the epoch.
    pub created_at_us: i64,
    pub person_id: Uuid,
    /// The person's properties after this event's updates, compact JSON.
    pub person_properties: String,
    pub person_created_at_us: i64,
    pub person_mode: PersonMode,
    pub session_id: String,
    pub window_id: String,
    pub groups: [String; GROUP_SLOTS],
}

/// One stored event, as a reader asks for it back: its project, its uuid,
/// and its time (which names the day it is stored under).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKey {
    pub team_id: TeamId,
    pub uuid: Uuid,
    pub timestamp_us: i64,
}

impl EventRow {
    pub fn key(&self) -> EventKey {
        EventKey { team_id: self.team_id, uuid: self.uuid, timestamp_us: self.timestamp_us }
    }
}
