//! Generated Rust types for the subset of the Talos v1.11 gRPC API that Runbook uses.
//!
//! The `.proto` files under `proto/` are the project's own, written from the public Talos
//! sources with the same packages, service names, message names and field numbers, so that a
//! real Talos node and the simulator speak the same wire format. See `proto/README.md`.
