//! The YAML front end: text → [`doc::Node`](crate::dsl::doc::Node) with a span on every node.
//!
//! We use `saphyr` (YAML 1.2, maintained) through its `MarkedYamlOwned` API, which keeps the
//! line and column of every node and every mapping key. `serde_yaml` is deprecated and, like most
//! serde-based loaders, loses positions below the top-level error. See
//! `docs/design/0001-yaml-library.md`.
//!
//! Runbooks are pasted from the internet, so the text is hostile until proven otherwise.
//! saphyr expands aliases while it builds the tree, which lets a few kilobytes of nested
//! aliases ("billion laughs") take gigabytes. Before any tree is built, [`prescan`] walks the
//! parser's event stream (`saphyr-parser`, constant memory per event) and refuses anchors,
//! aliases, nesting deeper than [`sandbox::MAX_NESTING`] and more than
//! [`sandbox::MAX_YAML_NODES`] nodes; the text itself is bounded by
//! [`sandbox::MAX_SOURCE_BYTES`]. Only a document that passed is loaded.

use saphyr::{LoadableYamlNode, MarkedYamlOwned, ScalarOwned, YamlDataOwned};
use saphyr_parser::{Event, Parser};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::doc::{Node, Value};
use crate::dsl::span::{Span, Spanned};
use crate::sandbox;
use crate::source::Source;

/// Parses one YAML document. A syntax error, an anchor, an alias, a second document or a
/// document over the size limits is a diagnostic.
pub fn parse(source: &Source) -> Result<Node, Diagnostics> {
    prescan(source)?;
    let docs = match MarkedYamlOwned::load_from_str(&source.text) {
        Ok(docs) => docs,
        Err(e) => return Err(syntax_error(source, &e)),
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

fn syntax_error(source: &Source, e: &saphyr_parser::ScanError) -> Diagnostics {
    let m = e.marker();
    let d = Diagnostic::new(
        Code::YamlSyntax,
        source,
        point(source, m.line(), m.col()),
        format!("invalid YAML: {}", e.info()),
        "here",
    );
    Diagnostics(vec![d])
}

/// A one-character span at a parser position (empty at the end of the text).
fn point(source: &Source, line: usize, col: usize) -> Span {
    let offset = source.offset_of(line, col);
    let rest = &source.text[offset.min(source.text.len())..];
    Span::new(offset, rest.chars().next().map_or(0, char::len_utf8))
}

/// Refuses, from the event stream and before any tree exists, everything that could make
/// loading the document expensive: oversized text, anchors and aliases, deep nesting and
/// too many nodes. Memory is the parser's own state, bounded by the nesting limit.
pub fn prescan(source: &Source) -> Result<(), Diagnostics> {
    let refuse = |span: Span, message: String, label: &str| {
        Err(Diagnostics(vec![Diagnostic::new(
            Code::YamlSyntax,
            source,
            span,
            message,
            label,
        )]))
    };
    if source.text.len() > sandbox::MAX_SOURCE_BYTES {
        return refuse(
            Span::new(0, 0),
            format!(
                "the runbook is {} bytes; runbooks are limited to {} bytes",
                source.text.len(),
                sandbox::MAX_SOURCE_BYTES
            ),
            "file too large",
        );
    }
    if !source.text.is_ascii()
        && let Some((line, _)) = source
            .text
            .lines()
            .enumerate()
            .find(|(_, l)| l.len() > sandbox::MAX_NON_ASCII_LINE_BYTES && !l.is_ascii())
    {
        return refuse(
            Span::new(source.offset_of(line + 1, 0), 0),
            format!(
                "a line with non-ASCII text is longer than {} bytes",
                sandbox::MAX_NON_ASCII_LINE_BYTES
            ),
            "line too long",
        );
    }
    let mut depth = 0usize;
    let mut nodes = 0usize;
    for event in Parser::new_from_str(&source.text) {
        let (event, span) = match event {
            Ok(e) => e,
            Err(e) => return Err(syntax_error(source, &e)),
        };
        // Computed only on refusal: a line-based offset per event would be quadratic on a
        // long single-line document.
        let at = || point(source, span.start.line(), span.start.col());
        let anchor = match &event {
            Event::Alias(_) => {
                return refuse(
                    at(),
                    "YAML aliases (`*name`) are not allowed in runbooks: write the value out"
                        .into(),
                    "alias",
                );
            }
            Event::Scalar(_, _, anchor, _) => {
                nodes += 1;
                *anchor
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                nodes += 1;
                depth += 1;
                if depth > sandbox::MAX_NESTING {
                    return refuse(
                        at(),
                        format!(
                            "the document nests deeper than {} levels",
                            sandbox::MAX_NESTING
                        ),
                        "too deep",
                    );
                }
                *anchor
            }
            Event::SequenceEnd | Event::MappingEnd => {
                depth = depth.saturating_sub(1);
                0
            }
            _ => 0,
        };
        if anchor != 0 {
            return refuse(
                at(),
                "YAML anchors (`&name`) are not allowed in runbooks: aliases could expand them without bound".into(),
                "anchor",
            );
        }
        if nodes > sandbox::MAX_YAML_NODES {
            return refuse(
                at(),
                format!(
                    "the document has more than {} values",
                    sandbox::MAX_YAML_NODES
                ),
                "too many values",
            );
        }
    }
    Ok(())
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
        // Unreachable after `prescan`, which refuses aliases before saphyr can expand them.
        YamlDataOwned::Alias(_) => {
            diags.push(Diagnostic::new(
                Code::YamlSyntax,
                source,
                span,
                "YAML aliases (`*name`) are not allowed in runbooks: write the value out",
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

    fn refusal(text: &str) -> (String, (usize, usize)) {
        let src = Source::new("t.yaml", Format::Yaml, text);
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err:?}");
        assert_eq!(err.0[0].code, Code::YamlSyntax);
        (err.0[0].message.clone(), err.0[0].line_col())
    }

    #[test]
    fn an_alias_is_refused_at_its_position_before_expansion() {
        // Anchors are refused first; an alias to an unknown anchor is a syntax error.
        let (msg, at) = refusal("a: 1\nb: &x [1, 2]\nc: *x\n");
        assert_eq!(
            msg,
            "YAML anchors (`&name`) are not allowed in runbooks: aliases could expand them without bound"
        );
        assert_eq!(at, (2, 4));
    }

    #[test]
    fn a_billion_laughs_document_is_refused_without_building_it() {
        let mut text = String::from(
            "a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n",
        );
        for i in 1..40 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let (msg, at) = refusal(&text);
        assert!(
            msg.starts_with("YAML anchors (`&name`) are not allowed"),
            "{msg}"
        );
        assert_eq!(at, (1, 5));
    }

    #[test]
    fn a_scalar_anchor_is_refused() {
        let (msg, at) = refusal("steps:\n  - id: &i x\n");
        assert!(msg.starts_with("YAML anchors"), "{msg}");
        assert_eq!(at.0, 2);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let depth = crate::sandbox::MAX_NESTING + 1;
        let text = format!("{}{}\n", "[".repeat(depth), "]".repeat(depth));
        let (msg, at) = refusal(&text);
        assert_eq!(msg, "the document nests deeper than 64 levels");
        assert_eq!(at, (1, 65));
        let ok = crate::sandbox::MAX_NESTING;
        let text = format!("{}{}\n", "[".repeat(ok), "]".repeat(ok));
        assert!(parse(&Source::new("t.yaml", Format::Yaml, text)).is_ok());
    }

    #[test]
    fn too_many_values_are_refused() {
        let text = format!("[{}]\n", "1,".repeat(crate::sandbox::MAX_YAML_NODES));
        let (msg, _) = refusal(&text);
        assert_eq!(msg, "the document has more than 100000 values");
    }

    #[test]
    fn an_oversized_file_is_refused() {
        let text = format!("# {}\na: 1\n", "x".repeat(crate::sandbox::MAX_SOURCE_BYTES));
        let (msg, at) = refusal(&text);
        assert_eq!(
            msg,
            format!(
                "the runbook is {} bytes; runbooks are limited to 1048576 bytes",
                text.len()
            )
        );
        assert_eq!(at, (1, 1));
    }
}
