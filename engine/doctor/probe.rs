//! The facts a diagnosis reads beyond the guards' view, per node, read-only: the Talos version,
//! the installed extensions, the loaded kernel modules, the system disk and the etcd database
//! size. Each is an [`Observed`]: a role that may not read, or a node that does not answer,
//! leaves a gap, never a default.

use prost::Message as _;
use tokio_stream::StreamExt as _;

use runbook_proto::cosi::resource::ListRequest;
use runbook_proto::talos::resource::definitions::{block, extensions, runtime};

use super::NodeExtras;
use crate::cluster::observe::{Observer, call};
use crate::cluster::talos::with_node;
use crate::condition::view::{Gap, GapKind, NodeView, Observed};

/// `(id, spec bytes)` of every resource of a type on a node.
async fn list(
    o: &Observer,
    label: &str,
    namespace: &str,
    ty: &str,
) -> Result<Vec<(String, Vec<u8>)>, tonic::Status> {
    let req = ListRequest {
        namespace: namespace.into(),
        r#type: ty.into(),
        options: None,
    };
    let mut stream = o
        .talos
        .cosi()
        .list(with_node(req, label))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(item) = stream.next().await {
        if let Some(r) = item?.resource {
            let id = r.metadata.map(|m| m.id).unwrap_or_default();
            out.push((id, r.spec.map(|s| s.proto_spec).unwrap_or_default()));
        }
    }
    Ok(out)
}

async fn listed<T>(
    o: &Observer,
    label: &str,
    namespace: &str,
    ty: &'static str,
    f: impl Fn(&str, &[u8]) -> Option<T>,
) -> Observed<Vec<T>> {
    let short = ty.split('.').next().unwrap_or(ty);
    Observed::from_result(
        call(short, list(o, label, namespace, ty))
            .await
            .map(|items| items.iter().filter_map(|(id, b)| f(id, b)).collect()),
    )
}

/// The extras of one node (nothing is asked of a node that did not answer at all).
pub async fn node(o: &Observer, n: &NodeView) -> NodeExtras {
    if !n.reachable() || n.maintenance() {
        return NodeExtras::default();
    }
    let l = n.label.as_str();
    let version = listed(o, l, "runtime", "Versions.runtime.talos.dev", |_, b| {
        runtime::VersionSpec::decode(b).ok().map(|v| v.version)
    });
    let exts = listed(
        o,
        l,
        "runtime",
        "ExtensionStatuses.runtime.talos.dev",
        |_, b| {
            extensions::Layer::decode(b)
                .ok()
                .and_then(|x| x.metadata)
                .map(|m| m.name)
        },
    );
    let modules = listed(
        o,
        l,
        "runtime",
        "LoadedKernelModules.runtime.talos.dev",
        |id, _| Some(id.to_string()),
    );
    let system = listed(o, l, "runtime", "SystemDisks.block.talos.dev", |_, b| {
        block::SystemDiskSpec::decode(b).ok().map(|d| d.dev_path)
    });
    let mut machine = o.talos.machine();
    let db = call("EtcdStatus", machine.etcd_status(with_node((), l)));
    let (version, exts, modules, system, db) = tokio::join!(version, exts, modules, system, db);
    let first = |v: Observed<Vec<String>>, what: &str| match v {
        Observed::Answered(items) => match items.into_iter().next() {
            Some(x) => Observed::Answered(x),
            None => Observed::Missing(Gap::new(what, GapKind::Failed, "no resource")),
        },
        Observed::Missing(g) => Observed::Missing(g),
        Observed::NotAsked => Observed::NotAsked,
    };
    NodeExtras {
        talos_version: first(version, "Versions"),
        extensions: exts,
        loaded_modules: modules,
        system_disk: first(system, "SystemDisks"),
        etcd_db_size: Observed::from_result(db.and_then(|r| {
            r.into_inner()
                .messages
                .into_iter()
                .find_map(|m| m.member_status)
                .map(|s| s.db_size)
                .ok_or_else(|| Gap::new("EtcdStatus", GapKind::Failed, "no member status"))
        })),
    }
}

/// The extras of every node of `view`, concurrently.
pub async fn all(o: &Observer, view: &crate::condition::view::ClusterView) -> Vec<NodeExtras> {
    futures::future::join_all(view.nodes.iter().map(|n| node(o, n))).await
}
