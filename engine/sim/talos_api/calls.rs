//! The call log file: every mutating call, one JSON object per line, in `<dir>/calls.jsonl`.
//!
//! The model keeps its own call log ([`crate::sim::Cluster::call_log`]) for in-process tests;
//! this file is the same record for out-of-process rehearsals (`runbook sim up`), so a test or
//! an operator can check afterwards what a runbook actually did. Each line is
//! `{"method":"Reboot","node":"192.168.2.20","at_ms":1234,"result":"ok"}`, where `at_ms` is
//! model time in milliseconds and `result` is `ok` or the gRPC code name of the failure.
//! Write errors are logged once and otherwise ignored: the log must never fail an API call.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::sim::cluster::CallRecord;

use super::status::{code_name, grpc_code};

/// Appends call records to a JSON-lines file (or nowhere).
#[derive(Debug)]
pub struct CallSink {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

impl CallSink {
    /// A sink writing to `path` (created or appended to).
    pub fn to_file(path: &Path) -> std::io::Result<CallSink> {
        let file = std::os::unix::fs::OpenOptionsExt::mode(
            OpenOptions::new().create(true).append(true),
            0o600,
        )
        .open(path)?;
        Ok(CallSink {
            path: Some(path.to_path_buf()),
            file: Mutex::new(Some(file)),
        })
    }

    /// A sink that drops everything.
    pub fn none() -> CallSink {
        CallSink {
            path: None,
            file: Mutex::new(None),
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// One JSON line for a record.
    pub fn line(r: &CallRecord) -> String {
        let result = match r.result {
            Ok(()) => "ok",
            Err(code) => code_name(grpc_code(code)),
        };
        serde_json::json!({
            "method": r.method,
            "node": r.node,
            "at_ms": u64::try_from(r.at.as_duration().as_millis()).unwrap_or(u64::MAX),
            "result": result,
        })
        .to_string()
    }

    /// Appends records.
    pub fn write(&self, records: &[CallRecord]) {
        if records.is_empty() {
            return;
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let Some(file) = guard.as_mut() else { return };
        let mut text = String::new();
        for r in records {
            text.push_str(&Self::line(r));
            text.push('\n');
        }
        if let Err(e) = file.write_all(text.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(path = ?self.path, error = %e, "cannot append to the call log; disabling it");
            *guard = None;
        }
    }
}
