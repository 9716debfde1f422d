//! The body of `etcd.diagnose`: gather, read-only, what a quorum recovery must know before
//! anything is wiped — which control planes answer, each member's raft applied index and the
//! leader it sees (`EtcdStatus`), and, for a member whose etcd does not answer, whether its
//! database file exists at all (the first reply of a `Copy` of `member/snap/db`, the rest
//! dropped) — then decide with [`crate::cluster::quorum::decide`].
//!
//! A decision that cannot be made (quorum not lost, a silent node nobody attested, a node
//! that may hold newer data than the survivor) is a refusal, so the run stops as a guard
//! refusal, before the Reset steps. Its outputs (survivor, nodes to wipe, the down machines,
//! warnings, next steps) are journaled with the step; the next steps reach the run's report.

use runbook_proto::machine::CopyRequest;
use tonic::Code;

use super::{ClusterEffects, opt, outputs, strings};
use crate::cluster::quorum::{Data, Facts, decide};
use crate::cluster::talos::{ETCD_DB_PATH, with_node};
use crate::exec::effects::{ActionCall, ActionOutcome, EffectError};
use crate::journal::Fields;

impl ClusterEffects {
    pub(super) async fn diagnose(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<ActionOutcome, EffectError> {
        let nodes = strings(call, "nodes")?;
        let down = strings(call, "down")?;
        let survivor = opt(call, "survivor")?.filter(|s| !s.is_empty());
        let mut all = nodes.clone();
        all.extend(down.iter().filter(|d| !nodes.contains(d)).cloned());
        let mut facts = Vec::new();
        for node in &all {
            facts.push(self.facts(node).await);
        }
        let mut figures = Fields::new();
        figures.insert(
            "nodes".into(),
            facts
                .iter()
                .map(|f| serde_json::Value::String(format!("{}: {:?}", f.node, f.data)))
                .collect::<Vec<_>>()
                .into(),
        );
        let d = decide(&facts, survivor, &down).map_err(|reason| EffectError::Refused {
            reason: format!("quorum recovery refused: {reason}"),
            figures,
        })?;
        let mut messages: Vec<String> = d.seen.iter().map(|s| format!("seen: {s}")).collect();
        messages.push(format!(
            "survivor: {} (raft applied index {}); wiped and rejoining: {}; attested powered off: {}",
            d.survivor,
            d.applied,
            d.wipe.join(", "),
            if d.down.is_empty() {
                "none".to_owned()
            } else {
                d.down.join(", ")
            }
        ));
        messages.extend(d.warnings.iter().map(|w| format!("WARNING: {w}")));
        let mut out = outputs([
            ("survivor", d.survivor.clone().into()),
            ("newest", d.newest.clone().into()),
            ("applied_index", d.applied.into()),
            ("wipe", d.wipe.clone().into()),
            ("down", d.down.clone().into()),
            ("warnings", d.warnings.clone().into()),
            ("seen", d.seen.clone().into()),
            ("next_steps", d.next_steps.clone().into()),
        ]);
        out.messages = messages;
        Ok(out)
    }

    /// What one node answers: silence, its member's status, or whether its database exists.
    async fn facts(&self, node: &str) -> Facts {
        let view = self.observer.node(node).await;
        let answered = match view.contact.gap() {
            None => true,
            Some(g) if g.kind.is_silence() => false,
            Some(g) => {
                return Facts {
                    node: node.to_owned(),
                    answered: true,
                    data: Data::Unknown { why: g.to_string() },
                };
            }
        };
        if !answered {
            return Facts {
                node: node.to_owned(),
                answered,
                data: Data::Unknown {
                    why: "silent".into(),
                },
            };
        }
        let status = self
            .talos()
            .machine()
            .etcd_status(with_node((), node))
            .await
            .map(|r| {
                r.into_inner()
                    .messages
                    .into_iter()
                    .find_map(|m| m.member_status)
            });
        let why = match status {
            Ok(Some(s)) => {
                return Facts {
                    node: node.to_owned(),
                    answered,
                    data: Data::Serving {
                        applied: s.raft_applied_index,
                        leader: s.leader,
                    },
                };
            }
            Ok(None) => "EtcdStatus answered no member status".to_owned(),
            Err(s) => format!("EtcdStatus: {} ({:?})", s.message(), s.code()),
        };
        let data = match self.db_present(node).await {
            Ok(true) => Data::Unread { why },
            Ok(false) => Data::Absent,
            Err(e) => Data::Unknown {
                why: format!("{why}; Copy {ETCD_DB_PATH}: {e}"),
            },
        };
        Facts {
            node: node.to_owned(),
            answered,
            data,
        }
    }

    /// Whether `member/snap/db` exists on `node`: the first reply of a `Copy` (the rest of the
    /// stream is dropped unread).
    async fn db_present(&self, node: &str) -> Result<bool, String> {
        let missing = |code: Option<Code>, msg: &str| {
            code == Some(Code::NotFound) || msg.contains("no such file or directory")
        };
        let req = CopyRequest {
            root_path: ETCD_DB_PATH.into(),
        };
        let mut stream = match self.talos().machine().copy(with_node(req, node)).await {
            Ok(r) => r.into_inner(),
            Err(s) if missing(Some(s.code()), s.message()) => return Ok(false),
            Err(s) => return Err(format!("{} ({:?})", s.message(), s.code())),
        };
        match stream.message().await {
            Ok(Some(m)) => match m.metadata.map(|m| m.error).filter(|e| !e.is_empty()) {
                Some(e) if missing(None, &e) => Ok(false),
                Some(e) => Err(e),
                None => Ok(true),
            },
            Ok(None) => Err("the copy stream ended without a reply".into()),
            Err(s) if missing(Some(s.code()), s.message()) => Ok(false),
            Err(s) => Err(format!("{} ({:?})", s.message(), s.code())),
        }
    }
}
