//! The simulated Talos API through our own Talos client: TLS and roles, routing, every
//! method family, COSI, maintenance mode, the scenarios' symptoms and the call log.
//!
//! Every test starts its own simulator on loopback ports (high speed so reboots take well
//! under a second), talks to it only over gRPC (the model is read directly only to check the
//! Kubernetes view and etcd data), and shuts it down at the end. Waits are bounded polls
//! ([`eventually`]) that fail with a message saying what never happened.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use runbook::cluster::talos::{TalosClient, with_node, with_nodes};
use runbook::cluster::talosconfig::Talosconfig;
use runbook::sim::pki::Role;
use runbook::sim::scenario::{MAC_49, MAC_223, NUC_20};
use runbook::sim::{Scenario, SimConfig, SimHandle, Simulator, Speed};
use runbook_proto::cosi::resource::{GetRequest, ListRequest, WatchOptions, WatchRequest};
use runbook_proto::machine as pb;
use runbook_proto::talos::resource::definitions::runtime::MachineStatusSpec;
use tonic::Code;

struct Sim {
    h: SimHandle,
    _dir: tempfile::TempDir,
}

async fn start(scenario: Scenario, speed: f64) -> Sim {
    let dir = tempfile::tempdir().expect("temp dir");
    let h = Simulator::start(SimConfig {
        scenario,
        speed: Speed::new(speed).expect("speed"),
        dir: dir.path().join("sim"),
    })
    .await
    .expect("simulator starts");
    Sim { h, _dir: dir }
}

impl Sim {
    async fn client(&self, role: Role, node: &str) -> TalosClient {
        let tc = Talosconfig::load(self.h.talosconfig_for(role)).expect("talosconfig loads");
        let (_, ctx) = tc
            .context(None, self.h.talosconfig_for(role))
            .expect("context");
        let ep = self.h.endpoint(node).expect("node endpoint");
        TalosClient::connect_endpoint(ctx, &ep)
            .await
            .expect("mTLS connect")
    }

    /// Connects, or `None` while the node does not answer.
    async fn try_client(&self, role: Role, node: &str) -> Option<TalosClient> {
        let tc = Talosconfig::load(self.h.talosconfig_for(role)).ok()?;
        let (_, ctx) = tc.context(None, self.h.talosconfig_for(role)).ok()?;
        TalosClient::connect_endpoint(ctx, &self.h.endpoint(node)?)
            .await
            .ok()
    }

    async fn admin(&self) -> TalosClient {
        self.client(Role::Admin, NUC_20).await
    }

    async fn stop(self) {
        self.h.shutdown().await;
    }
}

/// Polls `f` every 50 ms until it returns `Some`, for at most `secs` seconds.
async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn talosconfig_round_trips_and_version_answers() {
    let sim = start(Scenario::Healthy, 200.0).await;
    let path = sim.h.talosconfig();
    let tc = Talosconfig::load(path).unwrap();
    let (name, ctx) = tc.context(None, path).unwrap();
    assert_eq!(name, "simulator");
    assert_eq!(ctx.nodes, [NUC_20, MAC_223, MAC_49]);
    assert_eq!(ctx.endpoints.len(), 3);
    assert!(
        ctx.key_pem
            .expose()
            .starts_with("-----BEGIN ED25519 PRIVATE KEY-----")
    );
    let copy = sim._dir.path().join("copy");
    tc.save(&copy).unwrap();
    assert_eq!(Talosconfig::load(&copy).unwrap(), tc);

    let c = TalosClient::connect(ctx).await.unwrap();
    let v = c.machine().version(()).await.unwrap().into_inner();
    assert_eq!(v.messages.len(), 1);
    assert!(
        v.messages[0].metadata.is_none(),
        "local replies are not wrapped"
    );
    assert_eq!(v.messages[0].version.as_ref().unwrap().tag, "v1.11.5");
    sim.stop().await;
}

fn ms_spec(r: &runbook_proto::cosi::resource::Resource) -> MachineStatusSpec {
    MachineStatusSpec::decode(r.spec.as_ref().unwrap().proto_spec.as_slice()).unwrap()
}

async fn machine_status(c: &TalosClient, node: &str) -> Result<MachineStatusSpec, tonic::Status> {
    let req = with_node(
        GetRequest {
            namespace: "runtime".into(),
            r#type: "MachineStatuses.runtime.talos.dev".into(),
            id: "machine".into(),
            options: None,
        },
        node,
    );
    let r = c.cosi().get(req).await?.into_inner();
    Ok(ms_spec(r.resource.as_ref().unwrap()))
}

#[tokio::test]
async fn a_connection_without_client_certificate_is_refused() {
    let sim = start(Scenario::Healthy, 200.0).await;
    let ep = sim.h.endpoint(NUC_20).unwrap();
    let refused = async {
        let c = TalosClient::connect_insecure(&ep, None).await?;
        c.machine().version(()).await.map_err(|s| s.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(
        refused.is_err(),
        "a configured node must demand a client certificate"
    );
    // The same port with the admin certificate works.
    let v = sim.admin().await.machine().version(()).await;
    assert!(v.is_ok(), "{v:?}");
    sim.stop().await;
}

#[tokio::test]
async fn roles_come_from_the_certificate_organization() {
    let sim = start(Scenario::Healthy, 200.0).await;
    let reader = sim.client(Role::Reader, NUC_20).await;
    let e = reader
        .machine()
        .reboot(pb::RebootRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(reader.machine().version(()).await.is_ok());
    assert!(reader.machine().service_list(()).await.is_ok());
    // Machine configs are sensitive: admin only.
    let mc = || ListRequest {
        namespace: "config".into(),
        r#type: "MachineConfigs.config.talos.dev".into(),
        options: None,
    };
    let e = reader.cosi().list(mc()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let admin = sim.admin().await;
    let mut list = admin.cosi().list(mc()).await.unwrap().into_inner();
    let first = list.next().await.unwrap().unwrap().resource.unwrap();
    assert_eq!(first.metadata.as_ref().unwrap().id, "v1alpha1");
    assert!(first.spec.unwrap().yaml_spec.contains("type: controlplane"));
    // Operators may reboot but not reset; no call reached the model for the denied ones.
    let op = sim.client(Role::Operator, NUC_20).await;
    let e = op
        .machine()
        .reset(pb::ResetRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    op.machine()
        .reboot(with_node(pb::RebootRequest::default(), MAC_223))
        .await
        .unwrap();
    let log = sim.h.cluster().with(|c, _| c.call_log().to_vec());
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].node.as_str()),
        ("Reboot", MAC_223)
    );
    sim.stop().await;
}

#[tokio::test]
async fn fan_out_reports_a_dead_node_as_an_entry_and_one_to_one_as_the_status() {
    let sim = start(Scenario::NodeDead, 200.0).await;
    let c = sim.admin().await;
    let targets = [NUC_20, MAC_223, MAC_49];
    let v = c
        .machine()
        .version(with_nodes((), &targets))
        .await
        .expect("the fan-out call itself succeeds")
        .into_inner();
    assert_eq!(v.messages.len(), 3);
    let hosts: Vec<&str> = v
        .messages
        .iter()
        .map(|m| m.metadata.as_ref().unwrap().hostname.as_str())
        .collect();
    assert_eq!(hosts, targets);
    let dead = v.messages[2].metadata.as_ref().unwrap();
    assert!(
        dead.error.starts_with("rpc error: code = Unavailable"),
        "{dead:?}"
    );
    assert_eq!(dead.status.as_ref().unwrap().code, Code::Unavailable as i32);
    assert!(v.messages[0].metadata.as_ref().unwrap().error.is_empty());
    assert!(v.messages[0].version.is_some());

    let e = c
        .machine()
        .version(with_node((), MAC_49))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("connection refused"), "{e:?}");

    // Hostnames work as targets too.
    let v = c
        .machine()
        .version(with_node((), "mac-223"))
        .await
        .unwrap()
        .into_inner();
    assert!(v.messages[0].metadata.is_none());

    // Several `node` values are refused.
    let mut req = tonic::Request::new(());
    req.metadata_mut().append("node", NUC_20.parse().unwrap());
    req.metadata_mut().append("node", MAC_223.parse().unwrap());
    let e = c.machine().version(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "node metadata must be single-valued");

    // The dead node's own port answers nothing.
    let tc = Talosconfig::load(sim.h.talosconfig()).unwrap();
    let (_, ctx) = tc.context(None, sim.h.talosconfig()).unwrap();
    let direct = async {
        let c = TalosClient::connect_endpoint(ctx, &sim.h.endpoint(MAC_49).unwrap()).await?;
        c.machine().version(()).await.map_err(|s| s.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(direct.is_err());
    sim.stop().await;
}

#[tokio::test]
async fn cosi_refuses_nodes_and_serves_get_list_and_resource_definitions() {
    let sim = start(Scenario::Healthy, 200.0).await;
    let c = sim.admin().await;
    let req = with_nodes(
        ListRequest {
            namespace: "runtime".into(),
            r#type: "Disks.block.talos.dev".into(),
            options: None,
        },
        &[NUC_20],
    );
    let e = c.cosi().list(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "one-2-many proxying is not supported for COSI methods"
    );

    let ms = machine_status(&c, MAC_223).await.unwrap();
    assert_eq!(ms.stage, 4, "running");
    assert!(ms.status.unwrap().ready);

    let get = |ns: &str, ty: &str, id: &str| GetRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        id: id.into(),
        options: None,
    };
    let r = c
        .cosi()
        .get(get(
            "runtime",
            "MachineStatuses.runtime.talos.dev",
            "machine",
        ))
        .await
        .unwrap()
        .into_inner()
        .resource
        .unwrap();
    let md = r.metadata.as_ref().unwrap();
    assert_eq!(
        (md.namespace.as_str(), md.id.as_str()),
        ("runtime", "machine")
    );
    assert!(
        r.spec
            .as_ref()
            .unwrap()
            .yaml_spec
            .starts_with("stage: running\n")
    );
    let e = c
        .cosi()
        .get(get("runtime", "MachineStatuses.runtime.talos.dev", "nope"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);

    let list = |ns: &str, ty: &str| ListRequest {
        namespace: ns.into(),
        r#type: ty.into(),
        options: None,
    };
    let ids = |rs: Vec<runbook_proto::cosi::resource::Resource>| -> Vec<String> {
        rs.into_iter().map(|r| r.metadata.unwrap().id).collect()
    };
    let collect = |s: tonic::Streaming<runbook_proto::cosi::resource::ListResponse>| async move {
        s.map(|r| r.unwrap().resource.unwrap())
            .collect::<Vec<_>>()
            .await
    };
    let list_all = async |ns: &str, ty: &str| {
        collect(c.cosi().list(list(ns, ty)).await.unwrap().into_inner()).await
    };
    let rds = list_all("meta", "ResourceDefinitions.meta.cosi.dev").await;
    let rd_ids = ids(rds.clone());
    for want in [
        "machinestatuses.runtime.talos.dev",
        "members.cluster.talos.dev",
        "extensionstatuses.runtime.talos.dev",
        "kernelmodulespecs.runtime.talos.dev",
        "loadedkernelmodules.runtime.talos.dev",
        "disks.block.talos.dev",
        "systemdisks.block.talos.dev",
        "machineconfigs.config.talos.dev",
        "services.v1alpha1.talos.dev",
        "etcdmembers.etcd.talos.dev",
        "pcidevices.hardware.talos.dev",
        "versions.runtime.talos.dev",
        "machinetypes.config.talos.dev",
    ] {
        assert!(rd_ids.iter().any(|i| i == want), "missing RD {want}");
    }
    let ms_rd = rds
        .iter()
        .find(|r| r.metadata.as_ref().unwrap().id == "machinestatuses.runtime.talos.dev")
        .unwrap();
    let spec = runbook_proto::cosi::resource::meta::ResourceDefinitionSpec::decode(
        ms_rd.spec.as_ref().unwrap().proto_spec.as_slice(),
    )
    .unwrap();
    assert_eq!(spec.default_namespace, "runtime");
    assert!(spec.all_aliases.iter().any(|a| a == "machinestatus"));

    let members = ids(list_all("cluster", "Members.cluster.talos.dev").await);
    assert_eq!(members, ["mac-223", "mac-49", "nuc-20"]);
    let ext = ids(list_all("runtime", "ExtensionStatuses.runtime.talos.dev").await);
    assert_eq!(ext, ["000", "001", "002"]);
    let kms = ids(list_all("runtime", "KernelModuleSpecs.runtime.talos.dev").await);
    assert!(kms.iter().any(|m| m == "nvidia"));
    let lkm = ids(list_all("runtime", "LoadedKernelModules.runtime.talos.dev").await);
    assert!(lkm.iter().any(|m| m == "nvidia_uvm"));
    let pci = list_all("hardware", "PCIDevices.hardware.talos.dev").await;
    assert!(pci.iter().any(|r| {
        r.spec
            .as_ref()
            .unwrap()
            .yaml_spec
            .contains("vendor_id: \"0x10de\"")
    }));
    let sys = list_all("runtime", "SystemDisks.block.talos.dev").await;
    assert!(
        sys[0]
            .spec
            .as_ref()
            .unwrap()
            .yaml_spec
            .contains("devPath: /dev/nvme0n1")
    );
    let etcd = ids(list_all("etcd", "EtcdMembers.etcd.talos.dev").await);
    assert_eq!(etcd, ["local"]);
    for (ns, ty) in [
        ("runtime", "Services.v1alpha1.talos.dev"),
        ("runtime", "Versions.runtime.talos.dev"),
        ("config", "MachineTypes.config.talos.dev"),
        ("runtime", "Disks.block.talos.dev"),
    ] {
        let rs = collect(c.cosi().list(list(ns, ty)).await.unwrap().into_inner()).await;
        assert!(!rs.is_empty(), "{ty} is empty");
        for r in rs {
            let s = r.spec.unwrap();
            assert!(
                !s.proto_spec.is_empty() && !s.yaml_spec.is_empty(),
                "{ty} lacks a spec form"
            );
        }
    }
    sim.stop().await;
}

#[tokio::test]
async fn cosi_watch_sends_ready_bootstrap_and_an_update_on_reboot() {
    // Slow enough (10x) that the rebooting stage lasts a second.
    let sim = start(Scenario::Healthy, 10.0).await;
    let c = sim.admin().await;
    let watch = |id: Option<&str>, bootstrap: bool| {
        with_node(
            WatchRequest {
                namespace: "runtime".into(),
                r#type: "MachineStatuses.runtime.talos.dev".into(),
                id: id.map(str::to_string),
                options: Some(WatchOptions {
                    bootstrap_contents: bootstrap,
                    ..WatchOptions::default()
                }),
                api_version: 1,
            },
            MAC_223,
        )
    };
    let mut w = c
        .cosi()
        .watch(watch(None, true))
        .await
        .unwrap()
        .into_inner();
    let ready = w.next().await.unwrap().unwrap();
    assert!(
        ready.event.is_empty(),
        "first message is the empty 'ready' response"
    );
    let created = w.next().await.unwrap().unwrap();
    assert_eq!(created.event[0].event_type, 0, "CREATED");
    assert_eq!(
        ms_spec(created.event[0].resource.as_ref().unwrap()).stage,
        4
    );
    let boot = w.next().await.unwrap().unwrap();
    assert_eq!(boot.event[0].event_type, 3, "BOOTSTRAPPED");

    let mut single = c
        .cosi()
        .watch(watch(Some("machine"), false))
        .await
        .unwrap()
        .into_inner();
    assert!(single.next().await.unwrap().unwrap().event.is_empty());
    assert_eq!(single.next().await.unwrap().unwrap().event[0].event_type, 0);

    c.machine()
        .reboot(with_node(pb::RebootRequest::default(), MAC_223))
        .await
        .unwrap();
    let update = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("an UPDATED event")
        .unwrap()
        .unwrap();
    let ev = &update.event[0];
    assert_eq!(ev.event_type, 1, "UPDATED");
    assert_eq!(ms_spec(ev.resource.as_ref().unwrap()).stage, 5, "rebooting");
    assert_eq!(ms_spec(ev.old.as_ref().unwrap()).stage, 4);
    let v_old: u64 = ev
        .old
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .version
        .parse()
        .unwrap();
    let v_new: u64 = ev
        .resource
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .version
        .parse()
        .unwrap();
    assert!(v_new > v_old);
    // When the node goes down the proxied stream breaks, as apid's would.
    let end = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match w.next().await {
                Some(Ok(_)) => continue,
                Some(Err(s)) => return Some(s.code()),
                None => return None,
            }
        }
    })
    .await
    .expect("the stream ends while the node is down");
    assert_eq!(end, Some(Code::Unavailable));
    sim.stop().await;
}

#[tokio::test]
async fn maintenance_node_takes_an_insecure_apply_and_becomes_mtls() {
    use runbook::sim::node::{VANILLA_IMAGE, control_plane_config};
    let sim = start(Scenario::TwoVoterWindow, 100.0).await;
    let ep = sim.h.endpoint(MAC_223).unwrap();
    // mTLS against the maintenance server fails: its certificate is not from the OS CA.
    let tc = Talosconfig::load(sim.h.talosconfig()).unwrap();
    let (_, ctx) = tc.context(None, sim.h.talosconfig()).unwrap();
    let secure = async {
        let c = TalosClient::connect_endpoint(ctx, &ep).await?;
        c.machine().version(()).await.map_err(|s| s.to_string())?;
        Ok::<_, Box<dyn std::error::Error>>(())
    }
    .await;
    assert!(secure.is_err());
    // A wrong pinned fingerprint is refused; the right one (or none) connects.
    assert!(
        async {
            let c = TalosClient::connect_insecure(&ep, Some("AAAA")).await?;
            c.machine().version(()).await.map_err(|s| s.to_string())?;
            Ok::<_, Box<dyn std::error::Error>>(())
        }
        .await
        .is_err()
    );
    let fp = sim.h.maintenance_fingerprint(MAC_223).unwrap();
    let m = TalosClient::connect_insecure(&ep, Some(fp)).await.unwrap();
    m.machine().version(()).await.unwrap();
    // Through apid the maintenance node cannot be reached.
    let admin = sim.admin().await;
    let e = admin
        .machine()
        .version(with_node((), MAC_223))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);

    let config = control_plane_config("mac-223", "/dev/sda", VANILLA_IMAGE, false);
    let apply =
        |mode: pb::apply_configuration_request::Mode, data: &str| pb::ApplyConfigurationRequest {
            data: data.as_bytes().to_vec(),
            mode: mode as i32,
            dry_run: false,
            try_mode_timeout: None,
        };
    use pb::apply_configuration_request::Mode;
    let e = m
        .machine()
        .apply_configuration(apply(Mode::NoReboot, &config))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    let e = m
        .machine()
        .apply_configuration(apply(Mode::Reboot, "foo: ["))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = m
        .machine()
        .apply_configuration(apply(Mode::Auto, &config))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.messages.len(), 1);
    assert!(r.messages[0].metadata.is_none());

    let reached = eventually("mac-223 to run with mTLS after the install", 60, || async {
        let c = TalosClient::connect_endpoint(ctx, &ep).await.ok()?;
        let ms = machine_status(&c, MAC_223).await.ok()?;
        (ms.stage == 4).then_some(ms)
    })
    .await;
    assert_eq!(reached.stage, 4);
    // The old insecure connection is no longer served.
    assert!(m.machine().version(()).await.is_err());
    sim.stop().await;
}

#[tokio::test]
async fn gpu_modules_missing_shows_booting_while_kubernetes_says_ready() {
    let sim = start(Scenario::GpuModulesMissing, 100.0).await;
    let c = sim.admin().await;
    let ms = machine_status(&c, NUC_20).await.unwrap();
    assert_eq!(ms.stage, 1, "booting");
    let k8s = sim
        .h
        .cluster()
        .with(|c, now| c.k8s_get_node("nuc-20", now))
        .unwrap();
    assert_eq!(k8s.ready, runbook::sim::cluster::ConditionStatus::True);
    let svc = c.machine().service_list(()).await.unwrap().into_inner();
    let persistenced = svc.messages[0]
        .services
        .iter()
        .find(|s| s.id == "ext-nvidia-persistenced")
        .expect("ext-nvidia-persistenced is listed");
    assert_eq!(persistenced.state, "Waiting");
    sim.stop().await;
}

#[tokio::test]
async fn nvidia_image_on_a_non_gpu_node_is_stuck_booting() {
    let sim = start(Scenario::NvidiaImageOnNonGpuNode, 100.0).await;
    let c = sim.admin().await;
    assert_eq!(machine_status(&c, MAC_223).await.unwrap().stage, 1);
    assert_eq!(machine_status(&c, NUC_20).await.unwrap().stage, 4);
    sim.stop().await;
}

#[tokio::test]
async fn quorum_lost_refuses_member_list_and_removal_but_snapshots() {
    let sim = start(Scenario::QuorumLost, 100.0).await;
    let c = sim.admin().await;
    let e = c
        .machine()
        .etcd_member_list(pb::EtcdMemberListRequest { query_local: true })
        .await
        .unwrap_err();
    assert!(e.message().contains("no leader"), "{e:?}");
    let status = c.machine().etcd_status(()).await.unwrap().into_inner();
    let st = status.messages[0].member_status.as_ref().unwrap();
    assert_eq!(st.leader, 0);
    // Removing a dead member needs a leader.
    let victim = sim
        .h
        .cluster()
        .with(|c, _| c.etcd_clusters()[0].member_ids())
        .into_iter()
        .find(|id| *id != st.member_id)
        .unwrap();
    let e = c
        .machine()
        .etcd_remove_member_by_id(pb::EtcdRemoveMemberByIdRequest { member_id: victim })
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    let snap = read_all(
        c.machine()
            .etcd_snapshot(pb::EtcdSnapshotRequest {})
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(snap.len() % 512, 32, "bbolt pages + sha256");
    sim.stop().await;
}

async fn read_all(mut s: tonic::Streaming<runbook_proto::common::Data>) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(d) = s.next().await {
        out.extend(d.unwrap().bytes);
    }
    out
}

#[tokio::test]
async fn usb_disk_shift_moves_the_apple_ssd_to_sdc() {
    let sim = start(Scenario::UsbDiskShift, 100.0).await;
    let c = sim.admin().await;
    let disks = c
        .storage()
        .disks(with_node((), MAC_49))
        .await
        .unwrap()
        .into_inner();
    let d = &disks.messages[0].disks;
    let apple = d.iter().find(|d| d.model.starts_with("APPLE")).unwrap();
    assert_eq!(apple.device_name, "/dev/sdc");
    assert!(apple.system_disk);
    let sda = d.iter().find(|d| d.device_name == "/dev/sda").unwrap();
    assert_eq!(sda.model, "Multi-Card");
    sim.stop().await;
}

#[tokio::test]
async fn stale_member_is_still_in_the_member_list() {
    let sim = start(Scenario::StaleMember, 100.0).await;
    let c = sim.admin().await;
    let m = c
        .machine()
        .etcd_member_list(pb::EtcdMemberListRequest { query_local: false })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = m.messages[0]
        .members
        .iter()
        .map(|m| m.hostname.as_str())
        .collect();
    assert!(names.contains(&"mac-48"), "{names:?}");
    assert!(!names.contains(&"mac-49"), "{names:?}");
    sim.stop().await;
}

#[tokio::test]
async fn snapshot_then_recover_round_trips_the_etcd_data() {
    let sim = start(Scenario::QuorumLost, 100.0).await;
    let c = sim.admin().await;
    let snap = read_all(
        c.machine()
            .etcd_snapshot(pb::EtcdSnapshotRequest {})
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    // Wipe .20's EPHEMERAL (etcd data) and reboot: etcd then waits for bootstrap.
    c.machine()
        .reset(pb::ResetRequest {
            graceful: false,
            reboot: true,
            system_partitions_to_wipe: vec![pb::ResetPartitionSpec {
                label: "EPHEMERAL".into(),
                wipe: true,
            }],
            ..pb::ResetRequest::default()
        })
        .await
        .unwrap();
    let c = eventually("nuc-20 to wait for etcd recovery", 60, || async {
        let c = sim.try_client(Role::Admin, NUC_20).await?;
        let svc = c.machine().service_list(()).await.ok()?.into_inner();
        let etcd = svc.messages[0].services.iter().find(|s| s.id == "etcd")?;
        (etcd.state == "Preparing").then_some(c)
    })
    .await;
    let chunks: Vec<runbook_proto::common::Data> = snap
        .chunks(4096)
        .map(|b| runbook_proto::common::Data {
            metadata: None,
            bytes: b.to_vec(),
        })
        .collect();
    c.machine()
        .etcd_recover(futures::stream::iter(chunks))
        .await
        .unwrap();
    c.machine()
        .bootstrap(pb::BootstrapRequest {
            recover_etcd: true,
            recover_skip_hash_check: false,
        })
        .await
        .unwrap();
    let members = eventually(
        "the recovered single-member etcd to list itself",
        60,
        || async {
            let m = c
                .machine()
                .etcd_member_list(pb::EtcdMemberListRequest { query_local: true })
                .await
                .ok()?
                .into_inner();
            Some(m.messages[0].members.clone())
        },
    )
    .await;
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].hostname, "nuc-20");
    let key = sim.h.cluster().with(|c, _| {
        c.etcd_clusters()
            .last()
            .and_then(|e| e.kv().entries.get("/registry/namespaces/default").cloned())
    });
    assert_eq!(key.as_deref(), Some("{\"kind\":\"Namespace\"}"));
    let e = c
        .machine()
        .bootstrap(pb::BootstrapRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    sim.stop().await;
}

#[tokio::test]
async fn the_call_log_records_each_mutating_call_once() {
    let sim = start(Scenario::Healthy, 100.0).await;
    let c = sim.client(Role::Operator, MAC_223).await;
    c.machine()
        .reboot(with_nodes(pb::RebootRequest::default(), &[NUC_20]))
        .await
        .unwrap();
    c.machine().version(with_node((), NUC_20)).await.unwrap();
    let reboots = sim.h.cluster().with(|c, _| {
        c.call_log()
            .iter()
            .filter(|r| r.method == "Reboot" && r.node == NUC_20)
            .count()
    });
    assert_eq!(reboots, 1, "Reboot was called exactly once on .20");
    let text = std::fs::read_to_string(sim.h.calls_path()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["method"], "Reboot");
    assert_eq!(lines[0]["node"], NUC_20);
    assert_eq!(lines[0]["result"], "ok");
    sim.stop().await;
}

#[tokio::test]
async fn machine_service_methods_answer_like_talos() {
    use pb::apply_configuration_request::Mode;
    let sim = start(Scenario::Healthy, 100.0).await;
    let c = sim.admin().await;
    let m = c.machine();

    // Read (streaming).
    let boot_id = read_all(
        m.clone()
            .read(with_node(
                pb::ReadRequest {
                    path: "/proc/sys/kernel/random/boot_id".into(),
                },
                MAC_223,
            ))
            .await
            .unwrap()
            .into_inner(),
    )
    .await;
    assert_eq!(String::from_utf8(boot_id).unwrap().trim().len(), 36);
    let e = m
        .clone()
        .read(pb::ReadRequest {
            path: "/nope".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("no such file or directory"), "{e:?}");

    // Kubeconfig: the simulated Kubernetes API's kubeconfig, as a .tar.gz like machined's,
    // readable by the engine's own unpacker (flate2) as well as the simulator's.
    let tgz = read_all(m.clone().kubeconfig(()).await.unwrap().into_inner()).await;
    let inside = runbook::sim::talos_api::kubeconfig::untar_gz_stored(&tgz).unwrap();
    assert_eq!(
        runbook::cluster::payload::extract_kubeconfig(&tgz).unwrap(),
        inside
    );
    assert!(
        String::from_utf8(inside)
            .unwrap()
            .contains("certificate-authority-data")
    );
    sim.h
        .set_kubeconfig(b"apiVersion: v1\nkind: Config\n".to_vec());
    let tgz = read_all(m.clone().kubeconfig(()).await.unwrap().into_inner()).await;
    assert_eq!(
        runbook::sim::talos_api::kubeconfig::untar_gz_stored(&tgz).unwrap(),
        b"apiVersion: v1\nkind: Config\n"
    );

    // etcd reads.
    let members = m
        .clone()
        .etcd_member_list(pb::EtcdMemberListRequest { query_local: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(members.messages[0].members.len(), 3);
    let st = m
        .clone()
        .etcd_status(with_nodes((), &[NUC_20, MAC_49]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.messages.len(), 2);
    assert_ne!(st.messages[0].member_status.as_ref().unwrap().leader, 0);
    let alarms = m.clone().etcd_alarm_list(()).await.unwrap().into_inner();
    assert!(alarms.messages[0].member_alarms.is_empty());

    // Bootstrap on a bootstrapped node.
    let e = m
        .clone()
        .bootstrap(pb::BootstrapRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert_eq!(e.message(), "etcd data directory is not empty");

    // ApplyConfiguration: bad data, dry run, AUTO → no reboot for a kernel change.
    let mc = m
        .clone()
        .apply_configuration(pb::ApplyConfigurationRequest {
            data: b"version: v1alpha1\nmachine: {type: nonsense}\n".to_vec(),
            mode: Mode::Auto as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(mc.code(), Code::InvalidArgument);
    let current = sim
        .h
        .cluster()
        .with(|c, now| c.machine_config(MAC_49, now))
        .unwrap();
    let patched = current.replace(
        "    wipe: true\n",
        "    wipe: true\n  kernel:\n    modules:\n      - name: br_netfilter\n",
    );
    let dry = m
        .clone()
        .apply_configuration(with_node(
            pb::ApplyConfigurationRequest {
                data: patched.clone().into_bytes(),
                mode: Mode::Auto as i32,
                dry_run: true,
                try_mode_timeout: None,
            },
            MAC_49,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(dry.messages[0].mode, Mode::NoReboot as i32);
    let applied = m
        .clone()
        .apply_configuration(with_nodes(
            pb::ApplyConfigurationRequest {
                data: patched.into_bytes(),
                mode: Mode::Auto as i32,
                dry_run: false,
                try_mode_timeout: None,
            },
            &[MAC_49],
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        applied.messages[0].metadata.as_ref().unwrap().hostname,
        MAC_49
    );
    assert_eq!(applied.messages[0].mode, Mode::NoReboot as i32);

    // Forfeit leadership on whichever node leads, then leave etcd from .49.
    let leader = st.messages[0].member_status.as_ref().unwrap().leader;
    let by_id: Vec<(u64, String)> = members.messages[0]
        .members
        .iter()
        .map(|m| (m.id, m.hostname.clone()))
        .collect();
    let leader_host = by_id
        .iter()
        .find(|(id, _)| *id == leader)
        .unwrap()
        .1
        .clone();
    let f = m
        .clone()
        .etcd_forfeit_leadership(with_node(pb::EtcdForfeitLeadershipRequest {}, &leader_host))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f.messages[0].member.len(), 16, "the new leader's id");
    m.clone()
        .etcd_leave_cluster(with_node(pb::EtcdLeaveClusterRequest {}, MAC_49))
        .await
        .unwrap();
    let after = eventually("two members after .49 left", 20, || async {
        let r = m
            .clone()
            .etcd_member_list(pb::EtcdMemberListRequest { query_local: false })
            .await
            .ok()?;
        let n = r.into_inner().messages[0].members.len();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(after, 2);

    // Upgrade refuses with two members left; forced it goes; shutdown and reset answer at once.
    let e = m
        .clone()
        .upgrade(with_node(
            pb::UpgradeRequest {
                image: "ghcr.io/siderolabs/installer:v1.11.6".into(),
                ..Default::default()
            },
            MAC_223,
        ))
        .await
        .unwrap_err();
    assert!(
        e.message().contains("is insufficient to maintain quorum"),
        "{e:?}"
    );
    let up = m
        .clone()
        .upgrade(with_node(
            pb::UpgradeRequest {
                image: "ghcr.io/siderolabs/installer:v1.11.6".into(),
                force: true,
                ..Default::default()
            },
            MAC_223,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(up.messages[0].ack, "Upgrade request received");
    m.clone()
        .shutdown(with_node(pb::ShutdownRequest { force: false }, MAC_49))
        .await
        .unwrap();
    let e = m
        .clone()
        .reset(with_node(
            pb::ResetRequest {
                system_partitions_to_wipe: vec![pb::ResetPartitionSpec {
                    label: "BOGUS".into(),
                    wipe: true,
                }],
                ..Default::default()
            },
            NUC_20,
        ))
        .await
        .unwrap_err();
    assert!(e.message().contains("not found"), "{e:?}");
    m.clone()
        .reboot(pb::RebootRequest {
            mode: pb::reboot_request::Mode::Powercycle as i32,
        })
        .await
        .unwrap();
    let methods: Vec<String> = sim
        .h
        .cluster()
        .with(|c, _| c.call_log().iter().map(|r| r.method.clone()).collect());
    for want in [
        "Bootstrap",
        "ApplyConfiguration",
        "EtcdForfeitLeadership",
        "EtcdLeaveCluster",
        "Upgrade",
        "Shutdown",
        "Reset",
        "Reboot",
    ] {
        assert!(
            methods.iter().any(|m| m == want),
            "{want} not in {methods:?}"
        );
    }
    sim.stop().await;
}

#[tokio::test]
async fn events_stream_machine_status_changes() {
    use runbook_proto::machine::MachineStatusEvent;
    let sim = start(Scenario::Healthy, 10.0).await;
    let c = sim.admin().await;
    let mut events = c
        .machine()
        .events(with_node(
            pb::EventsRequest {
                tail_events: 1,
                ..Default::default()
            },
            MAC_223,
        ))
        .await
        .unwrap()
        .into_inner();
    // Service state events (see sim_events.rs) are interleaved: take the status ones.
    let mut next_status = async || loop {
        let any = events.next().await.unwrap().unwrap().data.unwrap();
        if any.type_url == "talos/runtime/machine.MachineStatusEvent" {
            return MachineStatusEvent::decode(any.value.as_slice()).unwrap();
        }
        assert_eq!(any.type_url, "talos/runtime/machine.ServiceStateEvent");
    };
    let first = next_status().await;
    assert_eq!(first.stage, 4, "running");
    c.machine()
        .reboot(with_node(pb::RebootRequest::default(), MAC_223))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), next_status())
        .await
        .expect("an event after the reboot");
    assert_eq!(next.stage, 5, "rebooting");
    sim.stop().await;
}

#[test]
fn sim_scenarios_lists_one_line_per_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::harness::runbook(dir.path(), &["sim", "scenarios"]);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    let text = crate::harness::stdout(&out);
    assert_eq!(text.lines().count(), Scenario::ALL.len());
    assert!(text.lines().any(|l| l.starts_with("quorum-lost ")));
}
