//! Wire-format tests: exact bytes and tags for the messages Runbook depends on, and the
//! service/method/streaming shape recorded in [`crate::FILE_DESCRIPTOR_SET`].
//!
//! Tag byte = (field number << 3) | wire type, with wire type 0 = varint, 2 = length-delimited.

use prost::Message;
use prost_types::{FileDescriptorSet, MethodDescriptorProto};

use crate::common;
use crate::cosi::resource as cosi;
use crate::google::rpc;
use crate::machine;
use crate::resource::config;
use crate::storage;
use crate::talos::resource::definitions::{
    block, cluster, enums, etcd, extensions, hardware, runtime, v1alpha1,
};

const VARINT: u8 = 0;
const LEN: u8 = 2;

/// Tag byte for a field number < 16.
fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

/// A length-delimited field `field` holding `payload` (payload shorter than 128 bytes).
fn len_field(field: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![
        tag(field, LEN),
        u8::try_from(payload.len()).expect("short payload"),
    ];
    out.extend_from_slice(payload);
    out
}

#[test]
fn reboot_request_powercycle_is_field_1_varint_1() {
    let req = machine::RebootRequest {
        mode: machine::reboot_request::Mode::Powercycle.into(),
    };
    assert_eq!(req.encode_to_vec(), [0x08, 0x01]);
    // DEFAULT is the zero value and is not sent at all in proto3.
    assert!(machine::RebootRequest::default().encode_to_vec().is_empty());
}

#[test]
fn etcd_member_tags_start_at_field_2() {
    let member = machine::EtcdMember {
        id: 0x0102,
        hostname: "cp1".into(),
        peer_urls: vec!["p".into()],
        client_urls: vec!["c".into()],
        is_learner: true,
    };
    let mut expected = vec![tag(2, VARINT), 0x82, 0x02];
    expected.extend(len_field(3, b"cp1"));
    expected.extend(len_field(4, b"p"));
    expected.extend(len_field(5, b"c"));
    expected.extend([tag(6, VARINT), 0x01]);
    assert_eq!(member.encode_to_vec(), expected);
    assert_eq!(expected[0], 0x10);
    assert_eq!(expected[3], 0x1a);
    assert_eq!(*expected.last().expect("non-empty"), 0x01);
    assert_eq!(expected[expected.len() - 2], 0x30);
}

#[test]
fn etcd_member_status_high_field_numbers() {
    let status = machine::EtcdMemberStatus {
        member_id: 7,
        storage_version: "3.6".into(),
        ..Default::default()
    };
    // Fields are encoded in field-number order: member_id = 10, storage_version = 11.
    let mut expected = vec![0x50, 0x07];
    expected.extend([0x5a, 0x03]);
    expected.extend(b"3.6");
    assert_eq!(status.encode_to_vec(), expected);
}

#[test]
fn apply_configuration_request_mode_is_field_4() {
    let req = machine::ApplyConfigurationRequest {
        data: b"x".to_vec(),
        mode: machine::apply_configuration_request::Mode::Try.into(),
        dry_run: true,
        try_mode_timeout: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
    };
    let mut expected = len_field(1, b"x");
    expected.extend([0x20, 0x04]); // mode = 4 (TRY), field 4
    expected.extend([0x28, 0x01]); // dry_run, field 5
    expected.extend(len_field(6, &[0x08, 60])); // Duration{seconds = 60}, field 6
    assert_eq!(req.encode_to_vec(), expected);

    use machine::apply_configuration_request::Mode;
    let modes = [
        (Mode::Reboot, 0),
        (Mode::Auto, 1),
        (Mode::NoReboot, 2),
        (Mode::Staged, 3),
        (Mode::Try, 4),
    ];
    for (mode, number) in modes {
        assert_eq!(mode as i32, number);
    }
    assert_eq!(Mode::NoReboot.as_str_name(), "NO_REBOOT");
}

#[test]
fn reset_upgrade_shutdown_requests() {
    let reset = machine::ResetRequest {
        graceful: true,
        reboot: false,
        system_partitions_to_wipe: vec![machine::ResetPartitionSpec {
            label: "EPHEMERAL".into(),
            wipe: true,
        }],
        user_disks_to_wipe: vec!["/dev/sdb".into()],
        mode: machine::reset_request::WipeMode::SystemDisk.into(),
    };
    let mut part = len_field(1, b"EPHEMERAL");
    part.extend([0x10, 0x01]);
    let mut expected = vec![0x08, 0x01];
    expected.extend(len_field(3, &part));
    expected.extend(len_field(4, b"/dev/sdb"));
    expected.extend([0x28, 0x01]);
    assert_eq!(reset.encode_to_vec(), expected);

    let upgrade = machine::UpgradeRequest {
        image: "i".into(),
        stage: true,
        reboot_mode: machine::upgrade_request::RebootMode::Powercycle.into(),
        ..Default::default()
    };
    let mut expected = len_field(1, b"i");
    expected.extend([0x18, 0x01, 0x28, 0x01]);
    assert_eq!(upgrade.encode_to_vec(), expected);

    let shutdown = machine::ShutdownRequest { force: true };
    assert_eq!(shutdown.encode_to_vec(), [0x08, 0x01]);

    let bootstrap = machine::BootstrapRequest {
        recover_etcd: true,
        recover_skip_hash_check: true,
    };
    assert_eq!(bootstrap.encode_to_vec(), [0x08, 0x01, 0x10, 0x01]);

    let remove = machine::EtcdRemoveMemberByIdRequest { member_id: 3 };
    assert_eq!(remove.encode_to_vec(), [0x08, 0x03]);
}

#[test]
fn common_metadata_fields() {
    let metadata = common::Metadata {
        hostname: "n1".into(),
        error: "boom".into(),
        status: Some(rpc::Status {
            code: 14,
            message: "x".into(),
            details: vec![],
        }),
    };
    let mut status = vec![0x08, 14];
    status.extend(len_field(2, b"x"));
    let mut expected = len_field(1, b"n1");
    expected.extend(len_field(2, b"boom"));
    expected.extend(len_field(3, &status));
    assert_eq!(metadata.encode_to_vec(), expected);

    let data = common::Data {
        metadata: None,
        bytes: vec![0xde, 0xad],
    };
    assert_eq!(data.encode_to_vec(), len_field(2, &[0xde, 0xad]));
}

/// apid's one-to-many proxying appends a serialized `metadata` field to each node's reply and
/// concatenates the replies; protobuf merge semantics must turn that into N entries.
#[test]
fn one_to_many_concatenation_merges_into_repeated_messages() {
    let node_reply = |tag: &str| machine::VersionResponse {
        messages: vec![machine::Version {
            metadata: None,
            version: Some(machine::VersionInfo {
                tag: tag.into(),
                ..Default::default()
            }),
            platform: None,
            features: Some(machine::FeaturesInfo { rbac: true }),
        }],
    };
    let with_hostname = |reply: machine::VersionResponse, host: &str| {
        // messages[0] gets `metadata{hostname}` appended, as apid's AppendInfo does.
        let mut inner = reply.messages[0].encode_to_vec();
        let metadata = common::Metadata {
            hostname: host.into(),
            ..Default::default()
        };
        inner.extend(len_field(1, &metadata.encode_to_vec()));
        len_field(1, &inner)
    };
    let mut wire = with_hostname(node_reply("v1.11.5"), "10.0.0.1");
    wire.extend(with_hostname(node_reply("v1.11.6"), "10.0.0.2"));

    let merged = machine::VersionResponse::decode(wire.as_slice()).expect("decodes");
    assert_eq!(merged.messages.len(), 2);
    let hosts: Vec<_> = merged
        .messages
        .iter()
        .map(|m| m.metadata.as_ref().map(|md| md.hostname.as_str()))
        .collect();
    assert_eq!(hosts, [Some("10.0.0.1"), Some("10.0.0.2")]);
    let tags: Vec<_> = merged
        .messages
        .iter()
        .map(|m| m.version.as_ref().map(|v| v.tag.as_str()))
        .collect();
    assert_eq!(tags, [Some("v1.11.5"), Some("v1.11.6")]);
}

#[test]
fn event_payload_roundtrips_through_any() {
    let payload = machine::MachineStatusEvent {
        stage: machine::machine_status_event::MachineStage::Running.into(),
        status: Some(machine::machine_status_event::MachineStatus {
            ready: false,
            unmet_conditions: vec![
                machine::machine_status_event::machine_status::UnmetCondition {
                    name: "nodeReady".into(),
                    reason: "node not ready".into(),
                },
            ],
        }),
    };
    let event = machine::Event {
        metadata: None,
        data: Some(prost_types::Any {
            type_url: "talos/runtime/machine.MachineStatusEvent".into(),
            value: payload.encode_to_vec(),
        }),
        id: "id1".into(),
        actor_id: "actor".into(),
    };
    let decoded = machine::Event::decode(event.encode_to_vec().as_slice()).expect("decodes");
    let any = decoded.data.expect("data");
    assert_eq!(any.type_url, "talos/runtime/machine.MachineStatusEvent");
    let back = machine::MachineStatusEvent::decode(any.value.as_slice()).expect("payload");
    assert_eq!(back, payload);
    assert_eq!(payload.encode_to_vec()[..2], [0x08, 0x04]);

    let service = machine::ServiceStateEvent {
        service: "etcd".into(),
        action: machine::service_state_event::Action::Starting.into(),
        ..Default::default()
    };
    let mut expected = len_field(1, b"etcd");
    expected.extend([0x10, 0x08]);
    assert_eq!(service.encode_to_vec(), expected);

    let sequence = machine::SequenceEvent {
        sequence: "boot".into(),
        action: machine::sequence_event::Action::Stop.into(),
        error: Some(common::Error {
            code: common::Code::Locked.into(),
            message: "m".into(),
            details: vec![],
        }),
    };
    let mut error = vec![0x08, 0x01];
    error.extend(len_field(2, b"m"));
    let mut expected = len_field(1, b"boot");
    expected.extend([0x10, 0x02]);
    expected.extend(len_field(3, &error));
    assert_eq!(sequence.encode_to_vec(), expected);
}

#[test]
fn cosi_watch_request_optional_id_and_api_version() {
    let mut req = cosi::WatchRequest {
        namespace: "runtime".into(),
        r#type: "MachineStatuses.runtime.talos.dev".into(),
        id: Some("machine".into()),
        options: None,
        api_version: 1,
    };
    let mut expected = len_field(1, b"runtime");
    expected.extend(len_field(2, b"MachineStatuses.runtime.talos.dev"));
    expected.extend(len_field(3, b"machine"));
    expected.extend([0x28, 0x01]);
    assert_eq!(req.encode_to_vec(), expected);

    // proto3 `optional`: an explicitly empty id is still sent (presence), None is not.
    req.id = Some(String::new());
    assert!(req.encode_to_vec().windows(2).any(|w| w == [0x1a, 0x00]));
    req.id = None;
    let bytes = req.encode_to_vec();
    assert!(!bytes.contains(&0x1a));
    assert_eq!(
        cosi::WatchRequest::decode(bytes.as_slice())
            .expect("decodes")
            .id,
        None
    );

    let options = cosi::WatchOptions {
        bootstrap_contents: true,
        start_from_bookmark: Some(vec![]),
        bootstrap_bookmark: true,
        ..Default::default()
    };
    assert_eq!(
        options.encode_to_vec(),
        [0x08, 0x01, 0x32, 0x00, 0x38, 0x01]
    );
}

#[test]
fn cosi_event_and_resource_wire_form() {
    let spec = runtime::MachineStatusSpec {
        stage: enums::RuntimeMachineStage::MachineStageBooting.into(),
        status: Some(runtime::MachineStatusStatus {
            ready: true,
            unmet_conditions: vec![runtime::UnmetCondition {
                name: "time".into(),
                reason: "r".into(),
            }],
        }),
    };
    let mut condition = len_field(1, b"time");
    condition.extend(len_field(2, b"r"));
    let mut status = vec![0x08, 0x01];
    status.extend(len_field(2, &condition));
    let mut expected = vec![0x08, 0x01];
    expected.extend(len_field(2, &status));
    assert_eq!(spec.encode_to_vec(), expected);

    let resource = cosi::Resource {
        metadata: Some(cosi::Metadata {
            namespace: "runtime".into(),
            r#type: "MachineStatuses.runtime.talos.dev".into(),
            id: "machine".into(),
            version: "3".into(),
            phase: "running".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(cosi::Spec {
            proto_spec: spec.encode_to_vec(),
            yaml_spec: "stage: booting\n".into(),
        }),
    };
    let event = cosi::Event {
        resource: Some(resource.clone()),
        old: None,
        error: None,
        event_type: cosi::EventType::Bootstrapped.into(),
        bookmark: None,
    };
    let bytes = event.encode_to_vec();
    // Event.resource = 1, event_type = 2 (varint 3).
    assert_eq!(bytes[0], tag(1, LEN));
    assert!(bytes.ends_with(&[0x10, 0x03]));
    let back = cosi::Event::decode(bytes.as_slice()).expect("decodes");
    let back_spec = back.resource.and_then(|r| r.spec).expect("spec");
    assert_eq!(
        runtime::MachineStatusSpec::decode(back_spec.proto_spec.as_slice()).expect("spec"),
        spec
    );

    // Metadata: labels is map field 10 (tag 0x52), entry {key = 1, value = 2}.
    let metadata_bytes = resource.metadata.expect("metadata").encode_to_vec();
    let mut entry = len_field(1, b"k");
    entry.extend(len_field(2, b"v"));
    let mut labels = vec![0x52];
    labels.push(u8::try_from(entry.len()).expect("short"));
    labels.extend(entry);
    assert!(metadata_bytes.ends_with(&labels));
    assert_eq!(metadata_bytes[..2], [0x0a, 7]);

    let get = cosi::GetRequest {
        namespace: "config".into(),
        r#type: "MachineConfigs.config.talos.dev".into(),
        id: "v1alpha1".into(),
        options: Some(cosi::GetOptions {}),
    };
    assert!(get.encode_to_vec().ends_with(&[0x22, 0x00]));

    let term = cosi::LabelTerm {
        key: "k".into(),
        op: cosi::label_term::Operation::In.into(),
        value: vec!["a".into(), "b".into()],
        invert: true,
    };
    let mut expected = len_field(1, b"k");
    expected.extend([0x10, 0x03]);
    expected.extend(len_field(3, b"a"));
    expected.extend(len_field(3, b"b"));
    expected.extend([0x20, 0x01]);
    assert_eq!(term.encode_to_vec(), expected);
}

#[test]
fn resource_definition_specs() {
    let disk = block::DiskSpec {
        size: 1,
        dev_path: "/dev/sda".into(),
        ..Default::default()
    };
    let mut expected = vec![0x08, 0x01, 0x72, 8];
    expected.extend(b"/dev/sda");
    assert_eq!(disk.encode_to_vec(), expected);

    let system_disk = block::SystemDiskSpec {
        disk_id: "sda".into(),
        dev_path: "/dev/sda".into(),
    };
    let mut expected = len_field(1, b"sda");
    expected.extend(len_field(2, b"/dev/sda"));
    assert_eq!(system_disk.encode_to_vec(), expected);

    let volume = block::VolumeStatusSpec {
        phase: enums::BlockVolumePhase::VolumePhaseReady.into(),
        parent_id: "p".into(),
        ..Default::default()
    };
    // parent_id = 19 needs a two-byte tag: (19 << 3) | 2 = 154 = [0x9a, 0x01].
    assert_eq!(volume.encode_to_vec(), [0x08, 0x06, 0x9a, 0x01, 0x01, b'p']);

    let member = cluster::MemberSpec {
        node_id: "id".into(),
        addresses: vec![common::NetIp {
            ip: vec![10, 0, 0, 1],
        }],
        hostname: "cp1".into(),
        machine_type: enums::MachineType::TypeControlPlane.into(),
        operating_system: "Talos".into(),
        control_plane: Some(cluster::ControlPlane {
            api_server_port: 6443,
        }),
    };
    let mut expected = len_field(1, b"id");
    expected.extend(len_field(2, &len_field(1, &[10, 0, 0, 1])));
    expected.extend(len_field(3, b"cp1"));
    expected.extend([0x20, 0x02]);
    expected.extend(len_field(5, b"Talos"));
    expected.extend(len_field(6, &[0x08, 0xab, 0x32])); // 6443 = varint [0xab, 0x32]
    assert_eq!(member.encode_to_vec(), expected);

    let layer = extensions::Layer {
        image: "000.sqsh".into(),
        metadata: Some(extensions::Metadata {
            name: "n".into(),
            compatibility: Some(extensions::Compatibility {
                talos: Some(extensions::Constraint {
                    version: ">= v1.11".into(),
                }),
            }),
            extra_info: "e".into(),
            ..Default::default()
        }),
    };
    let mut metadata = len_field(1, b"n");
    metadata.extend(len_field(5, &len_field(1, &len_field(1, b">= v1.11"))));
    metadata.extend(len_field(6, b"e"));
    let mut expected = len_field(1, b"000.sqsh");
    expected.extend(len_field(2, &metadata));
    assert_eq!(layer.encode_to_vec(), expected);

    let module = runtime::KernelModuleSpecSpec {
        name: "drbd".into(),
        parameters: vec!["usermode_helper=disabled".into()],
    };
    let mut expected = len_field(1, b"drbd");
    expected.extend(len_field(2, b"usermode_helper=disabled"));
    assert_eq!(module.encode_to_vec(), expected);

    let loaded = runtime::LoadedKernelModuleSpec {
        size: 5,
        reference_count: 1,
        dependencies: vec![],
        state: "Live".into(),
        address: String::new(),
    };
    let mut expected = vec![0x08, 0x05, 0x10, 0x01];
    expected.extend(len_field(4, b"Live"));
    assert_eq!(loaded.encode_to_vec(), expected);

    let version = runtime::VersionSpec {
        version: "v1.11.6".into(),
    };
    assert_eq!(version.encode_to_vec(), len_field(1, b"v1.11.6"));

    let etcd_member = etcd::MemberSpec {
        member_id: "0123456789abcdef".into(),
    };
    assert_eq!(
        etcd_member.encode_to_vec(),
        len_field(1, b"0123456789abcdef")
    );

    let service = v1alpha1::ServiceSpec {
        running: true,
        healthy: false,
        unknown: true,
    };
    assert_eq!(service.encode_to_vec(), [0x08, 0x01, 0x18, 0x01]);

    let pci = hardware::PciDeviceSpec {
        class: "c".into(),
        driver: "d".into(),
        ..Default::default()
    };
    let mut expected = len_field(1, b"c");
    expected.extend(len_field(9, b"d"));
    assert_eq!(pci.encode_to_vec(), expected);

    let machine_config = config::MachineConfigSpec {
        yaml_marshalled: b"version: v1alpha1\n".to_vec(),
    };
    assert_eq!(
        machine_config.encode_to_vec(),
        len_field(1, b"version: v1alpha1\n")
    );
    let machine_type = config::MachineTypeSpec {
        machine_type: config::MachineType::Worker.into(),
    };
    assert_eq!(machine_type.encode_to_vec(), [0x08, 0x03]);
}

#[test]
fn storage_messages() {
    let wipe = storage::BlockDeviceWipeDescriptor {
        device: "sdb".into(),
        method: storage::block_device_wipe_descriptor::Method::Zeroes.into(),
        skip_volume_check: true,
        skip_secondary_check: true,
        drop_partition: true,
    };
    let mut expected = len_field(1, b"sdb");
    expected.extend([0x10, 0x01, 0x18, 0x01, 0x20, 0x01, 0x28, 0x01]);
    assert_eq!(wipe.encode_to_vec(), expected);

    let disk = storage::Disk {
        r#type: storage::disk::DiskType::Cd.into(),
        readonly: true,
        ..Default::default()
    };
    assert_eq!(disk.encode_to_vec(), [0x48, 0x05, 0x68, 0x01]);
}

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).expect("valid descriptor set")
}

fn service_methods(
    fds: &FileDescriptorSet,
    package: &str,
    service: &str,
) -> Vec<MethodDescriptorProto> {
    fds.file
        .iter()
        .filter(|f| f.package() == package)
        .flat_map(|f| &f.service)
        .find(|s| s.name() == service)
        .unwrap_or_else(|| panic!("service {package}.{service} missing"))
        .method
        .clone()
}

/// Checks that every `(method, input, output, client_streaming, server_streaming)` exists.
fn assert_methods(
    fds: &FileDescriptorSet,
    package: &str,
    service: &str,
    expected: &[(&str, &str, &str, bool, bool)],
) {
    let methods = service_methods(fds, package, service);
    for &(name, input, output, client_streaming, server_streaming) in expected {
        let method = methods
            .iter()
            .find(|m| m.name() == name)
            .unwrap_or_else(|| panic!("/{package}.{service}/{name} missing"));
        assert_eq!(method.input_type(), input, "{name} input");
        assert_eq!(method.output_type(), output, "{name} output");
        assert_eq!(
            method.client_streaming(),
            client_streaming,
            "{name} client streaming"
        );
        assert_eq!(
            method.server_streaming(),
            server_streaming,
            "{name} server streaming"
        );
    }
}

#[test]
fn descriptor_set_has_every_method_with_streaming_flags() {
    let fds = descriptor_set();
    const EMPTY: &str = ".google.protobuf.Empty";
    const DATA: &str = ".common.Data";
    assert_methods(
        &fds,
        "machine",
        "MachineService",
        &[
            ("Version", EMPTY, ".machine.VersionResponse", false, false),
            (
                "Reboot",
                ".machine.RebootRequest",
                ".machine.RebootResponse",
                false,
                false,
            ),
            (
                "Shutdown",
                ".machine.ShutdownRequest",
                ".machine.ShutdownResponse",
                false,
                false,
            ),
            (
                "Upgrade",
                ".machine.UpgradeRequest",
                ".machine.UpgradeResponse",
                false,
                false,
            ),
            (
                "ApplyConfiguration",
                ".machine.ApplyConfigurationRequest",
                ".machine.ApplyConfigurationResponse",
                false,
                false,
            ),
            (
                "Bootstrap",
                ".machine.BootstrapRequest",
                ".machine.BootstrapResponse",
                false,
                false,
            ),
            (
                "Reset",
                ".machine.ResetRequest",
                ".machine.ResetResponse",
                false,
                false,
            ),
            (
                "ServiceList",
                EMPTY,
                ".machine.ServiceListResponse",
                false,
                false,
            ),
            ("Read", ".machine.ReadRequest", DATA, false, true),
            (
                "EtcdMemberList",
                ".machine.EtcdMemberListRequest",
                ".machine.EtcdMemberListResponse",
                false,
                false,
            ),
            (
                "EtcdStatus",
                EMPTY,
                ".machine.EtcdStatusResponse",
                false,
                false,
            ),
            (
                "EtcdAlarmList",
                EMPTY,
                ".machine.EtcdAlarmListResponse",
                false,
                false,
            ),
            (
                "EtcdSnapshot",
                ".machine.EtcdSnapshotRequest",
                DATA,
                false,
                true,
            ),
            (
                "EtcdRecover",
                DATA,
                ".machine.EtcdRecoverResponse",
                true,
                false,
            ),
            (
                "EtcdRemoveMemberByID",
                ".machine.EtcdRemoveMemberByIDRequest",
                ".machine.EtcdRemoveMemberByIDResponse",
                false,
                false,
            ),
            (
                "EtcdLeaveCluster",
                ".machine.EtcdLeaveClusterRequest",
                ".machine.EtcdLeaveClusterResponse",
                false,
                false,
            ),
            (
                "EtcdForfeitLeadership",
                ".machine.EtcdForfeitLeadershipRequest",
                ".machine.EtcdForfeitLeadershipResponse",
                false,
                false,
            ),
            (
                "Events",
                ".machine.EventsRequest",
                ".machine.Event",
                false,
                true,
            ),
            ("Kubeconfig", EMPTY, DATA, false, true),
            ("Copy", ".machine.CopyRequest", DATA, false, true),
        ],
    );
    assert_methods(
        &fds,
        "storage",
        "StorageService",
        &[
            ("Disks", EMPTY, ".storage.DisksResponse", false, false),
            (
                "BlockDeviceWipe",
                ".storage.BlockDeviceWipeRequest",
                ".storage.BlockDeviceWipeResponse",
                false,
                false,
            ),
        ],
    );
    assert_methods(
        &fds,
        "cosi.resource",
        "State",
        &[
            (
                "Get",
                ".cosi.resource.GetRequest",
                ".cosi.resource.GetResponse",
                false,
                false,
            ),
            (
                "List",
                ".cosi.resource.ListRequest",
                ".cosi.resource.ListResponse",
                false,
                true,
            ),
            (
                "Create",
                ".cosi.resource.CreateRequest",
                ".cosi.resource.CreateResponse",
                false,
                false,
            ),
            (
                "Update",
                ".cosi.resource.UpdateRequest",
                ".cosi.resource.UpdateResponse",
                false,
                false,
            ),
            (
                "Destroy",
                ".cosi.resource.DestroyRequest",
                ".cosi.resource.DestroyResponse",
                false,
                false,
            ),
            (
                "Watch",
                ".cosi.resource.WatchRequest",
                ".cosi.resource.WatchResponse",
                false,
                true,
            ),
        ],
    );
}

#[test]
fn descriptor_set_is_self_contained_and_keeps_proto3_optional() {
    let fds = descriptor_set();
    let names: Vec<&str> = fds.file.iter().map(|f| f.name()).collect();
    for needed in [
        "google/protobuf/any.proto",
        "google/protobuf/empty.proto",
        "google/protobuf/timestamp.proto",
        "google/protobuf/duration.proto",
        "google/rpc/status.proto",
        "common/common.proto",
        "machine/machine.proto",
        "storage/storage.proto",
        "v1alpha1/resource.proto",
        "v1alpha1/state.proto",
        "v1alpha1/meta.proto",
        "resource/config/config.proto",
        "resource/definitions/runtime/runtime.proto",
    ] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    // Every import of every file is itself in the set (reflection needs the closure).
    for file in &fds.file {
        for dep in &file.dependency {
            assert!(
                names.contains(&dep.as_str()),
                "{} imports missing {dep}",
                file.name()
            );
        }
    }

    let watch = fds
        .file
        .iter()
        .filter(|f| f.package() == "cosi.resource")
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "WatchRequest")
        .expect("WatchRequest");
    let id = watch
        .field
        .iter()
        .find(|f| f.name() == "id")
        .expect("id field");
    assert_eq!(id.number(), 3);
    assert!(id.proto3_optional());
    let api_version = watch
        .field
        .iter()
        .find(|f| f.name() == "api_version")
        .expect("api_version field");
    assert_eq!(api_version.number(), 5);
}

#[test]
fn limit_helpers_accept_a_transport_channel() {
    assert_eq!(crate::MAX_MESSAGE_SIZE, 33_554_432);
    // Type-checks the helpers' bounds against tonic's real transport.
    let _machine = crate::machine_client::<tonic::transport::Channel>;
    let _storage = crate::storage_client::<tonic::transport::Channel>;
    let _state = crate::state_client::<tonic::transport::Channel>;
}
