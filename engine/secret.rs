//! Secrets: values that must never reach the journal, logs, events or output.
//!
//! Placeholder until the journal work lands its `Secret<T>`: the marker text every redaction
//! uses.

/// What a redacted value prints as.
pub const REDACTED: &str = "<redacted>";
