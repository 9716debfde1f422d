//! The client side of a Talos cluster: the talosconfig file and our own Talos API client.
//!
//! [`talosconfig`] reads and writes the file `talosctl` uses (same format, same lookup
//! order); [`talos`] opens a tonic channel from one of its contexts (mTLS with the context's
//! Ed25519 client certificate) or an insecure maintenance-mode connection, and adds the
//! `node`/`nodes` routing metadata. The engine's actions talk to real clusters and to the
//! simulator through exactly this code.

pub mod backup;
pub mod cause;
pub mod connection;
pub mod defaults;
pub mod effects;
pub mod lease;
pub mod observe;
pub mod payload;
pub mod pinning;
pub mod quorum;
pub mod talos;
pub mod talosconfig;
