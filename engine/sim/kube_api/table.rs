//! Server-side printing: `meta.k8s.io/v1` `Table` responses for `kubectl get`.
//!
//! kubectl does not format resources itself: it asks with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io, application/json` and prints the
//! columns the server sends. Without a Table it falls back to bare `NAME`/`AGE` columns, so
//! `kubectl get nodes` would not show `STATUS` — the one column operators read. The columns
//! and cell formats here are those of the real API server's printers (`NAME STATUS ROLES AGE
//! VERSION` for nodes, `Ready,SchedulingDisabled` for a cordoned node, `AGE` as Go's
//! `duration.HumanDuration`).

use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::render::{self, node_status_column};
use super::store::{Content, Entry, Kind, Store};

/// Which Table version the client asked for, if any.
pub fn requested(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let mut best = None;
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        let has = |p: &str| params.contains(&p);
        if has("as=Table") && has("g=meta.k8s.io") {
            if has("v=v1") {
                return Some("v1");
            }
            if has("v=v1beta1") {
                best = Some("v1beta1");
            }
        }
    }
    best
}

/// The `Content-Type` of a Table response in `version`.
pub fn content_type(version: &str) -> String {
    format!("application/json;as=Table;v={version};g=meta.k8s.io")
}

/// What each row carries in `object` (`includeObject` query parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    /// Nothing.
    None,
    /// `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl Include {
    /// Parses `includeObject`.
    pub fn parse(s: Option<&str>) -> Include {
        match s {
            Some("None") => Include::None,
            Some("Object") => Include::Object,
            _ => Include::Metadata,
        }
    }
}

/// Go's `k8s.io/apimachinery/pkg/util/duration.HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

fn column(name: &str, format: &str, description: &str, priority: u8) -> Value {
    json!({
        "name": name,
        "type": "string",
        "format": format,
        "description": description,
        "priority": priority,
    })
}

fn columns(kind: Kind) -> Vec<Value> {
    let name = column("Name", "name", "Name must be unique within a namespace.", 0);
    let age = column(
        "Age",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
        0,
    );
    match kind {
        Kind::Node => vec![
            name,
            column("Status", "", "The status of the node", 0),
            column("Roles", "", "The roles of the node", 0),
            age,
            column("Version", "", "Kubelet Version reported by the node.", 0),
            column("Internal-IP", "", "List of internal IPs for the node.", 1),
            column("External-IP", "", "List of external IPs for the node.", 1),
            column(
                "OS-Image",
                "",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                1,
            ),
            column(
                "Kernel-Version",
                "",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                1,
            ),
            column(
                "Container-Runtime",
                "",
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                1,
            ),
        ],
        Kind::Pod => vec![
            name,
            column(
                "Ready",
                "",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            column(
                "Status",
                "",
                "The aggregate status of the containers in this pod.",
                0,
            ),
            column(
                "Restarts",
                "",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                0,
            ),
            age,
            column(
                "IP",
                "",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                1,
            ),
            column(
                "Node",
                "",
                "NodeName is a request to schedule this pod onto a specific node.",
                1,
            ),
            column(
                "Nominated Node",
                "",
                "nominatedNodeName is set when this pod preempts other pods on the node.",
                1,
            ),
            column(
                "Readiness Gates",
                "",
                "If specified, all readiness gates will be evaluated for pod readiness.",
                1,
            ),
        ],
        Kind::Lease => vec![
            name,
            column(
                "Holder",
                "",
                "HolderIdentity contains the identity of the holder of a current lease.",
                0,
            ),
            age,
        ],
        Kind::RuntimeClass | Kind::DaemonSet => {
            let mut cols = vec![name];
            cols.extend(
                super::objects::columns(kind)
                    .into_iter()
                    .map(|(n, d, p)| column(n, "", d, p)),
            );
            cols.push(age);
            cols.extend(
                super::objects::wide_columns(kind)
                    .into_iter()
                    .map(|(n, d)| column(n, "", d, 1)),
            );
            cols
        }
        Kind::Pdb => vec![
            name,
            column(
                "Min Available",
                "",
                "The minimum number of pods that must be available, either as a number or a percentage.",
                0,
            ),
            column(
                "Max Unavailable",
                "",
                "The maximum number of pods that may be unavailable, either as a number or a percentage.",
                0,
            ),
            column(
                "Allowed Disruptions",
                "",
                "Number of pod disruptions that are currently allowed.",
                0,
            ),
            age,
        ],
    }
}

fn roles(entry: &Entry) -> String {
    let mut roles: Vec<String> = render::labels(&entry.content)
        .into_iter()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role.to_string()).filter(|r| !r.is_empty())
            } else if k == "kubernetes.io/role" {
                Some(v).filter(|v| !v.is_empty())
            } else {
                None
            }
        })
        .collect();
    roles.sort();
    roles.dedup();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

fn cells(entry: &Entry, age: String) -> Vec<Value> {
    match &entry.content {
        Content::Node(n) => vec![
            entry.key.name.clone().into(),
            node_status_column(n).into(),
            roles(entry).into(),
            age.into(),
            n.node.kubelet_version.clone().into(),
            n.node.internal_ip.clone().into(),
            "<none>".into(),
            format!("Talos ({})", crate::sim::node::TALOS_VERSION).into(),
            "6.12.57-talos".into(),
            "containerd://2.1.5".into(),
        ],
        Content::Pod(p) => vec![
            entry.key.name.clone().into(),
            (if p.ready { "1/1" } else { "0/1" }).into(),
            render::pod_phase(p).into(),
            "0".into(),
            age.into(),
            "<none>".into(),
            p.node.clone().unwrap_or_else(|| "<none>".into()).into(),
            "<none>".into(),
            "<none>".into(),
        ],
        Content::Lease(l) => vec![
            entry.key.name.clone().into(),
            l.holder.clone().into(),
            age.into(),
        ],
        Content::ClientLease(l) => vec![
            entry.key.name.clone().into(),
            render::client_lease_holder(l).into(),
            age.into(),
        ],
        Content::Object(o) => {
            let (main, wide) = super::objects::cells(o);
            let mut row = vec![entry.key.name.clone().into()];
            row.extend(main);
            row.push(age.into());
            row.extend(wide);
            row
        }
        Content::Pdb(p) => vec![
            entry.key.name.clone().into(),
            p.pdb.min_available.to_string().into(),
            "N/A".into(),
            p.healthy
                .saturating_sub(p.pdb.min_available)
                .to_string()
                .into(),
            age.into(),
        ],
    }
}

/// A Table of `entries` of `kind` at resource version `rv`; `headers` false leaves out the
/// column definitions (watch events after the first).
pub fn table(
    kind: Kind,
    entries: &[Entry],
    rv: u64,
    store: &Store,
    version: &str,
    include: Include,
    headers: bool,
) -> Value {
    let clock = store.clock();
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let age = human_duration(store.age(&e.meta));
            let object = match include {
                Include::None => Value::Null,
                Include::Object => render::object(e, clock),
                Include::Metadata => {
                    let full = render::object(e, clock);
                    json!({
                        "kind": "PartialObjectMetadata",
                        "apiVersion": format!("meta.k8s.io/{version}"),
                        "metadata": full.get("metadata").cloned().unwrap_or(Value::Null),
                    })
                }
            };
            let mut row = json!({ "cells": cells(e, age) });
            if !object.is_null() {
                row["object"] = object;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": { "resourceVersion": rv.to_string() },
        "columnDefinitions": if headers { columns(kind) } else { Vec::new() },
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_go() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (9 * 3600, "9h"),
            (3 * 86400, "3d"),
            (3 * 86400 + 3600, "3d1h"),
            (10 * 86400, "10d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}s");
        }
    }

    #[test]
    fn table_accept_header_is_recognised() {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(requested(&h), Some("v1"));
        h.insert(
            axum::http::header::ACCEPT,
            "application/json".parse().unwrap(),
        );
        assert_eq!(requested(&h), None);
    }
}
