//! Property tests: no input, however broken, panics either front end or the compiler.

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
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn yaml_front_end_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        compile_any(Format::Yaml, &text);
    }

    #[test]
    fn yaml_front_end_never_panics_on_a_mangled_runbook(
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
    fn rhai_front_end_never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
        compile_any(Format::Rhai, &text);
    }

    #[test]
    fn rhai_front_end_never_panics_on_builder_calls(
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
