//! A wrapper that keeps secret values out of logs, `Debug` output, snapshots and the journal.
//!
//! Runbooks take parameters such as etcd encryption keys or a talosconfig token. The journal
//! and `params.json` are plain files an operator may attach to a ticket, so a secret must never
//! reach them. [`Secret<T>`] makes the safe thing the default: `Debug`, `Display` and
//! `Serialize` all produce the placeholder [`REDACTED`], and the only way to the value is an
//! explicit, greppable call to [`Secret::expose`].
//!
//! Deserializing reads the plain value (so a secret can come from a params file or the CLI).
//! Note the asymmetry: serializing and then deserializing a `Secret<String>` yields a secret
//! holding the placeholder itself. That is deliberate: on resume, secrets are supplied again by
//! the operator; they are never recovered from the run directory.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text every secret renders as, in `Debug`, `Display` and serialized form.
pub const REDACTED: &str = "<redacted>";

/// A value that must not be shown: see the [module docs](self).
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the secret value. Every call site is a place the secret can leak: keep them few.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret value, consuming the wrapper.
    pub fn into_exposed(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> Serialize for Secret<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "hunter2-etcd-key";

    #[derive(Debug, Serialize, Deserialize)]
    struct Params {
        node: String,
        key: Secret<String>,
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Secret::new(KEY.to_owned());
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(format!("{secret}"), REDACTED);
        assert_eq!(format!("{secret:#?}"), REDACTED);
        let params = Params {
            node: "n1".into(),
            key: secret,
        };
        assert!(!format!("{params:?}").contains(KEY));
        assert!(!format!("{params:#?}").contains(KEY));
    }

    #[test]
    fn serialize_emits_placeholder_string() {
        let params = Params {
            node: "n1".into(),
            key: Secret::new(KEY.to_owned()),
        };
        let json = serde_json::to_string(&params).unwrap();
        assert_eq!(json, r#"{"node":"n1","key":"<redacted>"}"#);
        let value = serde_json::to_value(Secret::new(42_u64)).unwrap();
        assert_eq!(value, serde_json::Value::String(REDACTED.into()));
    }

    #[test]
    fn deserialize_reads_plain_value_and_expose_returns_it() {
        let params: Params =
            serde_json::from_str(r#"{"node":"n1","key":"hunter2-etcd-key"}"#).unwrap();
        assert_eq!(params.key.expose(), KEY);
        assert_eq!(params.key.clone().into_exposed(), KEY);
        let n: Secret<u32> = serde_json::from_str("7").unwrap();
        assert_eq!(*n.expose(), 7);
    }

    #[test]
    fn round_trip_never_restores_the_value() {
        let json = serde_json::to_string(&Secret::new(KEY.to_owned())).unwrap();
        let back: Secret<String> = serde_json::from_str(&json).unwrap();
        assert_eq!(back.expose(), REDACTED);
    }
}
