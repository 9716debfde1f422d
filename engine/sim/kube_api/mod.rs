//! The simulator's Kubernetes API server: what `kubectl` and kube-rs talk to during a
//! rehearsal.
//!
//! Runbooks cordon, drain, delete and watch nodes through the Kubernetes API, and operators
//! check `kubectl get nodes` between steps, so the simulated cluster must answer that API the
//! way a real one does — over TLS with a client certificate from a kubeconfig, with discovery,
//! Kubernetes wire objects, `Status` errors, server-side `Table` printing and watch streams —
//! while every answer comes from the pure model ([`crate::sim::Cluster`]). The pieces:
//! [`pki`] and [`kubeconfig`] (how clients connect), [`server`] (TLS, HTTP/1.1 + HTTP/2,
//! shutdown), [`routes`] (the endpoints), [`store`] (resource versions and change history over
//! the model), [`render`] and [`table`] (wire shapes), [`watch`], [`patch`], [`apply`] and [`objects`] (server-side apply of RuntimeClasses
//! and DaemonSets), [`select`],
//! [`discovery`] and [`status`]. See docs/design/kube-api.md for what is and is not served.

pub mod apply;
pub mod discovery;
mod error;
pub mod kubeconfig;
pub mod objects;
pub mod patch;
pub mod pki;
pub mod render;
pub mod routes;
pub mod select;
pub mod server;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

pub use error::Error;
pub use pki::Pki;
pub use server::{Identity, KubeApiHandle, serve, start};
