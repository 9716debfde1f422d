//! The one integration test binary (one link instead of many: see docs/architecture.md).
//!
//! Modules are grouped by what they exercise; `harness` holds the shared helpers.

mod harness;
mod sim_kube;
