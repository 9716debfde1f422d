//! The cluster implementation of [`Effects`]: Talos, etcd and Kubernetes actions, guards and
//! waits, through our own Talos client and the kube client.
//!
//! Actions are single API calls (or one stream), never retried here: the executor owns intent
//! records, retries and timeouts. Guards and waits observe the cluster afresh on every check
//! ([`Observer`]) and decide with the plain functions of [`crate::condition`]. Errors that may
//! pass (a node rebooting answers `Unavailable`; etcd refuses membership changes for a few
//! seconds after a peer reconnects: `unhealthy cluster`) are marked retryable. Local actions
//! (`noop`, `sleep`, `log`, `fail`, `marker`) are delegated to [`LocalEffects`]. Machine
//! configs are read from files and sent as they are: never logged, never journaled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio_stream::StreamExt;
use tonic::Code;

use runbook_proto::common::Data;
use runbook_proto::cosi::resource::GetRequest;
use runbook_proto::machine::{
    ApplyConfigurationRequest, BootstrapRequest, EtcdForfeitLeadershipRequest,
    EtcdLeaveClusterRequest, EtcdMemberListRequest, EtcdRemoveMemberByIdRequest, RebootRequest,
    ResetPartitionSpec, ResetRequest, ShutdownRequest, UpgradeRequest,
};

use crate::cluster::observe::{Observer, evictable};
use crate::cluster::payload::{extract_kubeconfig, patch_config};
use crate::cluster::talos::with_node;
use crate::condition::check;
use crate::condition::talos::Poll as CondPoll;
use crate::exec::LocalEffects;
use crate::exec::effects::{
    ActionCall, ActionOutcome, CheckCall, EffectError, Effects, Poll, Probe, Verdict,
};
use crate::journal::Fields;

mod age_restore;
mod batch;
mod collect;
mod diagnose;
pub mod kube_apply;
mod patch;
mod preflight;
mod probe;
mod rebuild;
mod snapshot;
mod wait_clock;

pub use probe::{DEFAULT_EFFECT_GRACE, config_digest};

/// Effects against a real (or simulated) cluster.
pub struct ClusterEffects {
    observer: std::sync::Arc<Observer>,
    changes: crate::cluster::observe::watch::Changes,
    local: LocalEffects,
    started: std::sync::Mutex<BTreeMap<String, tokio::time::Instant>>,
    node_clocks: std::sync::Mutex<wait_clock::NodeClocks>,
}

impl ClusterEffects {
    /// Effects through an observer (which holds the Talos and Kubernetes clients).
    pub fn new(observer: Observer) -> ClusterEffects {
        ClusterEffects {
            observer: std::sync::Arc::new(observer),
            changes: crate::cluster::observe::watch::Changes::new(),
            local: LocalEffects,
            started: std::sync::Mutex::new(BTreeMap::new()),
            node_clocks: std::sync::Mutex::new(wait_clock::NodeClocks::default()),
        }
    }

    /// The observer (read-only access to the cluster), for diagnoses.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    fn talos(&self) -> &crate::cluster::observe::Failover {
        &self.observer.talos
    }

    fn waited(&self, step: &str, condition: &str) -> Duration {
        let key = format!("{step}\u{0}{condition}");
        let mut map = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let start = *map.entry(key).or_insert_with(tokio::time::Instant::now);
        start.elapsed()
    }

    /// How long the wait has run: the wall clock, or the node's own clock when its uptime
    /// was read and says more (a simulator at high speed; see `wait_clock`).
    fn waited_on(
        &self,
        step: &str,
        condition: &str,
        node: Option<&str>,
        view: &crate::condition::view::ClusterView,
    ) -> Duration {
        let wall = self.waited(step, condition);
        let Some((x, uptime)) = node.and_then(|x| Some((x, *view.node(x)?.uptime.get()?))) else {
            return wall;
        };
        let key = format!("{step}\u{0}{condition}\u{0}{x}");
        let mut clocks = self.node_clocks.lock().unwrap_or_else(|p| p.into_inner());
        wall.max(clocks.elapsed(&key, uptime))
    }
}

fn status_error(action: &str, s: &tonic::Status) -> EffectError {
    let msg = s.message();
    // A transport failure (reset connection, broken pipe, h2 error) may come after the request
    // was sent: retryable, so a non-idempotent action is checked before it is tried again.
    let transport = matches!(s.code(), Code::Unknown | Code::Internal | Code::Cancelled)
        && [
            "transport error",
            "connection reset",
            "connection closed",
            "error reading a body from connection",
            "h2 protocol error",
            "broken pipe",
        ]
        .iter()
        .any(|t| msg.contains(t));
    let retryable = matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted
    ) || transport
        || msg.contains("unhealthy cluster")
        || msg.contains("no leader")
        || msg.contains("too many learner");
    EffectError::Failed {
        message: format!("`{action}`: {} ({:?})", msg, s.code()),
        retryable,
    }
}

fn done<T>(name: &str, r: Result<T, tonic::Status>) -> Result<ActionOutcome, EffectError> {
    r.map(|_| ActionOutcome::default())
        .map_err(|s| status_error(name, &s))
}

/// Whether `s` is a valid Kubernetes object name (an RFC 1123 subdomain: at most 253
/// characters of lowercase alphanumerics, `-` and `.`, starting and ending alphanumeric).
fn is_object_name(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    !s.is_empty()
        && s.len() <= 253
        && s.chars().all(|c| alnum(c) || c == '-' || c == '.')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

fn arg<'a>(call: &ActionCall<'a>, name: &str) -> Result<&'a str, EffectError> {
    opt(call, name)?.ok_or_else(|| EffectError::BadArgument {
        name: call.name.into(),
        arg: name.into(),
        reason: "missing".into(),
    })
}

fn opt<'a>(call: &ActionCall<'a>, name: &str) -> Result<Option<&'a str>, EffectError> {
    match call.args.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EffectError::BadArgument {
            name: call.name.into(),
            arg: name.into(),
            reason: format!("expected a string, found {other}"),
        }),
    }
}

/// A list-of-strings argument; absent or null is the empty list, anything else a bad argument.
fn strings(call: &ActionCall<'_>, name: &str) -> Result<Vec<String>, EffectError> {
    let bad = |reason: String| EffectError::BadArgument {
        name: call.name.into(),
        arg: name.into(),
        reason,
    };
    match call.args.get(name) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| bad(format!("expected strings, found {i}")))
            })
            .collect(),
        Some(other) => Err(bad(format!("expected a list, found {other}"))),
    }
}

fn flag(call: &ActionCall<'_>, name: &str) -> bool {
    call.args
        .get(name)
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false)
}

fn outputs(pairs: impl IntoIterator<Item = (&'static str, serde_json::Value)>) -> ActionOutcome {
    ActionOutcome {
        outputs: pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        messages: Vec::new(),
    }
}

/// A machine config file as it is sent: SOPS-encrypted files (`*.sops.yaml`, or with a
/// `sops:` key) are decrypted in memory by the real `sops`; the plaintext is never written,
/// logged or journaled (only its digest is, by the probe).
fn read_config(action: &str, path: &str) -> Result<Vec<u8>, EffectError> {
    let bytes =
        std::fs::read(path).map_err(|e| io_error(action, &format!("cannot read `{path}`"), e))?;
    let text = String::from_utf8_lossy(&bytes);
    if !crate::lint::config::looks_encrypted(std::path::Path::new(path), &text) {
        return Ok(bytes);
    }
    crate::sops::decrypt(std::path::Path::new(path))
        .map(|plain| plain.into_exposed().into_bytes())
        .map_err(|e| EffectError::Failed {
            message: format!("`{action}`: {e}"),
            retryable: false,
        })
}

fn io_error(action: &str, what: &str, e: impl std::fmt::Display) -> EffectError {
    EffectError::Failed {
        message: format!("`{action}`: {what}: {e}"),
        retryable: false,
    }
}

impl ClusterEffects {
    async fn read(&self, node: &str, path: &str) -> Result<String, tonic::Status> {
        self.observer.read(node, path).await
    }

    async fn boot_id(&self, node: &str) -> Result<String, tonic::Status> {
        self.read(node, "/proc/sys/kernel/random/boot_id").await
    }

    /// The Kubernetes node name of a Talos node label (its hostname).
    async fn kube_name(&self, node: &str) -> String {
        match self.read(node, "/proc/sys/kernel/hostname").await {
            Ok(h) if !h.is_empty() => h,
            _ => node.to_string(),
        }
    }

    fn kube(&self, action: &str) -> Result<&kube::Client, EffectError> {
        self.observer
            .kube
            .as_ref()
            .ok_or_else(|| EffectError::Failed {
                message: format!("`{action}` needs the Kubernetes API: give a kubeconfig"),
                retryable: false,
            })
    }

    async fn member_id(&self, via: &str, member: &str) -> Result<Option<u64>, EffectError> {
        if member.len() == 16
            && let Ok(id) = u64::from_str_radix(member, 16)
        {
            return Ok(Some(id));
        }
        let resp = self
            .talos()
            .machine()
            .etcd_member_list(with_node(EtcdMemberListRequest { query_local: false }, via))
            .await
            .map_err(|s| status_error("etcd.remove-member", &s))?;
        Ok(resp
            .into_inner()
            .messages
            .into_iter()
            .flat_map(|m| m.members)
            .find(|m| m.hostname == member)
            .map(|m| m.id))
    }

    async fn apply_config(&self, call: &ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let mode = patch::apply_mode(call)?;
        let insecure = flag(call, "insecure");
        let data = self.config_to_send(call).await?;
        let req = ApplyConfigurationRequest {
            data,
            mode,
            dry_run: flag(call, "dry_run"),
            try_mode_timeout: None,
        };
        let resp = if insecure {
            let endpoint = self
                .observer
                .endpoint_of(node)
                .ok_or_else(|| EffectError::Failed {
                    message: format!("no maintenance endpoint known for `{node}`"),
                    retryable: false,
                })?;
            // The config carries the cluster's keys: only to a node whose certificate is
            // pinned (configured, or learned when it was probed), never to any answer.
            let client = self
                .observer
                .pins
                .connect_pinned(node, &endpoint)
                .await
                .map_err(|e| EffectError::Failed {
                    retryable: !matches!(
                        e,
                        crate::cluster::pinning::PinError::Unpinned { .. }
                            | crate::cluster::pinning::PinError::Client(
                                crate::cluster::talos::ClientError::FingerprintMismatch { .. }
                            )
                    ),
                    message: format!(
                        "`{}`: cannot reach `{node}` in maintenance mode: {e}",
                        call.name
                    ),
                })?;
            client.machine().apply_configuration(req).await
        } else {
            self.talos()
                .machine()
                .apply_configuration(with_node(req, node))
                .await
        }
        .map_err(|s| status_error(call.name, &s))?;
        let reply = resp
            .into_inner()
            .messages
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(outputs([
            ("mode", serde_json::json!(reply.mode)),
            ("mode_details", serde_json::json!(reply.mode_details)),
        ]))
    }

    /// The bytes `talos.apply-config` sends: the file, or the running config with the patch.
    async fn config_to_send(&self, call: &ActionCall<'_>) -> Result<Vec<u8>, EffectError> {
        let node = arg(call, "node")?;
        Ok(match (opt(call, "config")?, call.args.get("patch")) {
            (Some(path), None) => read_config(call.name, path)?,
            (None, Some(patch)) => {
                let current = self.current_config(node).await?;
                patch_config(&current, patch)
                    .map_err(|e| io_error(call.name, "cannot patch the running config", e))?
                    .into_bytes()
            }
            (Some(_), Some(_)) => {
                return Err(EffectError::BadArgument {
                    name: call.name.into(),
                    arg: "patch".into(),
                    reason: "give `config` or `patch`, not both".into(),
                });
            }
            (None, None) => {
                return Err(EffectError::BadArgument {
                    name: call.name.into(),
                    arg: "config".into(),
                    reason: "give `config` (a file) or `patch`".into(),
                });
            }
        })
    }

    async fn current_config(&self, node: &str) -> Result<String, EffectError> {
        let req = GetRequest {
            namespace: "config".into(),
            r#type: "MachineConfigs.config.talos.dev".into(),
            id: "v1alpha1".into(),
            options: None,
        };
        let resp = self
            .talos()
            .cosi()
            .get(with_node(req, node))
            .await
            .map_err(|s| status_error("reading the machine config", &s))?;
        // No config is an error, never an empty one: a patch over nothing would send a
        // config holding only the patch.
        resp.into_inner()
            .resource
            .and_then(|r| r.spec)
            .map(|s| s.yaml_spec)
            .filter(|y| !y.trim().is_empty())
            .ok_or_else(|| EffectError::Failed {
                message: format!("`{node}` answered without a machine config"),
                retryable: true,
            })
    }

    async fn bootstrap(&self, call: &ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        let node = arg(call, "node")?;
        let recover = opt(call, "recover_from")?;
        if let Some(path) = recover {
            let bytes = std::fs::read(path)
                .map_err(|e| io_error(call.name, &format!("cannot read `{path}`"), e))?;
            // An age-encrypted snapshot is decrypted in memory and its trailer checked before
            // anything is sent; the plaintext never reaches a file (age_restore.rs).
            let bytes = if bytes.starts_with(age_restore::AGE_HEADER) {
                let refuse = |why: String| EffectError::Failed {
                    message: format!(
                        "`{}`: `{path}` is age-encrypted and {why}; nothing was sent",
                        call.name
                    ),
                    retryable: false,
                };
                let identity = age_restore::identity(call)?.ok_or_else(|| {
                    refuse("no `age_identity` (the age key file) was given".into())
                })?;
                age_restore::decrypt_snapshot(&bytes, identity)
                    .map_err(|e| refuse(format!("cannot be restored: {e}")))?
            } else {
                bytes
            };
            let chunks: Vec<Data> = bytes
                .chunks(4096)
                .map(|c| Data {
                    metadata: None,
                    bytes: c.to_vec(),
                })
                .collect();
            let stream = tokio_stream::iter(chunks);
            self.talos()
                .machine()
                .etcd_recover(with_node(stream, node))
                .await
                .map_err(|s| status_error(call.name, &s))?;
        }
        let req = BootstrapRequest {
            recover_etcd: recover.is_some(),
            recover_skip_hash_check: flag(call, "skip_hash_check"),
        };
        match self.talos().machine().bootstrap(with_node(req, node)).await {
            Ok(_) => Ok(outputs([("already", false.into())])),
            // The node's etcd data exists: it was bootstrapped (by this run's earlier attempt).
            Err(s) if s.code() == Code::AlreadyExists => Ok(outputs([("already", true.into())])),
            Err(s) => Err(status_error(call.name, &s)),
        }
    }

    async fn drain(&self, call: &ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        use k8s_openapi::api::core::v1::Pod;
        use kube::api::{Api, EvictParams, ListParams};
        let node = arg(call, "node")?;
        let client = self.kube(call.name)?.clone();
        let name = self.kube_name(node).await;
        let pods: Api<Pod> = Api::all(client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
            .map_err(|e| EffectError::Failed {
                message: format!("`kube.drain`: cannot list pods on `{name}`: {e}"),
                retryable: true,
            })?;
        let mut evicted = 0;
        let mut blocked = Vec::new();
        for p in list.items.iter().filter(|p| evictable(p)) {
            let (Some(ns), Some(pname)) =
                (p.metadata.namespace.as_deref(), p.metadata.name.as_deref())
            else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), ns);
            match api.evict(pname, &EvictParams::default()).await {
                Ok(_) => evicted += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(kube::Error::Api(e)) if e.code == 429 => blocked.push(format!("{ns}/{pname}")),
                Err(e) => {
                    return Err(EffectError::Failed {
                        message: format!("`kube.drain`: evicting {ns}/{pname}: {e}"),
                        retryable: true,
                    });
                }
            }
        }
        if !blocked.is_empty() {
            return Err(EffectError::Failed {
                message: format!(
                    "`kube.drain`: a PodDisruptionBudget blocks evicting {}",
                    blocked.join(", ")
                ),
                retryable: true,
            });
        }
        Ok(outputs([("evicted", evicted.into())]))
    }

    async fn set_unschedulable(
        &self,
        call: &ActionCall<'_>,
        value: bool,
    ) -> Result<ActionOutcome, EffectError> {
        use k8s_openapi::api::core::v1::Node;
        use kube::api::{Api, Patch, PatchParams};
        let node = arg(call, "node")?;
        let client = self.kube(call.name)?.clone();
        let name = self.kube_name(node).await;
        let api: Api<Node> = Api::all(client);
        let patch = serde_json::json!({ "spec": { "unschedulable": value } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| EffectError::Failed {
                message: format!("`{}` on `{name}`: {e}", call.name),
                retryable: true,
            })?;
        Ok(ActionOutcome::default())
    }

    async fn act(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        let m = || self.talos().machine();
        let name = call.name;
        match name {
            "talos.reboot" => {
                let node = arg(&call, "node")?;
                let mode = i32::from(opt(&call, "mode")? == Some("powercycle"));
                let before = call.pre_state.get("boot_id").cloned().unwrap_or_default();
                m().reboot(with_node(RebootRequest { mode }, node))
                    .await
                    .map_err(|s| status_error(name, &s))?;
                Ok(outputs([("boot_id_before", before)]))
            }
            "talos.shutdown" => {
                let node = arg(&call, "node")?;
                done(
                    name,
                    m().shutdown(with_node(
                        ShutdownRequest {
                            force: flag(&call, "force"),
                        },
                        node,
                    ))
                    .await,
                )
            }
            "talos.upgrade" => {
                let node = arg(&call, "node")?;
                let req = UpgradeRequest {
                    image: arg(&call, "image")?.into(),
                    preserve: false,
                    stage: flag(&call, "stage"),
                    force: false,
                    reboot_mode: i32::from(opt(&call, "reboot_mode")? == Some("powercycle")),
                };
                let before = call.pre_state.get("boot_id").cloned().unwrap_or_default();
                m().upgrade(with_node(req, node))
                    .await
                    .map_err(|s| status_error(name, &s))?;
                Ok(outputs([("boot_id_before", before)]))
            }
            "talos.apply-config" => self.apply_config(&call).await,
            "talos.reset" => {
                let node = arg(&call, "node")?;
                let labels: Vec<ResetPartitionSpec> = call
                    .args
                    .get("wipe")
                    .and_then(|w| w.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|l| l.as_str())
                            .map(|l| ResetPartitionSpec {
                                label: l.into(),
                                wipe: true,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let req = ResetRequest {
                    graceful: call
                        .args
                        .get("graceful")
                        .and_then(|g| g.as_bool())
                        .unwrap_or(true),
                    reboot: call
                        .args
                        .get("reboot")
                        .and_then(|g| g.as_bool())
                        .unwrap_or(true),
                    system_partitions_to_wipe: labels,
                    user_disks_to_wipe: Vec::new(),
                    mode: 0,
                };
                done(name, m().reset(with_node(req, node)).await)
            }
            "talos.bootstrap" => self.bootstrap(&call).await,
            "talos.read-boot-id" => {
                let node = arg(&call, "node")?;
                let id = self
                    .boot_id(node)
                    .await
                    .map_err(|s| status_error(name, &s))?;
                Ok(outputs([("boot_id", id.into())]))
            }
            "talos.machine-status" => {
                let v = self.observer.node(arg(&call, "node")?).await;
                let (Some(stage), Some(ready)) = (v.stage.get(), v.ready.get()) else {
                    let why = v
                        .contact
                        .gap()
                        .or_else(|| v.stage.gap())
                        .or_else(|| v.ready.gap())
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "does not answer".into());
                    return Err(EffectError::Failed {
                        message: format!("`{name}`: `{}` {why}", v.label),
                        retryable: true,
                    });
                };
                Ok(outputs([
                    ("stage", stage.clone().into()),
                    ("ready", (*ready).into()),
                    ("unmet_conditions", v.unmet.clone().into()),
                ]))
            }
            "talos.services" => {
                let v = self.observer.node(arg(&call, "node")?).await;
                let Some(services) = v.services.get() else {
                    let why = v
                        .contact
                        .gap()
                        .or_else(|| v.services.gap())
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "does not answer".into());
                    return Err(EffectError::Failed {
                        message: format!("`{name}`: `{}` {why}", v.label),
                        retryable: true,
                    });
                };
                let not_running: Vec<String> = services
                    .iter()
                    .filter(|s| s.state != "Running")
                    .map(|s| s.id.clone())
                    .collect();
                Ok(outputs([
                    (
                        "services",
                        serde_json::to_value(services).unwrap_or_default(),
                    ),
                    ("not_running", not_running.into()),
                ]))
            }
            "talos.disks" => {
                let node = arg(&call, "node")?;
                let v = self.observer.node(node).await;
                let disks = match v.disks.get() {
                    Some(d) if !d.is_empty() => d,
                    _ => {
                        let why = v
                            .contact
                            .gap()
                            .or_else(|| v.disks.gap())
                            .map(|g| format!(": {g}"))
                            .unwrap_or_default();
                        return Err(EffectError::Failed {
                            message: format!("`{name}`: no disks reported by `{node}`{why}"),
                            retryable: true,
                        });
                    }
                };
                Ok(outputs([(
                    "disks",
                    serde_json::to_value(disks).unwrap_or_default(),
                )]))
            }
            "talos.kubeconfig" => {
                let node = arg(&call, "node")?;
                let path = PathBuf::from(arg(&call, "path")?);
                let mut stream = m()
                    .kubeconfig(with_node((), node))
                    .await
                    .map_err(|s| status_error(name, &s))?
                    .into_inner();
                let mut bytes = Vec::new();
                while let Some(chunk) = stream.next().await {
                    bytes.extend(chunk.map_err(|s| status_error(name, &s))?.bytes);
                }
                let text = extract_kubeconfig(&bytes)
                    .map_err(|e| io_error(name, "cannot unpack the kubeconfig archive", e))?;
                crate::journal::durable::write_atomic(&path, &text).map_err(|e| {
                    io_error(name, &format!("cannot write `{}`", path.display()), e)
                })?;
                Ok(outputs([("path", path.display().to_string().into())]))
            }
            "etcd.members" => {
                let node = arg(&call, "node")?;
                let resp = m()
                    .etcd_member_list(with_node(
                        EtcdMemberListRequest { query_local: false },
                        node,
                    ))
                    .await
                    .map_err(|s| status_error(name, &s))?;
                let members: Vec<_> = resp
                    .into_inner()
                    .messages
                    .into_iter()
                    .flat_map(|x| x.members)
                    .collect();
                let voters = members.iter().filter(|x| !x.is_learner).count();
                let list: Vec<serde_json::Value> = members
                    .iter()
                    .map(|x| serde_json::json!({ "id": format!("{:016x}", x.id), "hostname": x.hostname, "learner": x.is_learner }))
                    .collect();
                Ok(outputs([
                    ("members", list.into()),
                    ("voters", voters.into()),
                    ("learners", (members.len() - voters).into()),
                ]))
            }
            "etcd.status" => {
                let node = arg(&call, "node")?;
                let resp = m()
                    .etcd_status(with_node((), node))
                    .await
                    .map_err(|s| status_error(name, &s))?;
                let st = resp
                    .into_inner()
                    .messages
                    .into_iter()
                    .find_map(|x| x.member_status)
                    .unwrap_or_default();
                Ok(outputs([
                    ("member_id", format!("{:016x}", st.member_id).into()),
                    ("leader", format!("{:016x}", st.leader).into()),
                    ("raft_index", st.raft_index.into()),
                    ("errors", st.errors.into()),
                    ("is_learner", st.is_learner.into()),
                ]))
            }
            "etcd.snapshot" => self.snapshot(&call).await,
            "etcd.remove-member" => {
                let via = arg(&call, "node")?;
                let member = arg(&call, "member")?;
                let Some(id) = self.member_id(via, member).await? else {
                    // Already gone: removal is done.
                    return Ok(outputs([("member_id", serde_json::Value::Null)]));
                };
                match m()
                    .etcd_remove_member_by_id(with_node(
                        EtcdRemoveMemberByIdRequest { member_id: id },
                        via,
                    ))
                    .await
                {
                    Ok(_) => Ok(outputs([("member_id", format!("{id:016x}").into())])),
                    Err(s) if s.code() == Code::NotFound => {
                        Ok(outputs([("member_id", format!("{id:016x}").into())]))
                    }
                    Err(s) => Err(status_error(name, &s)),
                }
            }
            "etcd.leave" => {
                let node = arg(&call, "node")?;
                done(
                    name,
                    m().etcd_leave_cluster(with_node(EtcdLeaveClusterRequest {}, node))
                        .await,
                )
            }
            "etcd.forfeit-leadership" => {
                let node = arg(&call, "node")?;
                let resp = m()
                    .etcd_forfeit_leadership(with_node(EtcdForfeitLeadershipRequest {}, node))
                    .await
                    .map_err(|s| status_error(name, &s))?;
                let member = resp
                    .into_inner()
                    .messages
                    .into_iter()
                    .next()
                    .map(|x| x.member)
                    .unwrap_or_default();
                Ok(outputs([("leader", member.into())]))
            }
            "kube.cordon" => self.set_unschedulable(&call, true).await,
            "kube.uncordon" => self.set_unschedulable(&call, false).await,
            "kube.drain" => self.drain(&call).await,
            "kube.delete-node" => {
                use k8s_openapi::api::core::v1::Node;
                use kube::api::{Api, DeleteParams};
                let node = arg(&call, "node")?;
                // An empty name would address the collection (`DELETE /api/v1/nodes/`), so
                // only a valid Node name is ever sent.
                if !is_object_name(node) {
                    return Err(EffectError::NotSent {
                        message: format!(
                            "`{name}`: `{node}` is not a Kubernetes Node name (RFC 1123 subdomain); nothing was deleted"
                        ),
                        retryable: false,
                    });
                }
                let api: Api<Node> = Api::all(self.kube(name)?.clone());
                match api.delete(node, &DeleteParams::default()).await {
                    Ok(_) => Ok(ActionOutcome::default()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(ActionOutcome::default()),
                    Err(e) => Err(EffectError::Failed {
                        message: format!("`{name}`: {e}"),
                        retryable: true,
                    }),
                }
            }
            "preflight" => self.preflight(&call).await,
            "talos.patch" => self.talos_patch(&call).await,
            "kube.apply" => self.kube_apply(&call).await,
            "etcd.diagnose" => self.diagnose(&call).await,
            "etcd.collect" => self.collect(&call).await,
            "rebuild.plan" => self.rebuild_plan(&call).await,
            "rebuild.check-node" => self.rebuild_check_node(&call).await,
            _ => self.local.perform(call).await,
        }
    }
}

fn verdict(v: crate::condition::view::Verdict) -> Verdict {
    if v.holds {
        // A pass has no reason field of its own: keep why it passed with the figures.
        Verdict {
            passed: true,
            reason: String::new(),
            figures: with_reason(v.figures, &v.reason),
        }
    } else {
        Verdict {
            passed: false,
            reason: v.reason,
            figures: v.figures,
        }
    }
}

fn with_reason(mut figures: Fields, reason: &str) -> Fields {
    figures.insert("reason".into(), reason.into());
    figures
}

fn check_error(name: &str, e: check::Error) -> EffectError {
    EffectError::BadArgument {
        name: name.into(),
        arg: "-".into(),
        reason: e.to_string(),
    }
}

impl Effects for ClusterEffects {
    async fn perform(&self, call: ActionCall<'_>) -> Result<ActionOutcome, EffectError> {
        self.talos().ensure_healthy().await;
        let ordinal = crate::test_hook::effect_started(call.name);
        crate::test_hook::in_effect_at(call.name, ordinal, crate::test_hook::EffectPoint::Before);
        let outcome = self.act(call).await;
        crate::test_hook::in_effect_at(call.name, ordinal, crate::test_hook::EffectPoint::After);
        outcome
    }

    async fn check_guard(&self, call: CheckCall<'_>) -> Result<Verdict, EffectError> {
        if call.name == "kube.batch-safe" {
            // Reads PodDisruptionBudgets and pods besides the view: effects/batch.rs.
            return self.batch_guard(&call).await;
        }
        let args = call.args.clone().into_iter().collect();
        let need = check::observations(call.name, &args).map_err(|e| check_error(call.name, e))?;
        // Only what the guard declares it reads (everything for an undeclared one).
        let reads = crate::condition::reads::for_check(call.name);
        let decided = match need {
            // `backup.fresh` reads a directory: no cluster needed.
            check::Observation::Nothing => check::guard(
                call.name,
                &args,
                &crate::condition::view::ClusterView::default(),
            ),
            check::Observation::Once => {
                let view = self.observer.view_of(reads).await;
                check::guard(call.name, &args, &view)
            }
            check::Observation::Twice(apart) => {
                let first = self.observer.view_of(reads).await;
                tokio::time::sleep(apart).await;
                let second = self.observer.view_of(reads).await;
                check::guard_with(call.name, &args, &second, Some(&first))
            }
        };
        decided.map(verdict).map_err(|e| check_error(call.name, e))
    }

    async fn poll(&self, call: CheckCall<'_>) -> Result<Poll, EffectError> {
        if call.name == crate::exec::command::SUCCEEDS {
            // A local program, not a cluster observation.
            return self.local.poll(call).await;
        }
        if crate::condition::kube::OBJECT_WAITS.contains(&call.name) {
            // Kubernetes objects, read for this condition (not part of the cluster view).
            return self.poll_kube_object(&call).await;
        }
        let view = self
            .observer
            .view_of(crate::condition::reads::for_check(call.name))
            .await;
        let args: check::Args = call.args.clone().into_iter().collect();
        let node = args.get("node").and_then(|n| n.as_str());
        let waited = self.waited_on(call.step, call.name, node, &view);
        let before = call.pre_state.get("boot_id").and_then(|b| b.as_str());
        match check::wait(call.name, &args, &view, waited, before)
            .map_err(|e| check_error(call.name, e))?
        {
            CondPoll::Holds(v) => Ok(Poll {
                satisfied: true,
                figures: with_reason(v.figures, &v.reason),
            }),
            CondPoll::NotYet(v) => Ok(Poll {
                satisfied: false,
                figures: with_reason(v.figures, &v.reason),
            }),
            CondPoll::GiveUp(v) => Err(EffectError::Failed {
                message: v.reason,
                retryable: false,
            }),
        }
    }

    async fn probe(&self, call: ActionCall<'_>) -> Result<Option<bool>, EffectError> {
        // Without time to wait out a grace: "unknown" and "not yet sure" are errors, so a
        // caller that cannot wait (the rollback path) never reads them as "not done".
        self.talos().ensure_healthy().await;
        match self.effect_of(&call, Duration::ZERO).await {
            Probe::Done(_) => Ok(Some(true)),
            Probe::NotDone(_) => Ok(Some(false)),
            Probe::Unknown(e) => Err(EffectError::Failed {
                message: e,
                retryable: true,
            }),
            Probe::NoProbe => self.local.probe(call).await,
        }
    }

    async fn check_effect(&self, call: ActionCall<'_>, waited: Duration) -> Probe {
        self.talos().ensure_healthy().await;
        match self.effect_of(&call, waited).await {
            Probe::NoProbe => match self.local.probe(call).await {
                Ok(Some(true)) => Probe::Done("the probe found the effect".into()),
                Ok(Some(false)) => Probe::NotDone("the probe found no effect".into()),
                Ok(None) => Probe::NoProbe,
                Err(e) => Probe::Unknown(e.to_string()),
            },
            p => p,
        }
    }

    async fn pre_state(&self, call: ActionCall<'_>) -> Result<Fields, EffectError> {
        if call.name.starts_with("backup.") {
            // Local backup actions (`backup.prune` journals its plan here).
            return self.local.pre_state(call).await;
        }
        self.talos().ensure_healthy().await;
        self.evidence_before(&call).await
    }

    fn changes(&self, condition: &str) -> Option<tokio::sync::watch::Receiver<u64>> {
        // A local program is run at its author's interval, not on cluster changes.
        (condition != crate::exec::command::SUCCEEDS)
            .then(|| self.changes.subscribe(&self.observer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_valid_node_name_is_deleted_never_the_collection() {
        assert!(is_object_name("mac-49"));
        assert!(is_object_name("worker-01.lan"));
        for bad in [
            "",
            "/",
            "a/b",
            "-a",
            "a-",
            "Mac-49",
            "a b",
            &"a".repeat(254),
        ] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_reset_after_sending_is_retryable_but_a_refusal_is_not() {
        let retryable =
            |code, msg: &str| status_error("a", &tonic::Status::new(code, msg)).is_retryable();
        assert!(retryable(Code::Unavailable, "connection refused"));
        assert!(retryable(
            Code::Unknown,
            "transport error: connection reset by peer"
        ));
        assert!(retryable(
            Code::Internal,
            "h2 protocol error: error reading a body from connection"
        ));
        assert!(!retryable(
            Code::Unknown,
            "failed to reset: volume \"X\" not found"
        ));
        assert!(!retryable(Code::FailedPrecondition, "locked"));
        assert!(!retryable(Code::PermissionDenied, "not authorized"));
    }
}
