//! What `run`, `resume` and `abort` share: loading a run's plan back from its directory,
//! choosing the reporter, prompting for approvals on a terminal, and driving the runner on a
//! tokio runtime.

use std::io::{BufRead, IsTerminal, Write};

use crate::cli::Error;
use crate::cli::args::ClusterArgs;
use crate::cli::args::OutputArg;
use crate::cluster::connection::Connection;
use crate::cluster::lease;
use crate::compile::{self, Mode};
use crate::event::{Event, Stop};
use crate::exec::{self, Approver, Effects, EventSink, LocalEffects, Options, Runner};
use crate::journal::{ClusterLockEvent, Journal, Record, RunDir, SourceKind, StateDir};
use crate::plan::Plan;
use crate::report::{Output, Reporters};
use crate::secret::REDACTED;
use crate::source::{Format, Source};

/// The operator's name for the journal (`$USER`, else `unknown`).
pub fn user() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The reporters for `--output`.
pub fn reporters(output: OutputArg) -> Reporters {
    let output = match output {
        OutputArg::Auto => Output::Auto,
        OutputArg::Plain => Output::Plain,
        OutputArg::Json => Output::Json,
    };
    Reporters::for_output(output, std::io::stderr().is_terminal())
}

/// Asks on the terminal: `approve step X? [y/N]`.
struct TerminalApprover;

impl Approver for TerminalApprover {
    fn ask(&self, step: &str, prompt: &str) -> bool {
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\napproval needed for `{step}`: {prompt}\napprove? [y/N] "
        );
        let _ = err.flush();
        drop(err);
        let mut answer = String::new();
        if std::io::stdin().lock().read_line(&mut answer).is_err() {
            return false;
        }
        matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
    }
}

/// A prompt when stdin and stderr are terminals and the output is for people.
fn approver(output: OutputArg) -> Option<&'static dyn Approver> {
    static TERMINAL: TerminalApprover = TerminalApprover;
    let interactive = output != OutputArg::Json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal();
    interactive.then_some(&TERMINAL as &dyn Approver)
}

/// The state directory from `--state-dir` or the environment.
pub fn state_dir(explicit: Option<&std::path::Path>) -> Result<StateDir, Error> {
    StateDir::resolve(explicit).map_err(Error::Journal)
}

/// Recompiles a run's stored source with its stored params (secrets given again in
/// `given`), and checks the plan hash against the journal's header.
pub fn load_plan(run: &RunDir, given: &[(String, String)]) -> Result<Plan, Error> {
    let snapshot = Journal::read(run).map_err(Error::Journal)?;
    let header = snapshot
        .state
        .header
        .ok_or_else(|| Error::Usage(format!("run `{}` has no `run-started` record", run.id())))?;
    let (kind, path) = run
        .source()
        .ok_or_else(|| Error::Usage(format!("run `{}` has no stored runbook source", run.id())))?;
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error::Journal(crate::journal::Error::Io {
            op: "read",
            path: path.clone(),
            source: e,
        })
    })?;
    let format = match kind {
        SourceKind::Yaml => Format::Yaml,
        SourceKind::Rhai => Format::Rhai,
    };
    let mut source = Source::new(header.source_file.clone(), format, text);
    // The original's directory, for its relative file arguments (`compile::file_args`).
    let original = std::path::Path::new(&header.source_file);
    if original.is_absolute()
        && let Some(dir) = original.parent()
    {
        source = source.with_base_dir(dir.to_path_buf());
    }
    let mut params = Vec::new();
    for (key, value) in &header.params {
        let given_value = given.iter().rev().find(|(k, _)| k == key);
        match (value, given_value) {
            (serde_json::Value::String(s), Some((_, v))) if s == REDACTED => {
                params.push((key.clone(), v.clone()));
            }
            (serde_json::Value::String(s), None) if s == REDACTED => {
                return Err(Error::Usage(format!(
                    "parameter `{key}` is secret and was never stored: give it again with `--param {key}=…`"
                )));
            }
            (_, Some(_)) => {
                return Err(Error::Usage(format!(
                    "parameter `{key}` is fixed for run `{}`; only secret parameters are given again",
                    run.id()
                )));
            }
            (v, None) => params.push((key.clone(), param_text(v))),
        }
    }
    if let Some((k, _)) = given.iter().find(|(k, _)| !header.params.contains_key(k)) {
        return Err(Error::Usage(format!(
            "run `{}` has no parameter `{k}`",
            run.id()
        )));
    }
    let plan = compile::compile_source(&source, &Mode::Plan(params)).map_err(Error::Diagnostics)?;
    if plan.hash != header.plan_hash {
        return Err(Error::PlanChanged {
            run: run.id().to_owned(),
            stored: header.plan_hash,
            now: plan.hash,
        });
    }
    Ok(plan)
}

/// A stored param value back as `--param` text.
fn param_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(param_text).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// Where a run's side effects go; saved as `target.json` in the run directory so `resume` and
/// `abort` reach the same cluster.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
// A handful per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Target {
    /// Local actions only.
    Local,
    /// A cluster reached through a talosconfig (real, or a `runbook sim up` simulator).
    Cluster(Connection),
    /// A simulator embedded in the driving process (`--sim`).
    Sim {
        /// The starting scenario.
        scenario: String,
        /// Time acceleration.
        speed: f64,
        /// The topology preset (`seed` when absent).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        preset: String,
        /// Workers of the `fleet` preset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workers: Option<u32>,
    },
}

const TARGET_FILE: &str = "target.json";

impl Target {
    /// The target the command-line flags ask for, if they name one.
    pub fn from_args(args: &ClusterArgs) -> Result<Option<Target>, Error> {
        if args.sim {
            return Ok(Some(Target::Sim {
                scenario: args.scenario.clone(),
                speed: args.speed,
                preset: args.preset.clone(),
                workers: args.workers,
            }));
        }
        // `--endpoints FILE` meant the per-node map before it took talosctl's meaning: say so
        // rather than "invalid host name".
        if let Some(file) = args
            .endpoints
            .iter()
            .find(|e| e.ends_with(".json") || std::path::Path::new(e.as_str()).is_file())
        {
            return Err(Error::Usage(format!(
                "-e/--endpoints takes Talos API addresses (host[:port]), as in talosctl; `{file}` is a file: the map of node label to direct endpoint is `--node-endpoints FILE`"
            )));
        }
        // As talosctl: the flag, then `$TALOSCONFIG` (never with `--sim`, handled above).
        let from_env = std::env::var_os("TALOSCONFIG")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        let Some(talosconfig) = args.talosconfig.clone().or(from_env) else {
            if args.context.is_some()
                || args.kubeconfig.is_some()
                || args.kube_context.is_some()
                || args.node_endpoints.is_some()
                || !args.endpoints.is_empty()
                || !args.nodes.is_empty()
            {
                return Err(Error::Usage(
                    "--context, -e/--endpoints, -n/--nodes, --kubeconfig, --kube-context and --node-endpoints need a talosconfig: --talosconfig PATH, $TALOSCONFIG or ~/.talos/config".into(),
                ));
            }
            return Ok(None);
        };
        let talosconfig = &talosconfig;
        let (endpoints, fingerprints) = match &args.node_endpoints {
            None => Default::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Usage(format!("cannot read `{}`: {e}", path.display())))?;
                crate::cluster::pinning::split_endpoints(serde_json::from_str(&text).map_err(
                    |e| {
                        Error::Usage(format!(
                            "`{}` is not a JSON map of node label to endpoint: {e}",
                            path.display()
                        ))
                    },
                )?)
            }
        };
        Ok(Some(Target::Cluster(Connection {
            talosconfig: absolute(talosconfig),
            context: args.context.clone(),
            kubeconfig: args.kubeconfig.as_deref().map(absolute),
            endpoints,
            nodes: args.nodes.clone(),
            fingerprints,
            ca_sha256: None,
            kube_ca_sha256: None,
            cluster_id: None,
            talos_endpoints: args.endpoints.clone(),
            kube_context: args.kube_context.clone(),
            kubeconfig_fetched: false,
            fetched: None,
        })))
    }

    /// Saves the target in a run directory.
    pub fn save(&self, run: &RunDir) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::Usage(format!("cannot record the run's target: {e}")))?;
        crate::journal::durable::write_atomic(&run.path().join(TARGET_FILE), &json)
            .map_err(Error::Journal)
    }

    /// The target a run was started with (local if it recorded none).
    pub fn load(run: &RunDir) -> Result<Target, Error> {
        match std::fs::read(run.path().join(TARGET_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Usage(format!(
                    "`{TARGET_FILE}` of run `{}` is unreadable: {e}",
                    run.id()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Target::Local),
            Err(e) => Err(Error::Usage(format!(
                "cannot read `{TARGET_FILE}` of run `{}`: {e}",
                run.id()
            ))),
        }
    }

    /// The target `run` records: for a cluster, with its identity (CA fingerprints, and the
    /// Talos cluster id when the cluster offers it), so `resume` can tell it from another.
    ///
    /// A runbook that needs a cluster falls back to talosctl's and kubectl's default files
    /// (`~/.talos/config`, `$KUBECONFIG`, `~/.kube/config`) when no flag names them.
    pub fn for_run(args: &ClusterArgs, needs_cluster: bool) -> Result<Target, Error> {
        let mut target = match Target::from_args(args)? {
            Some(t) => t,
            None if needs_cluster => match default_talosconfig() {
                Some(path) => Target::from_args(&ClusterArgs {
                    talosconfig: Some(path),
                    ..args.clone()
                })?
                .unwrap_or(Target::Local),
                None => Target::Local,
            },
            None => Target::Local,
        };
        if let Target::Cluster(conn) = &mut target {
            // The operator's own environment, consistently: kubectl's default kubeconfig goes
            // with talosctl's default talosconfig. A talosconfig named by flag (a simulator, a
            // second cluster) never picks up whatever ~/.kube/config points at, or the lock and
            // the Kubernetes actions could land on another cluster; without a kubeconfig, one
            // is fetched from the cluster itself when it is reached (`reach`).
            if conn.kubeconfig.is_none() && args.talosconfig.is_none() {
                conn.kubeconfig = default_kubeconfig().map(|p| absolute(&p));
            }
        }
        Ok(target)
    }

    /// The target for continuing a run (`resume`, `abort`): always the cluster the run
    /// recorded. Flags (or `$TALOSCONFIG`) that name another talosconfig, context, kubeconfig
    /// or endpoint set are refused, naming both, unless they identify the same cluster (same
    /// Talos CA, same kubeconfig CA, same Talos cluster id); recorded pieces the flags do not
    /// give (kubeconfig, endpoints, nodes) are kept. A run on an embedded simulator cannot
    /// continue in another process (its cluster ended with it).
    pub fn for_resume(run: &RunDir, args: &ClusterArgs) -> Result<Target, Error> {
        let given = Target::from_args(args)?;
        match Target::load(run)? {
            Target::Sim { scenario, .. } => Err(Error::Usage(format!(
                "run `{}` rehearsed on a simulator embedded in its process (`--sim`, scenario `{scenario}`), which ended with it; \
                 to rehearse interruptions, start `runbook sim up --dir DIR` and run with `--talosconfig DIR/talosconfig --kubeconfig DIR/kubeconfig --node-endpoints DIR/endpoints.json`",
                run.id()
            ))),
            Target::Local => match given {
                None => Ok(Target::Local),
                Some(t) => Err(Error::Usage(format!(
                    "run `{}` was recorded without a cluster; refusing to drive {} with it{}",
                    run.id(),
                    describe(&t),
                    env_note(args)
                ))),
            },
            Target::Cluster(recorded) => match given {
                None => Ok(Target::Cluster(recorded)),
                Some(Target::Cluster(given)) => {
                    bind(run.id(), recorded, given, args).map(Target::Cluster)
                }
                Some(other) => Err(Error::Usage(format!(
                    "run `{}` drives the cluster of {}; refusing to continue it on {}",
                    run.id(),
                    describe(&Target::Cluster(recorded)),
                    describe(&other)
                ))),
            },
        }
    }
}

fn describe(t: &Target) -> String {
    match t {
        Target::Local => "no cluster".to_owned(),
        Target::Sim { scenario, .. } => format!("an embedded simulator (`--sim`, `{scenario}`)"),
        Target::Cluster(c) => {
            let mut s = format!("talosconfig `{}`", c.talosconfig.display());
            if let Some(ctx) = &c.context {
                s.push_str(&format!(" context `{ctx}`"));
            }
            if let Some(k) = &c.kubeconfig {
                s.push_str(&format!(", kubeconfig `{}`", k.display()));
            }
            if !c.endpoints.is_empty() {
                let eps: Vec<String> = c
                    .endpoints
                    .iter()
                    .map(|(l, e)| format!("{l}={e}"))
                    .collect();
                s.push_str(&format!(", endpoints {}", eps.join(" ")));
            }
            if let Some(ca) = &c.ca_sha256 {
                s.push_str(&format!(", Talos CA sha256 {}", &ca[..ca.len().min(16)]));
            }
            if let Some(id) = &c.cluster_id {
                s.push_str(&format!(", cluster id {id}"));
            }
            s
        }
    }
}

fn env_note(args: &ClusterArgs) -> String {
    // No `--talosconfig` flag: the talosconfig given came from `$TALOSCONFIG`.
    let from_env = args.talosconfig.is_none()
        && std::env::var_os("TALOSCONFIG").is_some_and(|v| !v.is_empty());
    if from_env {
        " (the talosconfig came from $TALOSCONFIG: unset it, or resume without cluster flags, to use the recorded cluster)".to_owned()
    } else {
        " (resume without cluster flags to use the recorded cluster)".to_owned()
    }
}

/// The recorded connection, with what the flags gave if (and only if) it is the same cluster.
fn bind(
    run: &str,
    recorded: Connection,
    given: Connection,
    args: &ClusterArgs,
) -> Result<Connection, Error> {
    if !given.nodes.is_empty() && given.nodes != recorded.nodes {
        return Err(Error::Usage(format!(
            "run `{run}` observes the nodes it recorded ({}); -n/--nodes {} cannot change them on resume",
            if recorded.nodes.is_empty() {
                "the talosconfig context's".to_owned()
            } else {
                recorded.nodes.join(",")
            },
            given.nodes.join(",")
        )));
    }
    let talos_differs = given.talosconfig != recorded.talosconfig
        || given.context != recorded.context
        || (!given.talos_endpoints.is_empty() && given.talos_endpoints != recorded.talos_endpoints);
    let kube_differs = given
        .kubeconfig
        .as_ref()
        .is_some_and(|k| Some(k) != recorded.kubeconfig.as_ref())
        || given
            .kube_context
            .as_ref()
            .is_some_and(|k| Some(k) != recorded.kube_context.as_ref());
    let endpoints_differ = !given.endpoints.is_empty() && given.endpoints != recorded.endpoints;
    if !talos_differs && !kube_differs && !endpoints_differ {
        return Ok(recorded);
    }
    let merged = Connection {
        talosconfig: given.talosconfig.clone(),
        context: given.context.clone(),
        kubeconfig: given
            .kubeconfig
            .clone()
            .or_else(|| recorded.kubeconfig.clone()),
        endpoints: if given.endpoints.is_empty() {
            recorded.endpoints.clone()
        } else {
            given.endpoints.clone()
        },
        nodes: recorded.nodes.clone(),
        fingerprints: if given.fingerprints.is_empty() {
            recorded.fingerprints.clone()
        } else {
            given.fingerprints.clone()
        },
        ca_sha256: recorded.ca_sha256.clone(),
        kube_ca_sha256: recorded.kube_ca_sha256.clone(),
        cluster_id: recorded.cluster_id.clone(),
        talos_endpoints: if given.talos_endpoints.is_empty() {
            recorded.talos_endpoints.clone()
        } else {
            given.talos_endpoints.clone()
        },
        kube_context: given
            .kube_context
            .clone()
            .or_else(|| recorded.kube_context.clone()),
        kubeconfig_fetched: recorded.kubeconfig_fetched && given.kubeconfig.is_none(),
        fetched: None,
    };
    let refuse = |why: String| {
        Error::Usage(format!(
            "run `{run}` is bound to its cluster ({}); the cluster flags given ({}) {why}; refusing to continue it there{}",
            describe(&Target::Cluster(recorded.clone())),
            describe(&Target::Cluster(given.clone())),
            env_note(args)
        ))
    };
    // Everything below is read from local files first: a different CA is refused before
    // anything is sent to the other cluster.
    let Some(ca) = recorded.ca_sha256.as_deref() else {
        return Err(refuse(
            "cannot be checked: the run recorded no CA fingerprint".to_owned(),
        ));
    };
    let given_ca = merged
        .talos_ca_sha256()
        .map_err(|e| refuse(format!("cannot be read ({e})")))?;
    if given_ca != ca {
        return Err(refuse(format!(
            "trust another Talos CA (sha256 {} ≠ recorded {})",
            &given_ca[..16.min(given_ca.len())],
            &ca[..16.min(ca.len())]
        )));
    }
    if kube_differs {
        let given_kube = merged
            .kube_ca_sha256_of()
            .map_err(|e| refuse(format!("have an unreadable kubeconfig ({e})")))?;
        if given_kube.is_none() || given_kube != recorded.kube_ca_sha256 {
            return Err(refuse("name a kubeconfig of another cluster CA".to_owned()));
        }
    }
    let Some(id) = recorded.cluster_id.as_deref() else {
        return Err(refuse(
            "share its CA, but the run recorded no Talos cluster id to confirm it is the same cluster".to_owned(),
        ));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    match runtime.block_on(merged.read_cluster_id()) {
        Ok(Some(given_id)) if given_id == id => Ok(merged),
        Ok(Some(given_id)) => Err(refuse(format!(
            "reach Talos cluster id {given_id}, not the recorded {id}"
        ))),
        Ok(None) => Err(refuse(
            "reach a cluster that reports no cluster id".to_owned(),
        )),
        Err(e) => Err(refuse(format!("cannot confirm the cluster id ({e})"))),
    }
}

/// `~/.talos/config`, if it exists.
pub fn default_talosconfig() -> Option<std::path::PathBuf> {
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = std::path::Path::new(&home).join(".talos/config");
    path.is_file().then_some(path)
}

/// kubectl's lookup: the first file of `$KUBECONFIG` that exists, else `~/.kube/config`.
pub fn default_kubeconfig() -> Option<std::path::PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).find(|p| p.is_file());
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty())?;
    let path = std::path::Path::new(&home).join(".kube/config");
    path.is_file().then_some(path)
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map_or_else(|_| p.to_path_buf(), |d| d.join(p))
    }
}

/// The cluster-lock flags of `run`, `resume` and `abort`.
#[derive(Debug, Clone, Default)]
pub struct LockOptions {
    /// `--no-cluster-lock REASON`.
    pub skip_reason: Option<String>,
    /// `--cluster-lock-ttl` (seconds).
    pub ttl_seconds: u32,
}

impl LockOptions {
    /// From the command line.
    pub fn from_args(args: &ClusterArgs) -> LockOptions {
        LockOptions {
            skip_reason: args.no_cluster_lock.clone(),
            ttl_seconds: args.cluster_lock_ttl,
        }
    }
}

/// Everything a session needs besides its effects.
pub struct Session<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The opened journal.
    pub journal: Journal,
    /// Reporters.
    pub events: &'a Reporters,
    /// `--output`.
    pub output: OutputArg,
    /// `--yes`.
    pub yes: bool,
    /// Run the rollbacks and finish as aborted.
    pub abort: bool,
    /// The cluster lock's flags.
    pub lock: LockOptions,
}

/// Whether a plan can disrupt the cluster (some main or rollback step has a hazard), so
/// that a session driving it must hold the cluster lock.
pub fn is_disruptive(plan: &Plan) -> bool {
    plan.steps()
        .chain(plan.rollbacks.iter())
        .any(|s| s.hazard.is_some())
}

fn lock_record(event: ClusterLockEvent, holder: String, detail: String) -> Record {
    Record::ClusterLock {
        event,
        lease: lease::LEASE.to_owned(),
        holder,
        by: user(),
        detail,
    }
}

/// Drives a session against a cluster under the cluster lock (when the plan is disruptive):
/// takes the Lease or refuses (exit 7), renews it while the session drives, stops the
/// session before its next side effect if it is lost, and releases it when the session
/// stops (finished or paused: a paused run's `resume` takes it again).
async fn go_locked<E: Effects + Sync>(
    effects: &E,
    kube: Option<kube::Client>,
    mut s: Session<'_>,
    run_dir: &RunDir,
) -> Result<crate::event::Report, Error> {
    if !is_disruptive(s.plan) {
        return go(effects, s).await;
    }
    let state = s.journal.state();
    let run_id = state
        .header
        .as_ref()
        .map(|h| h.run_id.clone())
        .unwrap_or_else(|| run_dir.id().to_owned());
    let me = lease::Me {
        run_id: run_id.clone(),
        host: crate::journal::identity::host_name(),
        user: user(),
        pid: crate::journal::identity::pid(),
        runbook: s.plan.runbook.clone(),
    };
    let taken = match kube {
        None => Err(lease::LeaseError::Unreachable {
            message: "the run has no kubeconfig (`--kubeconfig`, `$KUBECONFIG`, `~/.kube/config`, or an os:admin talosconfig to fetch one with the Talos Kubeconfig call)".to_owned(),
        }),
        Some(client) => lease::ClusterLease::acquire(client, me.clone(), s.lock.ttl_seconds).await,
    };
    let (held, how) = match taken {
        Ok(t) => t,
        Err(lease::LeaseError::Held { holder }) => {
            return Err(Error::ClusterLock(format!(
                "{}; this session did nothing: `runbook resume {run_id}` continues the run once the lock is free",
                lease::LeaseError::Held { holder }
            )));
        }
        Err(e) => {
            let Some(reason) = s.lock.skip_reason.clone() else {
                return Err(Error::ClusterLock(format!(
                    "cannot take the cluster lock `{}`: {e}; this session did nothing. If the Kubernetes API is down (recovery), go on without the lock with `--no-cluster-lock REASON` (journaled; the run lock still holds), e.g. `runbook resume {run_id} --no-cluster-lock \"API down: quorum lost\"`",
                    lease::LEASE
                )));
            };
            s.journal
                .append(lock_record(
                    ClusterLockEvent::Skipped,
                    me.identity(),
                    format!("{reason} (the lock could not be taken: {e})"),
                ))
                .map_err(Error::Journal)?;
            s.events.emit(&Event::Message {
                step: "cluster-lock".to_owned(),
                text: format!(
                    "going on WITHOUT the cluster lock `{}` (--no-cluster-lock: {reason}): {e}",
                    lease::LEASE
                ),
            });
            return go(effects, s).await;
        }
    };
    let mut held = held;
    let tolerance = match &s.lock.skip_reason {
        Some(reason) => {
            held.tolerate_unreachable();
            format!(
                "; --no-cluster-lock: {reason} (goes on if the Kubernetes API stops answering later)"
            )
        }
        None => String::new(),
    };
    let record = match &how {
        lease::Taken::Free => lock_record(
            ClusterLockEvent::Taken,
            held.identity(),
            format!("TTL {}s{tolerance}", s.lock.ttl_seconds),
        ),
        lease::Taken::Over(prev) => lock_record(
            ClusterLockEvent::TakenOver,
            held.identity(),
            format!(
                "TTL {}s; taken over from {prev}{tolerance}",
                s.lock.ttl_seconds
            ),
        ),
    };
    let held = std::sync::Arc::new(held);
    if let Err(e) = s.journal.append(record) {
        let _ = held.release().await;
        return Err(Error::Journal(e));
    }
    let renewal = held.spawn_renewal();
    let gate = lease::LeaseGate::new(effects, held.clone());
    let stopped = gate.stopped();
    let events = s.events;
    let outcome = tokio::select! {
        r = go(&gate, s) => Ok(r),
        reason = stopped => Err(reason),
    };
    renewal.abort();
    match outcome {
        Ok(report) => {
            if let Err(e) = held.release().await {
                events.emit(&Event::Message {
                    step: "cluster-lock".to_owned(),
                    text: format!(
                        "could not release the cluster lock `{}` ({e}); it expires {}s after its last renewal, or `runbook unlock {run_id} --reason TEXT`",
                        lease::LEASE,
                        held.ttl_seconds()
                    ),
                });
            }
            report
        }
        Err(reason) => {
            // The session (and its journal) was dropped before the side effect: note why.
            let noted = Journal::open(run_dir).and_then(|mut o| {
                o.journal
                    .append(lock_record(
                        ClusterLockEvent::Lost,
                        held.identity(),
                        reason.clone(),
                    ))
                    .map(|_| ())
            });
            let noted = match noted {
                Ok(()) => String::new(),
                Err(e) => format!(" (not journaled: {e})"),
            };
            Err(Error::ClusterLock(format!(
                "{reason}; the run `{run_id}` stopped before its next side effect{noted}; `runbook resume {run_id}` continues it once the lock is free"
            )))
        }
    }
}

async fn go<E: Effects>(effects: &E, s: Session<'_>) -> Result<crate::event::Report, Error> {
    let user = user();
    let options = Options {
        yes: s.yes,
        approver: approver(s.output),
        user: &user,
    };
    let mut runner = Runner::new(s.plan, s.journal, effects, s.events, options);
    if s.abort {
        runner.request_abort().map_err(Error::Exec)?;
    }
    runner.run().await.map_err(Error::Exec)
}

/// Drives a session with local effects only.
pub async fn go_local(s: Session<'_>) -> Result<crate::event::Report, Error> {
    go(&LocalEffects, s).await
}

/// Drives a session against a cluster, under the cluster lock when the plan is disruptive.
pub async fn go_cluster<E: Effects + Sync>(
    effects: &E,
    kube: Option<kube::Client>,
    s: Session<'_>,
    run_dir: &RunDir,
) -> Result<crate::event::Report, Error> {
    go_locked(effects, kube, s, run_dir).await
}

/// `--dry-run` against a cluster: each `talos.patch` step's redacted diff and each
/// `kube.apply` step's server-side dry run, read-only (a cluster that cannot be reached says
/// so and the dry run goes on).
pub fn preview_changes(conn: &Connection, plan: &Plan, events: &dyn crate::exec::EventSink) {
    if !plan.steps().any(|s| {
        s.action
            .as_ref()
            .is_some_and(|c| c.name == "talos.patch" || c.name == "kube.apply")
    }) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let lines = runtime.block_on(async {
        match conn.open().await {
            Ok(effects) => effects.preview_changes(plan).await,
            Err(e) => vec![("-".to_string(), format!("cannot reach the cluster: {e}"))],
        }
    });
    for (step, text) in lines {
        events.emit(&Event::Message { step, text });
    }
}

/// The exit status of a stop (the reporter already showed the report).
pub fn stop(stop: Stop) -> Result<(), Error> {
    match stop.exit_code() {
        0 => Ok(()),
        code => Err(Error::Stopped(code)),
    }
}

/// Emits a torn-tail notice.
pub fn torn(events: &dyn EventSink, torn: Option<&crate::journal::TornTail>) {
    if let Some(t) = torn {
        events.emit(&Event::TornTail {
            description: t.to_string(),
        });
    }
}

/// Re-exported for `run --dry-run`.
pub use exec::dry_run;
