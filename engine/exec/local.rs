//! The local actions (`noop`, `sleep`, `log`, `fail`, `marker`, and `exec`, in `command.rs`):
//! real side effects that need no cluster, for rehearsing runbooks, the crash tests, and the
//! commands authors run between cluster steps.
//!
//! They are deliberately tiny but honest: `fail` counts attempts from the journal (the attempt
//! number the runner passes in), so it fails the same attempts however often the process is
//! killed and resumed; `marker` appends and fsyncs a line, and its probe reads the file back,
//! which is exactly the "did the effect happen?" question an interrupted step must answer.
//! `backup.fresh` reads a directory, not the cluster, so it is decided here too. Everything else
//! (Talos, etcd, Kubernetes actions, named guards and conditions) returns
//! [`EffectError::NeedsCluster`]: it is never faked.

use std::io::Write;
use std::path::Path;

use super::effects::{ActionCall, ActionOutcome, CheckCall, EffectError, Effects, Poll, Verdict};
use crate::test_hook::{self, MarkerPoint};

/// The effects of a build without a cluster connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalEffects;

/// Whether an action has no effect outside the journal, so its intent need not be fsynced
/// separately before it runs (the runner group-commits intent, outcome and checkpoint).
pub fn effect_free(action: &str) -> bool {
    matches!(action, "noop" | "log")
}

fn arg_str<'a>(call: &ActionCall<'a>, arg: &str) -> Result<&'a str, EffectError> {
    match call.args.get(arg) {
        Some(serde_json::Value::String(s)) => Ok(s),
        Some(_) => Err(bad(call, arg, "expected a string")),
        None => Err(bad(call, arg, "missing")),
    }
}

fn bad(call: &ActionCall<'_>, arg: &str, reason: &str) -> EffectError {
    EffectError::BadArgument {
        name: call.name.to_owned(),
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    }
}

impl LocalEffects {
    async fn run(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        match call.name {
            "noop" => Ok(ActionOutcome::default()),
            "sleep" => {
                let text = arg_str(&call, "duration")?;
                let d =
                    crate::dsl::duration::parse(text).map_err(|e| bad(&call, "duration", &e))?;
                tokio::time::sleep(d).await;
                Ok(ActionOutcome::default())
            }
            "log" => Ok(ActionOutcome {
                outputs: Default::default(),
                messages: vec![arg_str(&call, "message")?.to_owned()],
            }),
            "fail" => {
                let failing = match call.args.get("attempts") {
                    None => 1,
                    Some(v) => v
                        .as_u64()
                        .ok_or_else(|| bad(&call, "attempts", "expected a whole number"))?,
                };
                if u64::from(call.attempt) <= failing {
                    let message = call
                        .args
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("failed on purpose");
                    Err(EffectError::Failed {
                        message: format!(
                            "{message} (attempt {} of {failing} failing)",
                            call.attempt
                        ),
                        retryable: true,
                    })
                } else {
                    Ok(ActionOutcome::default())
                }
            }
            "marker" => {
                let path = Path::new(arg_str(&call, "path")?);
                let text = arg_str(&call, "text")?;
                if text.contains('\n') {
                    return Err(bad(&call, "text", "must be one line"));
                }
                let ordinal = test_hook::marker_started();
                test_hook::in_marker_at(ordinal, MarkerPoint::Before);
                append_line(path, text).map_err(|e| EffectError::Failed {
                    message: format!("cannot append to `{}`: {e}", path.display()),
                    retryable: true,
                })?;
                test_hook::in_marker_at(ordinal, MarkerPoint::After);
                Ok(ActionOutcome::default())
            }
            "exec" => super::command::action(call).await,
            name if crate::cluster::backup::actions::handles(name) => {
                crate::cluster::backup::actions::perform(&call).await
            }
            other => Err(EffectError::NeedsCluster {
                name: other.to_owned(),
            }),
        }
    }
}

fn append_line(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(format!("{text}\n").as_bytes())?;
    file.sync_data()
}

/// Whether `path` holds `text` as a whole line (a missing file holds nothing).
pub fn has_line(path: &Path, text: &str) -> std::io::Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(content) => Ok(content.lines().any(|l| l == text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Effects for LocalEffects {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        self.run(call).await
    }

    async fn check_guard(&self, call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        let args = call.args.clone().into_iter().collect();
        match crate::condition::check::observations(call.name, &args) {
            Ok(crate::condition::check::Observation::Nothing) => {
                let empty = crate::condition::view::ClusterView::default();
                let v = crate::condition::check::guard(call.name, &args, &empty).map_err(|e| {
                    EffectError::BadArgument {
                        name: call.name.to_owned(),
                        arg: "-".into(),
                        reason: e.to_string(),
                    }
                })?;
                let mut figures = v.figures;
                if v.holds {
                    figures.insert("reason".into(), v.reason.into());
                    Ok(Verdict {
                        passed: true,
                        reason: String::new(),
                        figures,
                    })
                } else {
                    Ok(Verdict {
                        passed: false,
                        reason: v.reason,
                        figures,
                    })
                }
            }
            _ => Err(EffectError::NeedsCluster {
                name: call.name.to_owned(),
            }),
        }
    }

    async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
        if call.name == super::command::SUCCEEDS {
            return super::command::condition(call).await;
        }
        Err(EffectError::NeedsCluster {
            name: call.name.to_owned(),
        })
    }

    async fn pre_state(&self, call: ActionCall<'_>) -> Result<crate::journal::Fields, EffectError> {
        crate::cluster::backup::actions::pre_state(&call)
    }

    async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        if call.name != "marker" {
            return Ok(None);
        }
        let path = Path::new(arg_str(&call, "path")?);
        let text = arg_str(&call, "text")?;
        has_line(path, text)
            .map(Some)
            .map_err(|e| EffectError::Failed {
                message: format!("cannot read `{}`: {e}", path.display()),
                retryable: true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Fields;

    fn args(v: serde_json::Value) -> Fields {
        v.as_object().cloned().unwrap()
    }

    #[tokio::test]
    async fn fail_counts_attempts_from_the_caller() {
        let a = args(serde_json::json!({"attempts": 2}));
        let pre = Fields::new();
        let call = |attempt| ActionCall {
            step: "s",
            name: "fail",
            args: &a,
            attempt,
            pre_state: &pre,
        };
        assert!(
            LocalEffects
                .perform(call(1))
                .await
                .unwrap_err()
                .is_retryable()
        );
        assert!(LocalEffects.perform(call(2)).await.is_err());
        assert!(LocalEffects.perform(call(3)).await.is_ok());
    }

    #[tokio::test]
    async fn marker_appends_and_its_probe_reads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let a = args(serde_json::json!({"path": path.to_str().unwrap(), "text": "one"}));
        let pre = Fields::new();
        let call = ActionCall {
            step: "s",
            name: "marker",
            args: &a,
            attempt: 1,
            pre_state: &pre,
        };
        assert_eq!(LocalEffects.probe(call).await.unwrap(), Some(false));
        LocalEffects.perform(call).await.unwrap();
        assert_eq!(LocalEffects.probe(call).await.unwrap(), Some(true));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
    }

    #[tokio::test]
    async fn cluster_actions_say_they_need_a_cluster() {
        let a = Fields::new();
        let pre = Fields::new();
        let call = ActionCall {
            step: "s",
            name: "talos.reboot",
            args: &a,
            attempt: 1,
            pre_state: &pre,
        };
        let err = LocalEffects.perform(call).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`talos.reboot` needs a cluster connection")
        );
        assert!(!err.is_retryable());
    }
}
