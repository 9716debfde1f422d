//! Dispatch from a catalog name and its resolved arguments to the check function.
//!
//! The executor resolves a step's guard or wait arguments (expressions evaluated), asks
//! [`observations`] what the guard needs (nothing for `backup.fresh`, two views some seconds
//! apart for `talos.node-down`, one fresh view otherwise), observes the cluster into a
//! [`ClusterView`], and calls [`guard_with`] (or [`guard`]) or [`wait`]. A test keeps this table
//! and the catalogs in `condition/catalog.rs` in step.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::condition::talos::Poll;
use crate::condition::view::{ClusterView, Verdict};
use crate::condition::{etcd, kube, talos};

/// Resolved arguments.
pub type Args = BTreeMap<String, serde_json::Value>;

/// A check could not be evaluated (bad run-time argument or unknown name).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// No such guard or condition.
    #[error("unknown {kind} `{name}`")]
    Unknown {
        /// `guard` or `condition`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// An argument is missing or of the wrong type at run time.
    #[error("`{check}`: argument `{arg}` {problem}")]
    Arg {
        /// The guard or condition.
        check: String,
        /// The argument.
        arg: String,
        /// What is wrong.
        problem: String,
    },
}

struct A<'a> {
    check: &'a str,
    args: &'a Args,
}

impl A<'_> {
    fn str(&self, name: &str) -> Result<&str, Error> {
        self.opt_str(name)?.ok_or_else(|| Error::Arg {
            check: self.check.into(),
            arg: name.into(),
            problem: "is missing".into(),
        })
    }

    fn opt_str(&self, name: &str) -> Result<Option<&str>, Error> {
        match self.args.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Error::Arg {
                check: self.check.into(),
                arg: name.into(),
                problem: format!("must be a string, found {other}"),
            }),
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<usize, Error> {
        match self.args.get(name) {
            None => usize::try_from(default).map_err(|_| self.bad(name, "is negative")),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    self.bad(name, &format!("must be a non-negative integer, found {v}"))
                }),
        }
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration, Error> {
        match self.opt_str(name)? {
            None => Ok(default),
            Some(s) => crate::dsl::duration::parse(s).map_err(|e| self.bad(name, &e)),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, Error> {
        match self.args.get(name) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str().map(str::to_string).ok_or_else(|| {
                        self.bad(name, &format!("must be a list of strings, found {i}"))
                    })
                })
                .collect(),
            Some(other) => Err(self.bad(name, &format!("must be a list, found {other}"))),
        }
    }

    fn bad(&self, name: &str, problem: &str) -> Error {
        Error::Arg {
            check: self.check.into(),
            arg: name.into(),
            problem: problem.into(),
        }
    }
}

/// What a guard needs observed before it can be decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// Nothing from the cluster (`backup.fresh` reads a directory).
    Nothing,
    /// One fresh view.
    Once,
    /// Two fresh views this far apart (`talos.node-down`'s `confirm`).
    Twice(Duration),
}

/// Default delay between `talos.node-down`'s two observations.
pub const NODE_DOWN_CONFIRM: Duration = Duration::from_secs(5);

/// What the named guard needs observed.
pub fn observations(name: &str, args: &Args) -> Result<Observation, Error> {
    let a = A { check: name, args };
    Ok(match name {
        "backup.fresh" => Observation::Nothing,
        "talos.node-down" => Observation::Twice(a.duration("confirm", NODE_DOWN_CONFIRM)?),
        _ => Observation::Once,
    })
}

/// Evaluates a named guard on one view (a guard that needs two observations refuses).
pub fn guard(name: &str, args: &Args, view: &ClusterView) -> Result<Verdict, Error> {
    guard_with(name, args, view, None)
}

/// Evaluates a named guard; `earlier` is the first of two observations, for the guards that
/// need two ([`observations`]).
pub fn guard_with(
    name: &str,
    args: &Args,
    view: &ClusterView,
    earlier: Option<&ClusterView>,
) -> Result<Verdict, Error> {
    let a = A { check: name, args };
    Ok(match name {
        "etcd.quorum" => etcd::has_quorum(view),
        "etcd.safe-down" => etcd::safe_down(view, a.str("node")?),
        "etcd.safe-remove" => etcd::safe_remove(view, a.str("node")?),
        "etcd.consistent" => etcd::consistent(view),
        "etcd.no-alarms" => etcd::no_alarms(view),
        "etcd.no-learners" => etcd::no_learners(view),
        "etcd.quorum-lost" => etcd::quorum_lost(view),
        "etcd.bootstrap-safe" => etcd::bootstrap_safe(view, a.str("node")?, &a.strings("down")?),
        "talos.all-running" => talos::all_running(view),
        "talos.node-running" => talos::node_running(view, a.str("node")?),
        "talos.not-member" => talos::not_member(view, a.str("node")?),
        "talos.node-down" => {
            let node = a.str("node")?;
            a.duration("confirm", NODE_DOWN_CONFIRM)?;
            match earlier {
                Some(first) => talos::node_down(first, Some(view), node),
                None => talos::node_down(view, None, node),
            }
        }
        "talos.no-init" => talos::no_init(view, &a.strings("down")?),
        "talos.disk-unambiguous" => talos::disk_unambiguous(
            view,
            a.str("node")?,
            a.opt_str("disk")?,
            a.opt_str("model")?,
            a.opt_str("serial")?,
        ),
        "talos.image-matches-hardware" => {
            talos::image_matches_hardware(view, a.str("node")?, a.str("image")?)
        }
        "talos.gpu-modules" => talos::gpu_modules(view, a.str("node")?),
        "backup.fresh" => crate::cluster::backup::fresh_with(
            std::path::Path::new(a.str("dir")?),
            a.duration("max_age", Duration::from_secs(24 * 3600))?,
            match a.args.get("drilled") {
                None | Some(serde_json::Value::Null) => false,
                Some(serde_json::Value::Bool(b)) => *b,
                Some(other) => {
                    return Err(a.bad("drilled", &format!("must be true or false, found {other}")));
                }
            },
            std::time::SystemTime::now(),
        ),
        "talos.install-disk-ok" => super::install_disk::install_disk_ok(
            view,
            a.str("node")?,
            std::path::Path::new(a.str("config")?),
        ),
        "etcd.member-of-node" => {
            super::member_of::is_member_of(view, a.str("node")?, a.str("member")?)
        }
        // Without the PodDisruptionBudgets (read by the effects layer: `guard_batch`), the
        // batch guard refuses.
        "kube.batch-safe" => super::batch::safe(
            view,
            &super::batch::BatchEvidence::not_read(),
            &a.strings("nodes")?,
            a.int("max_unavailable", 0)?,
        ),
        _ => {
            return Err(Error::Unknown {
                kind: "guard",
                name: name.into(),
            });
        }
    })
}

/// Polls a named wait condition. `waited` is how long the wait has run; `boot_id_before` is the
/// boot id the step recorded before its action (for `talos.rebooted` without a `boot_id`).
pub fn wait(
    name: &str,
    args: &Args,
    view: &ClusterView,
    waited: Duration,
    boot_id_before: Option<&str>,
) -> Result<Poll, Error> {
    let a = A { check: name, args };
    Ok(match name {
        "talos.rebooted" => {
            let before = match a.opt_str("boot_id")? {
                Some(b) => b,
                None => boot_id_before.ok_or_else(|| {
                    a.bad(
                        "boot_id",
                        "is missing and no boot id was recorded before the action",
                    )
                })?,
            };
            Poll::of(talos::rebooted(view, a.str("node")?, before))
        }
        "talos.running" => talos::running(
            view,
            a.str("node")?,
            waited,
            a.duration("fast_fail", Duration::from_secs(600))?,
        ),
        "talos.stage" => Poll::of(talos::stage_is(view, a.str("node")?, a.str("stage")?)),
        "talos.maintenance" => Poll::of(talos::maintenance(view, a.str("node")?)),
        "talos.service" => Poll::of(talos::service_in(
            view,
            a.str("node")?,
            a.str("service")?,
            a.str("state")?,
        )),
        "etcd.member" => Poll::of(etcd::is_member(view, a.str("node")?)),
        "etcd.healthy" => Poll::of(etcd::healthy_on(view, a.str("node")?)),
        "etcd.full" => Poll::of(etcd::full(view, a.int("voters", 3)?)),
        "etcd.leader-not" => Poll::of(etcd::leader_not(view, a.str("node")?)),
        "etcd.member-absent" => Poll::of(etcd::member_absent(view, a.str("member")?)),
        "kube.ready" => Poll::of(kube::ready(view, a.str("node")?)),
        "kube.drained" => Poll::of(kube::drained(view, a.str("node")?)),
        // Object waits read Kubernetes objects, not the view: without those reads (which the
        // cluster effects make, see `kube::reads`) they cannot hold.
        n if kube::OBJECT_WAITS.contains(&n) => kube::wait(n, args, &kube::KubeReads::new())?,
        "cluster.healthy" => {
            let all = talos::all_running(view);
            if !all.holds {
                Poll::NotYet(all)
            } else {
                Poll::of(etcd::full(view, a.int("voters", 3)?))
            }
        }
        _ => {
            return Err(Error::Unknown {
                kind: "condition",
                name: name.into(),
            });
        }
    })
}

/// `kube.batch-safe` with the PodDisruptionBudgets the effects layer read beside the view.
pub fn guard_batch(
    args: &Args,
    view: &ClusterView,
    evidence: &super::batch::BatchEvidence,
) -> Result<Verdict, Error> {
    let a = A {
        check: "kube.batch-safe",
        args,
    };
    Ok(super::batch::safe(
        view,
        evidence,
        &a.strings("nodes")?,
        a.int("max_unavailable", 0)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;
    use crate::condition::{CONDITIONS, GUARDS};

    fn args_for(specs: &[crate::action::ArgSpec]) -> Args {
        specs
            .iter()
            .map(|s| {
                let v = match (s.name, s.ty) {
                    ("node", _) => "a".into(),
                    ("voters", _) => 3.into(),
                    ("stage", _) => "running".into(),
                    ("state", _) => "Running".into(),
                    ("kind", _) => "DaemonSet".into(),
                    (_, crate::action::ArgType::Duration) => "10m".into(),
                    (_, crate::action::ArgType::Nodes) => serde_json::json!([]),
                    (_, crate::action::ArgType::Bool) => false.into(),
                    ("max_unavailable", _) => 3.into(),
                    _ => "x".into(),
                };
                (s.name.to_string(), v)
            })
            .collect()
    }

    #[test]
    fn every_catalog_guard_and_condition_has_an_implementation() {
        let view = three();
        for g in GUARDS {
            guard(g.name, &args_for(g.args), &view)
                .unwrap_or_else(|e| panic!("guard {}: {e}", g.name));
        }
        for c in CONDITIONS {
            let mut args = args_for(c.args);
            args.insert("boot_id".into(), "old".into());
            if c.name == crate::exec::command::SUCCEEDS {
                // A local program, answered by the local effects, not from a cluster view.
                args.insert("command".into(), serde_json::json!(["true"]));
                args.insert("env".into(), serde_json::json!({"A": "1"}));
                args.insert("cwd".into(), "/".into());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let pre = crate::journal::Fields::new();
                let fields: crate::journal::Fields = args.clone().into_iter().collect();
                let call = crate::exec::effects::CheckCall {
                    step: "s",
                    name: c.name,
                    args: &fields,
                    pre_state: &pre,
                };
                use crate::exec::effects::Effects as _;
                let poll = rt
                    .block_on(crate::exec::LocalEffects.poll(call))
                    .unwrap_or_else(|e| panic!("condition {}: {e}", c.name));
                assert!(poll.satisfied);
                continue;
            }
            wait(c.name, &args, &view, Duration::ZERO, None)
                .unwrap_or_else(|e| panic!("condition {}: {e}", c.name));
        }
    }

    #[test]
    fn bad_runtime_arguments_are_errors_not_panics() {
        let view = three();
        let args: Args = [("node".to_string(), serde_json::json!(5))].into();
        assert_eq!(
            guard("etcd.safe-down", &args, &view)
                .unwrap_err()
                .to_string(),
            "`etcd.safe-down`: argument `node` must be a string, found 5"
        );
        assert!(
            wait(
                "talos.rebooted",
                &[("node".to_string(), "a".into())].into(),
                &view,
                Duration::ZERO,
                None
            )
            .is_err()
        );
    }
}
