//! `runbook lint --live --sim` honours `--preset`/`--workers` as `run --sim` and `sim up` do:
//! the embedded simulator has the asked-for topology (its `cluster.yaml` names every node's
//! config, so the config count says how many nodes were linted), and a preset that cannot be
//! is a usage error, never a silent lint of the seed cluster.

use crate::run_harness::{Env, text};

#[test]
fn lint_live_sim_lints_the_fleet_it_was_asked_for_and_refuses_a_bad_preset() {
    let env = Env::new();
    let lint = |extra: &[&str]| {
        let mut args = vec![
            "lint", "--live", "--sim", "--speed", "200", "--output", "text",
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let seed = lint(&[]);
    assert!(text(&seed).contains("3 config(s)"), "{}", text(&seed));
    let fleet = lint(&["--preset", "fleet", "--workers", "2"]);
    assert!(
        text(&fleet).contains("5 config(s)"),
        "three control planes and two workers: {}",
        text(&fleet)
    );
    for bad in [
        &["--preset", "armada"][..],
        &["--preset", "fleet", "--workers", "0"],
        &["--workers", "2"],
    ] {
        let out = lint(bad);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
    }
}
