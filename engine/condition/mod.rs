//! Guards and wait conditions, described as data for the compiler.
//!
//! A guard is checked from fresh observations immediately before a side effect and refuses it
//! when the cluster is not in a safe state; guards declare which [`Hazard`]s they protect
//! against, so the compiler can demand one for every disruptive action. A wait condition is
//! polled after the action until it holds or its timeout (applied from outside, as kube-rs'
//! `await_condition` does) runs out. The checks themselves are plain functions over a
//! [`view::ClusterView`] snapshot (`etcd.rs`, `talos.rs`, `kube.rs`), dispatched by name in
//! `check.rs`.

#[cfg(test)]
mod adversity;
pub mod batch;
mod catalog;
pub mod check;
pub mod etcd;
pub mod install_disk;
pub mod kube;
pub mod member_of;
pub mod reads;
pub mod talos;
pub mod view;

use std::time::Duration;

use crate::action::{ArgSpec, Hazard};
pub use catalog::{CONDITIONS, GUARDS};

/// One guard of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct GuardSpec {
    /// Its name, e.g. `etcd.safe-down`.
    pub name: &'static str,
    /// What it checks, in one line.
    pub summary: &'static str,
    /// Arguments (`node` is taken from the step's action when absent).
    pub args: &'static [ArgSpec],
    /// Hazards it makes safe.
    pub protects: &'static [Hazard],
}

/// One wait condition of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct ConditionSpec {
    /// Its name, e.g. `talos.running`.
    pub name: &'static str,
    /// What must hold, in one line.
    pub summary: &'static str,
    /// Arguments (`node` is taken from the step's action when absent).
    pub args: &'static [ArgSpec],
    /// Default overall timeout.
    pub timeout: Duration,
    /// Default poll interval.
    pub interval: Duration,
}

/// Looks a guard up by name.
pub fn guard(name: &str) -> Option<&'static GuardSpec> {
    GUARDS.iter().find(|g| g.name == name)
}

/// Looks a wait condition up by name.
pub fn condition(name: &str) -> Option<&'static ConditionSpec> {
    CONDITIONS.iter().find(|c| c.name == name)
}
