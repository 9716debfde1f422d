//! The YAML front end: text → [`doc::Node`](crate::dsl::doc::Node) with a span on every node.
//!
//! We use `saphyr` (YAML 1.2, maintained) through its `MarkedYamlOwned` API, which keeps the
//! line and column of every node and every mapping key. `serde_yaml` is deprecated and, like most
//! serde-based loaders, loses positions below the top-level error. See
//! `docs/design/0001-yaml-library.md`.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::doc::{Node, Value};
use crate::dsl::span::{Span, Spanned};
use crate::source::Source;

/// Parses one YAML document. A syntax error, an alias or a second document is a diagnostic.
pub fn parse(source: &Source) -> Result<Node, Diagnostics> {
    let docs = match MarkedYamlOwned::load_from_str(&source.text) {
        Ok(docs) => docs,
        Err(e) => {
            let m = e.marker();
            let offset = source.offset_of(m.line(), m.col());
            let d = Diagnostic::new(
                Code::YamlSyntax,
                source,
                Span::new(
                    offset,
                    1.min(source.text.len() - offset.min(source.text.len())),
                ),
                format!("invalid YAML: {}", e.info()),
                "here",
            );
            return Err(Diagnostics(vec![d]));
        }
    };
    let mut diags = Diagnostics::default();
    let mut docs = docs.into_iter();
    let Some(first) = docs.next() else {
        let d = Diagnostic::new(
            Code::MissingField,
            source,
            Span::new(0, 0),
            "the file is empty: expected a runbook document",
            "empty",
        );
        return Err(Diagnostics(vec![d]));
    };
    if let Some(second) = docs.next() {
        diags.push(Diagnostic::new(
            Code::YamlSyntax,
            source,
            span_of(source, &second),
            "a runbook file holds exactly one YAML document",
            "second document starts here",
        ));
    }
    let node = convert(source, first, &mut diags);
    diags.into_result(node)
}

fn span_of(source: &Source, node: &MarkedYamlOwned) -> Span {
    let start = source.offset_of(node.span.start.line(), node.span.start.col());
    let end = source.offset_of(node.span.end.line(), node.span.end.col());
    let mut span = Span::new(start, end.saturating_sub(start));
    // Collections end after trailing newlines and indentation; keep labels on their first line.
    if let Some(nl) = source.text[span.offset..span.end()].find('\n')
        && (matches!(
            node.data,
            YamlDataOwned::Mapping(_) | YamlDataOwned::Sequence(_)
        ) || nl > 0)
    {
        span.len = nl;
    }
    span
}

fn convert(source: &Source, node: MarkedYamlOwned, diags: &mut Diagnostics) -> Node {
    let span = span_of(source, &node);
    let value = match node.data {
        YamlDataOwned::Value(scalar) => scalar_value(scalar),
        YamlDataOwned::Representation(text, _, _) => Value::Str(text),
        YamlDataOwned::Sequence(items) => Value::Seq(
            items
                .into_iter()
                .map(|n| convert(source, n, diags))
                .collect(),
        ),
        YamlDataOwned::Mapping(map) => {
            let mut entries: Vec<(Spanned<String>, Node)> = Vec::with_capacity(map.len());
            for (k, v) in map {
                let kspan = span_of(source, &k);
                let key = match k.data {
                    YamlDataOwned::Value(ScalarOwned::String(s)) => s,
                    YamlDataOwned::Value(other) => scalar_text(&other),
                    _ => {
                        diags.push(Diagnostic::new(
                            Code::WrongType,
                            source,
                            kspan,
                            "mapping keys must be plain strings",
                            "complex key",
                        ));
                        continue;
                    }
                };
                entries.push((Spanned::new(key, kspan), convert(source, v, diags)));
            }
            Value::Map(entries)
        }
        YamlDataOwned::Tagged(_, inner) => return convert(source, *inner, diags),
        YamlDataOwned::Alias(_) => {
            diags.push(Diagnostic::new(
                Code::YamlSyntax,
                source,
                span,
                "YAML aliases are not supported in runbooks",
                "alias",
            ));
            Value::Null
        }
        YamlDataOwned::BadValue => {
            diags.push(Diagnostic::new(
                Code::YamlSyntax,
                source,
                span,
                "this value cannot be read",
                "bad value",
            ));
            Value::Null
        }
    };
    Node::new(value, span)
}

fn scalar_value(s: ScalarOwned) -> Value {
    match s {
        ScalarOwned::Null => Value::Null,
        ScalarOwned::Boolean(b) => Value::Bool(b),
        ScalarOwned::Integer(i) => Value::Int(i),
        ScalarOwned::FloatingPoint(f) => Value::Float(f.into_inner()),
        ScalarOwned::String(s) => Value::Str(s),
    }
}

fn scalar_text(s: &ScalarOwned) -> String {
    match s {
        ScalarOwned::Null => "null".into(),
        ScalarOwned::Boolean(b) => b.to_string(),
        ScalarOwned::Integer(i) => i.to_string(),
        ScalarOwned::FloatingPoint(f) => f.to_string(),
        ScalarOwned::String(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Format;

    #[test]
    fn keeps_key_and_value_positions() {
        let src = Source::new("t.yaml", Format::Yaml, "a: 1\nsteps:\n  - id: x\n");
        let node = parse(&src).unwrap();
        let Value::Map(entries) = &node.value else {
            panic!("not a map")
        };
        assert_eq!(src.line_col(entries[1].0.span.offset), (2, 1));
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a seq")
        };
        let Value::Map(step) = &items[0].value else {
            panic!("not a map")
        };
        assert_eq!(src.line_col(step[0].1.span.offset), (3, 9));
        assert_eq!(step[0].1.span.len, 1);
    }

    #[test]
    fn syntax_error_names_the_position() {
        let src = Source::new("t.yaml", Format::Yaml, "a: [1, 2\nb: 3\n");
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0[0].code, Code::YamlSyntax);
        assert!(err.0[0].message.starts_with("invalid YAML"));
    }
}
