//! Keeping secret parameter values out of the journal, events and logs.
//!
//! The plan holds secrets in memory (actions need them), and run-time evaluation can fold them
//! into argument values, action results or error texts. Everything the runner journals or
//! emits that could carry such text passes through a [`Redactor`], which replaces every
//! occurrence of a secret value with [`REDACTED`]. It is a second line of defence behind
//! [`crate::secret::Secret`] and `ParamValue`'s redacting `Serialize`.

use crate::journal::Fields;
use crate::plan::Plan;
use crate::secret::{REDACTED, Secret};

/// Replaces secret values in text and fields.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<Secret<String>>,
    /// Values computed from secrets at run time (`params.token.to_upper()`), registered by the
    /// [`Evaluator`](super::Evaluator) that shares this list; replaced like the secrets.
    derived: Derived,
}

/// The shared list of secret-derived values (see [`Redactor::derived`]).
pub type Derived = std::sync::Arc<std::sync::Mutex<Vec<Secret<String>>>>;

impl Redactor {
    /// A redactor for the secret params of `plan`.
    pub fn new(plan: &Plan) -> Self {
        let mut secrets: Vec<Secret<String>> = plan
            .params
            .values()
            .filter(|p| p.secret)
            .filter_map(|p| match &p.value {
                serde_json::Value::String(s) if !s.is_empty() => Some(Secret::new(s.clone())),
                serde_json::Value::String(_) => None,
                other => Some(Secret::new(other.to_string())),
            })
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        Redactor {
            secrets,
            derived: Derived::default(),
        }
    }

    /// The list an evaluator adds secret-derived values to.
    pub fn derived(&self) -> Derived {
        self.derived.clone()
    }

    fn has_any(&self) -> bool {
        !self.secrets.is_empty()
            || !self
                .derived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: &str) -> String {
        let mut all: Vec<Secret<String>> = self.secrets.clone();
        all.extend(
            self.derived
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned(),
        );
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.expose().len()));
        let mut out = text.to_owned();
        for s in &all {
            if out.contains(s.expose().as_str()) {
                out = out.replace(s.expose().as_str(), REDACTED);
            }
        }
        out
    }

    /// A JSON value with every secret replaced in its strings and keys.
    pub fn value(&self, v: serde_json::Value) -> serde_json::Value {
        use serde_json::Value as J;
        if !self.has_any() {
            return v;
        }
        match v {
            J::String(s) => J::String(self.text(&s)),
            J::Array(items) => J::Array(items.into_iter().map(|i| self.value(i)).collect()),
            J::Object(map) => J::Object(self.fields(map)),
            other => other,
        }
    }

    /// Fields with every secret replaced.
    pub fn fields(&self, fields: Fields) -> Fields {
        if !self.has_any() {
            return fields;
        }
        fields
            .into_iter()
            .map(|(k, v)| (self.text(&k), self.value(v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_longest_secret_first() {
        let r = Redactor {
            secrets: vec![
                Secret::new("hunter2-long".into()),
                Secret::new("hunter2".into()),
            ],
            derived: Derived::default(),
        };
        assert_eq!(
            r.text("a hunter2-long b hunter2"),
            "a <redacted> b <redacted>"
        );
        let f = r.fields(
            serde_json::json!({"k": ["x hunter2"]})
                .as_object()
                .cloned()
                .unwrap(),
        );
        assert_eq!(
            serde_json::Value::Object(f),
            serde_json::json!({"k": ["x <redacted>"]})
        );
    }
}
