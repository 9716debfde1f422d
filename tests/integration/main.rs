//! The one integration test binary (one link of tonic + kube + rhai instead of many: see
//! docs/architecture.md). Modules are grouped by what they exercise; `harness` holds the
//! authoring helpers, `run_harness` the helpers for driving runs as child processes.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authoring;
mod backup;
mod backup_role;
mod cli;
mod cli_output;
mod cluster_lock;
mod connect;
mod conventions;
mod crash;
mod crash_effects;
mod crash_runbooks;
mod docs_example;
mod doctor;
mod encrypted_restore;
mod exec_action;
mod executor;
mod fail_closed;
mod file_args;
mod fleet;
mod full_rebuild;
mod gpu_enable;
mod harness;
mod hostile;
mod kube_apply;
mod lint;
mod lint_live;
mod lint_preset;
mod node_replace;
mod observe;
mod observe_fanout;
mod observe_reads;
mod once_executor;
mod pinning;
mod preflight;
mod progress;
mod properties;
mod quorum_recovery;
mod reboot_verify;
mod rendering;
mod resume_maintenance;
mod rollback;
mod rollback_crash;
mod rollback_sim;
mod run;
mod run_harness;
mod run_sim;
mod runbooks;
mod sim_kube;
mod sim_kube_lease;
mod sim_staging;
mod sim_talos;
mod talos_patch;
mod wait_watch;
