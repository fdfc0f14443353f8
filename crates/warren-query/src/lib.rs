//! The query engine: PostHog-style insights and SQL over Warren's events.
//!
//! A request body (`model`) becomes backend-neutral plans (`plan`): selects
//! over the events table whose expressions say what is wanted — a property
//! as text, a bucket in the project's time zone, a person after merges, a
//! funnel over a person's events. A renderer per SQL dialect (`render`)
//! spells a plan for its engine, and a backend (`backend`) runs it and
//! answers neutral rows, from which each insight kind (`insights/`) builds
//! PostHog's result shape. `hogql` checks users' SQL; `funnel` is the
//! funnel algorithm itself; `time` resolves date ranges and buckets.
//! [`QueryEngine`] runs queries on their own runtime under time, row and
//! memory limits. This crate reads the event and meta stores; it never
//! writes.

pub mod backend;
pub mod catalog;
mod elements;
mod engine;
mod error;
mod filters;
pub mod funnel;
pub mod hogql;
mod insights;
pub mod model;
pub mod plan;
mod project;
pub mod render;
pub mod time;

pub use backend::clickhouse::ClickHouseBackend;
pub use backend::datafusion::{DataFusionBackend, QueryLimits};
pub use backend::{Cell, QueryBackend, Rows};
pub use engine::QueryEngine;
pub use error::QueryError;
pub use insights::{run, BREAKDOWN_NULL, BREAKDOWN_OTHER};
pub use model::Query;
pub use project::ProjectContext;
