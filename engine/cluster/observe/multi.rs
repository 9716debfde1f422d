//! One-to-many observation calls: one request with `nodes` metadata for every node, as
//! `talosctl -n a,b,c` sends it, instead of one routed request per node.
//!
//! apid answers a unary call fanned out to several nodes with one reply message per node, each
//! carrying `metadata.hostname` (the target as sent) and, for a node it could not reach or
//! that refused, `metadata.error` and `metadata.status` instead of an answer; the call itself
//! succeeds. [`split`] turns such a reply back into one result per node asked, failing
//! closed: a node without exactly one clean entry (missing, duplicated, an error entry) gets
//! a [`Gap`], never an answer, and an entry naming a node that was not asked (or no node at
//! all) is attributed to nobody. The observer uses this for the unary machine calls it makes
//! on every node (`ServiceList`, `EtcdMemberList`, `EtcdStatus`, `EtcdAlarmList`) and for
//! the `Read` of the hostname and boot id ([`split_data`]: a stream whose chunks carry the
//! same metadata); COSI has no one-to-many form and stays per node.

use std::collections::BTreeMap;

use runbook_proto::common::{Data, Metadata};
use runbook_proto::machine::{self as m, EtcdMemberListRequest, ReadRequest};
use tokio_stream::StreamExt;
use tonic::Code;

use super::{Failover, call};
use crate::cluster::talos::with_nodes;
use crate::condition::reads::{Fact, Reads};
use crate::condition::view::{EtcdStatus, Gap, GapKind, Member, NodeView, Observed, Service};

/// The gap kind of a gRPC code carried in an error entry (as for a failed call).
fn kind_of(code: Code) -> GapKind {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => GapKind::PermissionDenied,
        Code::Unavailable => GapKind::Unreachable,
        Code::DeadlineExceeded => GapKind::TimedOut,
        _ => GapKind::Failed,
    }
}

/// The gap of an error entry: its `status` when present, else its `error` text.
fn entry_gap(call: &str, m: &Metadata) -> Gap {
    match &m.status {
        Some(s) if s.code != 0 => {
            let code = Code::from_i32(s.code);
            Gap::new(call, kind_of(code), format!("{} ({code:?})", s.message))
        }
        _ => Gap::new(call, GapKind::Failed, m.error.clone()),
    }
}

/// Splits the entries of a one-to-many reply into one result per node in `asked`.
///
/// Fails closed per node: a node with no entry, with more than one, or whose entry is an
/// error, gets a gap naming `call`; an entry for a node not asked (or with no metadata) is
/// attributed to nobody. Only a node with exactly one clean entry gets that entry.
pub fn split<E>(
    call: &str,
    asked: &[String],
    entries: Vec<E>,
    metadata: impl Fn(&E) -> Option<&Metadata>,
) -> BTreeMap<String, Result<E, Gap>> {
    let mut by_node: BTreeMap<&str, Vec<E>> =
        asked.iter().map(|n| (n.as_str(), Vec::new())).collect();
    let mut stray = 0usize;
    for e in entries {
        let host = metadata(&e).map(|m| m.hostname.clone()).unwrap_or_default();
        match by_node.get_mut(host.as_str()) {
            Some(list) => list.push(e),
            None => stray += 1,
        }
    }
    if stray > 0 {
        tracing::debug!(
            call,
            stray,
            "one-to-many reply entries for nodes not asked were ignored"
        );
    }
    by_node
        .into_iter()
        .map(|(node, mut list)| {
            let result = match list.len() {
                0 => Err(Gap::new(
                    call,
                    GapKind::Failed,
                    "the one-to-many reply has no entry for this node",
                )),
                1 => {
                    let e = list.remove(0);
                    match metadata(&e) {
                        Some(m)
                            if !m.error.is_empty()
                                || m.status.as_ref().is_some_and(|s| s.code != 0) =>
                        {
                            Err(entry_gap(call, m))
                        }
                        _ => Ok(e),
                    }
                }
                n => Err(Gap::new(
                    call,
                    GapKind::Failed,
                    format!("the one-to-many reply has {n} entries for this node"),
                )),
            };
            (node.to_string(), result)
        })
        .collect()
}

/// The same gap for every node asked (the whole one-to-many call failed).
pub fn all_failed<E>(asked: &[String], gap: &Gap) -> BTreeMap<String, Result<E, Gap>> {
    asked
        .iter()
        .map(|n| (n.clone(), Err(gap.clone())))
        .collect()
}

/// The facts read with one-to-many calls (every other fact is read per node).
pub const FACTS: [Fact; 4] = [
    Fact::Services,
    Fact::Members,
    Fact::EtcdStatus,
    Fact::Alarms,
];

/// `reads` without the facts read one-to-many.
pub fn per_node(reads: Reads) -> Reads {
    let rest: Vec<Fact> = reads
        .facts()
        .into_iter()
        .filter(|f| !FACTS.contains(f))
        .collect();
    Reads::of(&rest)
}

/// The facts of every node read one-to-many, by label (a fact not asked is absent).
#[derive(Default)]
pub struct Replies {
    services: BTreeMap<String, Result<Vec<Service>, Gap>>,
    members: BTreeMap<String, Result<Vec<Member>, Gap>>,
    etcd: BTreeMap<String, Result<EtcdStatus, Gap>>,
    alarms: BTreeMap<String, Result<Vec<String>, Gap>>,
    hostname: BTreeMap<String, Result<String, Gap>>,
    boot_id: BTreeMap<String, Result<String, Gap>>,
}

fn take<T>(map: &BTreeMap<String, Result<T, Gap>>, label: &str, call: &str) -> Observed<T>
where
    T: Clone,
{
    match map.get(label) {
        Some(Ok(v)) => Observed::Answered(v.clone()),
        Some(Err(gap)) => Observed::Missing(gap.clone()),
        None => Observed::Missing(Gap::new(call, GapKind::Failed, "this node was not asked")),
    }
}

impl Replies {
    /// Fills the one-to-many facts `reads` asks for into the view of a node that answered.
    pub fn fill(&self, v: &mut NodeView, reads: Reads) {
        let label = v.label.clone();
        v.hostname = take(&self.hostname, &label, HOSTNAME);
        if reads.has(Fact::BootId) {
            v.boot_id = take(&self.boot_id, &label, BOOT_ID);
        }
        if reads.has(Fact::Services) {
            v.services = take(&self.services, &label, "ServiceList");
        }
        if reads.has(Fact::Members) {
            v.members = take(&self.members, &label, "EtcdMemberList");
        }
        if reads.has(Fact::EtcdStatus) {
            v.etcd = take(&self.etcd, &label, "EtcdStatus");
        }
        if reads.has(Fact::Alarms) {
            v.alarms = take(&self.alarms, &label, "EtcdAlarmList");
        }
    }
}

/// One one-to-many call: split per node, or the call's own failure for every node.
async fn fan_out<R, E, F>(
    call_name: &str,
    asked: &[String],
    f: F,
    entries: impl FnOnce(R) -> Vec<E>,
    metadata: impl Fn(&E) -> Option<&Metadata>,
) -> BTreeMap<String, Result<E, Gap>>
where
    F: std::future::Future<Output = Result<tonic::Response<R>, tonic::Status>>,
{
    match call(call_name, f).await {
        Ok(resp) => split(call_name, asked, entries(resp.into_inner()), metadata),
        Err(gap) => all_failed(asked, &gap),
    }
}

fn convert<E, T>(
    map: BTreeMap<String, Result<E, Gap>>,
    f: impl Fn(E) -> Result<T, Gap>,
) -> BTreeMap<String, Result<T, Gap>> {
    map.into_iter().map(|(k, r)| (k, r.and_then(&f))).collect()
}

/// Reads the one-to-many facts of `reads` for every node in `asked`, the calls concurrently.
pub async fn read(talos: &Failover, asked: &[String], reads: Reads) -> Replies {
    let services = async {
        if !reads.has(Fact::Services) || asked.is_empty() {
            return BTreeMap::new();
        }
        let map = fan_out(
            "ServiceList",
            asked,
            talos.machine().service_list(with_nodes((), asked)),
            |r| r.messages,
            |e| e.metadata.as_ref(),
        )
        .await;
        convert(map, |e| Ok(services_of(vec![e])))
    };
    let members = async {
        if !reads.has(Fact::Members) || asked.is_empty() {
            return BTreeMap::new();
        }
        let map = fan_out(
            "EtcdMemberList",
            asked,
            talos.machine().etcd_member_list(with_nodes(
                EtcdMemberListRequest { query_local: false },
                asked,
            )),
            |r| r.messages,
            |e| e.metadata.as_ref(),
        )
        .await;
        convert(map, |e| Ok(members_of(vec![e])))
    };
    let etcd = async {
        if !reads.has(Fact::EtcdStatus) || asked.is_empty() {
            return BTreeMap::new();
        }
        let map = fan_out(
            "EtcdStatus",
            asked,
            talos.machine().etcd_status(with_nodes((), asked)),
            |r| r.messages,
            |e| e.metadata.as_ref(),
        )
        .await;
        convert(map, |e| etcd_status_of(vec![e]))
    };
    let alarms = async {
        if !reads.has(Fact::Alarms) || asked.is_empty() {
            return BTreeMap::new();
        }
        let map = fan_out(
            "EtcdAlarmList",
            asked,
            talos.machine().etcd_alarm_list(with_nodes((), asked)),
            |r| r.messages,
            |e| e.metadata.as_ref(),
        )
        .await;
        convert(map, |e| Ok(alarms_of(vec![e])))
    };
    let hostname = async {
        if asked.is_empty() {
            return BTreeMap::new();
        }
        read_file(talos, asked, "/proc/sys/kernel/hostname", HOSTNAME).await
    };
    let boot_id = async {
        if !reads.has(Fact::BootId) || asked.is_empty() {
            return BTreeMap::new();
        }
        read_file(talos, asked, "/proc/sys/kernel/random/boot_id", BOOT_ID).await
    };
    let (services, members, etcd, alarms, hostname, boot_id) =
        tokio::join!(services, members, etcd, alarms, hostname, boot_id);
    Replies {
        services,
        members,
        etcd,
        alarms,
        hostname,
        boot_id,
    }
}

/// The call name of the hostname read (as the per-node path names it).
pub const HOSTNAME: &str = "Read /proc/sys/kernel/hostname";
/// The call name of the boot id read.
pub const BOOT_ID: &str = "Read /proc/sys/kernel/random/boot_id";

/// `MachineService/Read` of a small file on every node in `asked`, one-to-many: the stream's
/// chunks are grouped by `metadata.hostname`. A stream that breaks is a gap for every node.
async fn read_file(
    talos: &Failover,
    asked: &[String],
    path: &str,
    name: &str,
) -> BTreeMap<String, Result<String, Gap>> {
    let collect = async {
        let mut stream = talos
            .machine()
            .read(with_nodes(ReadRequest { path: path.into() }, asked))
            .await?
            .into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.next().await {
            chunks.push(chunk?);
        }
        Ok::<_, tonic::Status>(chunks)
    };
    match call(name, collect).await {
        Ok(chunks) => split_data(name, asked, chunks),
        Err(gap) => all_failed(asked, &gap),
    }
}

/// Splits the chunks of a one-to-many `Read` per node: a node's chunks concatenated in order
/// and trimmed. Fails closed per node: no chunk, an error chunk, or an empty file is a gap;
/// chunks for a node not asked (or without metadata) are attributed to nobody.
pub fn split_data(
    call: &str,
    asked: &[String],
    chunks: Vec<Data>,
) -> BTreeMap<String, Result<String, Gap>> {
    let mut by_node: BTreeMap<&str, Vec<Data>> =
        asked.iter().map(|n| (n.as_str(), Vec::new())).collect();
    for c in chunks {
        let host = c
            .metadata
            .as_ref()
            .map(|m| m.hostname.clone())
            .unwrap_or_default();
        if let Some(list) = by_node.get_mut(host.as_str()) {
            list.push(c);
        }
    }
    by_node
        .into_iter()
        .map(|(node, list)| {
            let failed = list
                .iter()
                .filter_map(|c| c.metadata.as_ref())
                .find(|m| is_error(m));
            let result = if let Some(m) = failed {
                Err(entry_gap(call, m))
            } else if list.is_empty() {
                Err(Gap::new(
                    call,
                    GapKind::Failed,
                    "the one-to-many reply has no entry for this node",
                ))
            } else {
                let bytes: Vec<u8> = list.into_iter().flat_map(|c| c.bytes).collect();
                let text = String::from_utf8_lossy(&bytes).trim().to_string();
                if text.is_empty() {
                    Err(Gap::new(call, GapKind::Failed, "empty file"))
                } else {
                    Ok(text)
                }
            };
            (node.to_string(), result)
        })
        .collect()
}

fn is_error(m: &Metadata) -> bool {
    !m.error.is_empty() || m.status.as_ref().is_some_and(|s| s.code != 0)
}

/// The services of `ServiceList` reply entries.
pub fn services_of(entries: Vec<m::ServiceList>) -> Vec<Service> {
    entries
        .into_iter()
        .flat_map(|m| m.services)
        .map(|s| Service {
            healthy: s.health.as_ref().is_some_and(|h| h.healthy),
            id: s.id,
            state: s.state,
        })
        .collect()
}

/// The members of `EtcdMemberList` reply entries.
pub fn members_of(entries: Vec<m::EtcdMembers>) -> Vec<Member> {
    entries
        .into_iter()
        .flat_map(|m| m.members)
        .map(|m| Member {
            id: m.id,
            name: m.hostname,
            peer_urls: m.peer_urls,
            is_learner: m.is_learner,
        })
        .collect()
}

/// The member status of `EtcdStatus` reply entries (a reply without one is a gap).
pub fn etcd_status_of(entries: Vec<m::EtcdStatus>) -> Result<EtcdStatus, Gap> {
    entries
        .into_iter()
        .find_map(|m| m.member_status)
        .map(|s| EtcdStatus {
            member_id: s.member_id,
            leader: s.leader,
            raft_index: s.raft_index,
            errors: s.errors,
            is_learner: s.is_learner,
        })
        .ok_or_else(|| Gap::new("EtcdStatus", GapKind::Failed, "no etcd status"))
}

/// The raised alarms of `EtcdAlarmList` reply entries.
pub fn alarms_of(entries: Vec<m::EtcdAlarm>) -> Vec<String> {
    entries
        .into_iter()
        .flat_map(|m| m.member_alarms)
        .filter(|a| a.alarm != 0)
        .map(|a| format!("{:016x}: alarm {}", a.member_id, a.alarm))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use runbook_proto::google::rpc::Status as RpcStatus;
    use runbook_proto::machine::ServiceList;

    fn ok(host: &str, n: usize) -> ServiceList {
        ServiceList {
            metadata: Some(Metadata {
                hostname: host.into(),
                ..Metadata::default()
            }),
            services: vec![Default::default(); n],
        }
    }

    fn err(host: &str, code: Code, message: &str) -> ServiceList {
        ServiceList {
            metadata: Some(Metadata {
                hostname: host.into(),
                error: format!("rpc error: code = {code:?} desc = {message}"),
                status: Some(RpcStatus {
                    code: code as i32,
                    message: message.into(),
                    details: Vec::new(),
                }),
            }),
            services: Vec::new(),
        }
    }

    fn asked(nodes: &[&str]) -> Vec<String> {
        nodes.iter().map(|s| s.to_string()).collect()
    }

    fn run(
        nodes: &[&str],
        entries: Vec<ServiceList>,
    ) -> BTreeMap<String, Result<ServiceList, Gap>> {
        split("ServiceList", &asked(nodes), entries, |e| {
            e.metadata.as_ref()
        })
    }

    #[test]
    fn each_node_gets_its_own_entry() {
        let r = run(&["a", "b"], vec![ok("b", 2), ok("a", 1)]);
        assert_eq!(r["a"].as_ref().unwrap().services.len(), 1);
        assert_eq!(r["b"].as_ref().unwrap().services.len(), 2);
    }

    #[test]
    fn a_node_missing_from_the_reply_is_a_gap_for_it_only() {
        let r = run(&["a", "b"], vec![ok("a", 1)]);
        assert!(r["a"].is_ok());
        let gap = r["b"].as_ref().unwrap_err();
        assert_eq!(gap.call, "ServiceList");
        assert_eq!(gap.kind, GapKind::Failed);
        assert!(gap.message.contains("no entry"), "{gap:?}");
    }

    #[test]
    fn a_duplicated_entry_is_a_gap_never_either_answer() {
        let r = run(&["a", "b"], vec![ok("a", 1), ok("b", 1), ok("a", 3)]);
        assert!(r["b"].is_ok());
        let gap = r["a"].as_ref().unwrap_err();
        assert!(gap.message.contains("2 entries"), "{gap:?}");
    }

    #[test]
    fn an_entry_for_a_node_not_asked_is_attributed_to_nobody() {
        let r = run(&["a"], vec![ok("z", 1)]);
        assert_eq!(r.len(), 1);
        assert!(r["a"].is_err());
        assert!(!r.contains_key("z"));
    }

    #[test]
    fn an_entry_without_metadata_is_attributed_to_nobody() {
        // The endpoint answered for itself (it ignored `nodes`): no node may take it.
        let mut e = ok("", 1);
        e.metadata = None;
        let r = run(&["a"], vec![e, ok("", 2)]);
        assert!(r["a"].is_err());
    }

    #[test]
    fn an_error_entry_is_a_gap_of_its_code() {
        let r = run(
            &["a", "b", "c", "d"],
            vec![
                ok("a", 1),
                err("b", Code::Unavailable, "connection refused"),
                err("c", Code::PermissionDenied, "not authorized"),
                err("d", Code::Unimplemented, "only on control plane nodes"),
            ],
        );
        assert!(r["a"].is_ok());
        let b = r["b"].as_ref().unwrap_err();
        assert_eq!(b.kind, GapKind::Unreachable);
        assert!(b.message.contains("connection refused"), "{b:?}");
        assert_eq!(r["c"].as_ref().unwrap_err().kind, GapKind::PermissionDenied);
        assert_eq!(r["d"].as_ref().unwrap_err().kind, GapKind::Failed);
    }

    #[test]
    fn an_error_text_without_a_status_is_still_a_gap() {
        let mut e = ok("a", 1);
        if let Some(m) = e.metadata.as_mut() {
            m.error = "rpc error: code = Unknown desc = boom".into();
        }
        let gap = run(&["a"], vec![e]).remove("a").unwrap().unwrap_err();
        assert_eq!(gap.kind, GapKind::Failed);
        assert!(gap.message.contains("boom"), "{gap:?}");
    }

    #[test]
    fn an_error_entry_next_to_an_answer_for_the_same_node_is_a_gap() {
        let r = run(
            &["a"],
            vec![ok("a", 1), err("a", Code::Unavailable, "gone")],
        );
        assert!(r["a"].is_err());
    }

    fn chunk(host: &str, bytes: &str) -> Data {
        Data {
            metadata: Some(Metadata {
                hostname: host.into(),
                ..Metadata::default()
            }),
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_one_to_many_read_is_split_per_node_and_fails_closed() {
        let mut refused = chunk("c", "");
        if let Some(m) = refused.metadata.as_mut() {
            m.status = Some(RpcStatus {
                code: Code::PermissionDenied as i32,
                message: "not authorized".into(),
                details: Vec::new(),
            });
        }
        let r = split_data(
            HOSTNAME,
            &asked(&["a", "b", "c", "d", "e"]),
            vec![
                chunk("a", "nuc-"),
                chunk("z", "intruder\n"),
                chunk("b", "worker-01\n"),
                chunk("a", "20\n"),
                refused,
                chunk("e", " \n"),
                chunk("", "endpoint-itself"),
            ],
        );
        assert_eq!(r["a"].as_ref().unwrap(), "nuc-20");
        assert_eq!(r["b"].as_ref().unwrap(), "worker-01");
        assert_eq!(r["c"].as_ref().unwrap_err().kind, GapKind::PermissionDenied);
        assert!(r["d"].as_ref().unwrap_err().message.contains("no entry"));
        assert!(r["e"].as_ref().unwrap_err().message.contains("empty"));
        assert!(!r.contains_key("z"));
    }

    #[test]
    fn an_error_chunk_among_data_chunks_is_a_gap() {
        let mut bad = chunk("a", "");
        if let Some(m) = bad.metadata.as_mut() {
            m.error = "rpc error: code = Unavailable desc = gone".into();
        }
        let r = split_data(BOOT_ID, &asked(&["a"]), vec![chunk("a", "1234"), bad]);
        assert!(r["a"].is_err());
    }

    #[test]
    fn a_failed_call_is_the_same_gap_for_every_node() {
        let gap = Gap::new("ServiceList", GapKind::TimedOut, "timed out");
        let r: BTreeMap<String, Result<ServiceList, Gap>> = all_failed(&asked(&["a", "b"]), &gap);
        assert_eq!(r["a"].as_ref().unwrap_err(), &gap);
        assert_eq!(r["b"].as_ref().unwrap_err(), &gap);
    }
}
