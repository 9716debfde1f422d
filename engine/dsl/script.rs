//! The rhai front end: a runbook written as a script through a small builder API.
//!
//! A script calls `runbook(name, description)`, then `.param(name, #{…})`, `.step(#{…})` and
//! `.rollback(#{…})` on it, and evaluates to it. Step maps have exactly the fields of a YAML
//! step, so the result is converted to the same [`doc::Node`](crate::dsl::doc::Node) tree and read by the same AST
//! builder: YAML and rhai runbooks compile to the same plan model. Every node built by a call
//! carries the span of that call, so errors point at the `step(...)` line. Scripts run in the
//! sandbox of [`crate::sandbox`], with a larger operation budget than expressions.
//!
//! ```rhai
//! let rb = runbook("hello", "says hello");
//! rb.step(#{ id: "greet", action: "log", with: #{ message: "hello" } });
//! rb
//! ```

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};

use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::dsl::doc::{Node, Value};
use crate::dsl::span::{Span, Spanned};
use crate::sandbox;
use crate::source::Source;

/// What a script builds: the pieces of a runbook, each with the position of its call.
#[derive(Debug, Clone)]
struct ScriptRunbook {
    name: String,
    description: String,
    at: Position,
    params: Vec<(String, Dynamic, Position)>,
    steps: Vec<(Dynamic, Position)>,
    rollbacks: Vec<(Dynamic, Position)>,
    /// Values held so far (see [`count_values`]). rhai bounds each value it holds, but not
    /// what a native call keeps: without this budget a loop pushing a large map as a step
    /// 2,000 times took 1.7 GB.
    values: usize,
}

/// Counts the values in `d` (itself, array elements, map entries, recursively), stopping once
/// the count passes `limit`.
fn count_values(d: &Dynamic, limit: usize) -> usize {
    let mut n = 1;
    if let Some(items) = d.read_lock::<rhai::Array>() {
        for i in items.iter() {
            if n > limit {
                break;
            }
            n += count_values(i, limit - n);
        }
    } else if let Some(map) = d.read_lock::<Map>() {
        for v in map.values() {
            if n > limit {
                break;
            }
            n += count_values(v, limit - n);
        }
    }
    n
}

impl ScriptRunbook {
    /// Adds the values of `d` to the budget, refusing past [`sandbox::MAX_YAML_NODES`].
    fn spend(&mut self, d: &Dynamic, at: Position) -> Result<(), Box<EvalAltResult>> {
        let left = sandbox::MAX_YAML_NODES.saturating_sub(self.values);
        self.values += count_values(d, left);
        if self.values > sandbox::MAX_YAML_NODES {
            return Err(Box::new(EvalAltResult::ErrorRuntime(
                format!(
                    "the runbook built by this script holds more than {} values",
                    sandbox::MAX_YAML_NODES
                )
                .into(),
                at,
            )));
        }
        Ok(())
    }
}

/// Evaluates a rhai runbook script into a document tree.
pub fn parse(source: &Source) -> Result<Node, Diagnostics> {
    if source.text.len() > sandbox::MAX_SOURCE_BYTES {
        return Err(one(
            source,
            Code::ScriptSyntax,
            Position::new(1, 1),
            format!(
                "the runbook is {} bytes; runbooks are limited to {} bytes",
                source.text.len(),
                sandbox::MAX_SOURCE_BYTES
            ),
        ));
    }
    let mut engine = sandbox::engine(sandbox::SCRIPT_MAX_OPERATIONS);
    // Each variable may hold a value at the size limits; fewer of them bound the total.
    engine.set_max_variables(sandbox::SCRIPT_MAX_VARIABLES);
    engine
        .register_type_with_name::<ScriptRunbook>("Runbook")
        .register_fn(
            "runbook",
            |ctx: NativeCallContext, name: &str, description: &str| ScriptRunbook {
                name: name.to_string(),
                description: description.to_string(),
                at: ctx.call_position(),
                params: Vec::new(),
                steps: Vec::new(),
                rollbacks: Vec::new(),
                values: 0,
            },
        )
        .register_fn(
            "param",
            |ctx: NativeCallContext,
             rb: &mut ScriptRunbook,
             name: &str,
             decl: Map|
             -> Result<(), Box<EvalAltResult>> {
                let decl = Dynamic::from_map(decl);
                rb.spend(&decl, ctx.call_position())?;
                rb.params
                    .push((name.to_string(), decl, ctx.call_position()));
                Ok(())
            },
        )
        .register_fn(
            "step",
            |ctx: NativeCallContext,
             rb: &mut ScriptRunbook,
             step: Map|
             -> Result<(), Box<EvalAltResult>> {
                let step = Dynamic::from_map(step);
                rb.spend(&step, ctx.call_position())?;
                rb.steps.push((step, ctx.call_position()));
                Ok(())
            },
        )
        .register_fn(
            "rollback",
            |ctx: NativeCallContext,
             rb: &mut ScriptRunbook,
             step: Map|
             -> Result<(), Box<EvalAltResult>> {
                let step = Dynamic::from_map(step);
                rb.spend(&step, ctx.call_position())?;
                rb.rollbacks.push((step, ctx.call_position()));
                Ok(())
            },
        );

    let ast = engine.compile(&*source.text).map_err(|e| {
        one(
            source,
            Code::ScriptSyntax,
            e.position(),
            e.err_type().to_string(),
        )
    })?;
    let result: Dynamic = sandbox::with_deadline(sandbox::SCRIPT_TIME_LIMIT, || {
        sandbox::with_memory_limit(sandbox::SCRIPT_MAX_MEMORY, || engine.eval_ast(&ast))
    })
    .map_err(|e| script_error(source, &e))?;
    let Some(rb) = result.try_cast::<ScriptRunbook>() else {
        return Err(one(
            source,
            Code::ScriptError,
            Position::new(1, 1),
            "the script must evaluate to the runbook made by `runbook(name, description)`".into(),
        ));
    };
    to_doc(source, &rb)
}

fn span_at(source: &Source, pos: Position) -> Span {
    let line = pos.line().unwrap_or(1);
    let col = pos.position().unwrap_or(1).saturating_sub(1);
    let offset = source.offset_of(line, col);
    let rest = &source.text[offset..];
    let len = rest.find('\n').unwrap_or(rest.len());
    Span::new(offset, len)
}

fn one(source: &Source, code: Code, pos: Position, message: String) -> Diagnostics {
    let label = match code {
        Code::ScriptSyntax => "syntax error",
        _ => "here",
    };
    Diagnostics(vec![Diagnostic::new(
        code,
        source,
        span_at(source, pos),
        message,
        label,
    )])
}

fn script_error(source: &Source, err: &EvalAltResult) -> Diagnostics {
    let message = match err {
        e if sandbox::is_memory_limit(e) => format!(
            "the script was stopped by the sandbox limits: it grew the process by more than {} MiB",
            sandbox::SCRIPT_MAX_MEMORY / (1024 * 1024)
        ),
        e if sandbox::is_limit(e) => format!(
            "the script was stopped by the sandbox limits ({} operations, {}s): is there an endless loop?",
            sandbox::SCRIPT_MAX_OPERATIONS,
            sandbox::SCRIPT_TIME_LIMIT.as_secs()
        ),
        other => {
            let text = other.to_string();
            // rhai appends " (line N, position M)"; the label already says where.
            match text.rfind(" (line ") {
                Some(i) => text[..i].to_string(),
                None => text,
            }
        }
    };
    one(source, Code::ScriptError, err.position(), message)
}

fn to_doc(source: &Source, rb: &ScriptRunbook) -> Result<Node, Diagnostics> {
    let mut diags = Diagnostics::default();
    let at = span_at(source, rb.at);
    let s = |v: &str| Node::new(Value::Str(v.into()), at);
    let key = |k: &str, span: Span| Spanned::new(k.to_string(), span);
    let metadata = Node::new(
        Value::Map(vec![
            (key("name", at), s(&rb.name)),
            (key("description", at), s(&rb.description)),
        ]),
        at,
    );
    let params = rb
        .params
        .iter()
        .map(|(name, decl, pos)| {
            let span = span_at(source, *pos);
            (key(name, span), convert(source, decl, span, 0, &mut diags))
        })
        .collect();
    let list = |items: &[(Dynamic, Position)], diags: &mut Diagnostics| {
        Node::new(
            Value::Seq(
                items
                    .iter()
                    .map(|(d, pos)| convert(source, d, span_at(source, *pos), 0, diags))
                    .collect(),
            ),
            at,
        )
    };
    let mut top = vec![
        (key("apiVersion", at), s(crate::dsl::ast_build::API_VERSION)),
        (key("kind", at), s("Runbook")),
        (key("metadata", at), metadata),
        (key("params", at), Node::new(Value::Map(params), at)),
        (key("steps", at), list(&rb.steps, &mut diags)),
    ];
    if !rb.rollbacks.is_empty() {
        top.push((key("rollbacks", at), list(&rb.rollbacks, &mut diags)));
    }
    diags.into_result(Node::new(Value::Map(top), at))
}

fn convert(
    source: &Source,
    d: &Dynamic,
    span: Span,
    depth: usize,
    diags: &mut Diagnostics,
) -> Node {
    let value = if depth >= sandbox::MAX_NESTING {
        diags.push(Diagnostic::new(
            Code::WrongType,
            source,
            span,
            format!(
                "the value built here nests deeper than {} levels",
                sandbox::MAX_NESTING
            ),
            "too deep",
        ));
        Value::Null
    } else if d.is_unit() {
        Value::Null
    } else if let Ok(b) = d.as_bool() {
        Value::Bool(b)
    } else if let Ok(i) = d.as_int() {
        Value::Int(i)
    } else if let Ok(f) = d.as_float() {
        Value::Float(f)
    } else if d.is_string() {
        Value::Str(d.clone().into_string().unwrap_or_default())
    } else if d.is_array() {
        let items = d.clone().into_array().unwrap_or_default();
        Value::Seq(
            items
                .iter()
                .map(|i| convert(source, i, span, depth + 1, diags))
                .collect(),
        )
    } else if d.is_map() {
        match d.read_lock::<Map>() {
            Some(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| {
                        (
                            Spanned::new(k.to_string(), span),
                            convert(source, v, span, depth + 1, diags),
                        )
                    })
                    .collect(),
            ),
            None => Value::Null,
        }
    } else {
        diags.push(Diagnostic::new(
            Code::WrongType,
            source,
            span,
            format!(
                "a runbook value must be a string, number, boolean, array or map, not `{}`",
                d.type_name()
            ),
            "unsupported value",
        ));
        Value::Null
    };
    Node::new(value, span)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Format;

    #[test]
    fn runaway_script_is_stopped_by_the_operation_limit() {
        let src = Source::new(
            "loop.rhai",
            Format::Rhai,
            "let rb = runbook(\"x\", \"y\");\nloop { }\nrb\n",
        );
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0[0].code, Code::ScriptError);
        assert!(
            err.0[0].message.contains("stopped by the sandbox limits"),
            "{}",
            err.0[0].message
        );
        assert_eq!(err.0[0].line_col().0, 2);
    }

    #[test]
    fn file_access_is_not_available() {
        let src = Source::new("io.rhai", Format::Rhai, "import \"x\" as y;\n");
        let err = parse(&src).unwrap_err();
        assert_eq!(err.0[0].code, Code::ScriptSyntax);
    }
}
