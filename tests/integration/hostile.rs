//! Hostile input (issue 9): runbooks pasted from the internet, secrets on an operator's laptop.
//! Each test plays the attacker: an alias bomb, a giant file, a secret read by every path.

use std::path::Path;
use std::process::Command;

use crate::harness::{check_rhai, only, stderr, stdout};
use runbook::diagnostic::Code;

const LIMIT_KB: u64 = 64 * 1024;

/// Runs `runbook check FILE` with the peak-memory hook and returns (output, VmHWM in kB).
fn check_with_peak(dir: &Path, file: &str) -> (std::process::Output, u64) {
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["check", file])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env(runbook::sandbox::REPORT_PEAK_MEMORY, "1")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let err = stderr(&out);
    let kb = err
        .lines()
        .find_map(|l| l.strip_prefix("runbook-test: VmHWM "))
        .and_then(|v| v.trim_end_matches(" kB").trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no VmHWM line in stderr: {err}"));
    (out, kb)
}

fn bomb(levels: usize) -> String {
    let mut text = String::from(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: lol }\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..levels {
        let p = i - 1;
        text.push_str(&format!(
            "x{i}: &x{i} [*x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}, *x{p}]\n"
        ));
    }
    text.push_str("steps: [*x");
    text.push_str(&(levels - 1).to_string());
    text.push_str("]\n");
    text
}

#[test]
fn alias_bomb_is_refused_at_its_anchor_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let text = bomb(60);
    std::fs::write(dir.path().join("bomb.yaml"), &text).unwrap();
    let (out, kb) = check_with_peak(dir.path(), "bomb.yaml");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("[bomb.yaml:4:5]"), "{err}");
    assert!(
        err.contains("YAML anchors (`&name`) are not allowed in runbooks: aliases could expand them without bound"),
        "{err}"
    );
    assert!(stdout(&out).contains("FAIL  bomb.yaml"));
    assert!(kb < LIMIT_KB, "peak {kb} kB");
}

#[test]
fn a_megabyte_runbook_at_every_limit_stays_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // Just under the value limit and the size limit: the largest tree we agree to build.
    let mut text = String::from(
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: big }\nsteps:\n  - { id: a, action: log, with: { message: hi } }\nx:\n",
    );
    let per = (runbook::sandbox::MAX_SOURCE_BYTES - text.len() - 64)
        / (runbook::sandbox::MAX_YAML_NODES / 2 - 40);
    let mut i = 0;
    while text.len() + per + 8 < runbook::sandbox::MAX_SOURCE_BYTES
        && i < runbook::sandbox::MAX_YAML_NODES / 2 - 40
    {
        let key = format!("  k{i}: ");
        let pad = per.saturating_sub(key.len() + 1).max(1);
        text.push_str(&key);
        text.push_str(&"v".repeat(pad));
        text.push('\n');
        i += 1;
    }
    assert!(text.len() <= runbook::sandbox::MAX_SOURCE_BYTES);
    std::fs::write(dir.path().join("big.yaml"), &text).unwrap();
    let (out, kb) = check_with_peak(dir.path(), "big.yaml");
    // The unknown top-level key `x` is refused, after the whole tree was built.
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stderr(&out).contains("[big.yaml:6:1]"), "{}", stderr(&out));
    assert!(kb < LIMIT_KB, "peak {kb} kB");
}

#[test]
fn an_endless_file_is_read_only_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("apiVersion: runbook/v1\n");
    while text.len() <= runbook::sandbox::MAX_SOURCE_BYTES * 3 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(dir.path().join("huge.yaml"), &text).unwrap();
    let (out, kb) = check_with_peak(dir.path(), "huge.yaml");
    assert_eq!(out.status.code(), Some(3));
    let err = stderr(&out);
    assert!(
        err.contains("the runbook is 1048577 bytes; runbooks are limited to 1048576 bytes"),
        "{err}"
    );
    assert!(kb < LIMIT_KB, "peak {kb} kB");
}

#[test]
fn a_script_building_deeply_nested_values_is_refused() {
    let (code, _, msg) = only(check_rhai(
        "let rb = runbook(\"deep\", \"d\");\nlet v = \"x\";\nfor i in 0..200 { v = [v]; }\nrb.step(#{ id: \"a\", action: \"log\", \"with\": #{ message: v } });\nrb\n",
    ));
    assert_eq!(code, Code::WrongType, "{msg}");
    assert_eq!(msg, "the value built here nests deeper than 64 levels");
}

#[test]
fn an_oversized_script_is_refused() {
    let text = format!(
        "// {}\nlet rb = runbook(\"x\", \"y\");\nrb\n",
        "x".repeat(runbook::sandbox::MAX_SOURCE_BYTES)
    );
    let (code, at, msg) = only(check_rhai(&text));
    assert_eq!(code, Code::ScriptSyntax);
    assert_eq!(at, "1:1");
    assert_eq!(
        msg,
        format!(
            "the runbook is {} bytes; runbooks are limited to 1048576 bytes",
            text.len()
        )
    );
}

mod secrets {
    use proptest::prelude::*;
    use runbook::plan::render;

    use crate::harness::plan_yaml;

    fn runbook_with(expr: &str, wrap: &str) -> String {
        let inner = wrap.replace("E", expr);
        format!(
            "apiVersion: runbook/v1\nkind: Runbook\nmetadata: {{ name: s }}\nparams:\n  token: {{ type: secret }}\n  name: {{ type: string, default: plain }}\nsteps:\n  - id: a\n    action: log\n    with: {{ message: '${{{{ {inner} }}}}' }}\n"
        )
    }

    const SHAPES: &[&str] = &[
        "params.token",
        "params[\"token\"]",
        "params[\"tok\" + \"en\"]",
        "params",
        "params.values()",
        "params.values()[0]",
        "params.keys()",
        "params.values().map(|v| v + \"!\")",
        "params.token.len()",
        "params.token.sub_string(0, 1)",
        "params.token.to_upper()",
        "`x${params}`",
        "if params.token == \"a\" { 1 } else { 2 }",
        "params.keys().map(|k| params[k])",
        "params.values().filter(|v| v.len() > 3)",
        "params.to_json()",
    ];
    const WRAPS: &[&str] = &[
        "E",
        "\"\" + E",
        "`${E}`",
        "[E][0]",
        "#{ a: E }.a",
        "(E).to_string()",
        "[1].map(|x| E)",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

        /// Whatever path an expression takes to a secret, the plan neither shows it nor
        /// hashes it: two secret values give the same plan hash and the same rendering.
        #[test]
        fn secret_values_never_reach_the_plan_or_its_hash(
            shape in 0..SHAPES.len(),
            wrap in 0..WRAPS.len(),
            a in "[a-z]{8,12}",
            b in "[A-Z]{8,12}",
        ) {
            let text = runbook_with(SHAPES[shape], WRAPS[wrap]);
            let pa = plan_yaml(&text, &[("token", &a)]);
            let pb = plan_yaml(&text, &[("token", &b)]);
            match (pa, pb) {
                (Ok(pa), Ok(pb)) => {
                    prop_assert_eq!(&pa.hash, &pb.hash);
                    for (plan, secret) in [(&pa, &a), (&pb, &b)] {
                        let shown = format!("{}\n{}\n{:?}", render::text(plan), render::json(plan), plan);
                        prop_assert!(!shown.contains(secret.as_str()), "{}", shown);
                        prop_assert!(!shown.contains("secret placeholder"), "{}", shown);
                    }
                }
                (Err(da), Err(db)) => {
                    let (ta, tb) = (format!("{da:?}"), format!("{db:?}"));
                    prop_assert!(!ta.contains(a.as_str()) && !tb.contains(b.as_str()));
                }
                (x, y) => prop_assert!(false, "one secret compiled, the other did not: {:?} / {:?}", x.is_ok(), y.is_ok()),
            }
        }
    }

    #[test]
    fn the_whole_params_map_is_not_folded_while_a_plain_param_is() {
        let text = runbook_with("params", "E");
        let plan = plan_yaml(&text, &[("token", "hunter22")]).unwrap();
        let shown = render::json(&plan);
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(shown.contains("\"expr\": \"params\""), "{shown}");
        let text = runbook_with("params.name", "E");
        let plan = plan_yaml(&text, &[("token", "hunter22")]).unwrap();
        assert!(render::json(&plan).contains("\"plain\""));
    }
}

mod files {
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    const RUNBOOK: &str = "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: keys }\nparams:\n  token: { type: secret }\n  apikey: { type: secret }\n  out: { type: path }\nsteps:\n  - id: say\n    action: log\n    with: { message: \"token ${{ params.token }} key ${{ params.apikey }}\" }\n  - id: shout\n    action: log\n    with: { message: \"${{ params.apikey.to_upper() }}\" }\n  - id: snap\n    action: etcd.snapshot\n    with: { node: 192.168.2.223, dir: \"${{ params.out }}/snaps/deep\" }\n    guard: [etcd.quorum]\n  - id: kube\n    action: talos.kubeconfig\n    with: { node: 192.168.2.223, path: \"${{ params.out }}/kubeconfig\" }\n";

    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.clone());
            if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                walk(&p, out);
            }
        }
    }

    /// Key material and run directories are owner-only; secrets given as `@FILE` and
    /// `env:VAR` reach neither the run directory nor the output.
    #[test]
    fn key_material_is_owner_only_and_file_and_env_secrets_leave_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("keys.yaml"), RUNBOOK).unwrap();
        std::fs::write(root.join("token.txt"), "tok-9f8e7d6c5b\n").unwrap();
        let out_dir = root.join("out");
        let state = root.join("state");
        let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
            .current_dir(root)
            .args(["run", "keys.yaml", "--sim", "--speed", "100", "--yes"])
            .args([
                "--param",
                "token=@token.txt",
                "--param",
                "apikey=env:HOSTILE_TEST_KEY",
            ])
            .arg("--param")
            .arg(format!("out={}", out_dir.display()))
            .arg("--state-dir")
            .arg(&state)
            .args(["--output", "json"])
            .env("HOSTILE_TEST_KEY", "key-1a2b3c4d5e")
            .env("NO_COLOR", "1")
            .env_remove("TALOSCONFIG")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0), "{shown}");
        for secret in ["tok-9f8e7d6c5b", "key-1a2b3c4d5e", "KEY-1A2B3C4D5E"] {
            assert!(!shown.contains(secret), "{secret} in output: {shown}");
        }
        let mut files = Vec::new();
        walk(&state, &mut files);
        walk(&out_dir, &mut files);
        assert!(files.iter().any(|p| p.ends_with("kubeconfig")), "{files:?}");
        assert!(
            files
                .iter()
                .any(|p| p.extension().is_some_and(|e| e == "db")),
            "{files:?}"
        );
        assert!(
            files
                .iter()
                .any(|p| p.ends_with("journal.jsonl") || p.to_string_lossy().contains("journal")),
            "{files:?}"
        );
        for p in &files {
            let meta = std::fs::symlink_metadata(p).unwrap();
            let mode = meta.permissions().mode() & 0o777;
            assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", p.display());
            if meta.is_file() {
                let bytes = std::fs::read(p).unwrap();
                for secret in ["tok-9f8e7d6c5b", "key-1a2b3c4d5e", "KEY-1A2B3C4D5E"] {
                    assert!(
                        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                        "{secret} in {}",
                        p.display()
                    );
                }
            }
        }
        // The state directory and the snapshot directories the run created are owner-only too.
        for d in [
            state.clone(),
            out_dir.join("snaps"),
            out_dir.join("snaps/deep"),
        ] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
    }
}

/// A secret given as `env:VAR` to `run` and as `@FILE` to `resume` (which asks for it again)
/// is used live and reaches neither the run directory nor the output.
#[test]
fn secret_params_from_env_and_file_work_for_run_and_resume() {
    use crate::run_harness::{Env, fixture, text};
    const SECRET: &str = "s3cr3t-from-a-file-91c2";
    let env = Env::new();
    let secret_file = env.path().join("token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let dir = format!("dir={}", env.path().display());
    let runbook = fixture("runbooks/secret.yaml");
    let mut output = String::new();
    let out = env
        .cmd(&[
            "run",
            runbook.to_str().unwrap(),
            "-p",
            "token=env:HOSTILE_SECRET",
            "-p",
            &dir,
        ])
        .args(["--output", "json"])
        .env("HOSTILE_SECRET", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    output.push_str(&text(&out));
    let run = env.the_run();
    output.push_str(&text(&env.run(&["approve", run.id(), "gate"])));
    let from_file = format!("token=@{}", secret_file.display());
    let out = env.run(&[
        "resume",
        run.id(),
        "-p",
        &from_file,
        "--output",
        "plain",
        "-vv",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    output.push_str(&text(&out));
    assert_eq!(env.markers(), [format!("len {}", SECRET.len())]);
    assert!(!output.contains(SECRET), "secret in the output: {output}");
    for entry in std::fs::read_dir(run.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(SECRET),
                "secret in {}",
                path.display()
            );
        }
    }
}

/// `runbook plan` and `runbook run --dry-run` with a secret read by indexing and derived:
/// the secret appears nowhere and two secret values give the same plan hash.
#[test]
fn plan_and_dry_run_never_show_a_secret_and_hash_the_same_for_any_value() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("s.yaml"),
        "apiVersion: runbook/v1\nkind: Runbook\nmetadata: { name: s }\nparams:\n  token: { type: secret }\nsteps:\n  - id: a\n    action: log\n    with: { message: '${{ params[\"token\"] }} ${{ params }} ${{ params.token.to_upper() }}' }\n",
    )
    .unwrap();
    let mut hashes = Vec::new();
    for secret in ["first-secret-aaaa", "second-secret-bbbb"] {
        let arg = format!("token={secret}");
        let out = crate::harness::runbook(
            dir.path(),
            &["plan", "s.yaml", "-p", &arg, "--format", "json"],
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        hashes.push(json["hash"].as_str().unwrap().to_string());
        let text = crate::harness::runbook(dir.path(), &["plan", "s.yaml", "-p", &arg]);
        let dry = crate::harness::runbook(
            dir.path(),
            &[
                "run",
                "s.yaml",
                "-p",
                &arg,
                "--dry-run",
                "--state-dir",
                "state",
            ],
        );
        for o in [&out, &text, &dry] {
            let all = format!("{}{}", stdout(o), stderr(o));
            assert!(!all.contains(secret), "{all}");
            assert!(!all.contains(&secret.to_uppercase()), "{all}");
        }
    }
    assert_eq!(hashes[0], hashes[1]);
}

/// rhai bounds each value, not what native calls keep or how many frames hold values: a loop
/// pushing a large map as a step, and deep recursion holding arrays, are both refused in
/// bounded memory.
#[test]
fn rhai_memory_bombs_are_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("steps.rhai"),
        "let rb = runbook(\"bomb\", \"m\");\nlet big = [];\nbig.pad(9000, 0);\nfor i in 0..2000 {\n    rb.step(#{ id: \"s\" + i, action: \"log\", \"with\": #{ message: \"m\", extra: big } });\n}\nrb\n",
    )
    .unwrap();
    let body: String = (0..100)
        .map(|i| format!("let a{i} = []; a{i}.pad(10000, 0); "))
        .collect();
    std::fs::write(
        dir.path().join("frames.rhai"),
        format!("let rb = runbook(\"bomb\", \"m\");\nfn f(n) {{ {body}if n > 0 {{ f(n - 1) }} else {{ 0 }} }}\nf(30);\nrb\n"),
    )
    .unwrap();
    let vars: String = (0..990)
        .map(|i| format!("let a{i} = []; a{i}.pad(10000, 0);\n"))
        .collect();
    std::fs::write(
        dir.path().join("vars.rhai"),
        format!("let rb = runbook(\"bomb\", \"m\");\n{vars}rb\n"),
    )
    .unwrap();
    for (file, message) in [
        (
            "steps.rhai",
            "the runbook built by this script holds more than 100000 values",
        ),
        (
            "frames.rhai",
            "the script was stopped by the sandbox limits: it grew the process by more than 24 MiB",
        ),
        ("vars.rhai", "Too many variables defined"),
    ] {
        let (out, kb) = check_with_peak(dir.path(), file);
        assert_eq!(out.status.code(), Some(3), "{file}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{file}: {}", stderr(&out));
        assert!(kb < LIMIT_KB, "{file}: peak {kb} kB");
    }
}
