//! The document tree both front ends produce before the AST is built.
//!
//! YAML and rhai runbooks describe the same structure (maps, lists and scalars). Each front end
//! turns its input into this small tree, with a span on every node; one builder
//! ([`crate::dsl::ast_build`]) then reads the tree into the AST. That is what guarantees the two
//! front ends produce the same plan model and the same field errors.

use crate::dsl::span::{Span, Spanned};

/// One node of a document, with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// Its span in the source.
    pub span: Span,
}

/// The value of a document node.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `~`, `null`, an empty value, or rhai's `()`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (quoted or plain).
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A map, in the order written; keys keep their own spans.
    Map(Vec<(Spanned<String>, Node)>),
}

impl Node {
    /// A node from a value and span.
    pub fn new(value: Value, span: Span) -> Node {
        Node { value, span }
    }

    /// The name of this node's type, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Converts to JSON (for literal argument values and params).
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.value.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}
