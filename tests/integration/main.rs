//! The one integration test binary (one link instead of many: see docs/architecture.md).
//!
//! Modules are grouped by what they exercise; `harness` holds the shared helpers.

#[allow(dead_code, unreachable_pub, clippy::unwrap_used)]
mod harness;
mod sim_talos;
