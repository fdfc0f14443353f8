//! The query API's request body, in the shape of PostHog's query schema
//! (`{"kind": "TrendsQuery", …}`). Only what the insight contract names is
//! read; unknown fields are ignored, as PostHog's clients send many.

use serde::Deserialize;
use serde_json::Value;

/// One query, as `{"query": {...}}` carries it.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind")]
pub enum Query {
    TrendsQuery(TrendsQuery),
    FunnelsQuery(FunnelsQuery),
    RetentionQuery(RetentionQuery),
    StickinessQuery(StickinessQuery),
    LifecycleQuery(LifecycleQuery),
    PathsQuery(PathsQuery),
    HogQLQuery(HogQlQuery),
    EventsQuery(EventsQuery),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    /// The lowercase name, as PostHog spells it.
    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DateRange {
    pub date_from: Option<String>,
    pub date_to: Option<String>,
}

/// A series entry: an event (null = all events) or a saved action.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind")]
pub enum SeriesNode {
    EventsNode(EventsNode),
    ActionsNode(ActionsNode),
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventsNode {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub custom_name: Option<String>,
    #[serde(default)]
    pub math: Option<String>,
    #[serde(default)]
    pub math_property: Option<String>,
    #[serde(default)]
    pub math_group_type_index: Option<u8>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
}

/// A saved action as a series; resolved through the project's catalog.
/// Its other fields are an `EventsNode`'s (math, properties, names).
#[derive(Debug, Clone, Deserialize)]
pub struct ActionsNode {
    pub id: Value,
    #[serde(flatten)]
    pub series: EventsNode,
}

/// `properties`: a flat list (all must hold) or PostHog's nested groups.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Properties {
    List(Vec<PropertyFilter>),
    Group(PropertyGroup),
}

impl Default for Properties {
    fn default() -> Self {
        Properties::List(Vec::new())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct PropertyGroup {
    #[serde(rename = "type")]
    pub kind: GroupOperator,
    pub values: Vec<PropertyGroupItem>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PropertyGroupItem {
    Group(PropertyGroup),
    Filter(PropertyFilter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum GroupOperator {
    #[serde(rename = "AND")]
    And,
    #[serde(rename = "OR")]
    Or,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PropertyFilter {
    pub key: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub operator: Option<String>,
    #[serde(rename = "type", default = "event_type")]
    pub kind: String,
    #[serde(default)]
    pub group_type_index: Option<u8>,
}

fn event_type() -> String {
    "event".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BreakdownFilter {
    #[serde(default)]
    pub breakdown: Option<Value>,
    #[serde(default)]
    pub breakdown_type: Option<String>,
    #[serde(default)]
    pub breakdown_limit: Option<usize>,
    #[serde(default)]
    pub breakdown_group_type_index: Option<u8>,
    #[serde(default)]
    pub breakdown_hide_other_aggregation: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CompareFilter {
    #[serde(default)]
    pub compare: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendsFilter {
    #[serde(default)]
    pub formula: Option<String>,
    #[serde(default)]
    pub display: Option<String>,
}

/// What every insight query may carry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Common {
    #[serde(default)]
    pub date_range: Option<DateRange>,
    #[serde(default)]
    pub interval: Option<Interval>,
    #[serde(default)]
    pub properties: Option<Properties>,
    #[serde(default)]
    pub filter_test_accounts: Option<bool>,
    #[serde(default, rename = "aggregation_group_type_index")]
    pub aggregation_group_type_index: Option<u8>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrendsQuery {
    #[serde(flatten)]
    pub common: Common,
    pub series: Vec<SeriesNode>,
    #[serde(default)]
    pub breakdown_filter: Option<BreakdownFilter>,
    #[serde(default)]
    pub compare_filter: Option<CompareFilter>,
    #[serde(default)]
    pub trends_filter: Option<TrendsFilter>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelsQuery {
    #[serde(flatten)]
    pub common: Common,
    pub series: Vec<SeriesNode>,
    #[serde(default)]
    pub breakdown_filter: Option<BreakdownFilter>,
    #[serde(default)]
    pub funnels_filter: Option<FunnelsFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelsFilter {
    #[serde(default)]
    pub funnel_order_type: Option<String>,
    #[serde(default)]
    pub funnel_viz_type: Option<String>,
    #[serde(default)]
    pub funnel_window_interval: Option<u32>,
    #[serde(default)]
    pub funnel_window_interval_unit: Option<String>,
    #[serde(default)]
    pub exclusions: Vec<FunnelExclusion>,
    #[serde(default)]
    pub breakdown_attribution_type: Option<String>,
    #[serde(default)]
    pub breakdown_attribution_value: Option<usize>,
    #[serde(default)]
    pub bin_count: Option<usize>,
    #[serde(default)]
    pub funnel_from_step: Option<usize>,
    #[serde(default)]
    pub funnel_to_step: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunnelExclusion {
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Vec<PropertyFilter>,
    pub funnel_from_step: usize,
    pub funnel_to_step: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionQuery {
    #[serde(flatten)]
    pub common: Common,
    pub retention_filter: RetentionFilter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionFilter {
    #[serde(default, alias = "retention_type")]
    pub retention_type: Option<String>,
    #[serde(default)]
    pub period: Option<String>,
    #[serde(default, alias = "total_intervals")]
    pub total_intervals: Option<usize>,
    #[serde(default, alias = "target_entity")]
    pub target_entity: Option<EntityRef>,
    #[serde(default, alias = "returning_entity")]
    pub returning_entity: Option<EntityRef>,
}

/// An event named by a retention filter (`{"id": "$pageview", "type": "events"}`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntityRef {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickinessQuery {
    #[serde(flatten)]
    pub common: Common,
    pub series: Vec<SeriesNode>,
    #[serde(default)]
    pub stickiness_filter: Option<StickinessFilter>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StickinessFilter {
    #[serde(default)]
    pub stickiness_criteria: Option<Value>,
    #[serde(default)]
    pub compare: Option<bool>,
    /// `"cumulative"` counts persons active in N or more intervals.
    #[serde(default)]
    pub computed_as: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleQuery {
    #[serde(flatten)]
    pub common: Common,
    pub series: Vec<SeriesNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathsQuery {
    #[serde(flatten)]
    pub common: Common,
    #[serde(default)]
    pub paths_filter: PathsFilter,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PathsFilter {
    #[serde(default)]
    pub include_event_types: Vec<String>,
    #[serde(default)]
    pub start_point: Option<String>,
    #[serde(default)]
    pub end_point: Option<String>,
    #[serde(default)]
    pub step_limit: Option<usize>,
    #[serde(default)]
    pub edge_limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HogQlQuery {
    pub query: String,
}

/// A list of events, newest first: PostHog's events table query.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsQuery {
    /// Columns of each row: `*` (the event as an object), `uuid`, `event`,
    /// `timestamp`, `distinct_id`, `person_id`, `person` (id, distinct id
    /// and properties), `properties`, `properties.<key>`,
    /// `person.properties.<key>`, `elements_chain`, `person_mode`.
    #[serde(default)]
    pub select: Vec<String>,
    /// Only events of this name.
    #[serde(default)]
    pub event: Option<String>,
    #[serde(default)]
    pub properties: Option<Properties>,
    /// Only the events of this person (uuid), merged persons included.
    #[serde(default)]
    pub person_id: Option<String>,
    /// Events at or after this time; `-24h` when unset.
    #[serde(default)]
    pub after: Option<String>,
    /// Events before this time; now when unset.
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
    /// `["timestamp DESC"]` (the default) or `["timestamp ASC"]`.
    #[serde(default)]
    pub order_by: Vec<String>,
    #[serde(default)]
    pub filter_test_accounts: Option<bool>,
}
