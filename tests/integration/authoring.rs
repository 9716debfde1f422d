//! One test per kind of authoring error: exact message and `line:column`.
//!
//! Inline runbooks start with `harness::HEAD` (7 lines), so the first step is on line 8.

use runbook::diagnostic::Code;

use crate::harness::{HEAD, check_rhai, check_yaml, only, plan_yaml, summary};

fn y(steps: &str) -> String {
    format!("{HEAD}{steps}")
}

#[test]
fn yaml_syntax() {
    let r = check_yaml("apiVersion: runbook/v1\nsteps: [a, b\n");
    let (code, at, msg) = only(r);
    assert_eq!(code, Code::YamlSyntax);
    assert!(msg.starts_with("invalid YAML:"), "{msg}");
    assert!(at.starts_with("3:") || at.starts_with("2:"), "{at}");
}

#[test]
fn unknown_field_with_suggestion() {
    let r = check_yaml(&y("steps:\n  - id: a\n    acton: noop\n"));
    let d = r.unwrap_err();
    let s = summary(&d);
    assert_eq!(
        s[1],
        (
            Code::UnknownField,
            "10:5".into(),
            "unknown field `acton` in a step".into()
        )
    );
    assert_eq!(d.0[1].help.as_deref(), Some("did you mean `action`?"));
    // Without a known `action`, the step does nothing: also reported, at the step's id.
    assert_eq!(s[0].0, Code::MissingField);
}

#[test]
fn missing_field() {
    let (code, at, msg) = only(check_yaml(
        "apiVersion: runbook/v1\nkind: Runbook\nsteps: []\n",
    ));
    assert_eq!(code, Code::MissingField);
    assert_eq!(at, "1:1");
    assert_eq!(msg, "the runbook is missing the required field `metadata`");
}

#[test]
fn wrong_type() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    needs: { x: 1 }\n",
    )));
    assert_eq!(code, Code::WrongType);
    assert_eq!(at, "11:12");
    assert_eq!(
        msg,
        "`needs` must be a step id or a list of step ids, found a map"
    );
}

#[test]
fn invalid_value_duration() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    timeout: 5 minutes\n",
    )));
    assert_eq!(code, Code::InvalidValue);
    assert_eq!(at, "11:14");
    assert_eq!(
        msg,
        "invalid `timeout`: `5 minutes`: missing unit after `5` (ms, s, m, h or d)"
    );
}

#[test]
fn duplicate_id_points_at_both() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n  - id: a\n    action: noop\n",
    ))
    .unwrap_err();
    let s = summary(&d);
    assert_eq!(
        s,
        vec![(
            Code::DuplicateId,
            "11:9".into(),
            "duplicate step id `a`".into()
        )]
    );
    let (first_line, _) = d.0[0].source.line_col(d.0[0].related[0].0.offset);
    assert_eq!(first_line, 9);
}

#[test]
fn unknown_action_did_you_mean() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: talos.rebot\n    with: { node: x }\n",
    ))
    .unwrap_err();
    assert_eq!(
        summary(&d),
        vec![(
            Code::UnknownAction,
            "10:13".into(),
            "unknown action `talos.rebot`".into()
        )]
    );
    assert_eq!(d.0[0].help.as_deref(), Some("did you mean `talos.reboot`?"));
}

#[test]
fn unknown_argument() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: sleep\n    with: { duraton: 1s }\n",
    ))
    .unwrap_err();
    // The misspelt argument is unknown, and the real one is missing: both are reported.
    let s = summary(&d);
    assert_eq!(
        s[1],
        (
            Code::UnknownArgument,
            "11:13".into(),
            "action `sleep` has no argument `duraton`".into()
        )
    );
    assert_eq!(d.0[1].help.as_deref(), Some("did you mean `duration`?"));
    assert_eq!(s[0].0, Code::MissingArgument);
}

#[test]
fn missing_argument() {
    let (code, at, msg) = only(check_yaml(&y("steps:\n  - id: a\n    action: sleep\n")));
    assert_eq!(code, Code::MissingArgument);
    assert_eq!(at, "10:13");
    assert_eq!(
        msg,
        "action `sleep` needs the argument `duration` (how long)"
    );
}

#[test]
fn wrong_argument_type() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: talos.reboot\n    with: { node: x, mode: warm }\n    guard: [etcd.safe-down]\n",
    )));
    assert_eq!(code, Code::WrongType);
    assert_eq!(at, "11:28");
    assert_eq!(
        msg,
        "argument `mode` of action `talos.reboot`: `warm` is not one of default, powercycle"
    );
}

#[test]
fn unknown_guard() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: talos.reboot\n    with: { node: x }\n    guard: [etcd.safe-dwn]\n",
    )));
    assert_eq!(code, Code::UnknownGuard);
    assert_eq!(at, "12:13");
    assert_eq!(msg, "unknown guard `etcd.safe-dwn`");
}

#[test]
fn unknown_condition() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    wait: { condition: talos.runing, with: { node: x } }\n",
    )));
    assert_eq!(code, Code::UnknownCondition);
    assert_eq!(at, "10:24");
    assert_eq!(msg, "unknown wait condition `talos.runing`");
}

#[test]
fn needs_pointing_nowhere() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n  - id: b\n    action: noop\n    needs: [c]\n",
    )));
    assert_eq!(code, Code::UnknownStep);
    assert_eq!(at, "13:13");
    assert_eq!(msg, "step `b` needs `c`, which is not a step");
}

#[test]
fn rollback_pointing_nowhere() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: kube.cordon\n    with: { node: x }\n    rollback: [undo]\nrollbacks:\n  - id: uncordon\n    action: kube.uncordon\n    with: { node: x }\n",
    ))
    .unwrap_err();
    assert_eq!(
        summary(&d),
        vec![(
            Code::UnknownStep,
            "12:16".into(),
            "rollback `undo` is not declared under `rollbacks:`".into()
        )]
    );
}

#[test]
fn cycle_names_its_steps() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    needs: [c]\n  - id: b\n    action: noop\n  - id: c\n    action: noop\n",
    )));
    assert_eq!(code, Code::Cycle);
    assert_eq!(at, "9:9");
    assert_eq!(msg, "steps depend on each other in a cycle: a → b → c → a");
}

#[test]
fn disruptive_action_without_guard() {
    let d = check_yaml(&y(
        "steps:\n  - id: r\n    action: talos.reboot\n    with: { node: x }\n",
    ))
    .unwrap_err();
    assert_eq!(
        summary(&d),
        vec![(
            Code::UnguardedDisruptive,
            "10:13".into(),
            "`talos.reboot` takes a node down and can lose etcd quorum, but step `r` has no guard against that".into()
        )]
    );
    assert!(
        d.0[0]
            .help
            .as_deref()
            .unwrap()
            .contains("guard: etcd.safe-down")
    );
}

#[test]
fn every_disruptive_action_needs_its_guard() {
    for (action, args) in [
        ("talos.reboot", "node: x"),
        ("talos.shutdown", "node: x"),
        ("talos.upgrade", "node: x, image: i"),
        ("talos.reset", "node: x"),
        ("talos.bootstrap", "node: x"),
        ("talos.apply-config", "node: x, config: c.yaml"),
        (
            "talos.apply-config",
            "node: x, config: c.yaml, mode: reboot",
        ),
        ("etcd.remove-member", "node: x, member: m"),
        ("etcd.leave", "node: x"),
        ("kube.drain", "node: x"),
    ] {
        let text = y(&format!(
            "steps:\n  - id: s\n    action: {action}\n    with: {{ {args} }}\n    verify: talos.running\n"
        ));
        let d = check_yaml(&text).expect_err(action);
        assert!(
            d.0.iter().any(|d| d.code == Code::UnguardedDisruptive),
            "{action} ({args}) compiled without a guard: {d}"
        );
    }
    // Not disruptive when the apply mode cannot reboot.
    assert!(check_yaml(&y("steps:\n  - id: s\n    action: talos.apply-config\n    with: { node: x, config: c.yaml, mode: no-reboot }\n")).is_ok());
}

#[test]
fn unguarded_with_a_reason_compiles() {
    let r = check_yaml(&y(
        "steps:\n  - id: r\n    action: talos.reboot\n    with: { node: x }\n    unguarded: single-node lab, outage accepted\n",
    ));
    let plan = r.unwrap();
    assert_eq!(
        plan.steps().next().unwrap().unguarded.as_deref(),
        Some("single-node lab, outage accepted")
    );
}

#[test]
fn a_guard_that_does_not_protect_is_not_enough() {
    let (code, _, _) = only(check_yaml(&y(
        "steps:\n  - id: r\n    action: talos.bootstrap\n    with: { node: x }\n    guard: [etcd.safe-down]\n",
    )));
    assert_eq!(code, Code::UnguardedDisruptive);
}

#[test]
fn expression_syntax() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    when: \"params.nodes ==\"\n",
    )));
    assert_eq!(code, Code::ExprSyntax);
    assert!(at.starts_with("11:"), "{at}");
    assert!(msg.starts_with("invalid expression:"), "{msg}");
}

#[test]
fn expression_unknown_param() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    when: params.node == \"x\"\n",
    ))
    .unwrap_err();
    assert_eq!(
        summary(&d),
        vec![(
            Code::ExprName,
            "11:18".into(),
            "unknown parameter `node`".into()
        )]
    );
    assert_eq!(d.0[0].help.as_deref(), Some("did you mean `nodes`?"));
}

#[test]
fn expression_unknown_variable() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: a\n    action: noop\n    when: nodes == 1\n",
    )));
    assert_eq!(code, Code::ExprName);
    assert_eq!(at, "11:11");
    assert_eq!(msg, "unknown name `nodes` in expression");
}

#[test]
fn expression_step_output_checks() {
    // Unknown output of a known, earlier step.
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: b\n    action: talos.read-boot-id\n    with: { node: x }\n  - id: c\n    action: log\n    with: { message: \"${{ steps.b.bootid }}\" }\n",
    )));
    assert_eq!(
        (code, at.as_str(), msg.as_str()),
        (Code::ExprName, "14:35", "step `b` has no output `bootid`")
    );
    // A step that does not run before this one.
    let (code, _, msg) = only(check_yaml(&y(
        "steps:\n  - id: c\n    action: log\n    with: { message: \"${{ steps.b.boot_id }}\" }\n  - id: b\n    action: talos.read-boot-id\n    with: { node: x }\n",
    )));
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::ExprName,
            "step `b` has not run when this expression is evaluated"
        )
    );
}

#[test]
fn foreach_must_be_known_at_plan_time() {
    let (code, _, msg) = only(check_yaml(&y(
        "steps:\n  - id: m\n    action: etcd.members\n    with: { node: x }\n  - id: f\n    foreach: steps.m.members\n    action: noop\n",
    )));
    assert_eq!(code, Code::ExprEval);
    assert!(
        msg.starts_with("`foreach` must be known at plan time"),
        "{msg}"
    );
}

#[test]
fn runaway_expression_is_stopped_by_the_operation_limit() {
    // Five nested maps over ten elements: 100,000 closure calls, far past the expression budget.
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: f\n    action: log\n    with: { message: \"${{ [0,1,2,3,4,5,6,7,8,9].map(|a| [0,1,2,3,4,5,6,7,8,9].map(|b| [0,1,2,3,4,5,6,7,8,9].map(|c| [0,1,2,3,4,5,6,7,8,9].map(|d| [0,1,2,3,4,5,6,7,8,9].map(|e| e).len()).len()).len()).len()).len() > 0 }}\" }\n",
    )));
    assert_eq!(code, Code::ExprEval);
    assert!(at.starts_with("11:"), "{at}");
    assert!(msg.contains("stopped by the sandbox limits"), "{msg}");
}

#[test]
fn oversized_expression_value_is_stopped_by_the_size_limit() {
    let (code, _, msg) = only(check_yaml(&y(
        "steps:\n  - id: f\n    action: log\n    with: { message: \"${{ \\\"x\\\".pad(100000000, \\\"x\\\") }}\" }\n",
    )));
    assert_eq!(code, Code::ExprEval);
    assert!(msg.contains("Length of string too large"), "{msg}");
}

#[test]
fn weaker_idempotency_is_refused() {
    let (code, at, msg) = only(check_yaml(&y(
        "steps:\n  - id: b\n    action: talos.bootstrap\n    with: { node: x }\n    guard: [etcd.bootstrap-safe]\n    idempotency: idempotent\n",
    )));
    assert_eq!(code, Code::Idempotency);
    assert_eq!(at, "13:18");
    assert_eq!(
        msg,
        "step `b` declares `idempotent`, but its action is `verify`: an interrupted attempt must be checked before it is repeated"
    );
}

#[test]
fn verify_step_needs_a_way_to_verify() {
    let (code, _, msg) = only(check_yaml(&y(
        // Every cluster action classed `verify` has a probe now: declare `verify` on one without.
        "steps:\n  - id: r\n    action: kube.cordon\n    with: { node: x }\n    idempotency: verify\n",
    )));
    assert_eq!(code, Code::Idempotency);
    assert_eq!(
        msg,
        "step `r` must be verified after an interruption, but has no condition to verify it with"
    );
}

#[test]
fn params_missing_unknown_and_invalid() {
    let text = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t }\nparams:\n  nodes: { type: nodes, required: true }\n  n: { type: int, default: 1 }\nsteps:\n  - id: a\n    action: noop\n";
    let (code, at, msg) = only(plan_yaml(text, &[]));
    assert_eq!(
        (code, at.as_str(), msg.as_str()),
        (
            Code::MissingParam,
            "5:3",
            "missing required parameter `nodes`"
        )
    );
    let d = plan_yaml(text, &[("nodes", "a"), ("nodez", "b")]).unwrap_err();
    assert_eq!(summary(&d)[0].2, "runbook `t` has no parameter `nodez`");
    assert_eq!(d.0[0].help.as_deref(), Some("did you mean `nodes`?"));
    let (code, _, msg) = only(plan_yaml(text, &[("nodes", "a"), ("n", "many")]));
    assert_eq!(
        (code, msg.as_str()),
        (
            Code::InvalidParam,
            "invalid value `many` for parameter `n`: expected an integer"
        )
    );
}

#[test]
fn all_errors_in_a_file_are_reported() {
    let d = check_yaml(&y(
        "steps:\n  - id: a\n    action: nope\n  - id: b\n    action: sleep\n    with: { duration: 1s, x: 1 }\n  - id: c\n    action: talos.reboot\n    with: { node: n }\n",
    ))
    .unwrap_err();
    let codes: Vec<Code> = d.0.iter().map(|d| d.code).collect();
    assert_eq!(
        codes,
        vec![
            Code::UnknownAction,
            Code::UnknownArgument,
            Code::UnguardedDisruptive
        ]
    );
}

#[test]
fn rhai_syntax_and_runtime_errors() {
    let (code, at, _) = only(check_rhai(
        "let rb = runbook(\"t\", \"d\");\nrb.step(#{ id: \"a\", action: \"noop\" };\nrb\n",
    ));
    assert_eq!(code, Code::ScriptSyntax);
    assert!(at.starts_with("2:"), "{at}");
    let (code, at, msg) = only(check_rhai(
        "let rb = runbook(\"t\", \"d\");\nlet x = 1 / 0;\nrb\n",
    ));
    assert_eq!(code, Code::ScriptError);
    assert_eq!(at, "2:11");
    assert_eq!(msg, "Division by zero: 1 / 0");
    let (code, _, msg) = only(check_rhai("42\n"));
    assert_eq!(code, Code::ScriptError);
    assert_eq!(
        msg,
        "the script must evaluate to the runbook made by `runbook(name, description)`"
    );
}

#[test]
fn rhai_field_errors_point_at_the_call() {
    let (code, at, msg) = only(check_rhai(
        "let rb = runbook(\"t\", \"d\");\n\nrb.step(#{ id: \"a\", action: \"talos.rebot\", \"with\": #{ node: \"x\" } });\nrb\n",
    ));
    assert_eq!(
        (code, at.as_str(), msg.as_str()),
        (Code::UnknownAction, "3:4", "unknown action `talos.rebot`")
    );
}

#[test]
fn foreach_over_a_secret_is_refused() {
    let text = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: t }\nparams:\n  s: { type: secret, default: \"abcd\" }\nsteps:\n  - id: f\n    foreach: \"[params.s]\"\n    action: noop\n";
    let (code, _, msg) = only(check_yaml(text));
    assert_eq!(code, Code::ExprEval);
    assert!(
        msg.starts_with("`foreach` may not use a secret parameter"),
        "{msg}"
    );
}
