//! The action catalog: every side effect a runbook can ask for, described as data.
//!
//! The catalog is closed (mini-redis' `Command` enum): YAML and rhai compose these actions but
//! cannot invent new side effects. Each entry says which arguments the action takes and of
//! what type, how safe it is to repeat after an interruption ([`Idempotency`]), and whether it
//! can break the cluster ([`Disruption`]), which the compiler uses to demand a safety guard.

mod catalog;

pub use crate::dsl::ast::Idempotency;
pub use catalog::ACTIONS;

/// The type of an argument value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgType {
    /// Any string.
    String,
    /// An integer.
    Int,
    /// A boolean.
    Bool,
    /// A duration string such as `5m`.
    Duration,
    /// One node (address label or hostname).
    Node,
    /// A list of nodes.
    Nodes,
    /// A list of strings.
    Strings,
    /// One of a fixed set.
    Enum(&'static [&'static str]),
    /// A filesystem path.
    Path,
    /// Any structured value (a config patch, for instance).
    Yaml,
}

impl ArgType {
    /// How the type is named in messages and docs.
    pub fn describe(&self) -> String {
        match self {
            ArgType::String => "a string".into(),
            ArgType::Int => "an integer".into(),
            ArgType::Bool => "a boolean".into(),
            ArgType::Duration => "a duration".into(),
            ArgType::Node => "a node".into(),
            ArgType::Nodes => "a list of nodes".into(),
            ArgType::Strings => "a list of strings".into(),
            ArgType::Enum(values) => format!("one of {}", values.join(", ")),
            ArgType::Path => "a path".into(),
            ArgType::Yaml => "any value".into(),
        }
    }

    /// Checks a concrete value against the type; `Err` says what is wrong.
    pub fn check(&self, v: &serde_json::Value) -> Result<(), String> {
        use serde_json::Value as J;
        let ok = match (self, v) {
            (ArgType::Yaml, _) => true,
            (ArgType::String | ArgType::Path, J::String(_)) => true,
            (ArgType::Node, J::String(s)) => {
                if s.is_empty() || s.contains([',', ' ']) {
                    return Err(format!("`{s}` is not a node address or hostname"));
                }
                true
            }
            (ArgType::Int, J::Number(n)) => n.is_i64(),
            (ArgType::Bool, J::Bool(_)) => true,
            (ArgType::Duration, J::String(s)) => {
                crate::dsl::duration::parse(s)?;
                true
            }
            (ArgType::Nodes | ArgType::Strings, J::Array(items)) => {
                for item in items {
                    let inner = if *self == ArgType::Nodes {
                        ArgType::Node
                    } else {
                        ArgType::String
                    };
                    inner.check(item)?;
                }
                true
            }
            (ArgType::Enum(values), J::String(s)) => {
                if !values.contains(&s.as_str()) {
                    let help = crate::diagnostic::did_you_mean(s, values.iter().copied())
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default();
                    return Err(format!("`{s}` is not one of {}{help}", values.join(", ")));
                }
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "expected {}, found {}",
                self.describe(),
                json_type(v)
            ))
        }
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a map",
    }
}

/// A literal default value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lit {
    /// A string.
    Str(&'static str),
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
}

impl Lit {
    /// As JSON.
    pub fn to_json(self) -> serde_json::Value {
        match self {
            Lit::Str(s) => s.into(),
            Lit::Bool(b) => b.into(),
            Lit::Int(i) => i.into(),
        }
    }
}

/// One argument of an action, guard or condition.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Its name under `with:`.
    pub name: &'static str,
    /// Its type.
    pub ty: ArgType,
    /// Whether it must be given (ignored when there is a default).
    pub required: bool,
    /// The value used when it is absent.
    pub default: Option<Lit>,
    /// One line for docs.
    pub doc: &'static str,
}

impl ArgSpec {
    /// A required argument.
    pub const fn req(name: &'static str, ty: ArgType, doc: &'static str) -> ArgSpec {
        ArgSpec {
            name,
            ty,
            required: true,
            default: None,
            doc,
        }
    }
    /// An optional argument without a default.
    pub const fn opt(name: &'static str, ty: ArgType, doc: &'static str) -> ArgSpec {
        ArgSpec {
            name,
            ty,
            required: false,
            default: None,
            doc,
        }
    }
    /// An optional argument with a default.
    pub const fn def(name: &'static str, ty: ArgType, default: Lit, doc: &'static str) -> ArgSpec {
        ArgSpec {
            name,
            ty,
            required: false,
            default: Some(default),
            doc,
        }
    }
}

/// What a disruptive action can break; guards declare which hazards they protect against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hazard {
    /// A node goes down for a while (reboot, upgrade, shutdown): etcd loses a voter temporarily.
    QuorumOutage,
    /// An etcd member is removed or its data wiped for good (reset, remove-member, leave).
    MemberRemoval,
    /// A second etcd cluster could be created (bootstrap).
    SplitBrain,
    /// Workloads are evicted (drain).
    WorkloadEviction,
}

impl Hazard {
    /// How the hazard reads in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Hazard::QuorumOutage => "takes a node down and can lose etcd quorum",
            Hazard::MemberRemoval => "removes an etcd member or wipes its data",
            Hazard::SplitBrain => "can create a second etcd cluster (split brain)",
            Hazard::WorkloadEviction => "evicts workloads from a node",
        }
    }
}

/// A decision from an action's arguments by name (absent: not known before the run).
pub type ArgsPredicate = fn(&dyn Fn(&str) -> Option<serde_json::Value>) -> bool;

/// Whether and when an action is disruptive.
#[derive(Debug, Clone, Copy)]
pub enum Disruption {
    /// Never: read-only or harmless.
    Never,
    /// Always.
    Always(Hazard),
    /// Unless argument `arg` has one of the `safe` values (e.g. apply-config in `no-reboot`).
    UnlessArg {
        /// The argument that decides.
        arg: &'static str,
        /// Values that make the action safe.
        safe: &'static [&'static str],
        /// The hazard otherwise.
        hazard: Hazard,
    },
    /// Decided from the plan-time arguments by a function (e.g. `talos.patch` classifies what
    /// its patch changes); an argument known only at run time is absent to the function.
    Computed {
        /// Whether the call with these arguments is disruptive.
        disruptive: ArgsPredicate,
        /// The hazard when it is.
        hazard: Hazard,
    },
}

/// One action of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct ActionSpec {
    /// Its name, e.g. `talos.reboot`.
    pub name: &'static str,
    /// One line for `runbook plan` and docs.
    pub summary: &'static str,
    /// Arguments.
    pub args: &'static [ArgSpec],
    /// How it may be repeated after an interruption.
    pub idempotency: Idempotency,
    /// Whether it can break the cluster.
    pub disruption: Disruption,
    /// Fields of its result that later steps may read (`steps.<id>.<field>`).
    pub outputs: &'static [&'static str],
    /// Whether the action can tell by itself, after an interruption, if its effect happened
    /// (boot id changed, member gone, marker line present), so a `verify` step needs no
    /// explicit `verify:` or `wait:` condition.
    pub probe: bool,
}

impl ActionSpec {
    /// The hazard of this call given its (plan-time) arguments; an argument that is only known
    /// at run time counts as unsafe.
    pub fn hazard(&self, arg: impl Fn(&str) -> Option<serde_json::Value>) -> Option<Hazard> {
        match self.disruption {
            Disruption::Never => None,
            Disruption::Always(h) => Some(h),
            Disruption::UnlessArg {
                arg: name,
                safe,
                hazard,
            } => {
                let value = arg(name).or_else(|| {
                    self.args
                        .iter()
                        .find(|a| a.name == name)
                        .and_then(|a| a.default)
                        .map(Lit::to_json)
                });
                match value {
                    Some(serde_json::Value::String(s)) if safe.contains(&s.as_str()) => None,
                    _ => Some(hazard),
                }
            }
            Disruption::Computed { disruptive, hazard } => {
                let with_defaults = |name: &str| {
                    arg(name).or_else(|| {
                        self.args
                            .iter()
                            .find(|a| a.name == name)
                            .and_then(|a| a.default)
                            .map(Lit::to_json)
                    })
                };
                disruptive(&with_defaults).then_some(hazard)
            }
        }
    }
}

/// Looks an action up by name.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// Whether only the author can know the action's idempotency (a local program): the
/// runbook's `idempotency:` then replaces the catalog's default (`confirm`) instead of only
/// tightening it.
pub fn author_declares_idempotency(name: &str) -> bool {
    name == "exec"
}

/// All action names, for "did you mean".
pub fn names() -> impl Iterator<Item = &'static str> {
    ACTIONS.iter().map(|a| a.name)
}
