//! Exactly once across the call/record window: what a non-idempotent cluster action journals
//! before its call (`pre_state`), and how an attempt with an unknown outcome is settled from
//! the cluster afterwards (`check_effect`).
//!
//! This file exists because "did my Reboot get through?" has no answer in the journal: the
//! process may die after the call returned and before its outcome was recorded, or the call
//! may fail with a timeout after reaching the node. Each probe reads only what the call changes
//! (boot id, machine stage, running config, etcd members), with short deadlines, and says
//! `Done` or `NotDone` only on positive evidence; silence where silence is ambiguous, a
//! refused read or an error is `Unknown`, which the runner never treats as "not done". "Not
//! done" for a call whose effect shows with a delay (a reboot, an apply, a bootstrap) needs the
//! node to have stayed unchanged for the action's `effect_grace`. The argument per action is
//! in `docs/design/exactly-once.md`.

use std::time::Duration;

use prost::Message as _;
use sha2::{Digest, Sha256};
use tonic::Code;

use runbook_proto::cosi::resource::GetRequest;
use runbook_proto::machine::EtcdMemberListRequest;
use runbook_proto::talos::resource::definitions::{enums, runtime};

use super::{ClusterEffects, arg, flag, opt};
use crate::cluster::observe::CALL_DEADLINE;
use crate::cluster::talos::{TalosClient, with_node};
use crate::exec::effects::{ActionCall, EffectError, Probe};
use crate::journal::Fields;

/// The default of the `effect_grace` argument: how long after the runner started checking a
/// node must still show no sign of the call (same boot id and `running`, same config, etcd
/// still waiting for bootstrap, member still listed) before the call counts as not done. Talos
/// changes the machine stage as soon as it accepts a reboot, shutdown, upgrade or reset; the
/// grace covers a request still in flight when the client died.
pub const DEFAULT_EFFECT_GRACE: Duration = Duration::from_secs(30);

/// The pre-state keys.
const BOOT_ID: &str = "boot_id";
const CONFIG_SHA256: &str = "config_sha256";
const RUNNING_SHA256: &str = "running_config_sha256";
const MAINTENANCE: &str = "maintenance";
const MEMBER_HOSTNAME: &str = "member_hostname";

/// What a node's stage says, from `MachineStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running,
    Booting,
    Maintenance,
    /// Rebooting, shutting down, resetting, upgrading, installing: the node left `running`.
    Leaving(&'static str),
    Unknown,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Running => "running",
            Stage::Booting => "booting",
            Stage::Maintenance => "maintenance",
            Stage::Leaving(s) => s,
            Stage::Unknown => "unknown",
        })
    }
}

fn stage_of(v: i32) -> Stage {
    use enums::RuntimeMachineStage as S;
    match S::try_from(v).unwrap_or(S::MachineStageUnknown) {
        S::MachineStageRunning => Stage::Running,
        S::MachineStageBooting => Stage::Booting,
        S::MachineStageMaintenance => Stage::Maintenance,
        S::MachineStageRebooting => Stage::Leaving("rebooting"),
        S::MachineStageShuttingDown => Stage::Leaving("shutting down"),
        S::MachineStageResetting => Stage::Leaving("resetting"),
        S::MachineStageUpgrading => Stage::Leaving("upgrading"),
        S::MachineStageInstalling => Stage::Leaving("installing"),
        S::MachineStageUnknown => Stage::Unknown,
    }
}

/// A read that did not answer: `silent` when the node (or the route to it) is down, as
/// opposed to a refusal (permission, bad request) that proves nothing about the node.
struct NoAnswer {
    silent: bool,
    text: String,
}

fn no_answer(s: &tonic::Status) -> NoAnswer {
    NoAnswer {
        silent: matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded),
        text: format!("{} ({:?})", s.message(), s.code()),
    }
}

async fn within<T>(
    f: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Result<T, NoAnswer> {
    match tokio::time::timeout(CALL_DEADLINE, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(s)) => Err(no_answer(&s)),
        Err(_) => Err(NoAnswer {
            silent: true,
            text: "timed out".into(),
        }),
    }
}

/// The sha256 of a machine config's meaning: every YAML document parsed and written back as
/// JSON with sorted keys, so a node that stores the config re-encoded still matches. Never
/// the config itself: it holds secrets.
pub fn config_digest(text: &str) -> Result<String, String> {
    let mut hasher = Sha256::new();
    let docs = crate::machine_config::parse_config(text).map_err(|e| e.to_string())?;
    for doc in docs {
        let mut out = String::new();
        canonical(&doc, &mut out);
        hasher.update(out.as_bytes());
        hasher.update(b"\n");
    }
    Ok(hex::encode(hasher.finalize()))
}

fn canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value as J;
    match v {
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&J::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = map.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        J::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn pre_error(call: &ActionCall<'_>, what: &str, e: impl std::fmt::Display) -> EffectError {
    EffectError::Failed {
        message: format!("`{}`: cannot read {what}: {e}", call.name),
        retryable: true,
    }
}

fn grace(call: &ActionCall<'_>) -> Result<Duration, EffectError> {
    match opt(call, "effect_grace")? {
        None => Ok(DEFAULT_EFFECT_GRACE),
        Some(text) => crate::dsl::duration::parse(text).map_err(|e| EffectError::BadArgument {
            name: call.name.into(),
            arg: "effect_grace".into(),
            reason: e.to_string(),
        }),
    }
}

fn fmt(d: Duration) -> String {
    crate::dsl::duration::format(d)
}

/// "Not done" once the grace has passed, "unknown" before (for the sibling modules).
pub(super) fn unchanged_for(waited: Duration, grace: Duration, what: String) -> Probe {
    unchanged(waited, grace, what)
}

/// "Not done" once the grace has passed, "unknown" before.
fn unchanged(waited: Duration, grace: Duration, what: String) -> Probe {
    if waited >= grace {
        Probe::NotDone(format!("{what} for {} after the call", fmt(grace)))
    } else {
        Probe::Unknown(format!(
            "{what}; not done only if that lasts {}",
            fmt(grace)
        ))
    }
}

fn pre_str<'a>(call: &ActionCall<'a>, key: &str) -> Option<&'a str> {
    call.pre_state.get(key).and_then(serde_json::Value::as_str)
}

impl ClusterEffects {
    async fn stage(&self, node: &str) -> Result<Stage, NoAnswer> {
        let req = GetRequest {
            namespace: "runtime".into(),
            r#type: "MachineStatuses.runtime.talos.dev".into(),
            id: "machine".into(),
            options: None,
        };
        let resp = within(self.talos().cosi().get(with_node(req, node))).await?;
        let bytes = resp
            .into_inner()
            .resource
            .and_then(|r| r.spec)
            .map(|s| s.proto_spec)
            .unwrap_or_default();
        runtime::MachineStatusSpec::decode(bytes.as_slice())
            .map(|s| stage_of(s.stage))
            .map_err(|e| NoAnswer {
                silent: false,
                text: format!("undecodable MachineStatus: {e}"),
            })
    }

    /// Silence from `node` is evidence only if the Talos endpoint we go through answers as
    /// itself: otherwise it may be our own network that is down.
    async fn silent_node(&self, node: &str, e: &NoAnswer) -> Probe {
        match within(self.talos().machine().version(())).await {
            Ok(_) => Probe::Done(format!(
                "`{node}` answered before the call and is silent now ({}), while the Talos endpoint answers",
                e.text
            )),
            Err(own) => Probe::Unknown(format!(
                "`{node}` is silent ({}), but so is the Talos endpoint ({}): cannot tell its silence from ours",
                e.text, own.text
            )),
        }
    }

    async fn boot_id_now(&self, node: &str) -> Result<String, NoAnswer> {
        within(self.boot_id(node)).await
    }

    /// Members as `(id, hostname)`, from one node's linearizable list.
    async fn members_via(&self, via: &str) -> Result<Vec<(u64, String)>, NoAnswer> {
        let resp = within(
            self.talos()
                .machine()
                .etcd_member_list(with_node(EtcdMemberListRequest { query_local: false }, via)),
        )
        .await?;
        Ok(resp
            .into_inner()
            .messages
            .into_iter()
            .flat_map(|m| m.members)
            .map(|m| (m.id, m.hostname))
            .collect())
    }

    /// Whether the node's maintenance API answers (server-only TLS, no client certificate).
    async fn in_maintenance(&self, node: &str) -> Result<bool, NoAnswer> {
        let Some(endpoint) = self.observer.endpoint_of(node) else {
            return Err(NoAnswer {
                silent: false,
                text: format!("no maintenance endpoint known for `{node}`"),
            });
        };
        let client = match tokio::time::timeout(
            CALL_DEADLINE,
            TalosClient::connect_insecure(&endpoint, None),
        )
        .await
        {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(NoAnswer {
                    silent: true,
                    text: e.to_string(),
                });
            }
            Err(_) => {
                return Err(NoAnswer {
                    silent: true,
                    text: "timed out".into(),
                });
            }
        };
        match within(client.machine().version(())).await {
            Ok(_) => Ok(true),
            Err(e) if e.text.ends_with(&format!("({:?})", Code::Unimplemented)) => Ok(true),
            Err(e) if !e.silent => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The evidence a non-idempotent action journals with its intent. An error fails the
    /// attempt before anything is sent.
    pub(super) async fn evidence_before(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<Fields, EffectError> {
        let mut out = Fields::new();
        match call.name {
            "talos.reboot" | "talos.upgrade" | "talos.shutdown" | "talos.reset" => {
                grace(call)?;
                let node = arg(call, "node")?;
                let id = self
                    .boot_id_now(node)
                    .await
                    .map_err(|e| pre_error(call, &format!("the boot id of `{node}`"), e.text))?;
                if id.is_empty() {
                    return Err(pre_error(call, "the boot id", "empty"));
                }
                out.insert(BOOT_ID.into(), id.into());
            }
            "talos.apply-config" => {
                grace(call)?;
                let node = arg(call, "node")?;
                let data = self.config_to_send(call).await?;
                let sent = config_digest(&String::from_utf8_lossy(&data))
                    .map_err(|e| pre_error(call, "the config to send", e))?;
                out.insert(CONFIG_SHA256.into(), sent.into());
                if flag(call, "insecure") {
                    let answered = self.in_maintenance(node).await.map_err(|e| {
                        pre_error(call, &format!("the maintenance API of `{node}`"), e.text)
                    })?;
                    if !answered {
                        return Err(pre_error(
                            call,
                            &format!("the maintenance API of `{node}`"),
                            "the node is not in maintenance mode",
                        ));
                    }
                    out.insert(MAINTENANCE.into(), true.into());
                } else {
                    let id = self.boot_id_now(node).await.map_err(|e| {
                        pre_error(call, &format!("the boot id of `{node}`"), e.text)
                    })?;
                    out.insert(BOOT_ID.into(), id.into());
                    let running = self.current_config(node).await?;
                    let digest = config_digest(&running)
                        .map_err(|e| pre_error(call, "the running config", e))?;
                    out.insert(RUNNING_SHA256.into(), digest.into());
                }
            }
            "talos.bootstrap" => {
                grace(call)?;
            }
            "talos.patch" => {
                grace(call)?;
                let node = arg(call, "node")?;
                // A malformed patch fails here, before anything is sent.
                super::patch::patch_of(call)?;
                let id = self
                    .boot_id_now(node)
                    .await
                    .map_err(|e| pre_error(call, &format!("the boot id of `{node}`"), e.text))?;
                if id.is_empty() {
                    return Err(pre_error(call, "the boot id", "empty"));
                }
                out.insert(BOOT_ID.into(), id.into());
                let running = tokio::time::timeout(CALL_DEADLINE, self.current_config(node))
                    .await
                    .map_err(|_| {
                        pre_error(call, &format!("the config of `{node}`"), "timed out")
                    })??;
                let digest = config_digest(&running)
                    .map_err(|e| pre_error(call, "the running config", e))?;
                out.insert(RUNNING_SHA256.into(), digest.into());
            }
            "etcd.leave" => {
                let node = arg(call, "node")?;
                let host = within(self.read(node, "/proc/sys/kernel/hostname"))
                    .await
                    .map_err(|e| pre_error(call, &format!("the hostname of `{node}`"), e.text))?;
                if host.is_empty() {
                    return Err(pre_error(call, "the hostname", "empty"));
                }
                out.insert(MEMBER_HOSTNAME.into(), host.into());
            }
            _ => {}
        }
        Ok(out)
    }

    /// Whether the effect of an attempt with an unknown outcome is there.
    pub(super) async fn effect_of(&self, call: &ActionCall<'_>, waited: Duration) -> Probe {
        let r = match call.name {
            "talos.reboot" | "talos.shutdown" | "talos.reset" => self.went_down(call, waited).await,
            "talos.upgrade" if flag(call, "stage") => self.staged_upgrade(call).await,
            "talos.upgrade" => self.went_down(call, waited).await,
            "talos.apply-config" => self.applied(call, waited).await,
            "talos.bootstrap" => self.bootstrapped(call, waited).await,
            "talos.patch" => self.patch_effect(call, waited).await,
            "etcd.remove-member" => self.member_removed(call, waited).await,
            "etcd.leave" => self.left(call, waited).await,
            _ => return Probe::NoProbe,
        };
        r.unwrap_or_else(|e| Probe::Unknown(e.to_string()))
    }

    /// Reboot, shutdown, reset, upgrade: the boot id changed, or the node left `running`
    /// (stage, or silent after having answered before the call) ⇒ done; same boot id and
    /// `running` for the grace ⇒ not done.
    async fn went_down(
        &self,
        call: &ActionCall<'_>,
        waited: Duration,
    ) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let grace = grace(call)?;
        let Some(before) = pre_str(call, BOOT_ID) else {
            return Ok(Probe::Unknown(format!(
                "no boot id of `{node}` was recorded before the call"
            )));
        };
        let now = match self.boot_id_now(node).await {
            Ok(now) => now,
            Err(e) if e.silent => return Ok(self.silent_node(node, &e).await),
            Err(e) => {
                // A reset node in maintenance cannot be read through apid.
                if call.name == "talos.reset" && matches!(self.in_maintenance(node).await, Ok(true))
                {
                    return Ok(Probe::Done(format!("`{node}` is in maintenance mode")));
                }
                // The stage alone can still show the node left `running`.
                if let Ok(Stage::Leaving(s)) = self.stage(node).await {
                    return Ok(Probe::Done(format!("`{node}` is {s}")));
                }
                return Ok(Probe::Unknown(format!(
                    "cannot read the boot id of `{node}`: {}",
                    e.text
                )));
            }
        };
        if now != before {
            return Ok(Probe::Done(format!(
                "the boot id of `{node}` changed from {before} to {now}"
            )));
        }
        Ok(match self.stage(node).await {
            Ok(Stage::Leaving(s)) => Probe::Done(format!("`{node}` is {s}")),
            Ok(Stage::Running) => unchanged(
                waited,
                grace,
                format!("`{node}` is running with the boot id it had before the call"),
            ),
            Ok(other) => Probe::Unknown(format!(
                "`{node}` is in stage {other} with the same boot id"
            )),
            Err(e) if e.silent => self.silent_node(node, &e).await,
            Err(e) => Probe::Unknown(format!("cannot read the stage of `{node}`: {}", e.text)),
        })
    }

    /// A staged upgrade leaves the node running: only a new boot id proves anything.
    async fn staged_upgrade(&self, call: &ActionCall<'_>) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let before = pre_str(call, BOOT_ID).unwrap_or_default();
        Ok(match self.boot_id_now(node).await {
            Ok(now) if !before.is_empty() && now != before => {
                Probe::Done(format!("the boot id of `{node}` changed"))
            }
            Ok(_) => Probe::Unknown(format!(
                "a staged upgrade leaves `{node}` running: nothing shows whether it was staged"
            )),
            Err(e) => Probe::Unknown(format!("cannot read the boot id of `{node}`: {}", e.text)),
        })
    }

    /// apply-config: the node runs what was sent (same digest) ⇒ done; a maintenance node
    /// that left maintenance ⇒ done; the old config, same boot id, `running` (or still in
    /// maintenance) for the grace ⇒ not done.
    async fn applied(&self, call: &ActionCall<'_>, waited: Duration) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let grace = grace(call)?;
        let Some(sent) = pre_str(call, CONFIG_SHA256) else {
            return Ok(Probe::Unknown(
                "no digest of the config was recorded before the call".into(),
            ));
        };
        if call.pre_state.get(MAINTENANCE).is_some() {
            // Routed through apid: answers only once the node runs a config.
            return Ok(match self.stage(node).await {
                Ok(Stage::Maintenance) | Err(_) => match self.in_maintenance(node).await {
                    Ok(true) => unchanged(
                        waited,
                        grace,
                        format!("`{node}` is still in maintenance mode"),
                    ),
                    Ok(false) => Probe::Done(format!("`{node}` left maintenance mode")),
                    Err(e) => Probe::Unknown(format!("`{node}` does not answer: {}", e.text)),
                },
                Ok(s) => Probe::Done(format!(
                    "`{node}` left maintenance mode and runs a config (stage {s})"
                )),
            });
        }
        let mode = opt(call, "mode")?.unwrap_or("auto");
        let running = match tokio::time::timeout(CALL_DEADLINE, self.current_config(node)).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                return Ok(Probe::Unknown(format!(
                    "cannot read the config of `{node}`: {e}"
                )));
            }
            Err(_) => return Ok(Probe::Unknown(format!("`{node}` does not answer"))),
        };
        let digest = config_digest(&running).map_err(|e| EffectError::Failed {
            message: format!("the running config of `{node}` does not parse: {e}"),
            retryable: true,
        })?;
        if digest == sent {
            return Ok(Probe::Done(format!(
                "`{node}` runs the config that was sent"
            )));
        }
        if mode == "staged" {
            return Ok(Probe::Unknown(format!(
                "a staged config does not show in what `{node}` runs"
            )));
        }
        let same_config = pre_str(call, RUNNING_SHA256) == Some(digest.as_str());
        let same_boot = match self.boot_id_now(node).await {
            Ok(now) => pre_str(call, BOOT_ID) == Some(now.as_str()),
            Err(e) => {
                return Ok(Probe::Unknown(format!(
                    "cannot read the boot id of `{node}`: {}",
                    e.text
                )));
            }
        };
        Ok(match self.stage(node).await {
            Ok(Stage::Running) if same_config && same_boot => unchanged(
                waited,
                grace,
                format!("`{node}` runs its old config, same boot, stage running"),
            ),
            Ok(s) => Probe::Unknown(format!(
                "`{node}` runs neither the config sent nor its old one for sure (stage {s})"
            )),
            Err(e) => Probe::Unknown(format!("cannot read the stage of `{node}`: {}", e.text)),
        })
    }

    /// talos.patch: see [`ClusterEffects::patched`]; "unchanged" is the running config's
    /// digest, the boot id and stage `running` as recorded before the call.
    async fn patch_effect(
        &self,
        call: &ActionCall<'_>,
        waited: Duration,
    ) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let grace = grace(call)?;
        let same_as_before = async {
            let running = tokio::time::timeout(CALL_DEADLINE, self.current_config(node))
                .await
                .map_err(|_| format!("`{node}` does not answer"))?
                .map_err(|e| e.to_string())?;
            let digest = config_digest(&running)?;
            let boot = self.boot_id_now(node).await.map_err(|e| e.text)?;
            let stage = self.stage(node).await.map_err(|e| e.text)?;
            Ok(pre_str(call, RUNNING_SHA256) == Some(digest.as_str())
                && pre_str(call, BOOT_ID) == Some(boot.as_str())
                && stage == Stage::Running)
        };
        Ok(self.patched(call, waited, grace, same_as_before).await)
    }

    /// bootstrap: members listed, or etcd running ⇒ done; etcd still waiting for bootstrap
    /// (`Preparing`, no member list) for the grace ⇒ not done.
    async fn bootstrapped(
        &self,
        call: &ActionCall<'_>,
        waited: Duration,
    ) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let grace = grace(call)?;
        if let Ok(members) = self.members_via(node).await
            && !members.is_empty()
        {
            return Ok(Probe::Done(format!(
                "`{node}` lists {} etcd member(s)",
                members.len()
            )));
        }
        let services = within(self.talos().machine().service_list(with_node((), node))).await;
        Ok(match services {
            Ok(resp) => {
                let etcd = resp
                    .into_inner()
                    .messages
                    .into_iter()
                    .flat_map(|m| m.services)
                    .find(|s| s.id == "etcd")
                    .map(|s| s.state);
                match etcd.as_deref() {
                    Some("Running") => Probe::Done(format!("etcd runs on `{node}`")),
                    Some("Preparing") => unchanged(
                        waited,
                        grace,
                        format!("etcd on `{node}` still waits for a bootstrap"),
                    ),
                    Some(other) => Probe::Unknown(format!("etcd on `{node}` is {other}")),
                    None => Probe::Unknown(format!("`{node}` lists no etcd service")),
                }
            }
            Err(e) => Probe::Unknown(format!("cannot list the services of `{node}`: {}", e.text)),
        })
    }

    /// remove-member: a successful list without the member ⇒ done; with it for the grace ⇒
    /// not done.
    async fn member_removed(
        &self,
        call: &ActionCall<'_>,
        waited: Duration,
    ) -> Result<Probe, EffectError> {
        let via = arg(call, "node")?;
        let member = arg(call, "member")?;
        let id = (member.len() == 16)
            .then(|| u64::from_str_radix(member, 16).ok())
            .flatten();
        Ok(match self.members_via(via).await {
            Ok(list) if list.is_empty() => Probe::Unknown(format!("`{via}` lists no members")),
            Ok(list) => {
                let present = list.iter().any(|(i, h)| Some(*i) == id || h == member);
                if present {
                    unchanged(
                        waited,
                        grace(call)?,
                        format!("`{member}` is still an etcd member"),
                    )
                } else {
                    Probe::Done(format!(
                        "`{member}` is not among the {} members `{via}` lists",
                        list.len()
                    ))
                }
            }
            Err(e) => Probe::Unknown(format!("cannot list etcd members via `{via}`: {}", e.text)),
        })
    }

    /// leave: a successful list from another node without this node's member ⇒ done; with
    /// it for the grace ⇒ not done.
    async fn left(&self, call: &ActionCall<'_>, waited: Duration) -> Result<Probe, EffectError> {
        let node = arg(call, "node")?;
        let Some(host) = pre_str(call, MEMBER_HOSTNAME) else {
            return Ok(Probe::Unknown(format!(
                "no hostname of `{node}` was recorded before the call"
            )));
        };
        let mut last = String::from("no other node to ask");
        for via in self.observer.nodes.iter().filter(|n| n.as_str() != node) {
            match self.members_via(via).await {
                Ok(list) if !list.is_empty() => {
                    return Ok(if list.iter().any(|(_, h)| h == host) {
                        unchanged(
                            waited,
                            grace(call)?,
                            format!("`{host}` is still an etcd member"),
                        )
                    } else {
                        Probe::Done(format!(
                            "`{host}` is not among the {} members `{via}` lists",
                            list.len()
                        ))
                    });
                }
                Ok(_) => last = format!("`{via}` lists no members"),
                Err(e) => last = format!("`{via}`: {}", e.text),
            }
        }
        Ok(Probe::Unknown(format!(
            "no node could list etcd members ({last})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_digest_ignores_layout_and_key_order_but_not_values() {
        let a = "version: v1alpha1\nmachine:\n  type: controlplane\n  token: abc\n---\nkind: X\n";
        let b = "machine: {token: abc, type: controlplane}\nversion: v1alpha1\n---\nkind: X\n";
        let c = "version: v1alpha1\nmachine:\n  type: worker\n  token: abc\n---\nkind: X\n";
        let d = config_digest(a).unwrap();
        assert_eq!(d, config_digest(b).unwrap());
        assert_ne!(d, config_digest(c).unwrap());
        assert!(!d.contains("abc"));
        assert_eq!(d.len(), 64);
    }

    #[test]
    fn not_done_only_after_the_grace() {
        let g = Duration::from_secs(30);
        assert!(matches!(
            unchanged(Duration::from_secs(29), g, "x".into()),
            Probe::Unknown(_)
        ));
        assert!(matches!(
            unchanged(Duration::from_secs(30), g, "x".into()),
            Probe::NotDone(_)
        ));
    }
}
