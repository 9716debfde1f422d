//! Typed errors returned by the simulator model.
//!
//! [`ApiError`] carries a gRPC-like [`Code`] and the message exactly as real Talos or etcd
//! prints it; the gRPC layer maps it one-to-one onto `tonic::Status`. [`KubeError`] is the
//! Kubernetes API equivalent (HTTP status + reason). Runbook guards classify errors by message,
//! so the message strings are part of the simulator's fidelity contract.

use std::fmt;

/// The gRPC status codes Talos and etcd answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// `INVALID_ARGUMENT` (3).
    InvalidArgument,
    /// `FAILED_PRECONDITION` (9).
    FailedPrecondition,
    /// `ALREADY_EXISTS` (6).
    AlreadyExists,
    /// `NOT_FOUND` (5).
    NotFound,
    /// `UNAVAILABLE` (14).
    Unavailable,
    /// `DEADLINE_EXCEEDED` (4).
    DeadlineExceeded,
    /// `UNKNOWN` (2): what Talos returns when it wraps an error with `fmt.Errorf`.
    Unknown,
    /// `PERMISSION_DENIED` (7).
    PermissionDenied,
    /// `UNIMPLEMENTED` (12).
    Unimplemented,
    /// `INTERNAL` (13).
    Internal,
}

impl Code {
    /// The numeric gRPC code.
    pub fn as_i32(self) -> i32 {
        match self {
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::FailedPrecondition => 9,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
        }
    }
}

/// Verbatim error strings of etcd and Talos.
pub mod msg {
    /// No leader (require-leader requests, status errors).
    pub const NO_LEADER: &str = "etcdserver: no leader";
    /// Strict reconfiguration check failed.
    pub const UNHEALTHY_CLUSTER: &str = "etcdserver: unhealthy cluster";
    /// `--max-learners` (default 1) reached.
    pub const TOO_MANY_LEARNERS: &str = "etcdserver: too many learner members in cluster";
    /// Duplicate peer URL on member add.
    pub const PEER_URLS_EXIST: &str = "etcdserver: Peer URLs already exists";
    /// Member id unknown.
    pub const MEMBER_NOT_FOUND: &str = "etcdserver: member not found";
    /// Removing would leave fewer started members than a quorum (e.g. the last member).
    pub const NOT_ENOUGH_STARTED: &str =
        "etcdserver: re-configuration failed due to not enough started members";
    /// Promote of a learner that has not caught up.
    pub const LEARNER_NOT_READY: &str =
        "etcdserver: can only promote a learner member which is in sync with leader";
    /// Promote of a voter.
    pub const MEMBER_NOT_LEARNER: &str = "etcdserver: can only promote a learner member";
    /// A learner asked for something only voters serve.
    pub const LEARNER_RPC: &str = "etcdserver: rpc not supported for learner";
    /// The member process is stopped.
    pub const SERVER_STOPPED: &str = "etcdserver: server stopped";
    /// A linearizable request that cannot reach quorum.
    pub const DEADLINE: &str = "context deadline exceeded";
    /// A removed member's log line as it exits.
    pub const PERMANENTLY_REMOVED: &str =
        "the member has been permanently removed from the cluster";
    /// A removed member restarted with its old data.
    pub const DATA_DIR_MUST_BE_REMOVED: &str = "data-dir used by this member must be removed";
    /// Talos Bootstrap on a node whose `/var/lib/etcd` is not empty.
    pub const DATA_DIR_NOT_EMPTY: &str = "etcd data directory is not empty";
    /// Talos Bootstrap before the etcd service waits for it.
    pub const BOOTSTRAP_NOT_AVAILABLE: &str = "bootstrap is not available yet";
    /// Talos Bootstrap on a worker.
    pub const BOOTSTRAP_CONTROL_PLANE_ONLY: &str =
        "bootstrap can only be performed on a control plane node";
    /// Talos EtcdRecover before the etcd service waits for recovery.
    pub const RECOVER_NOT_READY: &str = "etcd service is not ready for recovery yet";
}

/// An error answered by the simulated Talos or etcd API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    /// gRPC status code.
    pub code: Code,
    /// Message, verbatim as the real system prints it.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// `etcdserver: no leader` (gRPC Unavailable, as etcd answers it).
    pub fn no_leader() -> Self {
        ApiError::new(Code::Unavailable, msg::NO_LEADER)
    }

    /// `etcdserver: unhealthy cluster` (gRPC Unavailable).
    pub fn unhealthy() -> Self {
        ApiError::new(Code::Unavailable, msg::UNHEALTHY_CLUSTER)
    }

    /// What a client sees when dialling a node or process that is down.
    pub fn unreachable(label: &str, port: u16) -> Self {
        ApiError::new(
            Code::Unavailable,
            format!(
                "connection error: desc = \"transport: Error while dialing: dial tcp {label}:{port}: connect: connection refused\""
            ),
        )
    }

    /// Talos wrapping an error with `fmt.Errorf("<context>: %w")`: the gRPC code becomes
    /// Unknown and the message gets the prefix.
    pub fn wrapped(self, context: &str) -> Self {
        ApiError::new(Code::Unknown, format!("{context}: {}", self.message))
    }

    /// Talos returning an etcd client error unwrapped: etcd's client errors do not carry a
    /// gRPC status, so the code becomes Unknown while the message stays.
    pub fn via_etcd_client(self) -> Self {
        ApiError::new(Code::Unknown, self.message)
    }

    /// True if the message contains `needle` (guards classify by message).
    pub fn mentions(&self, needle: &str) -> bool {
        self.message.contains(needle)
    }
}

/// Reason of a Kubernetes API error (the `reason` field of a `metav1.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KubeReason {
    /// 404.
    NotFound,
    /// 429, e.g. an eviction blocked by a PodDisruptionBudget.
    TooManyRequests,
    /// 503: no API server can serve (etcd has no quorum or every control plane is down).
    ServiceUnavailable,
    /// 500.
    InternalError,
}

/// An error answered by the simulated Kubernetes API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason:?}: {message}")]
pub struct KubeError {
    /// HTTP status code.
    pub status: u16,
    /// Machine-readable reason.
    pub reason: KubeReason,
    /// Message as the API server prints it.
    pub message: String,
}

impl KubeError {
    /// `nodes "x" not found` and similar.
    pub fn not_found(kind: &str, name: &str) -> Self {
        KubeError {
            status: 404,
            reason: KubeReason::NotFound,
            message: format!("{kind} \"{name}\" not found"),
        }
    }

    /// The eviction would violate a PodDisruptionBudget.
    pub fn pdb_violation() -> Self {
        KubeError {
            status: 429,
            reason: KubeReason::TooManyRequests,
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
        }
    }

    /// No API server can answer.
    pub fn unavailable() -> Self {
        KubeError {
            status: 503,
            reason: KubeReason::ServiceUnavailable,
            message: "the server is currently unable to handle the request".into(),
        }
    }
}

impl fmt::Display for KubeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
