//! Unit tests of patching, comparison, classification, redaction and the diff.

use serde_json::json;

use super::*;

const CONFIG: &str = "version: v1alpha1
machine:
  type: controlplane
  token: wt5r2a.secrettokenvalue
  ca:
    crt: LS0tcublic
    key: LS0tprivatekeyvalue
  kernel:
    modules:
      - name: zfs
  network:
    hostname: cp-1
    interfaces:
      - interface: eth0
        dhcp: true
        vlans:
          - vlanId: 10
            mtu: 1500
  install:
    disk: /dev/sda
    image: ghcr.io/siderolabs/installer:v1.11.5
cluster:
  secretboxEncryptionSecret: c2VjcmV0Ym94c2VjcmV0
  network:
    podSubnets: [10.244.0.0/16]
---
apiVersion: v1alpha1
kind: ExtensionServiceConfig
name: nut-client
configFiles:
  - mountPath: /usr/local/etc/nut/upsmon.conf
    content: MONITOR ups@host 1 remote pass secondary
";

fn config() -> Config {
    parse_config(CONFIG).unwrap()
}

fn strategic(v: serde_json::Value) -> Patch {
    patch_from_value(Format::Strategic, &v).unwrap()
}

#[test]
fn strategic_merge_keeps_the_rest_and_appends_list_items_once() {
    let p = strategic(json!({"machine": {"kernel": {"modules": [{"name": "nvidia"}]}}}));
    let once = apply(&config(), &p).unwrap();
    assert_eq!(once.len(), 2);
    let modules = &once[0]["machine"]["kernel"]["modules"];
    assert_eq!(modules, &json!([{"name": "zfs"}, {"name": "nvidia"}]));
    assert_eq!(once[0]["machine"]["type"], "controlplane");
    // The same patch again changes nothing: idempotent by construction.
    let twice = apply(&once, &p).unwrap();
    assert!(same(&once, &twice));
    assert!(changed_paths(&once, &twice).is_empty());
}

#[test]
fn keyed_lists_merge_by_key_and_replace_fields_replace() {
    let p = strategic(json!({
        "machine": {"network": {"interfaces": [
            {"interface": "eth0", "mtu": 9000, "vlans": [{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}]},
            {"interface": "eth1", "dhcp": false}
        ]}},
        "cluster": {"network": {"podSubnets": ["10.10.0.0/16"]}}
    }));
    let out = apply(&config(), &p).unwrap();
    let ifaces = out[0]["machine"]["network"]["interfaces"]
        .as_array()
        .unwrap();
    assert_eq!(ifaces.len(), 2);
    assert_eq!(ifaces[0]["dhcp"], true);
    assert_eq!(ifaces[0]["mtu"], 9000);
    assert_eq!(
        ifaces[0]["vlans"],
        json!([{"vlanId": 10, "mtu": 1400}, {"vlanId": 20}])
    );
    assert_eq!(
        out[0]["cluster"]["network"]["podSubnets"],
        json!(["10.10.0.0/16"])
    );
}

#[test]
fn patch_delete_removes_keys_items_and_documents() {
    let p = strategic(json!([
        {"machine": {"network": {"hostname": {"$patch": "delete"},
            "interfaces": [{"interface": "eth0", "$patch": "delete"}]}}},
        {"apiVersion": "v1alpha1", "kind": "ExtensionServiceConfig", "name": "nut-client", "$patch": "delete"}
    ]));
    let out = apply(&config(), &p).unwrap();
    assert_eq!(out.len(), 1);
    let net = &out[0]["machine"]["network"];
    assert!(net.get("hostname").is_none());
    assert_eq!(net["interfaces"], json!([]));
}

#[test]
fn a_new_document_is_appended_and_matched_by_identity() {
    let p = strategic(
        json!({"apiVersion": "v1alpha1", "kind": "ExtensionServiceConfig",
        "name": "other", "configFiles": []}),
    );
    let out = apply(&config(), &p).unwrap();
    assert_eq!(out.len(), 3);
    let paths = changed_paths(&config(), &out);
    assert_eq!(paths.len(), 1);
    assert_eq!(
        paths[0].to_string(),
        "v1alpha1/ExtensionServiceConfig/other:<document>"
    );
    assert!(
        reboot_required(&paths),
        "an unknown document counts as needing a reboot"
    );
}

#[test]
fn a_type_mismatch_is_an_error_not_a_silent_replace() {
    let p = strategic(json!({"machine": {"kernel": "oops"}}));
    let e = apply(&config(), &p).unwrap_err();
    assert!(e.to_string().contains("machine.kernel"), "{e}");
}

#[test]
fn json6902_applies_to_a_single_document_and_refuses_several() {
    let p = patch_from_value(
        Format::Json6902,
        &json!([
            {"op": "add", "path": "/machine/kernel/modules/-", "value": {"name": "nvidia"}},
            {"op": "replace", "path": "/machine/network/hostname", "value": "gpu-1"}
        ]),
    )
    .unwrap();
    let single = vec![config()[0].clone()];
    let out = apply(&single, &p).unwrap();
    assert_eq!(out[0]["machine"]["network"]["hostname"], "gpu-1");
    assert_eq!(
        out[0]["machine"]["kernel"]["modules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let e = apply(&config(), &p).unwrap_err();
    assert!(e.to_string().contains("multi-document"), "{e}");
    // A test that fails is an error, not a silent no-op.
    let t = patch_from_value(
        Format::Json6902,
        &json!([{"op": "test", "path": "/machine/type", "value": "worker"}]),
    )
    .unwrap();
    assert!(apply(&single, &t).is_err());
}

#[test]
fn malformed_patches_are_refused_with_the_reason() {
    let e = patch_from_value(Format::Json6902, &json!({"op": "add"})).unwrap_err();
    assert!(e.to_string().contains("list of operations"), "{e}");
    let e = patch_from_value(
        Format::Json6902,
        &json!([{"op": "frobnicate", "path": "/a"}]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("operation 1"), "{e}");
    let e = patch_from_value(Format::Strategic, &json!("machine")).unwrap_err();
    assert!(e.to_string().contains("expected a map"), "{e}");
}

#[test]
fn a_malformed_patch_file_names_its_line_and_column() {
    let text = "# patch\nmachine:\n  kernel:\n    modules: [\n";
    let d = patch_from_file(Format::Strategic, "patches/gpu.yaml", text).unwrap_err();
    let shown = format!("{:?}", miette::Report::new(d.0[0].clone()));
    assert!(shown.contains("patches/gpu.yaml"), "{shown}");
    assert!(shown.contains(":4:") || shown.contains(":5:"), "{shown}");
    let ops = "---\n- op: add\n  path: /machine/x\n---\n- op: remove\n  path: /y\n";
    assert!(patch_from_file(Format::Json6902, "p.yaml", ops).is_err());
    let one = "- op: add\n  path: /machine/x\n  value: 1\n";
    assert!(patch_from_file(Format::Json6902, "p.yaml", one).is_ok());
    // Line numbers survive the split into documents.
    let second_bad = "machine: {}\n---\nmachine:\n  a: [\n";
    let d = patch_from_file(Format::Strategic, "two.yaml", second_bad).unwrap_err();
    let shown = format!("{:?}", miette::Report::new(d.0[0].clone()));
    assert!(
        shown.contains("two.yaml:4") || shown.contains("two.yaml:5"),
        "{shown}"
    );
}

#[test]
fn classification_is_conservative() {
    let path = |s: &str| ConfigPath {
        doc: "v1alpha1".into(),
        keys: s.split('.').map(str::to_string).collect(),
    };
    assert!(immediate(&path("machine.kernel.modules")));
    assert!(immediate(&path("machine.nodeLabels.gpu")));
    assert!(immediate(&path("cluster.network.podSubnets")));
    assert!(!immediate(&path("machine.install.image")));
    assert!(!immediate(&path("machine.network.interfaces")));
    assert!(!immediate(&path("machine.kernel")));
    assert!(!immediate(&path("machine.disks")));
    assert!(!immediate(&path("machine.somethingNew")));
    assert!(!immediate(&path("machine")));
    assert!(!immediate(&ConfigPath {
        doc: "v1alpha1/ExtensionServiceConfig/x".into(),
        keys: vec!["configFiles".into()],
    }));
}

#[test]
fn changed_paths_lie_under_the_patch_paths() {
    // A key added where its parent was missing lists the leaf, so the classification of the
    // change agrees with the classification of the patch.
    let bare = parse_config("version: v1alpha1\nmachine:\n  type: worker\n").unwrap();
    let p = strategic(json!({"machine": {"network": {"hostname": "w-1"}}}));
    let out = apply(&bare, &p).unwrap();
    let changed = changed_paths(&bare, &out);
    assert_eq!(
        changed.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        ["machine.network.hostname"]
    );
    assert!(!reboot_required(&changed));
    assert!(!reboot_required(&static_paths(&p)));
    let install = strategic(json!({"machine": {"install": {"image": "x"}}}));
    assert!(reboot_required(&static_paths(&install)));
}

#[test]
fn the_plan_time_classification_follows_mode_and_patch() {
    let args = |mode: Option<&'static str>, patch: Option<serde_json::Value>, file: bool| {
        move |name: &str| match name {
            "mode" => mode.map(|m| json!(m)),
            "patch" => patch.clone(),
            "patch_file" if file => Some(json!("p.yaml")),
            _ => None,
        }
    };
    let labels = json!({"machine": {"nodeLabels": {"gpu": "true"}}});
    let install = json!({"machine": {"install": {"image": "x"}}});
    assert!(!plan_needs_reboot(&args(None, Some(labels.clone()), false)));
    assert!(plan_needs_reboot(&args(None, Some(install.clone()), false)));
    assert!(plan_needs_reboot(&args(
        Some("reboot"),
        Some(labels),
        false
    )));
    assert!(!plan_needs_reboot(&args(
        Some("no-reboot"),
        Some(install.clone()),
        false
    )));
    assert!(!plan_needs_reboot(&args(
        Some("staged"),
        Some(install),
        false
    )));
    assert!(
        plan_needs_reboot(&args(None, None, true)),
        "a file is unknown before the run"
    );
    assert!(
        plan_needs_reboot(&args(None, None, false)),
        "an expression is unknown"
    );
}

#[test]
fn semantic_comparison_ignores_layout_and_order() {
    let a = parse_config("version: v1alpha1\nmachine: {type: worker, token: x}\n").unwrap();
    let b = parse_config("machine:\n  token: x\n  type: worker\nversion: v1alpha1\n").unwrap();
    assert!(same(&a, &b));
    let c = parse_config(&to_text(&a)).unwrap();
    assert!(same(&a, &c), "the text sent parses back to the same config");
}

#[test]
fn the_diff_is_redacted_and_shows_the_change() {
    let p = strategic(json!({
        "machine": {"kernel": {"modules": [{"name": "nvidia"}]}, "token": "new-token-value"},
        "cluster": {"secretboxEncryptionSecret": "bmV3c2VjcmV0"}
    }));
    let old = config();
    let new = apply(&old, &p).unwrap();
    let d = redacted_diff(&old, &new, "cp-1");
    assert!(
        d.starts_with("--- cp-1 (running)\n+++ cp-1 (patched)\n"),
        "{d}"
    );
    assert!(d.contains("+      - name: nvidia"), "{d}");
    assert!(d.contains("<redacted, changed>"), "{d}");
    for secret in [
        "secrettokenvalue",
        "new-token-value",
        "privatekeyvalue",
        "c2VjcmV0Ym94c2VjcmV0",
        "bmV3c2VjcmV0",
    ] {
        assert!(!d.contains(secret), "`{secret}` leaked into\n{d}");
    }
    assert!(redacted_diff(&old, &old, "cp-1").is_empty());
}

#[test]
fn redaction_goes_by_key_whatever_the_value() {
    let v = json!({"auth": {"username": "u", "password": "p"}, "privateKey": {"a": 1},
        "inlineManifests": [{"name": "s", "contents": "kind: Secret"}],
        "list": [{"token": "t"}], "name": "visible"});
    let r = redact(&v);
    assert_eq!(r["auth"], REDACTED);
    assert_eq!(r["privateKey"], REDACTED);
    assert_eq!(r["inlineManifests"], REDACTED);
    assert_eq!(r["list"][0]["token"], REDACTED);
    assert_eq!(r["name"], "visible");
}

#[test]
fn yaml_rendering_reads_back_as_the_same_value() {
    let v = config();
    let text = v.iter().map(render_yaml).collect::<Vec<_>>().join("---\n");
    let back = parse_config(&text).unwrap();
    assert!(same(&v, &back), "{text}");
    let tricky = json!({"a": "true", "b": "1.5", "c": "x: y", "d": "", "e": [], "f": {}, "g": [[1, 2], {"h": null}]});
    let back = parse_config(&render_yaml(&tricky)).unwrap();
    assert_eq!(back[0], tricky);
}

#[test]
fn a_hostile_patch_file_is_refused_before_it_is_expanded() {
    // Anchors and aliases (the "billion laughs") are refused by the YAML front end's prescan.
    let bomb = "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b]\n";
    assert!(patch_from_file(Format::Strategic, "bomb.yaml", bomb).is_err());
    // Deep nesting is refused too.
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(patch_from_file(Format::Strategic, "deep.yaml", &deep).is_err());
    // A `$patch: delete` list item without a key to select by is an error, not "delete all".
    let p = patch_from_value(
        Format::Strategic,
        &json!({"machine": {"kernel": {"modules": [{"$patch": "delete"}]}}}),
    )
    .unwrap();
    assert!(apply(&config(), &p).is_err());
}

#[test]
fn distant_changes_make_separate_hunks_with_correct_counts() {
    let mut text = String::from("version: v1alpha1\nmachine:\n  type: worker\n  nodeLabels:\n");
    for i in 0..20 {
        text.push_str(&format!("    l{i:02}: v{i}\n"));
    }
    let old = parse_config(&text).unwrap();
    // Rendered with sorted keys: `machine:`, `nodeLabels:`, l00 at line 3 … l19 at line 22.
    let p = strategic(json!({"machine": {"nodeLabels": {"l00": "first", "l19": "changed"}}}));
    let new = apply(&old, &p).unwrap();
    let d = redacted_diff(&old, &new, "n");
    let hunks: Vec<&str> = d.lines().filter(|l| l.starts_with("@@")).collect();
    assert_eq!(hunks, ["@@ -1,6 +1,6 @@", "@@ -19,6 +19,6 @@"], "{d}");
    assert!(d.contains("-    l00: v0\n+    l00: first\n"), "{d}");
    assert!(d.contains("-    l19: v19\n+    l19: changed\n"), "{d}");
}
