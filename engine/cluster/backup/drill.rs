//! The restore drill: restore a snapshot into a throwaway simulated cluster and check that the
//! restored member serves its data, then record the result in the snapshot's sidecar.
//!
//! A backup nobody has restored is a hope. The drill starts an embedded simulator in this
//! process (scenario `quorum-lost`, as `--sim` does, in a private temporary directory removed
//! afterwards) and talks to it only through the Talos API, exactly as a recovery does
//! (talos-procedures.md §4(c)): `Reset` the survivor with EPHEMERAL wiped, wait until its etcd
//! waits in `Preparing`, upload the snapshot (`EtcdRecover`), `Bootstrap` with `recover_etcd`,
//! then wait until etcd runs with a leader and no errors. What the API lets us check, it
//! checks: one voting member, `EtcdStatus` without errors, and a fresh `EtcdSnapshot` of the
//! restored member whose revision and every key and value equal the uploaded snapshot's
//! (Talos offers no key/value read; a snapshot is the API's view of the data). An encrypted
//! snapshot is decrypted in memory with `age_identity` (a key file; its path is an argument,
//! its content is never journaled or logged). The sidecar's `hash`/`size` are checked first;
//! the result (`drill: {ok, at, detail}`) is written durably into the sidecar whether the drill
//! passed or failed, so `backup.fresh(drilled: true)` can rely on sidecars alone.
//!
//! Limit (docs/design/backup.md): the simulator understands its own snapshot format, not a
//! real bbolt database, so against a real cluster this drill proves decryption, integrity and
//! the trailer, and then fails honestly at the restore: drilling real data needs a real
//! throwaway cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runbook_proto::common::Data;
use runbook_proto::machine::{
    BootstrapRequest, EtcdMemberListRequest, EtcdSnapshotRequest, ResetPartitionSpec, ResetRequest,
};
use tokio_stream::StreamExt;

use super::{Drill, load, verify};
use crate::cluster::talos::with_node;

/// The node of the throwaway cluster the snapshot is restored on.
const SURVIVOR: &str = crate::sim::scenario::NUC_20;
/// The throwaway cluster's speed: a reboot takes a fraction of a second.
const SPEED: f64 = 600.0;
/// The longest a drill may take (wall clock).
const DEADLINE: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_millis(25);

/// Why a drill could not even be recorded.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The sidecar is missing or unreadable: there is nothing to record the result in.
    #[error("cannot drill `{snapshot}`: {reason}")]
    NoSidecar {
        /// The snapshot.
        snapshot: String,
        /// Why.
        reason: String,
    },
    /// The result could not be written.
    #[error("cannot record the drill in the sidecar of `{snapshot}`: {reason}")]
    Record {
        /// The snapshot.
        snapshot: String,
        /// Why.
        reason: String,
    },
}

/// What the drill found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The recorded result.
    pub drill: Drill,
    /// The restored revision, when it got that far.
    pub revision: Option<i64>,
    /// The number of keys the restored member served.
    pub keys: Option<usize>,
}

/// Drills `snapshot` and records the result in its sidecar.
pub async fn run(snapshot: &Path, identity: Option<&Path>) -> Result<Report, DrillError> {
    let shown = snapshot.display().to_string();
    let mut sidecar = load(snapshot).map_err(|e| DrillError::NoSidecar {
        snapshot: shown.clone(),
        reason: e.to_string(),
    })?;
    let (ok, detail, revision, keys) = match drill(snapshot, identity).await {
        Ok((revision, keys)) => (
            true,
            format!(
                "restored on a throwaway simulated cluster: 1 healthy voter serves store revision {revision} and all {keys} keys of the snapshot"
            ),
            Some(revision),
            Some(keys),
        ),
        Err(why) => (false, why, None, None),
    };
    let drill = Drill {
        ok,
        at: crate::journal::time::rfc3339(crate::journal::time::now_ms()),
        detail,
    };
    sidecar.drill = Some(drill.clone());
    super::write_sidecar(snapshot, &sidecar).map_err(|e| DrillError::Record {
        snapshot: shown,
        reason: e.to_string(),
    })?;
    Ok(Report {
        drill,
        revision,
        keys,
    })
}

/// The drill itself: `Ok((revision, keys))` or why it failed.
async fn drill(snapshot: &Path, identity: Option<&Path>) -> Result<(i64, usize), String> {
    let sidecar = verify(snapshot).map_err(|e| format!("the snapshot does not verify: {e}"))?;
    let stored = std::fs::read(snapshot).map_err(|e| format!("cannot read it: {e}"))?;
    let plain = if sidecar.encrypted || stored.starts_with(b"age-encryption.org/") {
        let Some(key) = identity else {
            return Err("the snapshot is encrypted: give `age_identity` (a key file)".into());
        };
        super::stream::decrypt(&stored, key)?
    } else {
        stored
    };
    crate::cluster::payload::verify_snapshot(&plain)?;
    // The throwaway etcd decides whether the data restores; only then is it compared.
    let dir = scratch_dir().map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let result = tokio::time::timeout(DEADLINE, restore(&dir, &plain))
        .await
        .unwrap_or_else(|_| Err(format!("the restore did not finish within {DEADLINE:?}")));
    let _ = std::fs::remove_dir_all(&dir);
    let served = result?;
    let expected = crate::sim::etcd::verify_snapshot(&plain, false)
        .map_err(|e| format!("the uploaded snapshot cannot be read back: {}", e.message))?;
    if served.revision < expected.revision {
        return Err(format!(
            "the restored member serves revision {}, older than the snapshot's {}",
            served.revision, expected.revision
        ));
    }
    for (k, v) in &expected.entries {
        match served.entries.get(k) {
            Some(got) if got == v => {}
            Some(_) => return Err(format!("key `{k}` has another value after the restore")),
            None => return Err(format!("key `{k}` is missing after the restore")),
        }
    }
    Ok((served.revision, expected.entries.len()))
}

/// A new owner-only directory under the system temp dir: created with `mkdir` (never an
/// existing directory or a planted symlink, whoever made it), with a counter against two
/// drills in one millisecond.
fn scratch_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "runbook-drill-{}-{}-{n}",
            std::process::id(),
            crate::journal::time::now_ms()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no scratch directory")))
}

/// Starts the throwaway cluster, restores `plain` on it and reads the data back.
async fn restore(dir: &Path, plain: &[u8]) -> Result<crate::sim::etcd::KvStore, String> {
    let handle = crate::sim::Simulator::start(crate::sim::SimConfig {
        scenario: crate::sim::Scenario::QuorumLost,
        speed: crate::sim::Speed::new(SPEED).ok_or("bad speed")?,
        dir: dir.join("sim"),
    })
    .await
    .map_err(|e| format!("cannot start the throwaway cluster: {e}"))?;
    let conn = crate::cluster::connection::Connection::for_simulator(&handle);
    let result = match conn.open().await {
        Ok(effects) => restore_on(&effects.observer().talos, plain).await,
        Err(e) => Err(format!("cannot reach the throwaway cluster: {e}")),
    };
    handle.shutdown().await;
    result
}

async fn restore_on(
    talos: &crate::cluster::observe::Failover,
    plain: &[u8],
) -> Result<crate::sim::etcd::KvStore, String> {
    let node = SURVIVOR;
    let reset = ResetRequest {
        graceful: false,
        reboot: true,
        system_partitions_to_wipe: vec![ResetPartitionSpec {
            label: "EPHEMERAL".into(),
            wipe: true,
        }],
        user_disks_to_wipe: Vec::new(),
        mode: 0,
    };
    talos
        .machine()
        .reset(with_node(reset, node))
        .await
        .map_err(|s| format!("Reset of the throwaway node failed: {}", s.message()))?;
    etcd_state(talos, node, |state, _| state == "Preparing").await?;
    let chunks: Vec<Data> = plain
        .chunks(64 * 1024)
        .map(|c| Data {
            metadata: None,
            bytes: c.to_vec(),
        })
        .collect();
    talos
        .machine()
        .etcd_recover(with_node(tokio_stream::iter(chunks), node))
        .await
        .map_err(|s| format!("EtcdRecover refused the snapshot: {}", s.message()))?;
    let req = BootstrapRequest {
        recover_etcd: true,
        recover_skip_hash_check: false,
    };
    talos
        .machine()
        .bootstrap(with_node(req, node))
        .await
        .map_err(|s| format!("Bootstrap (recover) failed: {}", s.message()))?;
    etcd_state(talos, node, |state, _| state == "Running").await?;
    // Healthy: a leader and no errors.
    loop {
        talos.ensure_healthy().await;
        if let Ok(r) = talos.machine().etcd_status(with_node((), node)).await
            && let Some(st) = r
                .into_inner()
                .messages
                .into_iter()
                .find_map(|m| m.member_status)
            && st.leader != 0
            && st.errors.is_empty()
        {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let members: Vec<_> = talos
        .machine()
        .etcd_member_list(with_node(
            EtcdMemberListRequest { query_local: false },
            node,
        ))
        .await
        .map_err(|s| format!("EtcdMemberList failed after the restore: {}", s.message()))?
        .into_inner()
        .messages
        .into_iter()
        .flat_map(|m| m.members)
        .collect();
    if members.len() != 1 || members.iter().any(|m| m.is_learner) {
        return Err(format!(
            "expected one voting member after the restore, found {}",
            members.len()
        ));
    }
    let mut stream = talos
        .machine()
        .etcd_snapshot(with_node(EtcdSnapshotRequest {}, node))
        .await
        .map_err(|s| format!("the restored member serves no snapshot: {}", s.message()))?
        .into_inner();
    let mut back = Vec::new();
    while let Some(chunk) = stream.next().await {
        back.extend(
            chunk
                .map_err(|s| format!("reading back the restored data failed: {}", s.message()))?
                .bytes,
        );
    }
    crate::sim::etcd::verify_snapshot(&back, false)
        .map_err(|e| format!("the restored member's data is unreadable: {}", e.message))
}

/// Waits until the node's etcd service is in a state `want` accepts; a `Failed` etcd is a
/// failed drill (with the service's last message).
async fn etcd_state(
    talos: &crate::cluster::observe::Failover,
    node: &str,
    want: impl Fn(&str, &str) -> bool,
) -> Result<(), String> {
    loop {
        talos.ensure_healthy().await;
        if let Ok(r) = talos.machine().service_list(with_node((), node)).await
            && let Some(etcd) = r
                .into_inner()
                .messages
                .into_iter()
                .flat_map(|m| m.services)
                .find(|s| s.id == "etcd")
        {
            let last = etcd
                .events
                .as_ref()
                .and_then(|e| e.events.last())
                .map(|e| e.msg.clone())
                .unwrap_or_default();
            if want(&etcd.state, &last) {
                return Ok(());
            }
            if etcd.state == "Failed" {
                return Err(format!("etcd failed on the throwaway node: {last}"));
            }
        }
        tokio::time::sleep(POLL).await;
    }
}
