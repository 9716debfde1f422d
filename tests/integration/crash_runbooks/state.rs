//! What a crash test compares between an uninterrupted run and a killed-and-resumed one: a
//! normalized digest of the simulator's end state and of the files the run wrote, the
//! non-idempotent calls in the simulator's call log, and a small seeded RNG for the kill
//! instants. Kept apart from the driver so the definition of "the same end state" is read in
//! one place (`docs/design/crash-testing.md`).

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use runbook::sim::SharedCluster;
use runbook::sim::node::EtcdData;

/// The simulator calls each non-idempotent catalog action sends: the calls that must never
/// be repeated across a crash. An action missing here fails
/// `every_non_idempotent_action_of_a_built_in_runbook_is_mapped_to_its_calls`, so a new action
/// in a built-in runbook cannot go unchecked. Local actions send nothing to the cluster.
///
/// `EtcdRecover` (the snapshot upload before a recovering Bootstrap) is deliberately not here:
/// uploading the same snapshot again replaces it and changes nothing, which is why a kill
/// between the upload and the Bootstrap may legitimately show two.
pub(crate) const ONCE_CALLS: &[(&str, &[&str])] = &[
    ("talos.reboot", &["Reboot"]),
    ("talos.shutdown", &["Shutdown"]),
    ("talos.upgrade", &["Upgrade"]),
    ("talos.apply-config", &["ApplyConfiguration"]),
    ("talos.patch", &["ApplyConfiguration"]),
    ("talos.reset", &["Reset"]),
    ("talos.bootstrap", &["Bootstrap"]),
    ("etcd.remove-member", &["EtcdRemoveMemberByID"]),
    ("etcd.leave", &["EtcdLeaveCluster"]),
    ("marker", &[]),
    ("exec", &[]),
];

/// Every simulator method that must not repeat, whichever runbook runs.
pub(crate) fn once_methods() -> Vec<&'static str> {
    let mut all: Vec<&str> = ONCE_CALLS
        .iter()
        .flat_map(|(_, m)| m.iter().copied())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `method node` → number of successful calls, for every method of [`once_methods`].
pub(crate) fn once_calls(shared: &SharedCluster) -> BTreeMap<String, usize> {
    let methods = once_methods();
    shared.with(|c, _| {
        let mut counts = BTreeMap::new();
        for r in c.call_log() {
            if r.result.is_ok() && methods.contains(&r.method.as_str()) {
                *counts
                    .entry(format!("{} {}", r.method, r.node))
                    .or_insert(0) += 1;
            }
        }
        counts
    })
}

/// Every call in the log as `method node ok|CODE`, for failure messages.
pub(crate) fn call_log_text(shared: &SharedCluster) -> String {
    shared.with(|c, _| {
        c.call_log()
            .iter()
            .map(|r| match &r.result {
                Ok(()) => format!("{} {} ok\n", r.method, r.node),
                Err(code) => format!("{} {} {code:?}\n", r.method, r.node),
            })
            .collect()
    })
}

fn sha(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The simulator's end state, one line per fact, with times, ids and boot ids left out:
/// per node its power, stage, installed image, machine config (digest of its text and the
/// fields that matter), etcd data and USB stick; per Kubernetes node its cordon and Ready; per
/// etcd cluster its member names and voter/learner roles and whether it has a leader; and the
/// number of successful Bootstraps.
pub(crate) fn sim_digest(shared: &SharedCluster) -> Vec<String> {
    shared.with(|c, now| {
        let mut lines = Vec::new();
        for n in c.nodes() {
            let config = match n.config() {
                Some(cfg) => format!(
                    "{} type={:?} host={:?} disk={:?} image={:?} modules={:?}",
                    sha(cfg.raw().as_bytes()),
                    cfg.machine_type,
                    cfg.hostname,
                    cfg.install_disk,
                    cfg.install_image,
                    cfg.kernel_modules
                ),
                None => "none".to_owned(),
            };
            // The data by which etcd cluster (in creation order) and member name, not ids.
            let etcd_data = match n.etcd_data() {
                EtcdData::Empty => "empty".to_owned(),
                EtcdData::Member { cluster, member } => {
                    let index = c.etcd_clusters().iter().position(|e| e.id() == cluster);
                    let name = index
                        .and_then(|i| c.etcd_clusters()[i].member(member))
                        .map(|m| m.name.clone());
                    format!("cluster#{index:?}/{name:?}")
                }
            };
            lines.push(format!(
                "node {} hostname={} power={:?} stage={} image={:?} etcd_data={etcd_data} usb={} config={config}",
                n.label(),
                n.hostname(),
                n.power(),
                n.stage().as_str(),
                n.image(),
                n.usb_attached(),
            ));
        }
        match c.k8s_list_nodes(now) {
            Ok(nodes) => {
                for k in nodes {
                    lines.push(format!(
                        "kube {} ip={} ready={:?} unschedulable={}",
                        k.name, k.internal_ip, k.ready, k.unschedulable
                    ));
                }
            }
            Err(e) => lines.push(format!("kube unavailable: {e:?}")),
        }
        for cluster in c.etcd_clusters() {
            let mut members: Vec<String> = cluster
                .members()
                .map(|m| {
                    let role = if m.is_learner { "learner" } else { "voter" };
                    format!("{}:{role}:{}", m.name, if m.running { "up" } else { "down" })
                })
                .collect();
            if members.is_empty() {
                continue;
            }
            members.sort();
            lines.push(format!(
                "etcd members={} voters={} leader={}",
                members.join(","),
                cluster.voter_count(),
                cluster.leader().is_some()
            ));
        }
        let bootstraps = c
            .call_log()
            .iter()
            .filter(|r| r.method == "Bootstrap" && r.result.is_ok())
            .count();
        lines.push(format!("bootstraps={bootstraps}"));
        lines
    })
}

/// The files a run wrote under `out` (snapshots, sidecars, kubeconfigs), normalized: a
/// snapshot by whether it verifies and its sidecar's stable fields (node, encryption, drill
/// result), any other file by its name. Time-stamped names, times, revisions and ids are left
/// out; a leftover temporary file shows up as a difference.
pub(crate) fn files_digest(out: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    walk(out, out, &mut lines);
    lines.sort();
    lines
}

fn walk(root: &Path, dir: &Path, lines: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let parent = rel
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if path.is_dir() {
            walk(root, &path, lines);
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".db.json") && path.with_extension("").is_file() {
            // A sidecar: described with its snapshot.
            continue;
        }
        if name.ends_with(".db") {
            let line = match runbook::cluster::backup::verify(&path) {
                Ok(s) => format!(
                    "{parent}/*.db verified node={} encrypted={} drill={:?}",
                    s.node,
                    s.encrypted,
                    s.drill.map(|d| d.ok)
                ),
                Err(e) => format!("{parent}/*.db UNVERIFIED: {e}"),
            };
            lines.push(line);
        } else {
            lines.push(format!("{} (file)", rel.display()));
        }
    }
}

/// SplitMix64: a seeded generator small enough to read, so a printed seed reproduces the
/// same kill instants anywhere.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform fraction in `[lo, hi)`.
    pub(crate) fn between(&mut self, lo: f64, hi: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        lo + unit * (hi - lo)
    }

    pub(crate) fn coin(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// The seed of `runbook`'s crash test: `RUNBOOK_CRASH_SEED` (decimal or `0x` hex) when set,
/// else a fixed default mixed with the runbook's name, so CI tries the same instants each
/// time (relative to the reference run's duration) and each runbook its own.
pub(crate) fn seed_for(runbook: &str) -> u64 {
    if let Ok(text) = std::env::var("RUNBOOK_CRASH_SEED") {
        let text = text.trim();
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|e| panic!("RUNBOOK_CRASH_SEED={text}: {e}"));
    }
    let mut h: u64 = 0x5eed_c0de_2026_1201;
    for b in runbook.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The lines only in `a` and only in `b`, for a failure message that shows what differs.
pub(crate) fn diff(a: &[String], b: &[String]) -> String {
    let only = |x: &[String], y: &[String], mark: &str| -> String {
        x.iter()
            .filter(|l| !y.contains(l))
            .map(|l| format!("{mark} {l}\n"))
            .collect()
    };
    format!(
        "{}{}",
        only(a, b, "- reference:"),
        only(b, a, "+ this run: ")
    )
}
