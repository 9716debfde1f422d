//! The authoring AST: what the author wrote, with spans, before any semantics.
//!
//! The compiler ([`crate::compile`]) resolves names, expands `foreach`, type-checks arguments
//! and turns this into a [`crate::plan::Plan`]. Nothing here knows the action catalog.

use std::time::Duration;

use crate::dsl::doc::Node;
use crate::dsl::span::{Span, Spanned};

/// A whole runbook.
#[derive(Debug, Clone)]
pub struct Runbook {
    /// `metadata.name`.
    pub name: Spanned<String>,
    /// `metadata.description`.
    pub description: String,
    /// Declared parameters, in order.
    pub params: Vec<Param>,
    /// The main steps, in declaration order.
    pub steps: Vec<Step>,
    /// Steps that run only as rollbacks, referenced by `rollback:`.
    pub rollbacks: Vec<Step>,
}

/// The type of a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamType {
    /// Any string.
    String,
    /// An integer.
    Int,
    /// `true` / `false`.
    Bool,
    /// A duration such as `90s`, `5m`, `1h30m`.
    Duration,
    /// One node address or hostname (a label; the talosconfig says how to reach it).
    Node,
    /// A list of nodes (`a,b,c` on the command line).
    Nodes,
    /// One of a fixed set of strings.
    Enum(Vec<String>),
    /// A filesystem path.
    Path,
    /// A string that must never be written to the journal, logs or output.
    Secret,
}

impl ParamType {
    /// The name used in runbooks and messages.
    pub fn name(&self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::Duration => "duration",
            ParamType::Node => "node",
            ParamType::Nodes => "nodes",
            ParamType::Enum(_) => "enum",
            ParamType::Path => "path",
            ParamType::Secret => "secret",
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name (`params.<name>` in expressions).
    pub name: Spanned<String>,
    /// Its type.
    pub ty: Spanned<ParamType>,
    /// The default, as written.
    pub default: Option<Node>,
    /// Whether a value must be given (false when there is a default).
    pub required: bool,
    /// One line for `runbook plan` and docs.
    pub description: String,
    /// `default_from: cluster.<source>`: the engine reads the value from the cluster when the
    /// operator gives none (see [`ClusterDefault`]).
    pub default_from: Option<Spanned<ClusterDefault>>,
}

/// Where a parameter's value comes from when the operator gives none and the run reaches a
/// cluster (`default_from:`); resolved by `cluster::defaults` before the plan is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterDefault {
    /// `cluster.control-planes` (type `nodes`): the etcd voters, the leader last.
    ControlPlanes,
    /// `cluster.backup-member` (type `node`): a healthy etcd voter that is not the leader.
    BackupMember,
    /// `cluster.gpu-node` (type `node`): the one node with an NVIDIA PCI device.
    GpuNode,
    /// `cluster.workers` (type `nodes`): every node whose machine type is `worker` (none is an
    /// empty list).
    Workers,
    /// `cluster.etcd-survivor` (type `node`): the reachable control plane whose etcd member
    /// reports the highest raft index (quorum recovery).
    EtcdSurvivor,
    /// `cluster.etcd-reachable` (type `nodes`): every control plane that answers (quorum
    /// recovery wipes them all).
    EtcdReachable,
    /// `cluster.etcd-down` (type `nodes`): every node of the context that does not answer
    /// (the operator attests them powered off).
    EtcdDown,
    /// `cluster.departed-node` (type `node`): the one node of the context that does not answer
    /// while the etcd members still list its member (by a peer URL on its address).
    DepartedNode,
    /// `cluster.departed-member` (type `string`): that node's etcd member, as its 16-digit hex
    /// id (removal by id: a replacement reusing the hostname is never the one removed).
    DepartedMember,
    /// `inventory.nodes` (type `nodes`): every node of the inventory the runbook's `inventory`
    /// parameter names, in file order; read from that file, not the cluster
    /// (`crate::inventory::param_defaults`).
    InventoryNodes,
}

impl ClusterDefault {
    /// Every source, as written.
    pub const ALL: [ClusterDefault; 10] = [
        ClusterDefault::ControlPlanes,
        ClusterDefault::BackupMember,
        ClusterDefault::GpuNode,
        ClusterDefault::Workers,
        ClusterDefault::EtcdSurvivor,
        ClusterDefault::EtcdReachable,
        ClusterDefault::EtcdDown,
        ClusterDefault::DepartedNode,
        ClusterDefault::DepartedMember,
        ClusterDefault::InventoryNodes,
    ];

    /// As written in a runbook.
    pub fn name(self) -> &'static str {
        match self {
            ClusterDefault::ControlPlanes => "cluster.control-planes",
            ClusterDefault::BackupMember => "cluster.backup-member",
            ClusterDefault::GpuNode => "cluster.gpu-node",
            ClusterDefault::Workers => "cluster.workers",
            ClusterDefault::EtcdSurvivor => "cluster.etcd-survivor",
            ClusterDefault::EtcdReachable => "cluster.etcd-reachable",
            ClusterDefault::EtcdDown => "cluster.etcd-down",
            ClusterDefault::DepartedNode => "cluster.departed-node",
            ClusterDefault::DepartedMember => "cluster.departed-member",
            ClusterDefault::InventoryNodes => "inventory.nodes",
        }
    }

    /// From its written name.
    pub fn parse(s: &str) -> Option<ClusterDefault> {
        ClusterDefault::ALL.into_iter().find(|d| d.name() == s)
    }

    /// Whether the value comes from the inventory file rather than the cluster.
    pub fn from_inventory(self) -> bool {
        self == ClusterDefault::InventoryNodes
    }

    /// The parameter type it yields.
    pub fn ty(self) -> ParamType {
        match self {
            ClusterDefault::ControlPlanes
            | ClusterDefault::Workers
            | ClusterDefault::InventoryNodes => ParamType::Nodes,
            ClusterDefault::BackupMember | ClusterDefault::GpuNode => ParamType::Node,
            ClusterDefault::EtcdReachable | ClusterDefault::EtcdDown => ParamType::Nodes,
            ClusterDefault::EtcdSurvivor => ParamType::Node,
            ClusterDefault::DepartedNode => ParamType::Node,
            ClusterDefault::DepartedMember => ParamType::String,
        }
    }
}

/// An expression as written, with the span of its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprSrc {
    /// The rhai expression text.
    pub text: String,
    /// Where the expression text itself starts and ends.
    pub span: Span,
}

/// An argument value as written under `with:`.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// A plain value.
    Literal(Node),
    /// `${{ expr }}`: the value is the expression's result.
    Expr(ExprSrc),
    /// A string with `${{ expr }}` parts interpolated.
    Template(Vec<TemplatePart>, Span),
    /// A list with `${{ }}` somewhere inside (a list without any is a [`ArgValue::Literal`]).
    List(Vec<ArgValue>, Span),
    /// A map with `${{ }}` somewhere inside (keys are plain text).
    Map(Vec<(Spanned<String>, ArgValue)>, Span),
}

/// A piece of an interpolated string.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePart {
    /// Literal text.
    Text(String),
    /// An interpolated expression.
    Expr(ExprSrc),
}

/// Named arguments, in the order written.
pub type Args = Vec<(Spanned<String>, ArgValue)>;

/// How often an action may be repeated after an interruption.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Idempotency {
    /// Safe to run again.
    Idempotent,
    /// Check the step's verify/wait condition to learn whether the effect happened.
    Verify,
    /// Ask an operator before anything else happens.
    Confirm,
}

impl Idempotency {
    /// The name used in runbooks.
    pub fn name(self) -> &'static str {
        match self {
            Idempotency::Idempotent => "idempotent",
            Idempotency::Verify => "verify",
            Idempotency::Confirm => "confirm",
        }
    }
}

/// One step (or a group of steps under `foreach`).
#[derive(Debug, Clone)]
pub struct Step {
    /// Unique id.
    pub id: Spanned<String>,
    /// Span of the whole step (its first line).
    pub span: Span,
    /// One line for humans.
    pub description: String,
    /// `action:` and its `with:` arguments.
    pub action: Option<ActionCall>,
    /// Nested steps (a group); only with `foreach`.
    pub steps: Vec<Step>,
    /// `needs:`; `None` means "the previous step".
    pub needs: Option<Vec<Spanned<String>>>,
    /// `when:` expression; the step is skipped when false.
    pub when: Option<ExprSrc>,
    /// Guards checked right before the side effect.
    pub guards: Vec<Guard>,
    /// `unguarded: <reason>` for a disruptive action deliberately without a guard.
    pub unguarded: Option<Spanned<String>>,
    /// The condition to wait for after the action.
    pub wait: Option<Wait>,
    /// A condition that tells, after an interruption, whether the effect already happened.
    pub verify: Option<Wait>,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// Timeout of one attempt of the action.
    pub timeout: Option<Spanned<Duration>>,
    /// Rollback step ids.
    pub rollback: Vec<Spanned<String>>,
    /// Override of the action's idempotency class (only stricter).
    pub idempotency: Option<Spanned<Idempotency>>,
    /// A manual gate before the step.
    pub approval: Option<Approval>,
    /// `foreach:` expansion.
    pub foreach: Option<Foreach>,
    /// `parallel: K` (with `foreach`): up to K elements in flight at once, in batches of K
    /// (an expression known at plan time, or an integer).
    pub parallel: Option<ExprSrc>,
    /// Named outputs computed from the action's result.
    pub outputs: Vec<(Spanned<String>, ExprSrc)>,
}

/// `action:` plus `with:`.
#[derive(Debug, Clone)]
pub struct ActionCall {
    /// The action name, e.g. `talos.reboot`.
    pub name: Spanned<String>,
    /// Its arguments.
    pub args: Args,
}

/// A guard: a named check with arguments, or an expression.
#[derive(Debug, Clone)]
pub enum Guard {
    /// A guard from the catalog.
    Named {
        /// e.g. `etcd.safe-down`.
        name: Spanned<String>,
        /// Its arguments.
        args: Args,
    },
    /// A boolean expression; `message` is shown when it is false.
    Expr {
        /// The expression.
        expr: ExprSrc,
        /// Why the guard refused.
        message: String,
    },
}

/// A wait (or verify) condition.
#[derive(Debug, Clone)]
pub struct Wait {
    /// e.g. `talos.running`.
    pub condition: Spanned<String>,
    /// Its arguments.
    pub args: Args,
    /// Overall limit; the condition's default when absent.
    pub timeout: Option<Spanned<Duration>>,
    /// Poll interval; the condition's default when absent.
    pub interval: Option<Spanned<Duration>>,
    /// Span of the `wait:` value.
    pub span: Span,
    /// `timeout: "${{ params.X }}"`: a plan-time expression giving the overall limit (a
    /// duration string or whole seconds), folded by the compiler; `timeout` is then `None`.
    pub timeout_expr: Option<ExprSrc>,
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backoff {
    /// The same delay every time.
    Fixed,
    /// Doubling delay, capped by `max_delay`.
    Exponential,
}

/// `retry:`.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Total attempts, including the first.
    pub attempts: u32,
    /// Backoff kind.
    pub backoff: Backoff,
    /// First delay.
    pub delay: Duration,
    /// Cap for exponential backoff.
    pub max_delay: Option<Duration>,
    /// Span of the `retry:` value.
    pub span: Span,
}

/// `approval:`.
#[derive(Debug, Clone)]
pub struct Approval {
    /// What the operator is asked.
    pub prompt: String,
    /// Whether `--yes` may approve it without asking.
    pub allow_yes: bool,
    /// Span of the `approval:` value.
    pub span: Span,
}

/// `foreach:`.
#[derive(Debug, Clone)]
pub struct Foreach {
    /// An expression giving the list (evaluated at plan time from params).
    pub expr: ExprSrc,
    /// The variable each element is bound to (`as:`; default `node`).
    pub var: String,
}
