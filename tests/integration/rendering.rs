//! Snapshot tests of the plan renderings (text, DOT, Mermaid, JSON) of the seed cluster's
//! reboot-verify: reviewing a diff here is reviewing what operators and tools will see.

use runbook::compile::{self, Mode};
use runbook::library;
use runbook::plan::render;

fn seed_plan() -> runbook::plan::Plan {
    let entry = library::find("reboot-verify").unwrap();
    let params = vec![(
        "nodes".to_string(),
        "192.168.2.20,192.168.2.223,192.168.2.49".to_string(),
    )];
    compile::compile_source(&entry.source, &Mode::Plan(params)).unwrap()
}

#[test]
fn text() {
    insta::assert_snapshot!("reboot_verify_text", render::text(&seed_plan()));
}

#[test]
fn dot() {
    insta::assert_snapshot!("reboot_verify_dot", render::dot(&seed_plan()));
}

#[test]
fn mermaid() {
    insta::assert_snapshot!("reboot_verify_mermaid", render::mermaid(&seed_plan()));
}

#[test]
fn json() {
    let text = render::json(&seed_plan());
    let doc: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["format"], 1);
    assert_eq!(doc["steps"].as_array().unwrap().len(), 29);
    insta::assert_snapshot!("reboot_verify_json", text);
}

#[test]
fn secret_params_are_redacted_in_every_rendering() {
    let src = runbook::source::Source::new(
        "s.yaml",
        runbook::source::Format::Yaml,
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: s }\nparams:\n  token: { type: secret, required: true }\nsteps:\n  - id: a\n    action: log\n    with: { message: \"token ${{ params.token }}\" }\n  - id: b\n    action: log\n    with: { message: \"${{ params.token + \\\"!\\\" }}\" }\n",
    );
    let plan = compile::compile_source(
        &src,
        &Mode::Plan(vec![("token".into(), "hunter2-s3cret".into())]),
    )
    .unwrap();
    for out in [
        render::text(&plan),
        render::dot(&plan),
        render::mermaid(&plan),
        render::json(&plan),
        format!("{plan:?}"),
    ] {
        assert!(!out.contains("hunter2-s3cret"), "secret leaked:\n{out}");
    }
    assert!(render::text(&plan).contains("token = <redacted>"));
    // Arguments computed from a secret stay expressions, evaluated only at run time; the
    // plan hash (journaled) covers the expression text, not the value.
    assert!(
        render::text(&plan).contains("message=token ${{ params.token }}"),
        "{}",
        render::text(&plan)
    );
    let other = compile::compile_source(
        &src,
        &Mode::Plan(vec![("token".into(), "different".into())]),
    )
    .unwrap();
    assert_eq!(
        plan.hash, other.hash,
        "the plan hash must not depend on a secret's value"
    );
}
