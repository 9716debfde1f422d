//! Runbook: executable, resumable disaster-recovery runbooks for Talos Linux clusters.

pub mod sim;
