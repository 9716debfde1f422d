//! Runbook: executable, resumable disaster-recovery runbooks for Talos Linux clusters.

pub mod journal;
pub mod secret;
