//! Why a Talos connection or call failed, in the operator's words: an expired or not-yet-valid
//! client certificate, a server certificate that the talosconfig's CA did not sign, a wrong
//! server name, a refused or timed-out connection, a role that may not make the call.
//!
//! Without this every failure read "cannot connect to EP", which sends an operator to check
//! the network when the certificate expired. The cause is read from the error chain (walking
//! `std::error::Error::source`, and into `std::io::Error` payloads, where tokio-rustls puts the
//! `rustls::Error`), so it names what rustls, the socket or the server said, not a guess.

use std::time::{Duration, SystemTime};

use rustls::{AlertDescription, CertificateError};

/// `$RUNBOOK_CONNECT_TIMEOUT`: seconds (fractions allowed) for TCP plus the TLS handshake.
pub const TIMEOUT_ENV: &str = "RUNBOOK_CONNECT_TIMEOUT";

/// The default deadline for TCP plus the TLS handshake.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect deadline: [`TIMEOUT_ENV`] if set to a positive number of seconds, else
/// [`DEFAULT_TIMEOUT`].
pub fn connect_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 3600.0)
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64)
}

/// What went wrong, as far as the error chain tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// The talosconfig's client certificate expired.
    ClientCertExpired {
        /// Its `notAfter`.
        not_after: String,
    },
    /// The talosconfig's client certificate is not valid yet (a clock behind, or a
    /// certificate minted for later).
    ClientCertNotYetValid {
        /// Its `notBefore`.
        not_before: String,
    },
    /// The server refused the client certificate (a TLS alert from it).
    ClientCertRejected {
        /// The alert.
        alert: String,
    },
    /// The server's certificate is not signed by the talosconfig's CA.
    UnknownCa,
    /// The server's certificate expired or is not valid yet.
    ServerCertTime,
    /// The server's certificate is not valid for the endpoint's name.
    WrongServerName {
        /// What rustls said.
        detail: String,
    },
    /// Nothing listens at the endpoint.
    Refused,
    /// No answer within the deadline.
    TimedOut,
    /// The talosconfig's role may not make this call.
    RoleNotAllowed {
        /// What the server said.
        detail: String,
    },
    /// Anything else, as the innermost error says it.
    Other(String),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::ClientCertExpired { not_after } => write!(
                f,
                "the talosconfig's client certificate expired ({not_after}); get a new one (`talosctl config new`, or from whoever holds the cluster's secrets)"
            ),
            Cause::ClientCertNotYetValid { not_before } => write!(
                f,
                "the talosconfig's client certificate is not valid yet (from {not_before}); check this machine's clock"
            ),
            Cause::ClientCertRejected { alert } => write!(
                f,
                "the server refused the talosconfig's client certificate ({alert}): expired, or from another cluster"
            ),
            Cause::UnknownCa => f.write_str(
                "the server's certificate is not signed by the talosconfig's CA (another cluster, or a talosconfig from before the secrets were regenerated)",
            ),
            Cause::ServerCertTime => {
                f.write_str("the server's certificate is expired or not valid yet")
            }
            Cause::WrongServerName { detail } => write!(
                f,
                "the server's certificate is not valid for this endpoint's name ({detail}); use an endpoint its certificate names (an IP, or a name in machine.certSANs)"
            ),
            Cause::Refused => f.write_str("connection refused (nothing listens there: apid down, wrong port, or the node is off)"),
            Cause::TimedOut => f.write_str(
                "timed out (no answer: the node is off, a firewall drops the traffic, or the address is wrong)",
            ),
            Cause::RoleNotAllowed { detail } => write!(
                f,
                "the talosconfig's role is not allowed to make this call ({detail}); use a talosconfig with the os:admin role"
            ),
            Cause::Other(s) => f.write_str(s),
        }
    }
}

fn from_rustls(e: &rustls::Error) -> Option<Cause> {
    use rustls::Error as R;
    Some(match e {
        R::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer
            | CertificateError::BadSignature
            | CertificateError::UnhandledCriticalExtension => Cause::UnknownCa,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Cause::WrongServerName {
                    detail: e.to_string(),
                }
            }
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => Cause::ServerCertTime,
            _ => return None,
        },
        R::AlertReceived(a) => match a {
            AlertDescription::CertificateExpired
            | AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateRequired
            | AlertDescription::AccessDenied => Cause::ClientCertRejected {
                alert: format!("{a:?}"),
            },
            _ => return None,
        },
        _ => return None,
    })
}

fn from_io(e: &std::io::Error) -> Option<Cause> {
    if let Some(inner) = e.get_ref()
        && let Some(r) = inner.downcast_ref::<rustls::Error>()
        && let Some(c) = from_rustls(r)
    {
        return Some(c);
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => Some(Cause::Refused),
        std::io::ErrorKind::TimedOut => Some(Cause::TimedOut),
        _ => None,
    }
}

impl Cause {
    /// Classifies an error by walking its source chain (and into `io::Error` payloads).
    pub fn of(err: &(dyn std::error::Error + 'static)) -> Cause {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
        let mut last = err.to_string();
        while let Some(e) = cur {
            if let Some(r) = e.downcast_ref::<rustls::Error>()
                && let Some(c) = from_rustls(r)
            {
                return c;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(c) = from_io(io) {
                    return c;
                }
                // `io::Error::source` skips its payload: look inside explicitly.
                if let Some(inner) = io.get_ref() {
                    last = inner.to_string();
                    cur = inner.source();
                    continue;
                }
            }
            if let Some(s) = e.downcast_ref::<tonic::Status>()
                && let Some(c) = status_code_cause(s)
            {
                return c;
            }
            let text = e.to_string();
            if !text.is_empty() {
                last = text;
            }
            cur = e.source();
        }
        Cause::Other(last)
    }

    /// Classifies a failed call: the role, a deadline, else whatever transport error the
    /// status carries (an alert that arrived after the handshake, a refused reconnect).
    pub fn of_status(s: &tonic::Status) -> Cause {
        if let Some(c) = status_code_cause(s) {
            return c;
        }
        if let Some(src) = std::error::Error::source(s) {
            match Cause::of(src) {
                Cause::Other(_) => {}
                c => return c,
            }
        }
        Cause::Other(format!("{} ({:?})", s.message(), s.code()))
    }

    /// Whether the cause says the endpoint was not reached at all (as opposed to reached and
    /// refusing us).
    pub fn is_silence(&self) -> bool {
        matches!(self, Cause::Refused | Cause::TimedOut)
    }
}

fn status_code_cause(s: &tonic::Status) -> Option<Cause> {
    match s.code() {
        tonic::Code::PermissionDenied => Some(Cause::RoleNotAllowed {
            detail: s.message().to_owned(),
        }),
        tonic::Code::DeadlineExceeded => Some(Cause::TimedOut),
        _ => None,
    }
}

/// Whether the PEM client certificate is outside its validity period at `now` (None: valid,
/// or unreadable, which the TLS layer reports on its own).
pub fn client_cert_validity(crt_pem: &str, now: SystemTime) -> Option<Cause> {
    let der = super::talos::pem_block_der(crt_pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let secs = now.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    let now = i64::try_from(secs).ok()?;
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Some(Cause::ClientCertExpired {
            not_after: validity.not_after.to_string(),
        });
    }
    if now < validity.not_before.timestamp() {
        return Some(Cause::ClientCertNotYetValid {
            not_before: validity.not_before.to_string(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_inside_io_errors_are_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(Cause::of(&io), Cause::UnknownCa);
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
        );
        assert!(matches!(Cause::of(&io), Cause::ClientCertRejected { .. }));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(Cause::of(&refused), Cause::Refused);
        let other = std::io::Error::other("weird");
        assert_eq!(Cause::of(&other), Cause::Other("weird".into()));
        let denied = tonic::Status::permission_denied("not authorized");
        assert!(matches!(
            Cause::of_status(&denied),
            Cause::RoleNotAllowed { .. }
        ));
    }

    #[test]
    fn an_unreadable_certificate_is_left_to_tls() {
        assert_eq!(client_cert_validity("garbage", SystemTime::now()), None);
    }
}
