//! Feature flag definitions and their evaluation, the PostHog way.
//!
//! A flag's `filters` object is stored exactly as PostHog's API and SDKs
//! exchange it ([`FlagFilters`], in `definition.rs`), so a project can move
//! its flags between PostHog and Warren unchanged. [`validate`]
//! (`validation.rs`) rejects definitions that could never evaluate
//! sensibly, and [`evaluate_at`] (`evaluation.rs`) decides one flag for one
//! person (or group). Evaluation leans on three helpers: `hashing.rs` puts a
//! person in a rollout bucket and a variant, `operators.rs` matches property
//! filters ([`match_property`], which cohorts reuse) and `dates.rs` reads
//! the dates they compare.
//!
//! Evaluation has to agree with PostHog bit for bit. The official server SDKs
//! download flag definitions and evaluate them *locally*, falling back to the
//! server only when they cannot decide; browsers and mobile apps always ask
//! the server. If Warren's answer differed from the SDKs' by even one
//! rollout bucket, the same person would flip between variants depending on
//! which library asked, and experiment results would be silently wrong. So the
//! bucketing hash, the variant ranges, the string forms that values are
//! compared in and the operator semantics follow posthog-python and
//! PostHog's own flags service to the letter. Where the SDK cannot decide on
//! its own (a missing property, a numeric timestamp) it asks the server, so
//! those cases follow the server.
//!
//! The evaluator is pure: everything it needs (properties, group keys, cohort
//! membership, the current time) is handed to it.

mod dates;
mod definition;
mod evaluation;
mod hashing;
mod operators;
#[cfg(test)]
mod test_support;
mod validation;

pub(crate) use definition::{FlagFilters, PropertyFilter};
pub(crate) use evaluation::{evaluate_at, FlagEvaluation, FlagGroup, FlagSubject};
pub(crate) use operators::match_property;
pub(crate) use validation::validate;
