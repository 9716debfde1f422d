//! Machine configs and patches over them, as pure functions: parse a (multi-document) machine
//! config, apply a strategic-merge or RFC 6902 patch client-side, compare the result with the
//! current config by meaning (not bytes), list the changed paths, decide whether the change
//! needs a reboot, and render a redacted unified diff.
//!
//! This module exists so `talos.patch` (and `talos.apply-config`'s `patch:`) decide "is there
//! anything to send, and is it disruptive?" in one place that is tested without a cluster. The
//! cluster side (reading the config over COSI, sending `ApplyConfiguration`) lives in
//! `engine/cluster/effects/patch.rs`; the design is in `docs/design/talos-patch.md`.

mod classify;
mod diff;
pub mod lint;
mod strategic;

use serde_json::Value as J;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::span::Span;
use crate::source::{Format as SourceFormat, Source};

pub use classify::{ConfigPath, immediate, plan_needs_reboot, reboot_required, static_paths};
pub use diff::{REDACTED, changed_paths, redact, redacted_diff, render_yaml, secret_key};

/// The patch formats `talos.patch` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Strategic merge, as Talos's `configpatcher` does it for multi-document configs.
    Strategic,
    /// RFC 6902 operations against the `v1alpha1` document.
    Json6902,
}

impl Format {
    /// From the `format:` argument (absent: strategic).
    pub fn from_arg(s: Option<&str>) -> Result<Format, String> {
        match s {
            None | Some("strategic") => Ok(Format::Strategic),
            Some("json6902") => Ok(Format::Json6902),
            Some(other) => Err(format!(
                "unknown format `{other}`: one of strategic, json6902"
            )),
        }
    }
}

/// A parsed patch.
#[derive(Debug, Clone, PartialEq)]
pub enum Patch {
    /// Strategic-merge documents (one per YAML document).
    Strategic(Vec<J>),
    /// RFC 6902 operations.
    Json6902(json_patch::Patch),
}

/// A machine config as its parsed documents, in order.
pub type Config = Vec<J>;

/// Errors of patching.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The patch is not a patch of its format.
    #[error("malformed {format} patch: {reason}")]
    Malformed {
        /// `strategic` or `json6902`.
        format: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The current config does not parse.
    #[error("the current machine config does not parse: {0}")]
    Config(String),
    /// The patch does not apply to this config.
    #[error("the patch does not apply: {0}")]
    Apply(String),
}

/// The byte ranges of the YAML documents of a multi-document text (`---` lines separate
/// them); empty documents are skipped.
fn document_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            out.push((start, offset));
            start = offset + line.len();
        }
        offset += line.len();
    }
    out.push((start, text.len()));
    out.into_iter()
        .filter(|(a, b)| {
            text[*a..*b]
                .lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .collect()
}

/// Parses each YAML document of `text` as a [`Source`] named `name`, keeping line numbers
/// (the text outside the document is blanked, newlines kept), so a diagnostic names the
/// file's own line and column.
pub fn parse_documents(name: &str, text: &str) -> Result<Vec<J>, Diagnostics> {
    let mut docs = Vec::new();
    let mut diags = Diagnostics::default();
    for (a, b) in document_ranges(text) {
        let blanked: String = text
            .char_indices()
            .map(|(i, c)| {
                if (a..b).contains(&i) || c == '\n' {
                    c
                } else {
                    ' '
                }
            })
            .collect();
        let src = Source::new(name, SourceFormat::Yaml, blanked);
        match crate::dsl::yaml::parse(&src) {
            Ok(node) => docs.push(node.to_json()),
            Err(d) => diags.0.extend(d.0),
        }
    }
    diags.into_result(docs)
}

/// Parses a machine config (one or more YAML documents).
pub fn parse_config(text: &str) -> Result<Config, PatchError> {
    parse_documents("machine config", text).map_err(|d| PatchError::Config(d.to_string()))
}

/// The config as text to send: each document as JSON (a subset of YAML, which Talos and the
/// simulator parse), separated by `---`.
pub fn to_text(config: &Config) -> String {
    config
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap_or_else(|_| "{}".into()))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn malformed(format: Format, reason: impl Into<String>) -> PatchError {
    PatchError::Malformed {
        format: match format {
            Format::Strategic => "strategic",
            Format::Json6902 => "json6902",
        },
        reason: reason.into(),
    }
}

/// A patch from a structured value (the `patch:` argument): a map (or a list of maps, one per
/// document) for strategic merge, a list of operations for RFC 6902.
pub fn patch_from_value(format: Format, value: &J) -> Result<Patch, PatchError> {
    match format {
        Format::Strategic => match value {
            J::Object(_) => Ok(Patch::Strategic(vec![value.clone()])),
            J::Array(docs) if !docs.is_empty() && docs.iter().all(J::is_object) => {
                Ok(Patch::Strategic(docs.clone()))
            }
            other => Err(malformed(
                format,
                format!(
                    "expected a map (or a list of maps, one per document), found {}",
                    kind(other)
                ),
            )),
        },
        Format::Json6902 => {
            let J::Array(ops) = value else {
                return Err(malformed(
                    format,
                    format!("expected a list of operations, found {}", kind(value)),
                ));
            };
            if ops.is_empty() {
                return Err(malformed(format, "the list of operations is empty"));
            }
            for (i, op) in ops.iter().enumerate() {
                serde_json::from_value::<json_patch::PatchOperation>(op.clone())
                    .map_err(|e| malformed(format, format!("operation {}: {e}", i + 1)))?;
            }
            serde_json::from_value::<json_patch::Patch>(value.clone())
                .map(Patch::Json6902)
                .map_err(|e| malformed(format, e.to_string()))
        }
    }
}

/// A patch from a file's text (`patch_file:`): YAML documents for strategic merge; one YAML
/// (or JSON) list of operations for RFC 6902. Errors are diagnostics naming `name` with
/// line and column.
pub fn patch_from_file(format: Format, name: &str, text: &str) -> Result<Patch, Diagnostics> {
    let docs = parse_documents(name, text)?;
    let whole = Span::new(0, text.len().min(1));
    let value = match (format, docs.as_slice()) {
        (_, []) => {
            return Err(Diagnostics(vec![Diagnostic::new(
                Code::InvalidValue,
                &Source::new(name, SourceFormat::Yaml, text),
                whole,
                "the patch file is empty",
                "empty",
            )]));
        }
        (Format::Strategic, _) => J::Array(docs),
        (Format::Json6902, [one]) => one.clone(),
        (Format::Json6902, _) => {
            return Err(Diagnostics(vec![Diagnostic::new(
                Code::InvalidValue,
                &Source::new(name, SourceFormat::Yaml, text),
                whole,
                "a json6902 patch file holds one list of operations",
                "more than one document",
            )]));
        }
    };
    patch_from_value(format, &value).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            Code::InvalidValue,
            &Source::new(name, SourceFormat::Yaml, text),
            first_content(text),
            e.to_string(),
            "in this patch",
        )])
    })
}

/// The span of the first non-blank, non-comment line (where a whole-file error points).
fn first_content(text: &str) -> Span {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim();
        if !t.is_empty() && !t.starts_with('#') && t != "---" {
            let lead = line.len() - line.trim_start().len();
            return Span::new(offset + lead, line.trim().len());
        }
        offset += line.len();
    }
    Span::new(0, 0)
}

fn kind(v: &J) -> &'static str {
    match v {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::Number(_) => "a number",
        J::String(_) => "a string",
        J::Array(_) => "a list",
        J::Object(_) => "a map",
    }
}

/// Whether a document is the `v1alpha1` one (`version: v1alpha1`, no `kind`).
pub fn is_v1alpha1(doc: &J) -> bool {
    doc.get("kind").is_none() && doc.get("version").and_then(J::as_str) == Some("v1alpha1")
}

/// Applies `patch` to `current`; the result is a new config (the input is untouched).
pub fn apply(current: &Config, patch: &Patch) -> Result<Config, PatchError> {
    match patch {
        Patch::Strategic(docs) => strategic::apply(current, docs),
        Patch::Json6902(ops) => {
            // As Talos's configpatcher: RFC 6902 addresses one document, so a config with
            // several is refused rather than guessed at.
            if current.len() > 1 {
                return Err(PatchError::Apply(
                    "json6902 patches are not supported for multi-document machine configs (use a strategic patch)".into(),
                ));
            }
            let mut doc = current
                .first()
                .cloned()
                .unwrap_or_else(|| J::Object(Default::default()));
            json_patch::patch(&mut doc, ops).map_err(|e| PatchError::Apply(e.to_string()))?;
            Ok(vec![doc])
        }
    }
}

/// Whether two configs mean the same: the same documents (in any order, matched by identity)
/// with equal parsed values (key order and layout do not count).
pub fn same(a: &Config, b: &Config) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().all(|d| {
        let id = strategic::doc_id(d);
        b.iter()
            .find(|e| strategic::doc_id(e) == id)
            .is_some_and(|e| e == d)
    })
}

#[cfg(test)]
mod tests;
