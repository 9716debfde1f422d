//! The compiled plan: a DAG of concrete steps, ready to execute. Pure data, no I/O.
//!
//! A [`Plan`] is what `runbook plan` renders, what the executor walks and what the journal's
//! plan hash pins. `foreach` is already expanded (`verify[192.168.2.20].reboot`), defaults are
//! filled in, expressions that depend only on params are folded to values, and every step
//! knows its dependencies, guards, wait, retry policy, timeout, rollbacks and idempotency.

pub mod hash;
pub mod render;

use std::collections::BTreeMap;
use std::time::Duration;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use serde::Serialize;

use crate::action::Hazard;
use crate::dsl::ast::{Backoff, Idempotency};
use crate::dsl::span::Span;

/// A compiled runbook.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `metadata.name`.
    pub runbook: String,
    /// `metadata.description`.
    pub description: String,
    /// The source's display name.
    pub source: String,
    /// Bound parameter values, in name order.
    pub params: BTreeMap<String, ParamValue>,
    /// Main steps as nodes; edges point from a dependency to its dependent.
    pub graph: StableDiGraph<Step, Edge>,
    /// Main steps in execution order: dependencies first, ties in declaration order.
    pub order: Vec<NodeIndex>,
    /// Rollback step instances, in declaration order (not part of the main order).
    pub rollbacks: Vec<Step>,
    /// Stable hash of the canonical plan (see [`hash`]).
    pub hash: String,
}

/// An edge of the plan graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Edge {
    /// The target needs the source to have finished.
    Needs,
}

/// A bound parameter. Debug and Serialize redact secrets.
#[derive(Clone, PartialEq)]
pub struct ParamValue {
    /// The value.
    pub value: serde_json::Value,
    /// Whether it must never be shown or stored.
    pub secret: bool,
}

impl std::fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.secret {
            f.write_str(crate::secret::REDACTED)
        } else {
            write!(f, "{}", self.value)
        }
    }
}

impl Serialize for ParamValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.secret {
            s.serialize_str(crate::secret::REDACTED)
        } else {
            self.value.serialize(s)
        }
    }
}

/// An expression kept for run time (it reads step outputs or live results).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    /// The rhai text.
    pub expr: String,
    /// Where it was written.
    #[serde(skip)]
    pub span: Span,
}

/// An argument value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// Known at plan time.
    Literal(serde_json::Value),
    /// Evaluated at run time.
    Expr(Expr),
    /// A string with run-time `${{ }}` parts, kept as written.
    Template {
        /// The text as written.
        template: String,
    },
    /// A list with run-time parts (a list known at plan time is a `Literal`).
    List {
        /// The items.
        #[serde(rename = "$list")]
        items: Vec<Value>,
    },
    /// A map with run-time parts.
    Map {
        /// The entries, by key.
        #[serde(rename = "$map")]
        entries: BTreeMap<String, Value>,
    },
}

impl Value {
    /// The plan-time value, if known.
    pub fn literal(&self) -> Option<&serde_json::Value> {
        match self {
            Value::Literal(v) => Some(v),
            _ => None,
        }
    }
}

/// An action with its arguments (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// Catalog name.
    pub name: String,
    /// Arguments by name.
    pub args: BTreeMap<String, Value>,
}

/// A guard on a step.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Guard {
    /// A catalog guard.
    Named {
        /// Catalog name.
        name: String,
        /// Arguments by name.
        args: BTreeMap<String, Value>,
    },
    /// An expression guard.
    Expr {
        /// The expression.
        expr: Expr,
        /// Shown when it refuses.
        message: String,
    },
}

/// A wait or verify condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    /// Catalog name.
    pub condition: String,
    /// Arguments by name.
    pub args: BTreeMap<String, Value>,
    /// Overall limit.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// Poll interval.
    #[serde(with = "duration_text")]
    pub interval: Duration,
}

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = no retry).
    pub attempts: u32,
    /// Backoff kind.
    pub backoff: Backoff,
    /// First delay.
    #[serde(with = "duration_text")]
    pub delay: Duration,
    /// Cap on the delay.
    #[serde(with = "duration_text")]
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            attempts: 1,
            backoff: Backoff::Fixed,
            delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The delay before attempt `next` (2 = the first retry).
    pub fn delay_before(&self, next: u32) -> Duration {
        match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(next.saturating_sub(2));
                self.delay.saturating_mul(factor).min(self.max_delay)
            }
        }
    }
}

/// A manual gate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    /// What the operator is asked.
    pub prompt: String,
    /// Whether `--yes` may approve it.
    pub allow_yes: bool,
}

/// Whether a step is part of the main flow or a rollback.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Role {
    /// Runs in order.
    Main,
    /// Runs only to undo `for_step`.
    Rollback {
        /// The step it undoes.
        for_step: String,
    },
}

/// One concrete step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// Unique concrete id, e.g. `verify[192.168.2.20].reboot`.
    pub id: String,
    /// The id as declared in the runbook, e.g. `reboot`.
    pub declared: String,
    /// Main or rollback.
    pub role: Role,
    /// One line for humans.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Concrete ids of the steps this one needs.
    pub needs: Vec<String>,
    /// The side effect, if any.
    pub action: Option<Call>,
    /// Skip the step unless this holds.
    pub when: Option<Expr>,
    /// Checked right before the side effect.
    pub guards: Vec<Guard>,
    /// Why a disruptive action is deliberately unguarded.
    pub unguarded: Option<String>,
    /// Waited for after the action.
    pub wait: Option<Wait>,
    /// Decides, after an interruption, whether the effect happened.
    pub verify: Option<Wait>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Timeout of one attempt of the action.
    #[serde(with = "opt_duration_text")]
    pub timeout: Option<Duration>,
    /// Concrete ids of rollback instances, run newest first on failure.
    pub rollback: Vec<String>,
    /// Effective idempotency class.
    pub idempotency: Idempotency,
    /// Manual gate before the step.
    pub approval: Option<Approval>,
    /// Named outputs, computed from the action's result.
    pub outputs: BTreeMap<String, Expr>,
    /// Variables bound by `foreach` (e.g. `node`).
    pub bindings: BTreeMap<String, serde_json::Value>,
    /// Declared step id → concrete id, for `steps.<id>` in this step's expressions.
    pub scope: BTreeMap<String, String>,
    /// What the action can break, if anything.
    pub hazard: Option<Hazard>,
    /// The batch of a `foreach … parallel: K` this step belongs to (steps of one batch may be
    /// in flight at once); absent for serial steps, so their plan hash is unchanged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    /// Where the step was declared.
    #[serde(skip)]
    pub span: Span,
}

/// One batch of a `foreach … parallel: K`: up to K elements whose steps run concurrently.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Batch {
    /// `<declared foreach id>#<n>` (n from 1), unique in the plan.
    pub id: String,
    /// The elements of this batch (the nodes, for a node list), in order.
    pub nodes: Vec<String>,
    /// K: at most this many elements in flight.
    pub size: u32,
}

impl Plan {
    /// Main steps in execution order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.order.iter().filter_map(|i| self.graph.node_weight(*i))
    }

    /// Whether any step or rollback uses a cluster action, guard or condition (so `run`
    /// looks for talosctl's and kubectl's default files when no flag names a cluster).
    pub fn needs_cluster(&self) -> bool {
        const LOCAL_ACTIONS: &[&str] = &[
            "noop",
            "sleep",
            "log",
            "fail",
            "marker",
            "exec",
            "backup.prune",
            "backup.drill",
        ];
        const LOCAL_GUARDS: &[&str] = &["backup.fresh"];
        const LOCAL_CONDITIONS: &[&str] = &["exec.succeeds"];
        self.steps().chain(self.rollbacks.iter()).any(|s| {
            s.action
                .as_ref()
                .is_some_and(|a| !LOCAL_ACTIONS.contains(&a.name.as_str()))
                || s.guards.iter().any(|g| {
                    matches!(g, Guard::Named { name, .. } if !LOCAL_GUARDS.contains(&name.as_str()))
                })
                || s.wait
                    .iter()
                    .chain(s.verify.iter())
                    .any(|w| !LOCAL_CONDITIONS.contains(&w.condition.as_str()))
        })
    }

    /// A main or rollback step by concrete id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps()
            .find(|s| s.id == id)
            .or_else(|| self.rollbacks.iter().find(|s| s.id == id))
    }

    /// Number of main steps.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True if there are no main steps.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

mod duration_text {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::dsl::duration::format(*d))
    }
}

mod opt_duration_text {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(
        d: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&crate::dsl::duration::format(*d)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            attempts: 5,
            backoff: Backoff::Exponential,
            delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(5),
        };
        assert_eq!(p.delay_before(2), Duration::from_secs(2));
        assert_eq!(p.delay_before(3), Duration::from_secs(4));
        assert_eq!(p.delay_before(4), Duration::from_secs(5));
    }
}
