//! Model errors as gRPC statuses, and the text grpc-go prints for them.
//!
//! [`ApiError`] already carries the code and the verbatim message real Talos or etcd answers
//! with; this maps the code one-to-one. One-to-many replies embed errors as
//! `metadata.error` = grpc-go's `err.Error()` (`rpc error: code = X desc = msg`) plus a
//! `google.rpc.Status`, which [`error_metadata`] builds.

use runbook_proto::common::Metadata;
use runbook_proto::google::rpc::Status as RpcStatus;
use tonic::{Code as GrpcCode, Status};

use crate::sim::{ApiError, Code};

/// The tonic code of a model code.
pub fn grpc_code(code: Code) -> GrpcCode {
    match code {
        Code::InvalidArgument => GrpcCode::InvalidArgument,
        Code::FailedPrecondition => GrpcCode::FailedPrecondition,
        Code::AlreadyExists => GrpcCode::AlreadyExists,
        Code::NotFound => GrpcCode::NotFound,
        Code::Unavailable => GrpcCode::Unavailable,
        Code::DeadlineExceeded => GrpcCode::DeadlineExceeded,
        Code::Unknown => GrpcCode::Unknown,
        Code::PermissionDenied => GrpcCode::PermissionDenied,
        Code::Unimplemented => GrpcCode::Unimplemented,
        Code::Internal => GrpcCode::Internal,
    }
}

/// The status a model error becomes.
pub fn to_status(e: ApiError) -> Status {
    Status::new(grpc_code(e.code), e.message)
}

/// grpc-go's name of a code (`codes.Code.String()`).
pub fn code_name(code: GrpcCode) -> &'static str {
    match code {
        GrpcCode::Ok => "OK",
        GrpcCode::Cancelled => "Canceled",
        GrpcCode::Unknown => "Unknown",
        GrpcCode::InvalidArgument => "InvalidArgument",
        GrpcCode::DeadlineExceeded => "DeadlineExceeded",
        GrpcCode::NotFound => "NotFound",
        GrpcCode::AlreadyExists => "AlreadyExists",
        GrpcCode::PermissionDenied => "PermissionDenied",
        GrpcCode::ResourceExhausted => "ResourceExhausted",
        GrpcCode::FailedPrecondition => "FailedPrecondition",
        GrpcCode::Aborted => "Aborted",
        GrpcCode::OutOfRange => "OutOfRange",
        GrpcCode::Unimplemented => "Unimplemented",
        GrpcCode::Internal => "Internal",
        GrpcCode::Unavailable => "Unavailable",
        GrpcCode::DataLoss => "DataLoss",
        GrpcCode::Unauthenticated => "Unauthenticated",
    }
}

/// The `common.Metadata` of a failed node in a one-to-many reply.
pub fn error_metadata(hostname: &str, status: &Status) -> Metadata {
    Metadata {
        hostname: hostname.to_string(),
        error: format!(
            "rpc error: code = {} desc = {}",
            code_name(status.code()),
            status.message()
        ),
        status: Some(RpcStatus {
            code: status.code() as i32,
            message: status.message().to_string(),
            details: Vec::new(),
        }),
    }
}

/// The `common.Metadata` of a successful node in a one-to-many reply.
pub fn ok_metadata(hostname: &str) -> Metadata {
    Metadata {
        hostname: hostname.to_string(),
        ..Metadata::default()
    }
}
