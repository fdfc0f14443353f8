//! Product entities (actions, cohorts, insights, dashboards, annotations,
//! feature flags, experiments) and the definitions ingest collects. The
//! store keeps entities as JSON documents in PostHog's shapes: the API
//! validates them, the store only keeps them and their unique keys.

use serde::Serialize;

use crate::{MetaError, ProjectId};

/// The kinds of documents a project keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Action,
    Cohort,
    Insight,
    Dashboard,
    Annotation,
    FeatureFlag,
    Experiment,
}

impl EntityKind {
    pub const ALL: [EntityKind; 7] = [
        EntityKind::Action,
        EntityKind::Cohort,
        EntityKind::Insight,
        EntityKind::Dashboard,
        EntityKind::Annotation,
        EntityKind::FeatureFlag,
        EntityKind::Experiment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Action => "action",
            EntityKind::Cohort => "cohort",
            EntityKind::Insight => "insight",
            EntityKind::Dashboard => "dashboard",
            EntityKind::Annotation => "annotation",
            EntityKind::FeatureFlag => "feature_flag",
            EntityKind::Experiment => "experiment",
        }
    }

    pub fn parse(text: &str) -> Result<Self, MetaError> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text).ok_or_else(|| MetaError::Corrupt {
            what: "entity kind",
            reason: format!("{text:?} is not known to this build"),
        })
    }
}

/// A stored entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    pub id: i64,
    pub project_id: ProjectId,
    pub kind: EntityKind,
    /// Unique per project and kind when set (a feature flag's key).
    pub unique_key: Option<String>,
    /// The document, a JSON object.
    pub body: serde_json::Value,
    pub created_by: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// An entity to create or the new state of one to replace.
#[derive(Debug, Clone)]
pub struct EntityWrite {
    pub project_id: ProjectId,
    pub kind: EntityKind,
    pub unique_key: Option<String>,
    pub body: serde_json::Value,
    pub created_by: Option<i64>,
}

/// An event name ingest has seen in a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventDefinition {
    pub team_id: i64,
    pub name: String,
    pub first_seen_us: i64,
    pub last_seen_us: i64,
}

/// Where a property was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PropertyKind {
    Event,
    Person,
    Group,
}

impl PropertyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PropertyKind::Event => "event",
            PropertyKind::Person => "person",
            PropertyKind::Group => "group",
        }
    }

    pub fn parse(text: &str) -> Result<Self, MetaError> {
        match text {
            "event" => Ok(PropertyKind::Event),
            "person" => Ok(PropertyKind::Person),
            "group" => Ok(PropertyKind::Group),
            other => Err(MetaError::Invalid {
                what: "property kind",
                reason: format!("{other:?} is not one of event, person, group"),
            }),
        }
    }
}

/// A property name ingest has seen, with the type of its first value
/// (`String`, `Numeric`, `Boolean`, `DateTime`), as PostHog types them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct PropertyDefinition {
    pub team_id: i64,
    pub kind: PropertyKind,
    /// -1 unless `kind` is `Group`.
    pub group_type_index: i32,
    pub name: String,
    pub property_type: Option<String>,
    pub first_seen_us: i64,
}
