//! The body of `etcd.snapshot`: stream a snapshot from one node into the backup directory,
//! age-encrypted before it touches the disk when `age_recipient` is given, with its sidecar.
//!
//! It lives apart from the `act` match because it has grown its own concerns: the evidence the
//! sidecar records (raft index, Talos version, the cluster id from COSI
//! `Infos.cluster.talos.dev`), each best-effort for a role that may not read it; streaming
//! through [`SnapshotSink`] so no whole database is held in memory and no plaintext file ever
//! exists; and a test hook in the middle of the stream so a kill there can be rehearsed.

use std::path::PathBuf;

use runbook_proto::cosi::resource::GetRequest;
use runbook_proto::machine::EtcdSnapshotRequest;
use tokio_stream::StreamExt;

use super::{ClusterEffects, arg, io_error, opt, outputs, status_error};
use crate::cluster::backup::stream::{SnapshotSink, recipient};
use crate::cluster::talos::with_node;
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};

/// The test hook's name for "after the first chunk was written": a kill mid-stream
/// (`RUNBOOK_TEST_KILL_IN_EFFECT=etcd.snapshot/stream:1:after`).
const HOOK_STREAM: &str = "etcd.snapshot/stream";

/// `<dir>/<UTC stamp with milliseconds>_<node>.db[.age]`, with `-2`, `-3`… when a file of
/// that name exists already (two backups in one millisecond never share a name; the sink
/// refuses to replace one anyway).
fn snapshot_path(dir: &std::path::Path, node: &str, taken_ms: u64, encrypted: bool) -> PathBuf {
    let stamp = crate::journal::time::compact(taken_ms);
    let stamp = format!("{}{:03}Z", stamp.trim_end_matches('Z'), taken_ms % 1000);
    let ext = if encrypted { "db.age" } else { "db" };
    let node = node.replace(['/', ':', '\\'], "_");
    let mut n = 1u32;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!("-{n}")
        };
        let p = dir.join(format!("{stamp}_{node}{suffix}.{ext}"));
        if std::fs::symlink_metadata(&p).is_err()
            && std::fs::symlink_metadata(crate::cluster::backup::sidecar_path(&p)).is_err()
        {
            return p;
        }
        n += 1;
    }
}

impl ClusterEffects {
    pub(super) async fn snapshot(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let dir = PathBuf::from(arg(call, "dir")?);
        let recipient = match opt(call, "age_recipient")?.filter(|r| !r.trim().is_empty()) {
            None => None,
            Some(r) => Some(recipient(r).map_err(|e| EffectError::BadArgument {
                name: call.name.into(),
                arg: "age_recipient".into(),
                reason: e.to_string(),
            })?),
        };
        // Owner-only and durable (the parent of each new directory fsynced): the snapshot taken
        // just before a wipe must survive a power cut.
        crate::journal::durable::create_private_dir_all(&dir)
            .map_err(|e| io_error(call.name, &format!("cannot create `{}`", dir.display()), e))?;
        let taken_ms = crate::journal::time::now_ms();
        let final_path = snapshot_path(&dir, node, taken_ms, recipient.is_some());
        // Read before the stream: the snapshot holds at least this raft index. All three are
        // best-effort (an etcd:backup role reads EtcdStatus but not Version or COSI, as Talos's
        // role table says): what could not be read is `null` in the sidecar.
        let revision = self.raft_index_of(node).await;
        let talos_version = self
            .talos()
            .machine()
            .version(with_node((), node))
            .await
            .ok()
            .and_then(|r| r.into_inner().messages.into_iter().find_map(|m| m.version))
            .map(|v| v.tag);
        let cluster_id = self.cluster_id(node).await;
        let mut stream = self
            .talos()
            .machine()
            .etcd_snapshot(with_node(EtcdSnapshotRequest {}, node))
            .await
            .map_err(|s| status_error(call.name, &s))?
            .into_inner();
        let stored_err = |e| io_error(call.name, "cannot store the snapshot", e);
        let mut sink = SnapshotSink::create(&final_path, recipient.as_ref()).map_err(stored_err)?;
        let ordinal = crate::test_hook::effect_started(HOOK_STREAM);
        let mut first = true;
        while let Some(chunk) = stream.next().await {
            // An error drops the sink, which removes its partial file.
            let chunk = chunk.map_err(|s| status_error(call.name, &s))?;
            sink.write(&chunk.bytes).map_err(stored_err)?;
            if first {
                first = false;
                crate::test_hook::in_effect_at(
                    HOOK_STREAM,
                    ordinal,
                    crate::test_hook::EffectPoint::After,
                );
            }
        }
        let encrypted = sink.encrypted();
        let (stored, _) = sink
            .commit(|s| crate::cluster::backup::Sidecar {
                node: node.to_string(),
                revision,
                sha256: s.sha256.clone(),
                size: s.size,
                talos_version,
                cluster_id: cluster_id.clone(),
                taken_at: crate::journal::time::rfc3339(taken_ms),
                encrypted,
                drill: None,
            })
            .map_err(|e| match e {
                crate::cluster::backup::stream::StreamError::Rejected(why) => {
                    io_error(call.name, "snapshot rejected", why)
                }
                other => stored_err(other),
            })?;
        Ok(outputs([
            ("path", final_path.display().to_string().into()),
            (
                "sidecar",
                crate::cluster::backup::sidecar_path(&final_path)
                    .display()
                    .to_string()
                    .into(),
            ),
            ("sha256", stored.sha256.into()),
            ("size", stored.size.into()),
            ("encrypted", encrypted.into()),
            (
                "cluster_id",
                cluster_id.map_or(serde_json::Value::Null, Into::into),
            ),
        ]))
    }

    /// The raft index `node`'s etcd member reports (EtcdStatus), best effort: `None` when it
    /// could not be read. A snapshot taken after this read holds at least this index.
    pub(super) async fn raft_index_of(&self, node: &str) -> Option<u64> {
        self.talos()
            .machine()
            .etcd_status(with_node((), node))
            .await
            .ok()
            .and_then(|r| {
                r.into_inner()
                    .messages
                    .into_iter()
                    .find_map(|m| m.member_status)
            })
            .map(|s| s.raft_index)
    }

    /// The Talos cluster id (`Infos.cluster.talos.dev` `current`, `clusterId`), or `None`
    /// when the node does not answer it (or the role may not read it).
    pub(super) async fn cluster_id(&self, node: &str) -> Option<String> {
        let req = GetRequest {
            namespace: "cluster".into(),
            r#type: "Infos.cluster.talos.dev".into(),
            id: "current".into(),
            options: None,
        };
        let yaml = self
            .talos()
            .cosi()
            .get(with_node(req, node))
            .await
            .ok()?
            .into_inner()
            .resource?
            .spec?
            .yaml_spec;
        yaml.lines().find_map(|l| {
            l.trim()
                .strip_prefix("clusterId:")
                .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
                .filter(|v| !v.is_empty())
        })
    }
}
