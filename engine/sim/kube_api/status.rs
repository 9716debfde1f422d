//! Kubernetes `Status` objects: how every error (and some successes) goes over the wire.
//!
//! Clients classify API errors by the `reason` and `code` of a `metav1.Status` body, not by the
//! HTTP status line alone: kube-rs turns it into `Error::Api(Status)`, kubectl prints
//! `Error from server (NotFound): nodes "x" not found` from it, and `kubectl drain` retries an
//! eviction only when the reason is `TooManyRequests`. So each failure here is a [`Failure`]
//! that renders as the same JSON the real API server sends, and the model's [`KubeError`] maps
//! onto it one-to-one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

use crate::sim::error::{KubeError, KubeReason};

/// A request failure, answered as a `Status` object.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    /// HTTP status code (also the `code` field).
    pub code: u16,
    /// The `reason` field (`NotFound`, `TooManyRequests`, ...).
    pub reason: String,
    /// Human message.
    pub message: String,
    /// `details.kind` and `details.name`, when the failure is about one object.
    pub details: Option<(String, String)>,
    /// `details.causes` as `(reason, message)`.
    pub causes: Vec<(String, String)>,
}

impl Failure {
    /// A failure with no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Failure {
        Failure {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    /// `404 NotFound`: `<kind> "<name>" not found`.
    pub fn not_found(kind: &str, name: &str) -> Failure {
        Failure::new(404, "NotFound", format!("{kind} \"{name}\" not found"))
            .with_details(kind, name)
    }

    /// `404 NotFound` for a path the simulator does not serve.
    pub fn no_route() -> Failure {
        Failure::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(400, "BadRequest", message)
    }

    /// `422 Invalid`.
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(422, "Invalid", message)
    }

    /// `409 Conflict`.
    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(409, "Conflict", message)
    }

    /// `401 Unauthorized` (no client certificate).
    pub fn unauthorized() -> Failure {
        Failure::new(401, "Unauthorized", "Unauthorized")
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed() -> Failure {
        Failure::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str) -> Failure {
        Failure::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"
            ),
        )
    }

    /// Adds `details.kind` and `details.name`.
    pub fn with_details(mut self, kind: &str, name: &str) -> Failure {
        self.details = Some((kind.to_string(), name.to_string()));
        self
    }

    /// The `Status` object.
    pub fn status(&self) -> Status {
        let details = if self.details.is_some() || !self.causes.is_empty() {
            let (kind, name) = self.details.clone().unwrap_or_default();
            Some(StatusDetails {
                kind: Some(kind).filter(|k| !k.is_empty()),
                name: Some(name).filter(|n| !n.is_empty()),
                causes: Some(
                    self.causes
                        .iter()
                        .map(|(reason, message)| StatusCause {
                            reason: Some(reason.clone()),
                            message: Some(message.clone()),
                            field: None,
                        })
                        .collect(),
                )
                .filter(|c: &Vec<StatusCause>| !c.is_empty()),
                ..StatusDetails::default()
            })
        } else {
            None
        };
        Status {
            code: Some(i32::from(self.code)),
            details,
            message: Some(self.message.clone()),
            metadata: ListMeta::default(),
            reason: Some(self.reason.clone()),
            status: Some("Failure".into()),
        }
    }
}

impl From<KubeError> for Failure {
    fn from(e: KubeError) -> Failure {
        let reason = match e.reason {
            KubeReason::NotFound => "NotFound",
            KubeReason::TooManyRequests => "TooManyRequests",
            KubeReason::ServiceUnavailable => "ServiceUnavailable",
            KubeReason::InternalError => "InternalError",
        };
        Failure::new(e.status, reason, e.message)
    }
}

/// A successful `Status` (`status: Success`), as DELETE and eviction answer.
pub fn success(kind: &str, name: &str, uid: Option<String>) -> Status {
    Status {
        code: None,
        details: Some(StatusDetails {
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            uid,
            ..StatusDetails::default()
        }),
        message: None,
        metadata: ListMeta::default(),
        reason: None,
        status: Some("Success".into()),
    }
}

/// Serializes `value` as an `application/json` response with `code`.
pub fn json_response(code: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            code,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => Failure::new(500, "InternalError", format!("encoding the response: {e}"))
            .into_response(),
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.status())
    }
}
