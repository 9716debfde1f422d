//! Talos guards and waits: machine stage, services, boot ids, disks, images and modules.
//!
//! The seed's hardest lesson lives here: Kubernetes `Ready` (and even MachineStatus
//! `ready=true`) does not mean the node finished booting. A node is *running* only when its
//! stage is `running`, it is ready, and no service sits in `Waiting`, `Preparing` or `Failed`
//! (a Waiting extension service, such as `ext-nvidia-persistenced` without its kernel modules,
//! holds the stage at `booting` without appearing in the unmet conditions).
//!
//! Every check fails closed on missing evidence: a fact that was not read (the node did not
//! answer, the role may not read it, the call failed) refuses, naming the node and the call;
//! it never reads as "nothing there".

use std::time::Duration;

use crate::condition::etcd::{member_of_node, node_runs_healthy_member, q};
use crate::condition::view::{ClusterView, NodeView, Observed, Verdict, cannot_decide};

/// NVIDIA kernel modules a node with the NVIDIA image must configure (lint L2).
pub const NVIDIA_MODULES: &[&str] = &["nvidia", "nvidia_uvm", "nvidia_drm", "nvidia_modeset"];

/// PCI vendor id of NVIDIA.
pub const NVIDIA_VENDOR: &str = "0x10de";

/// Schematic ids known to carry the NVIDIA extensions (the seed cluster's factory image).
pub const NVIDIA_SCHEMATICS: &[&str] =
    &["86a5d7c9beb23b4aea2777e44ca06c8c2ceea8a874ccd2b9a6743c4f734329e0"];

fn observed<'a>(view: &'a ClusterView, x: &str) -> Result<&'a NodeView, Verdict> {
    view.node(x)
        .ok_or_else(|| Verdict::fail(format!("`{x}` was not observed")))
}

/// The node is fully booted: stage running, ready, no stuck service.
pub fn node_running(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    running_verdict(n)
}

fn running_verdict(n: &NodeView) -> Verdict {
    let x = &n.label;
    if let Some(g) = n.contact.gap() {
        return cannot_decide(x, g).with("stage", "unknown");
    }
    let stage = match n.stage.need(x, "MachineStatus") {
        Ok(s) => s.as_str(),
        Err(v) => return v,
    };
    if let Err(v) = n.services.need(x, "ServiceList") {
        return v;
    }
    let stuck: Vec<String> = n
        .stuck_services()
        .iter()
        .map(|s| format!("{} is {}", s.id, s.state))
        .collect();
    let v = if stage != "running" {
        let mut why = format!("`{x}` is in stage {stage}");
        if !stuck.is_empty() {
            why.push_str(&format!(" ({})", stuck.join(", ")));
        }
        Verdict::fail(why)
    } else if n.ready.get() != Some(&true) {
        Verdict::fail(format!(
            "`{x}` is running but not ready: {}",
            if n.unmet.is_empty() {
                "unknown".to_string()
            } else {
                n.unmet.join("; ")
            }
        ))
    } else if !stuck.is_empty() {
        Verdict::fail(format!("`{x}`: {}", stuck.join(", ")))
    } else {
        Verdict::pass(format!("`{x}` is running and ready, no service waiting"))
    };
    v.with("stage", stage).with("stuck_services", stuck)
}

/// G-all-running: every node running (as above) and Kubernetes Ready.
pub fn all_running(view: &ClusterView) -> Verdict {
    if view.nodes.is_empty() {
        return Verdict::fail("no node observed");
    }
    for n in &view.nodes {
        let v = running_verdict(n);
        if !v.holds {
            return v;
        }
        match n.kube_ready.need(&n.label, "Kubernetes Node") {
            Err(v) => return v,
            Ok(Some(true)) => {}
            Ok(_) => {
                return Verdict::fail(format!("Kubernetes does not report `{}` Ready", n.label));
            }
        }
    }
    Verdict::pass(format!(
        "all {} nodes running, ready and Kubernetes Ready",
        view.nodes.len()
    ))
}

/// How a wait poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// The condition holds.
    Holds(Verdict),
    /// Not yet; keep polling.
    NotYet(Verdict),
    /// It will not hold: stop waiting (fast-fail).
    GiveUp(Verdict),
}

impl Poll {
    /// The verdict inside.
    pub fn verdict(&self) -> &Verdict {
        match self {
            Poll::Holds(v) | Poll::NotYet(v) | Poll::GiveUp(v) => v,
        }
    }

    /// Holds or not yet, by the verdict.
    pub fn of(v: Verdict) -> Poll {
        if v.holds {
            Poll::Holds(v)
        } else {
            Poll::NotYet(v)
        }
    }
}

/// W-running(x) with fast-fail: stuck in `booting` with a Waiting service for `fast_fail`
/// gives up with a diagnostic naming the service and, for an NVIDIA service, the cause the
/// evidence shows ([`nvidia_wait_cause`]). `waited` is how long the wait has run on the best
/// clock the caller has: the node's own uptime since the wait began when it was read (a
/// simulator at speed 100 fails within its own minutes), else the wall clock
/// (docs/design/diagnosis.md).
pub fn running(view: &ClusterView, x: &str, waited: Duration, fast_fail: Duration) -> Poll {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return Poll::NotYet(v),
    };
    let v = running_verdict(n);
    if v.holds {
        return Poll::Holds(v);
    }
    let waiting: Vec<&str> = n
        .services
        .get()
        .into_iter()
        .flatten()
        .filter(|s| s.state == "Waiting")
        .map(|s| s.id.as_str())
        .collect();
    if n.stage.get().map(String::as_str) == Some("booting")
        && !waiting.is_empty()
        && waited >= fast_fail
    {
        let mut why = format!(
            "`{x}` is stuck in booting: {} waiting for {}",
            waiting.join(", "),
            crate::dsl::duration::format(Duration::from_secs(waited.as_secs()))
        );
        let mut give_up = Verdict::fail(String::new())
            .with("stage", "booting")
            .with("waiting", waiting.clone())
            .with("waited_s", waited.as_secs());
        if waiting.iter().any(|s| s.contains("nvidia")) {
            let cause = nvidia_wait_cause(n);
            why.push_str(&format!("; {}", cause.describe()));
            if let Some(next) = cause.next(x) {
                why.push_str(&format!(": {next}"));
            }
            give_up = give_up.with("cause", cause.key());
            if let NvidiaCause::ModulesMissing(m) = &cause {
                give_up = give_up.with("missing_modules", m.clone());
            }
        }
        give_up.reason = why;
        return Poll::GiveUp(give_up);
    }
    Poll::NotYet(v)
}

/// What the evidence says keeps an NVIDIA extension service (`ext-nvidia-persistenced`)
/// Waiting. The service exists only when the image carries the NVIDIA extensions, so its
/// presence is the evidence for the image; the PCI devices say whether the GPU is there, the
/// configured kernel modules (`KernelModuleSpecs`, what the machine config's
/// `machine.kernel.modules` asks for) whether the driver is loaded. A fact that was not read
/// never stands in for an answer: the cause is then [`NvidiaCause::Unknown`], never a guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvidiaCause {
    /// The NVIDIA image on a node with no NVIDIA PCI device (vendor 0x10de): nvidia.ko has
    /// nothing to bind, so the driver path never appears (lint L1).
    ImageWithoutGpu,
    /// The GPU is there but these NVIDIA modules are not configured (lint L2).
    ModulesMissing(Vec<&'static str>),
    /// The GPU is there and every NVIDIA module is configured: neither known cause.
    NeitherKnown,
    /// The evidence could not be read: what was missing.
    Unknown(String),
}

impl NvidiaCause {
    /// One clause for a message.
    pub fn describe(&self) -> String {
        match self {
            NvidiaCause::ImageWithoutGpu => format!(
                "the NVIDIA image runs on a node without an NVIDIA GPU (no PCI vendor {NVIDIA_VENDOR})"
            ),
            NvidiaCause::ModulesMissing(m) => format!(
                "the nvidia kernel modules are not configured (missing: {})",
                m.join(", ")
            ),
            NvidiaCause::NeitherKnown => format!(
                "the NVIDIA GPU is present and {} are configured, so neither known cause applies",
                NVIDIA_MODULES.join(", ")
            ),
            NvidiaCause::Unknown(what) => format!("the cause could not be told: {what}"),
        }
    }

    /// A short key for the journal's figures.
    pub fn key(&self) -> &'static str {
        match self {
            NvidiaCause::ImageWithoutGpu => "nvidia-image-without-gpu",
            NvidiaCause::ModulesMissing(_) => "nvidia-modules-missing",
            NvidiaCause::NeitherKnown => "neither-known-cause",
            NvidiaCause::Unknown(_) => "unknown",
        }
    }

    /// What to do next on node `x`, when the cause says.
    pub fn next(&self, x: &str) -> Option<String> {
        match self {
            NvidiaCause::ImageWithoutGpu => Some(format!(
                "install the vanilla installer image on `{x}` (lint L1)"
            )),
            NvidiaCause::ModulesMissing(_) => {
                Some(format!("runbook run gpu-enable --param node={x}"))
            }
            NvidiaCause::NeitherKnown => Some(format!(
                "read `talosctl -n {x} dmesg` for the nvidia driver"
            )),
            NvidiaCause::Unknown(_) => None,
        }
    }
}

fn unread<T>(n: &NodeView, o: &Observed<T>, what: &str) -> String {
    match o {
        Observed::Missing(g) => format!("{} {g}", n.label),
        _ => format!("{what} of {} was not read", n.label),
    }
}

/// The stuck-booting diagnosis for an NVIDIA service waiting on `n` (one place: the
/// `talos.running` fast-fail and `runbook doctor` both call it).
pub fn nvidia_wait_cause(n: &NodeView) -> NvidiaCause {
    let Some(vendors) = n.pci_vendors.get() else {
        return NvidiaCause::Unknown(format!(
            "{}, so whether it has an NVIDIA GPU is not known",
            unread(n, &n.pci_vendors, "PCIDevices")
        ));
    };
    if vendors.is_empty() {
        // Every machine has a host bridge: an empty list is a list not (yet) filled, not
        // evidence that there is no GPU.
        return NvidiaCause::Unknown(format!(
            "{} answered an empty PCIDevices list, so whether it has an NVIDIA GPU is not known",
            n.label
        ));
    }
    if !vendors.iter().any(|v| v == NVIDIA_VENDOR) {
        return NvidiaCause::ImageWithoutGpu;
    }
    let Some(configured) = n.kernel_modules.get() else {
        return NvidiaCause::Unknown(format!(
            "it has an NVIDIA GPU, but {}",
            unread(n, &n.kernel_modules, "KernelModuleSpecs")
        ));
    };
    let missing: Vec<&'static str> = NVIDIA_MODULES
        .iter()
        .copied()
        .filter(|m| !configured.iter().any(|c| c == m))
        .collect();
    if missing.is_empty() {
        NvidiaCause::NeitherKnown
    } else {
        NvidiaCause::ModulesMissing(missing)
    }
}

/// The node's uptime from `/proc/uptime` (`12345.67 54321.00`: seconds since boot, then idle
/// seconds); `None` for anything else (negative, not finite, absurdly large, garbage).
pub fn parse_uptime(text: &str) -> Option<Duration> {
    let first = text.split_whitespace().next()?;
    let secs: f64 = first.parse().ok()?;
    // A century of uptime is no real machine's.
    (secs.is_finite() && (0.0..3.2e9).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

/// W-rebooted(x): the boot id differs from the one recorded before the action.
pub fn rebooted(view: &ClusterView, x: &str, before: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    match &n.boot_id {
        Observed::Answered(now) if now != before => {
            Verdict::pass(format!("`{x}` booted again (boot id changed)"))
                .with("boot_id", now.as_str())
        }
        Observed::Answered(_) => {
            Verdict::fail(format!("`{x}` has not rebooted yet (same boot id)"))
        }
        Observed::Missing(g) => Verdict::fail(format!("`{x}` does not answer yet: {g}")),
        Observed::NotAsked => Verdict::fail(format!("`{x}` does not answer yet")),
    }
}

/// The node's stage is `stage`.
pub fn stage_is(view: &ClusterView, x: &str, stage: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => match n.stage.need(x, "MachineStatus") {
            Err(v) => v,
            Ok(now) => Verdict::from_bool(now == stage, format!("`{x}` is in stage {now}")),
        },
    }
}

/// The node answers the maintenance API.
pub fn maintenance(view: &ClusterView, x: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => Verdict::from_bool(
            n.maintenance(),
            if n.maintenance() {
                format!("`{x}` is in maintenance mode")
            } else if n.reachable() {
                format!("`{x}` answers, but not in maintenance mode")
            } else {
                format!(
                    "`{x}` does not answer{}",
                    n.contact
                        .gap()
                        .map(|g| format!(": {g}"))
                        .unwrap_or_default()
                )
            },
        ),
    }
}

/// A service on the node is in `state`.
pub fn service_in(view: &ClusterView, x: &str, service: &str, state: &str) -> Verdict {
    match observed(view, x) {
        Err(v) => v,
        Ok(n) => {
            if let Err(v) = n.services.need(x, "ServiceList") {
                return match n.contact.gap() {
                    Some(g) => cannot_decide(x, g),
                    None => v,
                };
            }
            let now = n.service(service).map(|s| s.state.as_str());
            Verdict::from_bool(
                now == Some(state),
                format!("{service} on `{x}` is {}", now.unwrap_or("absent")),
            )
        }
    }
}

/// The node holds no etcd member, so wiping it cannot lower quorum. Holds only on positive
/// evidence: the node answers the maintenance API (unconfigured: no member), or member lists
/// were read from a quorum-proving set of nodes (at least `Q(V)` healthy voters, each with a
/// leader, so the lists are the majority's current ones) and none lists the node, by hostname,
/// peer URL or member id. A node whose hostname cannot be read cannot be looked up: refuse.
pub fn not_member(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    if n.maintenance() {
        return Verdict::pass(format!("`{x}` is in maintenance mode: no etcd member"));
    }
    if let Some(g) = n.contact.gap() {
        return cannot_decide(x, g);
    }
    let listed: Vec<&str> = view
        .nodes
        .iter()
        .filter(|o| o.reachable())
        .filter(
            |o| matches!(&o.members, Observed::Answered(list) if member_of_node(list, n).is_some()),
        )
        .map(|o| o.label.as_str())
        .collect();
    if !listed.is_empty() {
        return Verdict::fail(format!(
            "`{x}` is an etcd member (listed by {})",
            listed.join(", ")
        ));
    }
    // To look it up by name the name must be known.
    if let Err(v) = n.hostname.need(x, "hostname") {
        return v;
    }
    // Witnesses: healthy voters whose own member list was read.
    let witnesses: Vec<&NodeView> = view
        .nodes
        .iter()
        .filter(|o| {
            matches!((&o.members, &o.etcd), (Observed::Answered(list), Observed::Answered(st))
                if list.iter().any(|m| m.id == st.member_id && !m.is_learner)
                    && node_runs_healthy_member(o, st.member_id))
        })
        .collect();
    let voters = witnesses
        .iter()
        .filter_map(|o| o.members.get())
        .map(|l| l.iter().filter(|m| !m.is_learner).count())
        .max()
        .unwrap_or(0);
    if voters == 0 || witnesses.len() < q(voters) {
        let gaps: Vec<String> = view
            .nodes
            .iter()
            .filter(|o| o.label != n.label)
            .filter_map(|o| {
                o.members
                    .gap()
                    .or_else(|| o.etcd.gap())
                    .or_else(|| o.contact.gap())
                    .map(|g| format!("{} {g}", o.label))
            })
            .collect();
        return Verdict::fail(format!(
            "cannot decide: member lists were read from {} healthy voter(s){}, not a quorum{}",
            witnesses.len(),
            if voters > 0 {
                format!(" of {voters}")
            } else {
                String::new()
            },
            if gaps.is_empty() {
                String::new()
            } else {
                format!(" ({})", gaps.join("; "))
            }
        ))
        .with("witnesses", witnesses.len());
    }
    Verdict::pass(format!(
        "no member list lists `{x}` ({} of {voters} voters answered)",
        witnesses.len()
    ))
    .with("witnesses", witnesses.len())
}

/// The node is confirmed down: in both observations (taken `confirm` apart by the caller) it
/// does not answer (unreachable or timed out, never a role refusal), and in both some other
/// node answers with a healthy etcd member that sees a leader, proving the observer itself is
/// connected (the operator's laptop may be the one offline).
pub fn node_down(first: &ClusterView, second: Option<&ClusterView>, x: &str) -> Verdict {
    let Some(second) = second else {
        return Verdict::fail(format!(
            "cannot decide: `{x}` needs two observations to be confirmed down"
        ));
    };
    for (i, view) in [first, second].into_iter().enumerate() {
        let which = if i == 0 { "first" } else { "second" };
        let n = match observed(view, x) {
            Ok(n) => n,
            Err(v) => return v,
        };
        match n.contact.gap() {
            None => {
                return Verdict::fail(format!(
                    "`{x}` answers ({which} observation): it is not down"
                ));
            }
            Some(g) if !g.kind.is_silence() => return cannot_decide(x, g),
            Some(_) => {}
        }
        let witness = view.nodes.iter().find(|o| {
            o.label != n.label
                && matches!(&o.etcd, Observed::Answered(st) if node_runs_healthy_member(o, st.member_id))
        });
        if witness.is_none() {
            return Verdict::fail(format!(
                "cannot decide: no other node answered with a healthy etcd member in the {which} observation, so the silence of `{x}` may be the observer's own (is this machine offline?)"
            ));
        }
    }
    let why = second
        .node(x)
        .and_then(|n| n.contact.gap())
        .map(|g| g.to_string())
        .unwrap_or_default();
    Verdict::pass(format!(
        "`{x}` did not answer in two observations ({why}) while the rest of the cluster did"
    ))
}

/// G-no-init: every node's machine type was read and is not the deprecated `init`. A node in
/// maintenance has no type (it is unconfigured); a node that does not answer refuses unless the
/// operator named it in `down` (confirmed powered off).
pub fn no_init(view: &ClusterView, down: &[String]) -> Verdict {
    if view.nodes.is_empty() {
        return Verdict::fail("cannot decide: no node observed");
    }
    let mut bad = Vec::new();
    let mut read = 0;
    for n in &view.nodes {
        if n.maintenance() {
            continue;
        }
        if let Some(g) = n.contact.gap() {
            if g.kind.is_silence() && down.iter().any(|d| d == &n.label || n.is_named(d)) {
                continue;
            }
            return cannot_decide(&n.label, g);
        }
        match n.machine_type.need(&n.label, "MachineType") {
            Err(v) => return v,
            Ok(t) if t == "init" => bad.push(n.label.clone()),
            Ok(_) => read += 1,
        }
    }
    if !bad.is_empty() {
        return Verdict::fail(format!(
            "{} use the deprecated `init` machine type",
            bad.join(", ")
        ));
    }
    if read == 0 && view.nodes.iter().all(|n| !n.maintenance()) {
        return Verdict::fail("cannot decide: no node's machine type was read");
    }
    Verdict::pass("no node uses the deprecated init type").with("read", read)
}

/// Lint L4: the install disk resolves to exactly one writable, non-USB, non-optical disk.
pub fn disk_unambiguous(
    view: &ClusterView,
    x: &str,
    disk: Option<&str>,
    model: Option<&str>,
    serial: Option<&str>,
) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let disks = match n.disks.need(x, "Disks") {
        Ok(d) => d,
        Err(v) => {
            return match n.contact.gap() {
                Some(g) => cannot_decide(x, g),
                None => v,
            };
        }
    };
    if disks.is_empty() {
        return Verdict::fail(format!("`{x}` reported no disks"));
    }
    let matches: Vec<_> = disks
        .iter()
        .filter(|d| disk.is_none_or(|p| d.dev_path == p))
        .filter(|d| model.is_none_or(|m| d.model == m))
        .filter(|d| serial.is_none_or(|s| d.serial == s))
        .collect();
    let usb: Vec<&str> = disks
        .iter()
        .filter(|d| d.transport == "usb")
        .map(|d| d.dev_path.as_str())
        .collect();
    let v = match matches.as_slice() {
        [] => Verdict::fail(format!(
            "no disk on `{x}` matches {}",
            disk.unwrap_or("the selector")
        )),
        [d] if d.transport == "usb" => Verdict::fail(format!(
            "{} on `{x}` is the USB stick ({}), not the install disk: disk paths move when USB media is attached",
            d.dev_path, d.model
        )),
        [d] if d.readonly || d.cdrom => {
            Verdict::fail(format!("{} on `{x}` is read-only or optical", d.dev_path))
        }
        [d] => Verdict::pass(format!(
            "{} on `{x}` is {} (serial {})",
            d.dev_path, d.model, d.serial
        ))
        .with("model", d.model.as_str())
        .with("serial", d.serial.as_str()),
        many => Verdict::fail(format!(
            "{} disks on `{x}` match; pin the disk by serial or model",
            many.len()
        )),
    };
    v.with("usb_disks", usb)
}

fn is_nvidia_image(image: &str) -> bool {
    image.contains("nvidia") || NVIDIA_SCHEMATICS.iter().any(|s| image.contains(s))
}

/// Lint L1: the NVIDIA image only on a node with an NVIDIA GPU, the vanilla one elsewhere.
pub fn image_matches_hardware(view: &ClusterView, x: &str, image: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let vendors = match n.pci_vendors.need(x, "PCIDevices") {
        Ok(v) => v,
        Err(v) => {
            return match n.contact.gap() {
                Some(g) => cannot_decide(x, g),
                None => v,
            };
        }
    };
    let gpu = vendors.iter().any(|v| v == NVIDIA_VENDOR);
    let nvidia = is_nvidia_image(image);
    let v = match (gpu, nvidia) {
        (true, true) => Verdict::pass(format!("`{x}` has an NVIDIA GPU and gets the NVIDIA image")),
        (false, false) => {
            Verdict::pass(format!("`{x}` has no NVIDIA GPU and gets a vanilla image"))
        }
        (false, true) => Verdict::fail(format!(
            "`{x}` has no NVIDIA GPU but would get the NVIDIA image: it would hang in booting waiting for a driver"
        )),
        (true, false) => Verdict::fail(format!(
            "`{x}` has an NVIDIA GPU but would get an image without the NVIDIA extensions"
        )),
    };
    v.with("gpu", gpu).with("nvidia_image", nvidia)
}

/// Lint L2: a node with the NVIDIA image configures the NVIDIA kernel modules.
pub fn gpu_modules(view: &ClusterView, x: &str) -> Verdict {
    let n = match observed(view, x) {
        Ok(n) => n,
        Err(v) => return v,
    };
    let modules = match n.kernel_modules.need(x, "KernelModuleSpecs") {
        Ok(m) => m,
        Err(v) => {
            return match n.contact.gap() {
                Some(g) => cannot_decide(x, g),
                None => v,
            };
        }
    };
    let missing: Vec<&str> = NVIDIA_MODULES
        .iter()
        .copied()
        .filter(|m| !modules.iter().any(|k| k == m))
        .collect();
    if missing.is_empty() {
        Verdict::pass(format!("`{x}` configures all NVIDIA kernel modules"))
    } else {
        Verdict::fail(format!(
            "`{x}` does not configure {}: ext-nvidia-persistenced would wait forever and the node hang in booting",
            missing.join(", ")
        ))
        .with("missing_modules", missing)
    }
}

#[cfg(test)]
mod tests;
