//! What an `os:etcd:backup` certificate may do against the simulator, as Talos v1.11.5's own
//! role table (`rules` in `internal/app/machined/pkg/system/services/machined.go`) says: take
//! a snapshot and read etcd (EtcdMemberList, EtcdStatus, EtcdAlarmList), and nothing else. The
//! simulator is the oracle every fail-closed test of that role leans on, so it must not be
//! stricter or looser than Talos.

use futures::StreamExt;
use runbook::cluster::talos::{TalosClient, with_node};
use runbook::cluster::talosconfig::Talosconfig;
use runbook::sim::pki::Role;
use runbook::sim::scenario::{MAC_223, NUC_20};
use runbook::sim::{Scenario, SimConfig, Simulator, Speed};
use runbook_proto::cosi::resource::ListRequest;
use runbook_proto::machine as pb;
use tonic::Code;

#[tokio::test]
async fn a_backup_only_role_snapshots_and_reads_etcd_but_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let h = Simulator::start(SimConfig {
        scenario: Scenario::Healthy,
        speed: Speed::new(200.0).unwrap(),
        dir: dir.path().join("sim"),
    })
    .await
    .unwrap();
    let path = h.talosconfig_for(Role::EtcdBackup);
    let tc = Talosconfig::load(path).unwrap();
    let (_, ctx) = tc.context(None, path).unwrap();
    let c = TalosClient::connect_endpoint(ctx, &h.endpoint(NUC_20).unwrap())
        .await
        .unwrap();
    let m = || c.machine();

    // Allowed: the three etcd reads and the snapshot.
    let members = m()
        .etcd_member_list(pb::EtcdMemberListRequest::default())
        .await;
    let members = members.unwrap().into_inner();
    assert!(
        members.messages.iter().any(|x| !x.members.is_empty()),
        "{members:?}"
    );
    let status = m().etcd_status(()).await.unwrap().into_inner();
    assert!(
        status.messages.iter().any(|x| x.member_status.is_some()),
        "{status:?}"
    );
    m().etcd_alarm_list(()).await.unwrap();
    let mut snap = m()
        .etcd_snapshot(pb::EtcdSnapshotRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut bytes = 0;
    while let Some(d) = snap.next().await {
        bytes += d.unwrap().bytes.len();
    }
    assert!(bytes > 0, "the snapshot streamed nothing");

    // Refused: every other read and every change, with PermissionDenied.
    let denied = |r: Result<(), tonic::Status>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.code(), Code::PermissionDenied, "{what}: {e:?}");
    };
    denied(m().version(()).await.map(drop), "Version");
    denied(m().service_list(()).await.map(drop), "ServiceList");
    denied(
        c.cosi()
            .list(ListRequest {
                namespace: "runtime".into(),
                r#type: "MachineStatuses.runtime.talos.dev".into(),
                options: None,
            })
            .await
            .map(drop),
        "COSI List",
    );
    denied(
        m().reboot(with_node(pb::RebootRequest::default(), MAC_223))
            .await
            .map(drop),
        "Reboot",
    );
    denied(
        m().etcd_forfeit_leadership(pb::EtcdForfeitLeadershipRequest {})
            .await
            .map(drop),
        "EtcdForfeitLeadership",
    );
    denied(
        m().reset(pb::ResetRequest::default()).await.map(drop),
        "Reset",
    );
    // No refused call reached the model: the snapshot is the only call logged.
    let log = h.cluster().with(|c, _| c.call_log().to_vec());
    let methods: Vec<&str> = log.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["EtcdSnapshot"], "{log:?}");
    h.shutdown().await;
}
