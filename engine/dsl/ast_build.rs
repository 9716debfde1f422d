//! Reads a [`doc::Node`](crate::dsl::doc::Node) tree into the [`ast::Runbook`](crate::dsl::ast::Runbook), reporting every field error.
//!
//! Both front ends end here, so YAML and rhai runbooks get the same field names, the same
//! defaults and the same messages. Unknown keys are errors with a "did you mean" (nextest's
//! strict config), and reading continues after an error so all of them are reported.

use std::time::Duration;

use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::dsl::ast::{
    ActionCall, Approval, ArgValue, Args, Backoff, ClusterDefault, ExprSrc, Foreach, Guard,
    Idempotency, Param, ParamType, Retry, Runbook, Step, TemplatePart, Wait,
};
use crate::dsl::doc::{Node, Value};
use crate::dsl::duration;
use crate::dsl::span::{Span, Spanned};
use crate::source::Source;

/// The only `apiVersion` this build reads.
pub const API_VERSION: &str = "runbook/v1";

const TOP_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "params",
    "steps",
    "rollbacks",
];
const STEP_FIELDS: &[&str] = &[
    "id",
    "description",
    "action",
    "with",
    "steps",
    "needs",
    "when",
    "guard",
    "unguarded",
    "wait",
    "verify",
    "retry",
    "timeout",
    "rollback",
    "idempotency",
    "approval",
    "foreach",
    "outputs",
    "parallel",
];

/// Builds the AST from a document tree; any field error fails the build.
pub fn build(source: &Source, root: &Node) -> Result<Runbook, Diagnostics> {
    let (runbook, diags) = build_lenient(source, root);
    match runbook {
        Some(rb) => diags.into_result(rb),
        None => Err(diags.finish()),
    }
}

/// Builds as much of the AST as the tree allows, with every field error found. A runbook is
/// returned whenever its top level is a map, so the compiler can still report its own errors
/// for the parts that were read (an author sees every problem in one `runbook check`).
pub fn build_lenient(source: &Source, root: &Node) -> (Option<Runbook>, Diagnostics) {
    let mut b = Builder {
        source,
        diags: Diagnostics::default(),
    };
    let runbook = b.runbook(root);
    (runbook, b.diags)
}

struct Builder<'a> {
    source: &'a Source,
    diags: Diagnostics,
}

/// A map being read: remembers which keys were consumed.
struct Fields<'n> {
    span: Span,
    entries: &'n [(Spanned<String>, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

impl<'a> Builder<'a> {
    fn err(&mut self, code: Code, span: Span, message: String, label: &str) {
        self.diags
            .push(Diagnostic::new(code, self.source, span, message, label));
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        self.err(
            Code::WrongType,
            node.span,
            format!("`{what}` must be {expected}, found {}", node.type_name()),
            &format!("expected {expected}"),
        );
    }

    /// Opens a map, reporting unknown keys against `known`.
    fn fields<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a map");
            return None;
        };
        for (k, _) in entries {
            if !known.contains(&k.value.as_str()) {
                let help = did_you_mean(&k.value, known.iter().copied());
                self.diags.push(
                    Diagnostic::new(
                        Code::UnknownField,
                        self.source,
                        k.span,
                        format!("unknown field `{}` in {what}", k.value),
                        "unknown field",
                    )
                    .with_help_opt(
                        help.or_else(|| Some(format!("expected one of: {}", known.join(", ")))),
                    ),
                );
            }
        }
        Some(Fields {
            span: node.span,
            entries,
        })
    }

    fn required<'n>(&mut self, f: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let v = f.get(key);
        if v.is_none() {
            self.err(
                Code::MissingField,
                f.span,
                format!("{what} is missing the required field `{key}`"),
                &format!("needs `{key}`"),
            );
        }
        v
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match &node.value {
            Value::Str(s) => Some(Spanned::new(s.clone(), node.span)),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    fn opt_string(&mut self, f: &Fields<'_>, key: &str) -> Option<Spanned<String>> {
        f.get(key).and_then(|n| self.string(n, key))
    }

    fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, what, "`true` or `false`");
                None
            }
        }
    }

    fn duration(&mut self, node: &Node, what: &str) -> Option<Spanned<Duration>> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) if *i >= 0 => i.to_string(),
            _ => {
                self.wrong_type(node, what, "a duration such as `30s` or `5m`");
                return None;
            }
        };
        match duration::parse(&text) {
            Ok(d) => Some(Spanned::new(d, node.span)),
            Err(msg) => {
                self.err(
                    Code::InvalidValue,
                    node.span,
                    format!("invalid `{what}`: {msg}"),
                    "not a duration",
                );
                None
            }
        }
    }

    /// The span of an expression's own text inside a scalar (skipping quotes).
    fn text_span(&self, node: &Node, text: &str) -> Span {
        let raw = self.source.text.get(node.span.offset..).unwrap_or("");
        let window = &raw[..raw.len().min(node.span.len.max(text.len()) + 2)];
        match window.find(text) {
            Some(i) if !text.is_empty() => Span::new(node.span.offset + i, text.len()),
            _ => node.span,
        }
    }

    fn expr(&mut self, node: &Node, what: &str) -> Option<ExprSrc> {
        let text = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            _ => {
                self.wrong_type(node, what, "an expression (a string)");
                return None;
            }
        };
        let text = strip_braces(&text).unwrap_or(&text).trim().to_string();
        let span = self.text_span(node, &text);
        Some(ExprSrc { text, span })
    }

    fn runbook(&mut self, root: &Node) -> Option<Runbook> {
        let f = self.fields(root, "the runbook", TOP_FIELDS)?;
        if let Some(v) = self.required(&f, "apiVersion", "the runbook")
            && let Some(s) = self.string(v, "apiVersion")
            && s.value != API_VERSION
        {
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    self.source,
                    s.span,
                    format!("unsupported apiVersion `{}`", s.value),
                    "unsupported",
                )
                .with_help(format!("this build reads `{API_VERSION}`")),
            );
        }
        if let Some(v) = self.required(&f, "kind", "the runbook")
            && let Some(s) = self.string(v, "kind")
            && s.value != "Runbook"
        {
            self.err(
                Code::InvalidValue,
                s.span,
                format!("unsupported kind `{}`: expected `Runbook`", s.value),
                "expected `Runbook`",
            );
        }
        let mut name = Spanned::new(String::new(), f.span);
        let mut description = String::new();
        if let Some(meta) = self.required(&f, "metadata", "the runbook")
            && let Some(m) = self.fields(meta, "metadata", &["name", "description"])
        {
            if let Some(n) = self.required(&m, "name", "metadata")
                && let Some(s) = self.string(n, "name")
            {
                if !valid_id(&s.value) {
                    self.err(
                        Code::InvalidValue,
                        s.span,
                        format!("invalid runbook name `{}`", s.value),
                        "use letters, digits, `-` and `_`",
                    );
                }
                name = s;
            }
            description = self
                .opt_string(&m, "description")
                .map(|s| s.value)
                .unwrap_or_default();
        }
        let params = match f.get("params") {
            Some(p) => self.params(p),
            None => Vec::new(),
        };
        let steps = match self.required(&f, "steps", "the runbook") {
            Some(s) => self.steps(s, "steps"),
            None => Vec::new(),
        };
        let rollbacks = match f.get("rollbacks") {
            Some(r) => self.steps(r, "rollbacks"),
            None => Vec::new(),
        };
        Some(Runbook {
            name,
            description,
            params,
            steps,
            rollbacks,
        })
    }

    fn params(&mut self, node: &Node) -> Vec<Param> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(
                node,
                "params",
                "a map of parameter names to their declarations",
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, decl) in entries {
            if !valid_ident(&key.value) {
                self.err(
                    Code::InvalidValue,
                    key.span,
                    format!("invalid parameter name `{}`", key.value),
                    "use letters, digits and `_`, starting with a letter",
                );
            }
            let Some(f) = self.fields(
                decl,
                &format!("parameter `{}`", key.value),
                &[
                    "type",
                    "default",
                    "required",
                    "description",
                    "values",
                    "default_from",
                ],
            ) else {
                continue;
            };
            let Some(ty_node) = self.required(&f, "type", &format!("parameter `{}`", key.value))
            else {
                continue;
            };
            let Some(ty_name) = self.string(ty_node, "type") else {
                continue;
            };
            let ty = match ty_name.value.as_str() {
                "string" => ParamType::String,
                "int" => ParamType::Int,
                "bool" => ParamType::Bool,
                "duration" => ParamType::Duration,
                "node" => ParamType::Node,
                "nodes" => ParamType::Nodes,
                "path" => ParamType::Path,
                "secret" => ParamType::Secret,
                "enum" => {
                    let values = match f.get("values") {
                        Some(Node {
                            value: Value::Seq(items),
                            ..
                        }) => items
                            .iter()
                            .filter_map(|i| self.string(i, "values").map(|s| s.value))
                            .collect(),
                        Some(other) => {
                            self.wrong_type(other, "values", "a list of strings");
                            Vec::new()
                        }
                        None => {
                            self.err(
                                Code::MissingField,
                                ty_name.span,
                                format!("enum parameter `{}` needs `values`", key.value),
                                "enum without values",
                            );
                            Vec::new()
                        }
                    };
                    ParamType::Enum(values)
                }
                other => {
                    const TYPES: &[&str] = &[
                        "string", "int", "bool", "duration", "node", "nodes", "enum", "path",
                        "secret",
                    ];
                    self.diags.push(
                        Diagnostic::new(
                            Code::InvalidValue,
                            self.source,
                            ty_name.span,
                            format!("unknown parameter type `{other}`"),
                            "unknown type",
                        )
                        .with_help(
                            did_you_mean(other, TYPES.iter().copied()).unwrap_or_else(|| {
                                format!("expected one of: {}", TYPES.join(", "))
                            }),
                        ),
                    );
                    continue;
                }
            };
            if f.get("values").is_some() && !matches!(ty, ParamType::Enum(_)) {
                self.err(
                    Code::InvalidValue,
                    ty_name.span,
                    format!(
                        "`values` is only for enum parameters (`{}` is {})",
                        key.value,
                        ty.name()
                    ),
                    "not an enum",
                );
            }
            let default = f.get("default").cloned();
            let required = match f.get("required") {
                Some(n) => self.boolean(n, "required").unwrap_or(false),
                None => default.is_none(),
            };
            if required && default.is_some() {
                self.err(
                    Code::InvalidValue,
                    key.span,
                    format!("parameter `{}` is required and has a default", key.value),
                    "pick one",
                );
            }
            let description = self
                .opt_string(&f, "description")
                .map(|s| s.value)
                .unwrap_or_default();
            let default_from = self.default_from(&f, &key.value, &ty, default.is_some(), required);
            out.push(Param {
                name: key.clone(),
                ty: Spanned::new(ty, ty_name.span),
                default,
                required: required && default_from.is_none(),
                description,
                default_from,
            });
        }
        out
    }

    /// `default_from: cluster.<source>`: a known source, of the parameter's type, and neither
    /// with a `default` nor `required: true`.
    fn default_from(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        ty: &ParamType,
        has_default: bool,
        required: bool,
    ) -> Option<Spanned<ClusterDefault>> {
        let written = self.opt_string(f, "default_from")?;
        let Some(source) = ClusterDefault::parse(&written.value) else {
            let names = ClusterDefault::ALL.map(ClusterDefault::name);
            self.diags.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    self.source,
                    written.span,
                    format!(
                        "unknown cluster default `{}` for parameter `{name}`",
                        written.value
                    ),
                    "unknown source",
                )
                .with_help(
                    did_you_mean(&written.value, names.iter().copied())
                        .unwrap_or_else(|| format!("expected one of: {}", names.join(", "))),
                ),
            );
            return None;
        };
        if source.ty() != *ty {
            self.err(
                Code::InvalidValue,
                written.span,
                format!(
                    "`{}` gives a {}, but parameter `{name}` is {}",
                    source.name(),
                    source.ty().name(),
                    ty.name()
                ),
                "wrong type for this parameter",
            );
            return None;
        }
        if has_default || (required && f.get("required").is_some()) {
            self.err(
                Code::InvalidValue,
                written.span,
                format!(
                    "parameter `{name}` has `default_from` and also `{}`",
                    if has_default {
                        "default"
                    } else {
                        "required: true"
                    }
                ),
                "pick one",
            );
            return None;
        }
        Some(Spanned::new(source, written.span))
    }

    fn steps(&mut self, node: &Node, what: &str) -> Vec<Step> {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, what, "a list of steps");
            return Vec::new();
        };
        items.iter().filter_map(|s| self.step(s)).collect()
    }

    fn step(&mut self, node: &Node) -> Option<Step> {
        let f = self.fields(node, "a step", STEP_FIELDS)?;
        let id = self
            .required(&f, "id", "a step")
            .and_then(|n| self.string(n, "id"))?;
        if !valid_ident(&id.value) {
            self.err(
                Code::InvalidValue,
                id.span,
                format!("invalid step id `{}`", id.value),
                "use letters, digits and `_` (ids are names in expressions: `steps.<id>`)",
            );
        }
        let what = format!("step `{}`", id.value);
        let description = self
            .opt_string(&f, "description")
            .map(|s| s.value)
            .unwrap_or_default();
        let action = match f.get("action") {
            Some(n) => self.string(n, "action").map(|name| ActionCall {
                name,
                args: f.get("with").map(|w| self.args(w)).unwrap_or_default(),
            }),
            None => {
                if let Some(w) = f.get("with") {
                    self.err(
                        Code::MissingField,
                        w.span,
                        format!("{what} has `with:` but no `action:`"),
                        "arguments for which action?",
                    );
                }
                None
            }
        };
        let steps = f
            .get("steps")
            .map(|s| self.steps(s, "steps"))
            .unwrap_or_default();
        let needs = f.get("needs").map(|n| self.id_list(n, "needs"));
        let when = f.get("when").and_then(|n| self.expr(n, "when"));
        let guards = f.get("guard").map(|g| self.guards(g)).unwrap_or_default();
        let unguarded = self.opt_string(&f, "unguarded");
        let wait = f.get("wait").and_then(|w| self.wait(w, "wait"));
        let verify = f.get("verify").and_then(|w| self.wait(w, "verify"));
        let retry = f.get("retry").and_then(|r| self.retry(r));
        let timeout = f.get("timeout").and_then(|t| self.duration(t, "timeout"));
        let rollback = f
            .get("rollback")
            .map(|r| self.id_list(r, "rollback"))
            .unwrap_or_default();
        let idempotency = f.get("idempotency").and_then(|n| {
            let s = self.string(n, "idempotency")?;
            let v = match s.value.as_str() {
                "idempotent" => Idempotency::Idempotent,
                "verify" => Idempotency::Verify,
                "confirm" => Idempotency::Confirm,
                other => {
                    self.err(
                        Code::InvalidValue,
                        s.span,
                        format!("unknown idempotency `{other}`: expected `idempotent`, `verify` or `confirm`"),
                        "unknown class",
                    );
                    return None;
                }
            };
            Some(Spanned::new(v, s.span))
        });
        let approval = f.get("approval").and_then(|a| self.approval(a));
        let foreach = f.get("foreach").and_then(|fe| self.foreach(fe));
        let parallel = f.get("parallel").and_then(|p| self.expr(p, "parallel"));
        if let (Some(p), None) = (&parallel, &foreach) {
            self.err(
                Code::InvalidValue,
                p.span,
                format!("{what} has `parallel` but no `foreach`"),
                "`parallel: K` runs K elements of a `foreach` at once",
            );
        }
        let outputs = match f.get("outputs") {
            Some(Node {
                value: Value::Map(entries),
                ..
            }) => entries
                .iter()
                .filter_map(|(k, v)| {
                    if !valid_ident(&k.value) {
                        self.err(
                            Code::InvalidValue,
                            k.span,
                            format!("invalid output name `{}`", k.value),
                            "use letters, digits and `_`",
                        );
                    }
                    self.expr(v, "outputs").map(|e| (k.clone(), e))
                })
                .collect(),
            Some(other) => {
                self.wrong_type(other, "outputs", "a map of names to expressions");
                Vec::new()
            }
            None => Vec::new(),
        };
        if action.is_none() && steps.is_empty() && wait.is_none() && approval.is_none() {
            self.err(
                Code::MissingField,
                id.span,
                format!("{what} does nothing: give it an `action`, a `wait`, an `approval` or nested `steps`"),
                "empty step",
            );
        }
        if !steps.is_empty() && action.is_some() {
            self.err(
                Code::InvalidValue,
                id.span,
                format!("{what} has both `action` and nested `steps`"),
                "pick one",
            );
        }
        if !steps.is_empty() && foreach.is_none() {
            self.err(
                Code::InvalidValue,
                id.span,
                format!("{what} has nested `steps` but no `foreach`"),
                "groups repeat per element of `foreach`",
            );
        }
        Some(Step {
            id,
            span: node.span,
            description,
            action,
            steps,
            needs,
            when,
            guards,
            unguarded,
            wait,
            verify,
            retry,
            timeout,
            rollback,
            idempotency,
            approval,
            foreach,
            outputs,
            parallel,
        })
    }

    fn id_list(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.value {
            Value::Str(s) => vec![Spanned::new(s.clone(), node.span)],
            Value::Seq(items) => items.iter().filter_map(|i| self.string(i, what)).collect(),
            Value::Null => Vec::new(),
            _ => {
                self.wrong_type(node, what, "a step id or a list of step ids");
                Vec::new()
            }
        }
    }

    fn args(&mut self, node: &Node) -> Args {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, "with", "a map of argument names to values");
            return Vec::new();
        };
        entries
            .iter()
            .map(|(k, v)| (k.clone(), self.arg_value(v)))
            .collect()
    }

    fn arg_value(&mut self, node: &Node) -> ArgValue {
        // Lists and maps are values too: `${{ }}` inside them (a command's argv, an
        // environment map) is evaluated like at the top level.
        match &node.value {
            Value::Seq(items) if items.iter().any(interpolates) => {
                return ArgValue::List(
                    items.iter().map(|i| self.arg_value(i)).collect(),
                    node.span,
                );
            }
            Value::Map(entries) if entries.iter().any(|(_, v)| interpolates(v)) => {
                return ArgValue::Map(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), self.arg_value(v)))
                        .collect(),
                    node.span,
                );
            }
            _ => {}
        }
        let Value::Str(s) = &node.value else {
            return ArgValue::Literal(node.clone());
        };
        if !s.contains("${{") {
            return ArgValue::Literal(node.clone());
        }
        if let Some(inner) = strip_braces(s) {
            let text = inner.trim().to_string();
            let span = self.text_span(node, &text);
            return ArgValue::Expr(ExprSrc { text, span });
        }
        let mut parts = Vec::new();
        let mut rest = s.as_str();
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(TemplatePart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else {
                self.err(
                    Code::ExprSyntax,
                    node.span,
                    "unclosed `${{` in string: expected `}}`".to_string(),
                    "unclosed interpolation",
                );
                return ArgValue::Literal(node.clone());
            };
            let text = after[..end].trim().to_string();
            let span = self.text_span(node, &text);
            parts.push(TemplatePart::Expr(ExprSrc { text, span }));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Text(rest.to_string()));
        }
        ArgValue::Template(parts, node.span)
    }

    fn guards(&mut self, node: &Node) -> Vec<Guard> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            if let Value::Str(s) = &item.value {
                out.push(Guard::Named {
                    name: Spanned::new(s.clone(), item.span),
                    args: Vec::new(),
                });
                continue;
            }
            let Some(f) = self.fields(item, "a guard", &["name", "with", "expr", "message"]) else {
                continue;
            };
            match (f.get("name"), f.get("expr")) {
                (Some(n), None) => {
                    if let Some(name) = self.string(n, "name") {
                        let args = f.get("with").map(|w| self.args(w)).unwrap_or_default();
                        out.push(Guard::Named { name, args });
                    }
                }
                (None, Some(e)) => {
                    if let Some(expr) = self.expr(e, "expr") {
                        let message = self
                            .opt_string(&f, "message")
                            .map(|s| s.value)
                            .unwrap_or_else(|| format!("guard `{}` is false", expr.text));
                        out.push(Guard::Expr { expr, message });
                    }
                }
                _ => self.err(
                    Code::MissingField,
                    item.span,
                    "a guard needs exactly one of `name` or `expr`".into(),
                    "name or expr",
                ),
            }
        }
        out
    }

    fn wait(&mut self, node: &Node, what: &str) -> Option<Wait> {
        if let Value::Str(s) = &node.value {
            return Some(Wait {
                condition: Spanned::new(s.clone(), node.span),
                args: Vec::new(),
                timeout: None,
                interval: None,
                span: node.span,
                timeout_expr: None,
            });
        }
        let f = self.fields(
            node,
            &format!("`{what}`"),
            &["condition", "with", "timeout", "interval"],
        )?;
        let condition = self
            .required(&f, "condition", &format!("`{what}`"))
            .and_then(|n| self.string(n, "condition"))?;
        // `timeout: "${{ params.boot_timeout }}"`: an expression the compiler folds at plan
        // time (and checks to be a duration); any other value is a duration now.
        let (timeout, timeout_expr) = match f.get("timeout") {
            Some(t) if matches!(&t.value, Value::Str(s) if s.contains("${{")) => {
                (None, self.expr(t, "timeout"))
            }
            Some(t) => (self.duration(t, "timeout"), None),
            None => (None, None),
        };
        Some(Wait {
            condition,
            args: f.get("with").map(|w| self.args(w)).unwrap_or_default(),
            timeout,
            interval: f.get("interval").and_then(|t| self.duration(t, "interval")),
            span: node.span,
            timeout_expr,
        })
    }

    fn retry(&mut self, node: &Node) -> Option<Retry> {
        let f = self.fields(
            node,
            "`retry`",
            &["attempts", "backoff", "delay", "max_delay"],
        )?;
        let attempts = match self.required(&f, "attempts", "`retry`") {
            Some(Node {
                value: Value::Int(n),
                ..
            }) if (1..=1000).contains(n) => u32::try_from(*n).unwrap_or(1),
            Some(other) => {
                self.err(
                    Code::InvalidValue,
                    other.span,
                    "`attempts` must be an integer from 1 to 1000".into(),
                    "not a valid attempt count",
                );
                1
            }
            None => 1,
        };
        let backoff = match f.get("backoff") {
            None => Backoff::Exponential,
            Some(n) => match self.string(n, "backoff").as_deref().map(String::as_str) {
                Some("fixed") => Backoff::Fixed,
                Some("exponential") => Backoff::Exponential,
                Some(other) => {
                    self.err(
                        Code::InvalidValue,
                        n.span,
                        format!("unknown backoff `{other}`: expected `fixed` or `exponential`"),
                        "unknown backoff",
                    );
                    Backoff::Exponential
                }
                None => Backoff::Exponential,
            },
        };
        let delay = f
            .get("delay")
            .and_then(|d| self.duration(d, "delay"))
            .map_or(Duration::from_secs(5), |d| d.value);
        let max_delay = f
            .get("max_delay")
            .and_then(|d| self.duration(d, "max_delay"))
            .map(|d| d.value);
        Some(Retry {
            attempts,
            backoff,
            delay,
            max_delay,
            span: node.span,
        })
    }

    fn approval(&mut self, node: &Node) -> Option<Approval> {
        if let Value::Str(s) = &node.value {
            return Some(Approval {
                prompt: s.clone(),
                allow_yes: false,
                span: node.span,
            });
        }
        let f = self.fields(node, "`approval`", &["prompt", "allow_yes"])?;
        let prompt = self
            .required(&f, "prompt", "`approval`")
            .and_then(|p| self.string(p, "prompt"))?;
        let allow_yes = f
            .get("allow_yes")
            .and_then(|a| self.boolean(a, "allow_yes"))
            .unwrap_or(false);
        Some(Approval {
            prompt: prompt.value,
            allow_yes,
            span: node.span,
        })
    }

    fn foreach(&mut self, node: &Node) -> Option<Foreach> {
        if let Value::Str(_) = &node.value {
            return self.expr(node, "foreach").map(|expr| Foreach {
                expr,
                var: "node".into(),
            });
        }
        let f = self.fields(node, "`foreach`", &["in", "as"])?;
        let expr = self
            .required(&f, "in", "`foreach`")
            .and_then(|n| self.expr(n, "in"))?;
        let var = match self.opt_string(&f, "as") {
            Some(v) if valid_ident(&v.value) => v.value,
            Some(v) => {
                self.err(
                    Code::InvalidValue,
                    v.span,
                    format!("invalid variable name `{}`", v.value),
                    "use letters, digits and `_`",
                );
                "node".into()
            }
            None => "node".into(),
        };
        Some(Foreach { expr, var })
    }
}

/// `${{ x }}` → `x` when the whole string is one interpolation.
fn strip_braces(s: &str) -> Option<&str> {
    let t = s.trim();
    let inner = t.strip_prefix("${{")?.strip_suffix("}}")?;
    (!inner.contains("${{") && !inner.contains("}}")).then_some(inner)
}

/// Step ids and runbook names: letters, digits, `-`, `_`.
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Names usable in expressions.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Whether a value holds `${{` anywhere (at any depth).
fn interpolates(node: &Node) -> bool {
    match &node.value {
        Value::Str(s) => s.contains("${{"),
        Value::Seq(items) => items.iter().any(interpolates),
        Value::Map(entries) => entries.iter().any(|(_, v)| interpolates(v)),
        _ => false,
    }
}
