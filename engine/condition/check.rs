//! Dispatch from a catalog name and its resolved arguments to the check function.
//!
//! The executor resolves a step's guard or wait arguments (expressions evaluated), observes
//! the cluster into a [`ClusterView`], and calls [`guard`] or [`wait`]. A test keeps this table
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

    fn bad(&self, name: &str, problem: &str) -> Error {
        Error::Arg {
            check: self.check.into(),
            arg: name.into(),
            problem: problem.into(),
        }
    }
}

/// Evaluates a named guard.
pub fn guard(name: &str, args: &Args, view: &ClusterView) -> Result<Verdict, Error> {
    let a = A { check: name, args };
    Ok(match name {
        "etcd.quorum" => etcd::has_quorum(view),
        "etcd.safe-down" => etcd::safe_down(view, a.str("node")?),
        "etcd.safe-remove" => etcd::safe_remove(view, a.str("node")?),
        "etcd.consistent" => etcd::consistent(view),
        "etcd.no-alarms" => etcd::no_alarms(view),
        "etcd.no-learners" => etcd::no_learners(view),
        "etcd.quorum-lost" => etcd::quorum_lost(view),
        "etcd.bootstrap-safe" => etcd::bootstrap_safe(view, a.str("node")?),
        "talos.all-running" => talos::all_running(view),
        "talos.node-running" => talos::node_running(view, a.str("node")?),
        "talos.not-member" => talos::not_member(view, a.str("node")?),
        "talos.node-down" => talos::node_down(view, a.str("node")?),
        "talos.no-init" => talos::no_init(view),
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
        // Needs the backup directory, not the cluster: evaluated by the executor.
        "backup.fresh" => {
            return Err(Error::Unknown {
                kind: "cluster guard",
                name: name.into(),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::etcd::tests::three;
    use crate::condition::{CONDITIONS, GUARDS};

    fn args_for(specs: &[crate::action::ArgSpec]) -> Args {
        specs
            .iter()
            .map(|s| {
                let v = match s.name {
                    "node" => "a".into(),
                    "voters" => 3.into(),
                    "fast_fail" | "max_age" => "10m".into(),
                    "stage" => "running".into(),
                    "state" => "Running".into(),
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
            if g.name == "backup.fresh" {
                continue;
            }
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
