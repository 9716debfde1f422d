//! The quorum-recovery diagnosis as a pure decision: given what each control plane answered
//! (its raft applied index and leader, or whether its etcd database file exists), decide
//! whether quorum is really lost, which member holds the newest data (the survivor), which
//! nodes are wiped and which silent machines the operator must attest, or refuse.
//!
//! It is apart from the effect that gathers the evidence (`etcd.diagnose`) so every rule can
//! be tested without a cluster, and so the `cluster.etcd-*` parameter defaults pick the
//! survivor by the same rule. It fails closed: a node whose answer is missing or ambiguous
//! (its etcd is silent but it may hold data, a node that answers although attested down, a
//! silent node nobody attested) refuses the recovery, since wiping on a wrong picture loses
//! the newest data or splits the cluster.

/// What one node's etcd data looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Its member answered `EtcdStatus`.
    Serving {
        /// `raft_applied_index`.
        applied: u64,
        /// The leader it sees (0: none).
        leader: u64,
    },
    /// Its etcd does not answer, but the database file exists (its applied index is unknown).
    Unread {
        /// Why the status could not be read.
        why: String,
    },
    /// The data directory holds no database (the node lost its data, or never had any).
    Absent,
    /// Neither the status nor the file could be read.
    Unknown {
        /// Why.
        why: String,
    },
}

/// The evidence about one control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The node.
    pub node: String,
    /// Whether its Talos API answered at all (`false`: silent).
    pub answered: bool,
    /// Its etcd data (meaningless for a silent node).
    pub data: Data,
}

/// The decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The member whose data is restored.
    pub survivor: String,
    /// The member with the newest data (the survivor unless the operator chose otherwise).
    pub newest: String,
    /// The survivor's applied index.
    pub applied: u64,
    /// Every reachable control plane: all are wiped; they rejoin the restored cluster.
    pub wipe: Vec<String>,
    /// Silent machines the operator attests are powered off.
    pub down: Vec<String>,
    /// Warnings for the operator (a survivor that is not the newest).
    pub warnings: Vec<String>,
    /// One line per node: what was seen.
    pub seen: Vec<String>,
    /// What to do after the recovery (replace each dead machine).
    pub next_steps: Vec<String>,
}

/// Decides. `chosen` is the survivor the run names (the operator's, or the default); `down`
/// the machines attested powered off; `facts` one entry per control plane, reachable or not.
pub fn decide(facts: &[Facts], chosen: Option<&str>, down: &[String]) -> Result<Diagnosis, String> {
    if facts.is_empty() {
        return Err("no control plane to diagnose".into());
    }
    let mut seen = Vec::new();
    let mut with_leader = Vec::new();
    let mut holders: Vec<(&str, u64)> = Vec::new();
    let mut wipe = Vec::new();
    let mut silent = Vec::new();
    for f in facts {
        let attested = down.iter().any(|d| d == &f.node);
        if !f.answered {
            if !attested {
                return Err(format!(
                    "{} does not answer and is not attested down: it could be a network split hiding a running etcd; power it off and name it in `down`, or bring it back",
                    f.node
                ));
            }
            seen.push(format!("{}: silent (attested powered off)", f.node));
            silent.push(f.node.clone());
            continue;
        }
        if attested {
            return Err(format!(
                "{} is named in `down` but answers: it is not powered off; check it like any other node (drop it from `down`)",
                f.node
            ));
        }
        wipe.push(f.node.clone());
        match &f.data {
            Data::Serving { applied, leader } => {
                if *leader != 0 {
                    with_leader.push(f.node.as_str());
                }
                holders.push((f.node.as_str(), *applied));
                seen.push(format!(
                    "{}: etcd data present, raft applied index {applied}, {}",
                    f.node,
                    if *leader == 0 {
                        "no leader".to_owned()
                    } else {
                        format!("leader {leader:x}")
                    }
                ));
            }
            Data::Absent => seen.push(format!("{}: no etcd data (member/snap/db absent)", f.node)),
            Data::Unread { why } => {
                return Err(format!(
                    "{} holds etcd data but its etcd does not report its applied index ({why}): it may hold the newest data; start its etcd (or fix what stops it) and diagnose again",
                    f.node
                ));
            }
            Data::Unknown { why } => {
                return Err(format!(
                    "cannot tell whether {} holds etcd data: {why}",
                    f.node
                ));
            }
        }
    }
    if !with_leader.is_empty() {
        return Err(format!(
            "quorum is not lost: etcd has a leader (seen from {}); bring the missing voter back, or replace a dead node with node-replace",
            with_leader.join(", ")
        ));
    }
    // On a tie the later one: the survivor is wiped last (see below).
    let Some(&(newest, newest_index)) = holders
        .iter()
        .reduce(|best, h| if h.1 >= best.1 { h } else { best })
    else {
        return Err(
            "no reachable control plane holds etcd data: nothing to restore from a survivor (restore a verified snapshot with a full rebuild)"
                .into(),
        );
    };
    let mut warnings = Vec::new();
    let (survivor, applied) = match chosen {
        None => (newest, newest_index),
        Some(c) => {
            let Some(&(s, idx)) = holders.iter().find(|(n, _)| *n == c) else {
                return Err(format!(
                    "the chosen survivor {c} is not a reachable member holding etcd data"
                ));
            };
            if idx < newest_index {
                warnings.push(format!(
                    "the chosen survivor {s} is NOT the member with the newest data: {newest} has raft applied index {newest_index}, {s} has {idx}; the writes in between are lost"
                ));
            }
            (s, idx)
        }
    };
    // Every wipe re-checks that quorum is lost, and after the survivor's wipe no member is
    // left to say so: the survivor goes last.
    if wipe.last().map(String::as_str) != Some(survivor) {
        return Err(format!(
            "the survivor {survivor} must be the last of `nodes` (it is wiped last: until then its etcd testifies that quorum is lost); give `--param nodes=…` ending with it"
        ));
    }
    let next_steps = silent
        .iter()
        .map(|d| {
            format!(
                "replace {d} with node-replace (`runbook run node-replace --param node={d} …`): the restored cluster does not know it"
            )
        })
        .collect();
    Ok(Diagnosis {
        survivor: survivor.to_owned(),
        newest: newest.to_owned(),
        applied,
        wipe,
        down: silent,
        warnings,
        seen,
        next_steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(node: &str, applied: u64) -> Facts {
        Facts {
            node: node.into(),
            answered: true,
            data: Data::Serving { applied, leader: 0 },
        }
    }

    fn silent(node: &str) -> Facts {
        Facts {
            node: node.into(),
            answered: false,
            data: Data::Unknown {
                why: "silent".into(),
            },
        }
    }

    fn absent(node: &str) -> Facts {
        Facts {
            node: node.into(),
            answered: true,
            data: Data::Absent,
        }
    }

    fn down(d: &[&str]) -> Vec<String> {
        d.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_dead_machines_leave_one_survivor_and_name_node_replace_for_each() {
        let d = decide(
            &[serving("a", 7), silent("b"), silent("c")],
            None,
            &down(&["b", "c"]),
        )
        .unwrap();
        assert_eq!(d.survivor, "a");
        assert_eq!(d.wipe, ["a"]);
        assert_eq!(d.down, ["b", "c"]);
        assert_eq!(d.next_steps.len(), 2);
        assert!(d.next_steps[0].contains("node-replace --param node=b"));
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn lost_data_nodes_are_wiped_and_rejoin_and_nothing_is_left_to_replace() {
        let d = decide(&[absent("b"), absent("c"), serving("a", 7)], None, &[]).unwrap();
        assert_eq!(d.survivor, "a");
        assert_eq!(d.wipe, ["b", "c", "a"]);
        // The survivor first would leave the later wipes without a witness of the loss.
        let e = decide(&[serving("a", 7), absent("b")], None, &[]).unwrap_err();
        assert!(e.contains("must be the last"), "{e}");
        assert!(d.down.is_empty() && d.next_steps.is_empty());
    }

    #[test]
    fn the_newest_member_is_chosen_and_an_older_choice_is_warned_about() {
        let f = [serving("b", 9), silent("c")];
        let d = decide(&f, None, &down(&["c"])).unwrap();
        assert_eq!((d.survivor.as_str(), d.applied), ("b", 9));
        let f = [serving("b", 9), serving("a", 5), silent("c")];
        let d = decide(&f, Some("a"), &down(&["c"])).unwrap();
        assert_eq!(d.survivor, "a");
        assert_eq!(d.newest, "b");
        assert!(
            d.warnings[0].contains("NOT the member with the newest data"),
            "{d:?}"
        );
        // Ties keep the last (the one wiped last).
        let d = decide(
            &[serving("a", 9), serving("b", 9), silent("c")],
            None,
            &down(&["c"]),
        )
        .unwrap();
        assert_eq!(d.survivor, "b");
        // A chosen node without data is refused.
        let e = decide(&[serving("a", 9), absent("b")], Some("b"), &[]).unwrap_err();
        assert!(
            e.contains("not a reachable member holding etcd data"),
            "{e}"
        );
    }

    #[test]
    fn quorum_that_holds_is_refused_naming_node_replace() {
        let mut f = [serving("a", 5), serving("b", 5), silent("c")];
        f[1].data = Data::Serving {
            applied: 5,
            leader: 0xab,
        };
        let e = decide(&f, None, &down(&["c"])).unwrap_err();
        assert!(
            e.contains("quorum is not lost") && e.contains("node-replace"),
            "{e}"
        );
    }

    #[test]
    fn doubt_refuses() {
        // A silent node nobody attested could hide a running etcd.
        let e = decide(&[serving("a", 5), silent("b")], None, &[]).unwrap_err();
        assert!(e.contains("network split"), "{e}");
        // A node attested down that answers.
        let e = decide(&[serving("a", 5), absent("b")], None, &down(&["b"])).unwrap_err();
        assert!(e.contains("answers"), "{e}");
        // Data present but its index unreadable: it may be newer.
        let f = [
            serving("a", 5),
            Facts {
                node: "b".into(),
                answered: true,
                data: Data::Unread {
                    why: "etcd Failed".into(),
                },
            },
        ];
        assert!(
            decide(&f, None, &[])
                .unwrap_err()
                .contains("may hold the newest")
        );
        // Neither status nor file readable.
        let f = [
            serving("a", 5),
            Facts {
                node: "b".into(),
                answered: true,
                data: Data::Unknown {
                    why: "PermissionDenied".into(),
                },
            },
        ];
        assert!(decide(&f, None, &[]).unwrap_err().contains("cannot tell"));
        // No data anywhere, or nothing at all.
        assert!(decide(&[absent("a")], None, &[]).is_err());
        assert!(decide(&[], None, &[]).is_err());
    }
}
