//! Domain types shared by every Warren crate, and nothing else.
//!
//! This crate holds the values that cross crate boundaries: the
//! [`CapturedEvent`] record that capture writes to the event log and ingest
//! reads back, the configuration structs that the binary loads and hands to
//! each role, and the names of every metric Warren exports. It performs no
//! I/O and depends on no runtime, so every other crate can depend on it.

pub mod config;
pub mod event;
pub mod metrics;

pub use event::CapturedEvent;
