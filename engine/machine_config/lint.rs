//! Plan-time checks of a `talos.patch` step, so a malformed patch is an authoring error with
//! its file, line and column before anything runs: an inline `patch:` is checked against its
//! `format:` (the diagnostic points into the runbook), a literal `patch_file:` that can be read
//! now (and is not SOPS-encrypted) is parsed (the diagnostic points into the patch file). A
//! file that does not exist yet, or a value known only at run time, is checked when the step
//! runs, with the same messages.

use std::collections::BTreeMap;

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::ast::{ArgValue, Args};
use crate::plan::Value;
use crate::source::Source;

use super::Format;

/// Checks the arguments of one `talos.patch` call (`given` as written, `args` as folded with
/// their defaults).
pub fn check_call(
    source: &Source,
    given: &Args,
    args: &BTreeMap<String, Value>,
    diags: &mut Diagnostics,
) {
    let literal = |name: &str| args.get(name).and_then(|v| v.literal());
    let Ok(format) = Format::from_arg(literal("format").and_then(|v| v.as_str())) else {
        return;
    };
    let span_of = |name: &str| {
        given
            .iter()
            .find(|(n, _)| n.value == name)
            .map(|(n, v)| match v {
                ArgValue::Literal(node) => node.span,
                _ => n.span,
            })
    };
    match (args.get("patch"), args.get("patch_file")) {
        (Some(_), Some(_)) => {
            if let Some(span) = span_of("patch_file") {
                diags.push(Diagnostic::new(
                    Code::InvalidValue,
                    source,
                    span,
                    "`talos.patch` takes `patch` or `patch_file`, not both",
                    "second patch",
                ));
            }
        }
        (None, None) => {
            if let Some((name, _)) = given.first() {
                diags.push(
                    Diagnostic::new(
                        Code::MissingArgument,
                        source,
                        name.span,
                        "`talos.patch` needs `patch` (inline) or `patch_file`",
                        "no patch",
                    )
                    .with_help(
                        "add `patch: { machine: { … } }` or `patch_file: path/to/patch.yaml`",
                    ),
                );
            }
        }
        (Some(Value::Literal(v)), None) => {
            if let (Err(e), Some(span)) = (super::patch_from_value(format, v), span_of("patch")) {
                diags.push(Diagnostic::new(
                    Code::InvalidValue,
                    source,
                    span,
                    e.to_string(),
                    "this patch",
                ));
            }
        }
        (None, Some(Value::Literal(serde_json::Value::String(path)))) => {
            let p = std::path::Path::new(path);
            let Ok(text) = std::fs::read_to_string(p) else {
                return;
            };
            if crate::lint::config::looks_encrypted(p, &text) {
                return;
            }
            if let Err(d) = super::patch_from_file(format, path, &text) {
                diags.0.extend(d.0);
            }
        }
        _ => {}
    }
}
