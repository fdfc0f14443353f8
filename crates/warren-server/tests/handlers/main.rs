//! In-process tests of the REST handlers: accounts and access, the product
//! entities, and feature flags (their definitions and their evaluation over
//! `/flags` and `/decide`).
//!
//! Each test builds its own deployment in a temp dir (a real `SqlMeta` on
//! SQLite, migrated and bootstrapped as `warren serve` does, and a real
//! segment log) and drives `warren_server::router` with `tower`'s `oneshot`:
//! no socket, no binary, no mocks. The end-to-end suite of the `warren`
//! crate covers the same API through the real binary and the SDKs; these
//! tests pin the handlers' answers (statuses, error codes, what is stored)
//! where they are quick to run and to read. [`harness`] holds the
//! deployment and the request helpers.

mod accounts;
mod entities;
mod flags;
mod harness;
