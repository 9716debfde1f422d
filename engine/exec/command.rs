//! Local programs: the `exec` action and the `exec.succeeds` condition.
//!
//! Operators reach for a command when the catalog has no action for what they need (Ansible's
//! `command`). The engine cannot know what a program does, so `exec` promises only what it can
//! keep: the program runs as an argv list (no shell unless the author writes `sh -c`), with the
//! environment and working directory the step gives, under a timeout that kills it; its exit
//! code, standard output and standard error (each cut at [`OUTPUT_LIMIT`] bytes) become the
//! step's outputs; a non-zero exit fails the step, retryable only when the author says so. Its
//! idempotency is the author's declaration (default `confirm`: an interrupted `exec` asks a
//! person), and `exec.succeeds` lets a `verify:` or `wait:` ask another program whether the
//! effect is there. Outputs and errors go through the executor's redactor like every other
//! value, so a secret echoed by the program is not journaled; secrets given in `env` are never
//! journaled either (arguments are not).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::effects::{ActionCall, ActionOutcome, CheckCall, EffectError, Poll};
use crate::journal::Fields;

/// How much of standard output and of standard error is kept (the rest is read and dropped).
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// The condition that runs a program.
pub const SUCCEEDS: &str = "exec.succeeds";

/// What to run.
#[derive(Debug, Clone)]
struct Spec {
    argv: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
    timeout: Option<Duration>,
}

/// How a program ended.
#[derive(Debug, Clone, PartialEq)]
struct Finished {
    /// The exit code; `None` when a signal ended it.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn bad(name: &str, arg: &str, reason: impl Into<String>) -> EffectError {
    EffectError::BadArgument {
        name: name.to_owned(),
        arg: arg.to_owned(),
        reason: reason.into(),
    }
}

fn spec(name: &str, args: &Fields) -> Result<Spec, EffectError> {
    let argv: Vec<String> = match args.get("command") {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(name, "command", "every element must be a string"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(name, "command", "must be a list: [program, arg, …]")),
        None => return Err(bad(name, "command", "missing")),
    };
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(bad(name, "command", "names no program"));
    }
    let env = match args.get("env") {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                    Ok((k.clone(), v.to_string()))
                }
                _ => Err(bad(name, "env", format!("`{k}` must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(name, "env", "must be a map of variable to value")),
    };
    let cwd = match args.get("cwd") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(PathBuf::from(s)),
        Some(_) => return Err(bad(name, "cwd", "must be a path")),
    };
    let timeout = match args.get("timeout") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => {
            Some(crate::dsl::duration::parse(s).map_err(|e| bad(name, "timeout", e))?)
        }
        Some(_) => return Err(bad(name, "timeout", "must be a duration")),
    };
    Ok(Spec {
        argv,
        env,
        cwd,
        timeout,
    })
}

/// Reads all of `r`, keeping the first [`OUTPUT_LIMIT`] bytes.
async fn bounded(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut kept = Vec::new();
    let mut total = 0usize;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n;
                let room = OUTPUT_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if total > OUTPUT_LIMIT {
        text.push_str(&format!("\n[… cut: {total} bytes in all]"));
    }
    text
}

async fn run(name: &str, spec: &Spec, retryable: bool) -> Result<Finished, EffectError> {
    let program = &spec.argv[0];
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A step timeout drops this future: the program must not outlive it.
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|e| EffectError::Failed {
        message: format!("`{name}`: cannot start `{program}`: {e}"),
        retryable: false,
    })?;
    let out = child.stdout.take().map(|s| tokio::spawn(bounded(s)));
    let err = child.stderr.take().map(|s| tokio::spawn(bounded(s)));
    let status = match spec.timeout {
        None => child.wait().await,
        Some(limit) => match tokio::time::timeout(limit, child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                let _ = child.kill().await;
                return Err(EffectError::Failed {
                    message: format!(
                        "`{name}`: `{program}` did not finish within {} and was killed",
                        crate::dsl::duration::format(limit)
                    ),
                    retryable,
                });
            }
        },
    }
    .map_err(|e| EffectError::Failed {
        message: format!("`{name}`: waiting for `{program}`: {e}"),
        retryable: false,
    })?;
    let text = |h: Option<tokio::task::JoinHandle<String>>| async move {
        match h {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        }
    };
    Ok(Finished {
        code: status.code(),
        stdout: text(out).await,
        stderr: text(err).await,
    })
}

fn last_line(s: &str) -> &str {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// The `exec` action.
pub async fn action(call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
    let spec = spec(call.name, call.args)?;
    let retryable = call
        .args
        .get("retryable")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let done = run(call.name, &spec, retryable).await?;
    match done.code {
        Some(0) => Ok(ActionOutcome {
            outputs: [
                ("stdout".to_string(), done.stdout.into()),
                ("stderr".to_string(), done.stderr.into()),
                ("exit_code".to_string(), 0.into()),
            ]
            .into_iter()
            .collect(),
            messages: Vec::new(),
        }),
        code => {
            let how = code.map_or("was killed by a signal".to_string(), |c| {
                format!("exited with {c}")
            });
            let tail = last_line(&done.stderr);
            Err(EffectError::Failed {
                message: format!(
                    "`{}` {how}{}",
                    spec.argv[0],
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(": {tail}")
                    }
                ),
                retryable,
            })
        }
    }
}

/// The `exec.succeeds` condition: holds when the program exits 0. A program that cannot be
/// started is an error, not "not yet": polling it again will not help.
pub async fn condition(call: CheckCall<'_>) -> Result<Poll, EffectError> {
    let spec = spec(call.name, call.args)?;
    let done = run(call.name, &spec, false).await?;
    let mut figures = Fields::new();
    figures.insert("exit_code".into(), done.code.into());
    let tail = last_line(&done.stderr);
    if !tail.is_empty() {
        figures.insert("stderr".into(), tail.into());
    }
    Ok(Poll {
        satisfied: done.code == Some(0),
        figures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: serde_json::Value) -> Fields {
        v.as_object().cloned().unwrap()
    }

    async fn perform(a: &Fields) -> Result<ActionOutcome, EffectError> {
        let pre = Fields::new();
        action(ActionCall {
            step: "s",
            name: "exec",
            args: a,
            attempt: 1,
            pre_state: &pre,
        })
        .await
    }

    #[tokio::test]
    async fn runs_an_argv_without_a_shell_and_keeps_its_output() {
        let a = args(serde_json::json!({
            "command": ["sh", "-c", "printf \"$GREETING\"; echo oops >&2", "ignored"],
            "env": {"GREETING": "hello $HOME"},
        }));
        let out = perform(&a).await.unwrap();
        assert_eq!(out.outputs["stdout"], "hello $HOME");
        assert_eq!(out.outputs["stderr"], "oops\n");
        assert_eq!(out.outputs["exit_code"], 0);
        // No shell unless asked: the argument is passed as is.
        let a = args(serde_json::json!({"command": ["echo", "$HOME;", "rm -rf /"]}));
        assert_eq!(
            perform(&a).await.unwrap().outputs["stdout"],
            "$HOME; rm -rf /\n"
        );
    }

    #[tokio::test]
    async fn non_zero_exit_fails_and_is_retryable_only_when_declared() {
        let a = args(serde_json::json!({"command": ["sh", "-c", "echo broken >&2; exit 3"]}));
        let e = perform(&a).await.unwrap_err();
        assert_eq!(e.to_string(), "`sh` exited with 3: broken");
        assert!(!e.is_retryable());
        let a = args(serde_json::json!({"command": ["false"], "retryable": true}));
        assert!(perform(&a).await.unwrap_err().is_retryable());
    }

    #[tokio::test]
    async fn missing_program_and_bad_arguments_are_clear() {
        let a = args(serde_json::json!({"command": ["/nonexistent/prog"]}));
        let e = perform(&a).await.unwrap_err().to_string();
        assert!(
            e.starts_with("`exec`: cannot start `/nonexistent/prog`"),
            "{e}"
        );
        let a = args(serde_json::json!({"command": "ls -l"}));
        assert_eq!(
            perform(&a).await.unwrap_err().to_string(),
            "argument `command` of `exec`: must be a list: [program, arg, …]"
        );
        let a = args(serde_json::json!({"command": []}));
        assert!(perform(&a).await.is_err());
    }

    #[tokio::test]
    async fn timeout_kills_the_program() {
        let a = args(serde_json::json!({"command": ["sleep", "30"], "timeout": "200ms"}));
        let e = perform(&a).await.unwrap_err().to_string();
        assert_eq!(
            e,
            "`exec`: `sleep` did not finish within 200ms and was killed"
        );
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let a = args(serde_json::json!({"command": ["head", "-c", "200000", "/dev/zero"]}));
        let out = perform(&a).await.unwrap();
        let s = out.outputs["stdout"].as_str().unwrap();
        assert!(s.len() < OUTPUT_LIMIT + 100, "{}", s.len());
        assert!(
            s.ends_with("[… cut: 200000 bytes in all]"),
            "{}",
            &s[s.len() - 40..]
        );
    }

    #[tokio::test]
    async fn the_condition_holds_on_exit_zero() {
        let pre = Fields::new();
        let ok = args(serde_json::json!({"command": ["true"]}));
        let no = args(serde_json::json!({"command": ["sh", "-c", "echo missing >&2; exit 1"]}));
        let poll = |a| CheckCall {
            step: "s",
            name: SUCCEEDS,
            args: a,
            pre_state: &pre,
        };
        assert!(condition(poll(&ok)).await.unwrap().satisfied);
        let p = condition(poll(&no)).await.unwrap();
        assert!(!p.satisfied);
        assert_eq!(p.figures["stderr"], "missing");
    }
}
