//! Property and fuzz tests: no input, however broken or hostile, panics either front end, the
//! compiler or the journal reader, and no YAML alias bomb is ever expanded.
//!
//! Every `fuzz_*` test uses proptest's default configuration, so the normal test run tries
//! 256 cases each (bounded, part of CI) and a longer run is one environment variable away:
//!
//! ```text
//! PROPTEST_CASES=100000 cargo nextest run -E 'test(fuzz)'
//! ```

use proptest::prelude::*;

use runbook::compile::{self, Mode};
use runbook::source::{Format, Source};

const VALID: &str = include_str!("../../runbooks/reboot-verify.yaml");

fn compile_any(format: Format, text: &str) {
    let src = Source::new("p", format, text);
    let _ = compile::compile_source(&src, &Mode::Check);
    let _ = compile::compile_source(&src, &Mode::Plan(vec![("nodes".into(), "a,b".into())]));
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn fuzz_yaml_front_end_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        compile_any(Format::Yaml, &text);
    }

    #[test]
    fn fuzz_yaml_front_end_never_panics_on_a_mangled_runbook(
        cut in 0..VALID.len(),
        len in 0usize..40,
        insert in "[ -~\\n\\t]{0,12}",
    ) {
        let mut text: Vec<char> = VALID.chars().collect();
        let start = cut.min(text.len());
        let end = (start + len).min(text.len());
        text.splice(start..end, insert.chars());
        compile_any(Format::Yaml, &text.into_iter().collect::<String>());
    }

    #[test]
    fn fuzz_rhai_front_end_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        compile_any(Format::Rhai, &text);
    }

    #[test]
    fn fuzz_rhai_front_end_never_panics_on_builder_calls(
        id in "[a-z_]{0,6}",
        action in "[a-z.\\-]{0,14}",
        key in "[a-z]{1,8}",
        value in prop_oneof!["[ -~]{0,10}".prop_map(|s| format!("{s:?}")), any::<i64>().prop_map(|i| i.to_string()), Just("()".to_string()), Just("[1, #{a: 2}]".to_string())],
    ) {
        let script = format!(
            "let rb = runbook(\"p\", \"d\");\nrb.param(\"nodes\", #{{ type: \"nodes\", required: true }});\nrb.step(#{{ id: {id:?}, action: {action:?}, {key}: {value} }});\nrb\n"
        );
        compile_any(Format::Rhai, &script);
    }
}

const JOURNAL: &[u8] = include_bytes!("../fixtures/journals/v1/complete/journal.jsonl");

/// Reads journal bytes the way `resume` does (parse, then replay every committed record).
fn read_journal(bytes: &[u8]) {
    let path = std::path::Path::new("fuzz/journal.jsonl");
    if let Ok(contents) = runbook::journal::file::parse(path, bytes) {
        assert!(contents.valid_len <= bytes.len() as u64);
        let mut last = 0;
        for entry in &contents.entries {
            assert!(entry.seq > last, "sequence numbers must increase");
            last = entry.seq;
        }
        let mut state = runbook::journal::RunState::default();
        for entry in &contents.entries {
            if runbook::journal::replay::apply(&mut state, entry).is_err() {
                break;
            }
        }
    }
}

/// A nested-alias document of the given shape: `levels` anchors, each aliasing the previous
/// one `fan` times, spelled in block or flow style.
fn alias_bomb(levels: usize, fan: usize, flow: bool, scalar_anchor: bool) -> String {
    let mut text = String::from("apiVersion: runbook/v1\nkind: Runbook\n");
    if scalar_anchor {
        text.push_str("a0: &a0 lol\n");
    } else {
        text.push_str("a0: &a0 [lol, lol]\n");
    }
    for i in 1..levels {
        let p = i - 1;
        if flow {
            let items = vec![format!("*a{p}"); fan].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        } else {
            text.push_str(&format!("a{i}: &a{i}\n"));
            for _ in 0..fan {
                text.push_str(&format!("  - *a{p}\n"));
            }
        }
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn fuzz_journal_reader_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        read_journal(&bytes);
    }

    #[test]
    fn fuzz_journal_reader_never_panics_on_a_mangled_journal(
        edits in proptest::collection::vec((0..JOURNAL.len(), 0usize..16, proptest::collection::vec(any::<u8>(), 0..8)), 1..4),
        cut in 0..=JOURNAL.len(),
    ) {
        let mut bytes = JOURNAL[..cut].to_vec();
        for (at, len, insert) in edits {
            let start = at.min(bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.splice(start..end, insert);
        }
        read_journal(&bytes);
    }

    #[test]
    fn fuzz_journal_reader_never_panics_on_reordered_lines(
        order in proptest::collection::vec(0usize..32, 0..12),
    ) {
        let lines: Vec<&[u8]> = JOURNAL.split_inclusive(|b| *b == b'\n').collect();
        let mut bytes = Vec::new();
        for i in order {
            bytes.extend_from_slice(lines[i % lines.len()]);
        }
        read_journal(&bytes);
    }

    /// However an alias bomb is shaped, the YAML front end refuses it at its first anchor,
    /// before anything is expanded.
    #[test]
    fn fuzz_yaml_alias_bombs_are_refused_at_the_first_anchor(
        levels in 2usize..40,
        fan in 2usize..12,
        flow in any::<bool>(),
        scalar_anchor in any::<bool>(),
    ) {
        let src = Source::new("bomb.yaml", Format::Yaml, alias_bomb(levels, fan, flow, scalar_anchor));
        let err = runbook::dsl::yaml::parse(&src).unwrap_err();
        prop_assert_eq!(err.0.len(), 1);
        prop_assert!(err.0[0].message.starts_with("YAML anchors (`&name`) are not allowed"), "{}", err.0[0].message);
        prop_assert_eq!(err.0[0].line_col(), (3, 5));
    }
}
