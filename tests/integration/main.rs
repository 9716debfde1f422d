//! The one integration test binary (one link instead of many: see docs/architecture.md).
//!
//! Modules are grouped by what they exercise; `harness` holds the shared helpers.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authoring;
mod cli;
mod harness;
mod observe;
mod properties;
mod rendering;
mod runbooks;
mod sim_talos;
