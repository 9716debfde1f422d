//! Runbook: executable, resumable disaster-recovery runbooks for Talos Linux clusters.
//!
//! The pipeline, one module per stage (see `docs/architecture.md`):
//!
//! ```text
//! library ─▶ source ─▶ dsl (YAML | rhai → AST) ─▶ compile (→ Plan, a step DAG) ─▶ plan::render
//!                                                          │
//!                                      journal (append-only, fsync'd) ◀── exec ──▶ event ──▶ report
//! ```
//! Authoring errors from every stage are [`diagnostic::Diagnostic`]s that point at
//! `file:line:column`.

pub mod action;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod condition;
pub mod diagnostic;
pub mod doctor;
pub mod dsl;
pub mod event;
pub mod exec;
pub mod exit_code;
pub mod inventory;
pub mod journal;
pub mod library;
pub mod lint;
pub mod machine_config;
pub mod plan;
pub mod report;
pub mod sandbox;
pub mod secret;
pub mod sim;
pub mod sops;
pub mod source;
pub mod test_hook;
