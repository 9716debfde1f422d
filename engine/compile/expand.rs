//! `foreach` expansion and `needs` resolution: declared steps → concrete instances.
//!
//! A step with `foreach` becomes one instance per element, in order, each depending on the
//! previous one (one node at a time). A group (`foreach` + nested `steps`) repeats its whole
//! block per element. Without `needs`, a step depends on the previous step at its level; the
//! first step of an iteration depends on the previous iteration's last step. With
//! `parallel: K` the elements are cut into batches of K: the elements of one batch do not
//! depend on each other (their steps may be in flight together, `exec::batch`), and each
//! batch's first steps depend on every last step of the batch before it.

use std::collections::{BTreeMap, BTreeSet};

use crate::compile::expr::{Checker, Names};
use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::dsl::ast;
use crate::dsl::span::Spanned;
use crate::plan::ParamValue;
use crate::source::Source;

/// The largest `parallel: K`.
pub const MAX_PARALLEL: u32 = 256;

/// One concrete step before checking.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// Concrete id.
    pub id: String,
    /// The declaration.
    pub ast: &'a ast::Step,
    /// `foreach` variables.
    pub bindings: BTreeMap<String, serde_json::Value>,
    /// The naming context it was declared in (an index into [`Expander::contexts`]).
    pub ctx: usize,
    /// Dependencies from declaration order (used when `needs` is absent).
    pub default_needs: Vec<String>,
    /// The `parallel` batch it belongs to, if any.
    pub batch: Option<crate::plan::Batch>,
}

/// A naming context: the steps of one level (the top, or one `foreach` iteration of a group),
/// declared id → concrete id. Names resolve in the innermost context first, then outwards;
/// whether the named step really runs before is checked separately (ancestry), so one map per
/// context is enough and the compiler stays linear in the number of steps.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The enclosing context.
    pub parent: Option<usize>,
    /// Declared id → concrete id of single-instance steps at this level.
    pub map: BTreeMap<String, String>,
}

/// Expands the main steps into instances in declaration order.
pub struct Expander<'a, 'c> {
    source: &'a Source,
    checker: &'c Checker,
    params: &'c BTreeMap<String, ParamValue>,
    all_steps: &'c BTreeSet<String>,
    /// Output.
    pub instances: Vec<Instance<'a>>,
    /// Declared id → every concrete id that came from it (groups: their exits).
    pub by_declared: BTreeMap<String, Vec<String>>,
    /// Naming contexts; 0 is the top level.
    pub contexts: Vec<Context>,
    /// Problems found.
    pub diags: Diagnostics,
    /// The batch being expanded (inside a `foreach … parallel: K` body).
    batch: Option<crate::plan::Batch>,
}

impl<'a, 'c> Expander<'a, 'c> {
    /// A new expander.
    pub fn new(
        source: &'a Source,
        checker: &'c Checker,
        params: &'c BTreeMap<String, ParamValue>,
        all_steps: &'c BTreeSet<String>,
    ) -> Self {
        Expander {
            source,
            checker,
            params,
            all_steps,
            instances: Vec::new(),
            by_declared: BTreeMap::new(),
            contexts: vec![Context::default()],
            diags: Diagnostics::default(),
            batch: None,
        }
    }

    /// Expands a list of sibling steps; returns the exit ids of the last one.
    pub fn list(
        &mut self,
        steps: &'a [ast::Step],
        prefix: &str,
        bindings: &BTreeMap<String, serde_json::Value>,
        ctx: usize,
        entry: Vec<String>,
    ) -> Vec<String> {
        let mut prev = entry;
        for s in steps {
            let exits = match &s.foreach {
                None => {
                    let id = format!("{prefix}{}", s.id.value);
                    self.push(s, id.clone(), bindings, ctx, prev.clone());
                    self.contexts[ctx]
                        .map
                        .insert(s.id.value.clone(), id.clone());
                    vec![id]
                }
                Some(fe) => {
                    let Some(all) = self.foreach_items(fe, bindings) else {
                        prev = Vec::new();
                        continue;
                    };
                    let k = match &s.parallel {
                        None => None,
                        Some(e) => match self.parallel_size(e, bindings) {
                            Some(k) => Some(k),
                            None => {
                                prev = Vec::new();
                                continue;
                            }
                        },
                    };
                    let mut items = Vec::new();
                    let mut seen = BTreeSet::new();
                    for item in all {
                        if seen.insert(item.clone()) {
                            items.push(item);
                        } else {
                            self.diags.push(Diagnostic::new(
                                Code::InvalidValue,
                                self.source,
                                fe.expr.span,
                                format!("`foreach` lists `{item}` twice"),
                                "duplicate element",
                            ));
                        }
                    }
                    // Serial: batches of one, each after the previous. `parallel: K`: batches
                    // of K whose elements do not depend on each other; each batch after the
                    // whole previous one.
                    let width = k.map_or(1, |k| usize::try_from(k).unwrap_or(usize::MAX));
                    let mut iter_entry = prev.clone();
                    for (n, chunk) in items.chunks(width.max(1)).enumerate() {
                        let outer = self.batch.clone();
                        if let Some(k) = k {
                            self.batch = Some(crate::plan::Batch {
                                id: format!("{prefix}{}#{}", s.id.value, n + 1),
                                nodes: chunk.to_vec(),
                                size: k,
                            });
                        }
                        let mut exits = Vec::new();
                        for item in chunk {
                            let mut b = bindings.clone();
                            b.insert(fe.var.clone(), serde_json::Value::String(item.clone()));
                            if s.steps.is_empty() {
                                let id = format!("{prefix}{}[{item}]", s.id.value);
                                self.push(s, id.clone(), &b, ctx, iter_entry.clone());
                                exits.push(id);
                            } else {
                                let inner_prefix = format!("{prefix}{}[{item}].", s.id.value);
                                self.contexts.push(Context {
                                    parent: Some(ctx),
                                    map: BTreeMap::new(),
                                });
                                let inner = self.contexts.len() - 1;
                                exits.extend(self.list(
                                    &s.steps,
                                    &inner_prefix,
                                    &b,
                                    inner,
                                    iter_entry.clone(),
                                ));
                            }
                        }
                        self.batch = outer;
                        iter_entry = exits;
                    }
                    self.by_declared
                        .entry(s.id.value.clone())
                        .or_default()
                        .extend(iter_entry.clone());
                    iter_entry
                }
            };
            prev = exits;
        }
        prev
    }

    fn push(
        &mut self,
        s: &'a ast::Step,
        id: String,
        bindings: &BTreeMap<String, serde_json::Value>,
        ctx: usize,
        default_needs: Vec<String>,
    ) {
        self.by_declared
            .entry(s.id.value.clone())
            .or_default()
            .push(id.clone());
        self.instances.push(Instance {
            id,
            ast: s,
            bindings: bindings.clone(),
            ctx,
            default_needs,
            batch: self.batch.clone(),
        });
    }

    /// `parallel: K`: a plan-time integer from 1 to [`MAX_PARALLEL`], not inside another
    /// `parallel` body (one level of batches).
    fn parallel_size(
        &mut self,
        e: &ast::ExprSrc,
        bindings: &BTreeMap<String, serde_json::Value>,
    ) -> Option<u32> {
        if self.batch.is_some() {
            self.diags.push(Diagnostic::new(
                Code::InvalidValue,
                self.source,
                e.span,
                "`parallel` inside the body of another `parallel` foreach".to_string(),
                "one level of batches only",
            ));
            return None;
        }
        let no_steps = BTreeMap::new();
        let names = Names {
            params: self.params,
            vars: bindings,
            steps: &no_steps,
            all_steps: self.all_steps,
            result: None,
            plan_time: true,
        };
        let checked = match self.checker.check(self.source, e, &names) {
            Ok(c) => c,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        if checked.runtime || checked.secret {
            self.diags.push(Diagnostic::new(
                Code::ExprEval,
                self.source,
                e.span,
                "`parallel` must be known at plan time from params that are not secret".to_string(),
                "not a plan-time value",
            ));
            return None;
        }
        let value = match self.checker.eval(self.source, e, &names) {
            Ok(v) => v,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        match value.as_u64().and_then(|k| u32::try_from(k).ok()) {
            Some(k) if (1..=MAX_PARALLEL).contains(&k) => Some(k),
            _ => {
                self.diags.push(Diagnostic::new(
                    Code::InvalidValue,
                    self.source,
                    e.span,
                    format!("`parallel` must be an integer from 1 to {MAX_PARALLEL}, but `{}` gives {value}", e.text),
                    "not a batch size",
                ));
                None
            }
        }
    }

    fn foreach_items(
        &mut self,
        fe: &ast::Foreach,
        bindings: &BTreeMap<String, serde_json::Value>,
    ) -> Option<Vec<String>> {
        let no_steps = BTreeMap::new();
        let names = Names {
            params: self.params,
            vars: bindings,
            steps: &no_steps,
            all_steps: self.all_steps,
            result: None,
            plan_time: true,
        };
        let checked = match self.checker.check(self.source, &fe.expr, &names) {
            Ok(c) => c,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        if checked.runtime {
            self.diags.push(Diagnostic::new(
                Code::ExprEval,
                self.source,
                fe.expr.span,
                "`foreach` must be known at plan time: use params and outer `foreach` variables, not step outputs".to_string(),
                "reads step outputs",
            ));
            return None;
        }
        if checked.secret {
            self.diags.push(Diagnostic::new(
                Code::ExprEval,
                self.source,
                fe.expr.span,
                "`foreach` may not use a secret parameter: its elements become step ids, which are printed and journaled".to_string(),
                "reads a secret",
            ));
            return None;
        }
        let value = match self.checker.eval(self.source, &fe.expr, &names) {
            Ok(v) => v,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        let serde_json::Value::Array(items) = value else {
            self.diags.push(Diagnostic::new(
                Code::WrongType,
                self.source,
                fe.expr.span,
                format!(
                    "`foreach` must give a list, but `{}` gives {value}",
                    fe.expr.text
                ),
                "not a list",
            ));
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                serde_json::Value::String(s) if !s.is_empty() => out.push(s),
                serde_json::Value::Number(n) => out.push(n.to_string()),
                other => {
                    self.diags.push(Diagnostic::new(
                        Code::WrongType,
                        self.source,
                        fe.expr.span,
                        format!("`foreach` elements must be non-empty strings, found {other}"),
                        "bad element",
                    ));
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The concrete id a declared name refers to from `ctx` (innermost context first).
    pub fn lookup(&self, ctx: usize, declared: &str) -> Option<String> {
        let mut cur = Some(ctx);
        while let Some(c) = cur {
            let context = self.contexts.get(c)?;
            if let Some(id) = context.map.get(declared) {
                return Some(id.clone());
            }
            cur = context.parent;
        }
        None
    }

    /// Resolves explicit `needs` of an instance to concrete ids.
    pub fn resolve_needs(&mut self, inst: &Instance<'a>, needs: &[Spanned<String>]) -> Vec<String> {
        let mut out = Vec::new();
        for n in needs {
            if let Some(id) = self.lookup(inst.ctx, &n.value) {
                out.push(id);
            } else if let Some(ids) = self.by_declared.get(&n.value) {
                out.extend(ids.iter().cloned());
            } else {
                let d = Diagnostic::new(
                    Code::UnknownStep,
                    self.source,
                    n.span,
                    format!(
                        "step `{}` needs `{}`, which is not a step",
                        inst.ast.id.value, n.value
                    ),
                    "no such step",
                )
                .with_help_opt(did_you_mean(
                    &n.value,
                    self.by_declared.keys().map(String::as_str),
                ));
                self.diags.push(d);
            }
        }
        out.sort();
        out.dedup();
        out
    }
}
