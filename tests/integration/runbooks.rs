//! The built-in runbooks: every file in `runbooks/` is embedded, compiles, and encodes the
//! lessons it claims to (YAML and rhai front ends produce the same plan model).

use std::collections::BTreeSet;

use runbook::compile::{self, Mode};
use runbook::library;
use runbook::plan::{Guard, Value};
use runbook::source::{Format, Source};

use crate::harness::root;

const SEED_NODES: &str = "192.168.2.20,192.168.2.223,192.168.2.49";

#[test]
fn every_file_in_runbooks_is_embedded() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(root().join("runbooks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml") || n.ends_with(".rhai"))
        .collect();
    let embedded: BTreeSet<String> = library::BUILTINS
        .iter()
        .map(|(f, _)| f.to_string())
        .collect();
    assert_eq!(on_disk, embedded, "runbooks/ and library::BUILTINS differ");
    for (file, text) in library::BUILTINS {
        let disk = std::fs::read_to_string(root().join("runbooks").join(file)).unwrap();
        assert_eq!(&disk, text, "{file} is stale in the binary");
    }
}

#[test]
fn every_builtin_compiles_in_check_mode() {
    for entry in library::builtins() {
        let plan = compile::compile_source(&entry.source, &Mode::Check)
            .unwrap_or_else(|d| panic!("{} does not compile:\n{}", entry.name, d.render(true)));
        assert!(!plan.is_empty(), "{} has no steps", entry.name);
        assert_eq!(
            plan.runbook, entry.name,
            "metadata.name must match the file name"
        );
    }
}

fn plan(name: &str, params: &[(&str, &str)]) -> runbook::plan::Plan {
    let entry = library::find(name).unwrap();
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    compile::compile_source(&entry.source, &Mode::Plan(params))
        .unwrap_or_else(|d| panic!("{name}: {}", d.render(true)))
}

#[test]
fn reboot_verify_goes_one_node_at_a_time_with_a_guard_before_every_reboot() {
    let p = plan("reboot-verify", &[("nodes", SEED_NODES)]);
    let reboots: Vec<_> = p
        .steps()
        .filter(|s| s.action.as_ref().is_some_and(|a| a.name == "talos.reboot"))
        .collect();
    assert_eq!(reboots.len(), 3);
    for (s, node) in reboots.iter().zip(SEED_NODES.split(',')) {
        assert_eq!(s.id, format!("verify[{node}].reboot"));
        assert!(
            s.guards
                .iter()
                .any(|g| matches!(g, Guard::Named { name, .. } if name == "etcd.safe-down"))
        );
        let action = s.action.as_ref().unwrap();
        assert_eq!(action.args["mode"], Value::Literal("powercycle".into()));
        assert_eq!(action.args["node"], Value::Literal(node.into()));
        assert_eq!(s.wait.as_ref().unwrap().condition, "talos.rebooted");
    }
    // Strictly serial: the second node's first step needs the first node's last step.
    let first_of_second = p.step("verify[192.168.2.223].record_boot").unwrap();
    assert_eq!(
        first_of_second.needs,
        vec!["verify[192.168.2.20].uncordon".to_string()]
    );
    // kubectl Ready is not enough: every node waits for Talos `running`.
    let running: Vec<_> = p
        .steps()
        .filter(|s| {
            s.wait
                .as_ref()
                .is_some_and(|w| w.condition == "talos.running")
        })
        .collect();
    assert_eq!(running.len(), 3);
}

#[test]
fn full_rebuild_bootstraps_one_node_per_variant_and_takes_images_from_the_configs() {
    let p = plan(
        "full-rebuild",
        &[
            ("nodes", SEED_NODES),
            ("inventory", "cluster.yaml"),
            ("variant", "fresh"),
        ],
    );
    let bootstraps: Vec<_> = p
        .steps()
        .filter(|s| {
            s.action
                .as_ref()
                .is_some_and(|a| a.name == "talos.bootstrap")
        })
        .collect();
    // One per variant, each behind its `when`: exactly one of them runs.
    assert_eq!(bootstraps.len(), 2);
    for b in &bootstraps {
        assert_eq!(
            b.action.as_ref().unwrap().args["node"],
            Value::Literal("192.168.2.20".into())
        );
        assert!(b.when.as_ref().unwrap().expr.contains("params.variant"));
    }
    // No image or disk param: the install steps take everything from the planned configs.
    let apply = p.step("install[192.168.2.49].apply").unwrap();
    assert!(
        matches!(
            &apply.action.as_ref().unwrap().args["config"],
            Value::Expr(_)
        ),
        "{apply:?}"
    );
    assert!(
        p.params
            .keys()
            .all(|k| !k.contains("image") && !k.contains("disk"))
    );
}

#[test]
fn quorum_recovery_written_in_rhai_plans_like_yaml() {
    let p = plan(
        "etcd-quorum-recovery",
        &[
            ("nodes", SEED_NODES),
            ("survivor", "192.168.2.20"),
            ("down", "192.168.2.49"),
        ],
    );
    assert!(p.source.ends_with(".rhai"));
    let wipe = p.step("wipe[192.168.2.49]").unwrap();
    assert!(wipe.hazard.is_some());
    assert!(
        wipe.guards
            .iter()
            .any(|g| matches!(g, Guard::Named { name, .. } if name == "etcd.quorum-lost"))
    );
    let boot = p.step("bootstrap").unwrap();
    assert_eq!(boot.idempotency, runbook::action::Idempotency::Verify);
    // The snapshot path is only known at run time.
    assert!(matches!(
        boot.action.as_ref().unwrap().args["recover_from"],
        Value::Expr(_)
    ));
}

#[test]
fn yaml_and_rhai_front_ends_produce_the_same_plan() {
    let yaml = Source::new(
        "same.yaml",
        Format::Yaml,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: same, description: d }\nparams:\n  nodes: { type: nodes, required: true }\nsteps:\n  - id: boot\n    foreach: params.nodes\n    action: talos.read-boot-id\n    with: { node: \"${{ node }}\" }\n  - id: r\n    action: talos.reboot\n    with: { node: \"${{ params.nodes[0] }}\", mode: powercycle }\n    guard: [etcd.safe-down]\n    wait: { condition: talos.rebooted, timeout: 20m }\n    retry: { attempts: 3, backoff: fixed, delay: 2s }\n    rollback: [log_it]\nrollbacks:\n  - id: log_it\n    action: log\n    with: { message: undo }\n",
    );
    let rhai = Source::new(
        "same.rhai",
        Format::Rhai,
        r#"let rb = runbook("same", "d");
rb.param("nodes", #{ type: "nodes", required: true });
rb.step(#{ id: "boot", foreach: "params.nodes", action: "talos.read-boot-id", "with": #{ node: "${{ node }}" } });
rb.step(#{ id: "r", action: "talos.reboot", "with": #{ node: "${{ params.nodes[0] }}", mode: "powercycle" },
  guard: ["etcd.safe-down"], wait: #{ condition: "talos.rebooted", timeout: "20m" },
  retry: #{ attempts: 3, backoff: "fixed", delay: "2s" }, rollback: ["log_it"] });
rb.rollback(#{ id: "log_it", action: "log", "with": #{ message: "undo" } });
rb
"#,
    );
    let params = Mode::Plan(vec![("nodes".into(), "a,b".into())]);
    let a = compile::compile_source(&yaml, &params).unwrap();
    let b = compile::compile_source(&rhai, &params).unwrap();
    assert_eq!(a.hash, b.hash);
    assert_eq!(
        runbook::plan::render::json(&a).replace("same.yaml", "X"),
        runbook::plan::render::json(&b).replace("same.rhai", "X")
    );
}

#[test]
fn plan_hash_ignores_formatting_but_not_meaning() {
    let base = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: h }\nsteps:\n  - id: a\n    action: sleep\n    with: { duration: 1s }\n";
    let reformatted = "# a comment\napiVersion: runbook/v1\nkind: Runbook\nmetadata:\n  name: h\nsteps:\n  - id: a\n    action: sleep\n    with:\n      duration: 1s\n";
    let changed = base.replace("1s", "2s");
    let hash = |t: &str| {
        compile::compile_source(&Source::new("h.yaml", Format::Yaml, t), &Mode::Plan(vec![]))
            .unwrap()
            .hash
    };
    assert_eq!(hash(base), hash(reformatted));
    assert_ne!(hash(base), hash(&changed));
}
