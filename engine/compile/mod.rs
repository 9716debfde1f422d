//! The compiler: AST → validated [`Plan`] (a petgraph DAG of concrete steps).
//!
//! ```text
//! ast::Runbook ─▶ params::bind ─▶ expand (foreach, needs) ─▶ graph (cycles, order)
//!              ─▶ step::build (catalog, types, guards, expressions) ─▶ Plan + hash
//! ```
//! Every stage collects all its diagnostics before the next one decides whether it can run,
//! so an author sees every problem in a file at once.

pub mod batch;
pub mod expand;
pub mod expr;
pub mod file_args;
pub mod graph;
pub mod params;
pub mod refs;
pub mod step;

use std::collections::{BTreeMap, BTreeSet};

use petgraph::stable_graph::StableDiGraph;

use crate::action;
use crate::diagnostic::{Code, Diagnostic, Diagnostics, did_you_mean};
use crate::dsl::{self, ast};
use crate::plan::{self, Edge, Plan, Role};
use crate::source::Source;

pub use params::Mode;

/// Parses and compiles a source in one go, reporting field errors and compile errors together.
pub fn compile_source(source: &Source, mode: &Mode) -> Result<Plan, Diagnostics> {
    let (ast, mut diags) = dsl::parse_lenient(source)?;
    let Some(ast) = ast else {
        return Err(diags.finish());
    };
    match compile(source, &ast, mode) {
        Ok(plan) if diags.is_empty() => Ok(plan),
        Ok(_) => Err(diags.finish()),
        Err(more) => {
            diags.0.extend(more.0);
            Err(diags.finish())
        }
    }
}

/// Compiles a parsed runbook.
pub fn compile(source: &Source, rb: &ast::Runbook, mode: &Mode) -> Result<Plan, Diagnostics> {
    let mut diags = Diagnostics::default();
    let params = params::bind(source, rb, mode, &mut diags);
    check_unique_ids(source, rb, &mut diags);
    check_rollback_decls(source, rb, &mut diags);
    if !diags.is_empty() {
        return Err(diags.finish());
    }

    let checker = expr::Checker::new();
    let all_steps = all_ids(rb);
    let mut ex = expand::Expander::new(source, &checker, &params, &all_steps);
    ex.list(&rb.steps, "", &BTreeMap::new(), 0, Vec::new());
    let instances = std::mem::take(&mut ex.instances);
    let index: BTreeMap<&str, usize> = instances
        .iter()
        .enumerate()
        .map(|(i, inst)| (inst.id.as_str(), i))
        .collect();
    let needs: Vec<Vec<String>> = instances
        .iter()
        .map(|inst| match &inst.ast.needs {
            Some(explicit) => ex.resolve_needs(inst, explicit),
            None => inst.default_needs.clone(),
        })
        .collect();
    diags.0.append(&mut ex.diags.0);
    let needs_idx: Vec<Vec<usize>> = needs
        .iter()
        .map(|n| {
            n.iter()
                .filter_map(|id| index.get(id.as_str()).copied())
                .collect()
        })
        .collect();
    let deps = graph::Deps::new(instances.len(), &needs_idx);
    let cycles = deps.cycles();
    for cycle in &cycles {
        let names: Vec<&str> = cycle.iter().map(|i| instances[*i].id.as_str()).collect();
        let first = instances[cycle[0]].ast;
        let mut d = Diagnostic::new(
            Code::Cycle,
            source,
            first.id.span,
            format!(
                "steps depend on each other in a cycle: {} → {}",
                names.join(" → "),
                names[0]
            ),
            "this step is part of the cycle",
        )
        .with_help("remove one of these `needs` so the steps can run in order");
        for i in cycle.iter().skip(1) {
            let decl = instances[*i].ast;
            let span = decl
                .needs
                .as_ref()
                .and_then(|n| n.first())
                .map_or(decl.id.span, |n| n.span);
            if span != first.id.span {
                d.related
                    .push((span, format!("`{}` needs the previous step", decl.id.value)));
            }
        }
        diags.push(d);
    }
    if !cycles.is_empty() {
        return Err(diags.finish());
    }

    // Outputs each declared step offers to later expressions.
    let outputs_of = |decl: &ast::Step| -> Vec<String> {
        let mut o: Vec<String> = decl
            .action
            .as_ref()
            .and_then(|a| action::find(&a.name.value))
            .map(|spec| spec.outputs.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        o.extend(decl.outputs.iter().map(|(k, _)| k.value.clone()));
        o
    };

    let rollback_decls: BTreeMap<&str, &ast::Step> = rb
        .rollbacks
        .iter()
        .map(|s| (s.id.value.as_str(), s))
        .collect();
    let mut built: Vec<plan::Step> = Vec::with_capacity(instances.len());
    let mut rollbacks: Vec<plan::Step> = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        let ancestors = deps.ancestors(i);
        // Only the steps this step's expressions (and its rollbacks') mention, and only those
        // that finish before it, are visible by name.
        let mut wanted = refs::mentioned(inst.ast);
        for r in &inst.ast.rollback {
            if let Some(decl) = rollback_decls.get(r.value.as_str()) {
                wanted.extend(refs::mentioned(decl));
            }
        }
        let mut scope_all: BTreeMap<String, String> = BTreeMap::new();
        let mut visible: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in &wanted {
            let Some(concrete) = ex.lookup(inst.ctx, name) else {
                continue;
            };
            let Some(&j) = index.get(concrete.as_str()) else {
                continue;
            };
            if ancestors.contains(&j) {
                visible.insert(name.clone(), outputs_of(instances[j].ast));
                scope_all.insert(name.clone(), concrete);
            }
        }
        let cx = step::StepCx {
            source,
            checker: &checker,
            names: expr::Names {
                params: &params,
                vars: &inst.bindings,
                steps: &visible,
                all_steps: &all_steps,
                result: None,
                plan_time: false,
            },
        };
        // Rollback instances for this step.
        let mut rollback_ids = Vec::new();
        for r in &inst.ast.rollback {
            let Some(decl) = rollback_decls.get(r.value.as_str()) else {
                let help = if all_steps.contains(&r.value) {
                    Some(format!(
                        "`{}` is a main step; declare rollback steps under `rollbacks:`",
                        r.value
                    ))
                } else {
                    did_you_mean(&r.value, rollback_decls.keys().copied())
                };
                diags.push(
                    Diagnostic::new(
                        Code::UnknownStep,
                        source,
                        r.span,
                        format!("rollback `{}` is not declared under `rollbacks:`", r.value),
                        "points nowhere",
                    )
                    .with_help_opt(help),
                );
                continue;
            };
            let rid = format!("{}@{}", r.value, inst.id);
            let mut r_visible = visible.clone();
            r_visible.insert(inst.ast.id.value.clone(), outputs_of(inst.ast));
            let mut r_scope = scope_all.clone();
            r_scope.insert(inst.ast.id.value.clone(), inst.id.clone());
            let rcx = step::StepCx {
                names: expr::Names {
                    steps: &r_visible,
                    ..cx.names
                },
                ..cx
            };
            let rstep = step::build(
                &rcx,
                decl,
                step::Placement {
                    id: rid.clone(),
                    role: Role::Rollback {
                        for_step: inst.id.clone(),
                    },
                    needs: Vec::new(),
                    rollback: Vec::new(),
                    scope: r_scope,
                    batch: None,
                },
                &mut diags,
            );
            rollbacks.push(rstep);
            rollback_ids.push(rid);
        }
        let mut scope = scope_all;
        scope.insert(inst.ast.id.value.clone(), inst.id.clone());
        built.push(step::build(
            &cx,
            inst.ast,
            step::Placement {
                id: inst.id.clone(),
                role: Role::Main,
                needs: needs[i].clone(),
                rollback: rollback_ids,
                scope,
                batch: inst.batch.clone(),
            },
            &mut diags,
        ));
    }
    if !diags.is_empty() {
        return Err(diags.finish());
    }

    let mut g: StableDiGraph<plan::Step, Edge> = StableDiGraph::new();
    let nodes: Vec<_> = built.into_iter().map(|s| g.add_node(s)).collect();
    for (i, deps_of) in needs_idx.iter().enumerate() {
        for &d in deps_of {
            g.add_edge(nodes[d], nodes[i], Edge::Needs);
        }
    }
    let order = deps.order().into_iter().map(|i| nodes[i]).collect();
    let mut plan = Plan {
        runbook: rb.name.value.clone(),
        description: rb.description.clone(),
        source: source.name.clone(),
        params,
        graph: g,
        order,
        rollbacks,
        hash: String::new(),
    };
    plan.hash = plan::hash::compute(&plan);
    Ok(plan)
}

fn all_ids(rb: &ast::Runbook) -> BTreeSet<String> {
    fn walk(steps: &[ast::Step], out: &mut BTreeSet<String>) {
        for s in steps {
            out.insert(s.id.value.clone());
            walk(&s.steps, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&rb.steps, &mut out);
    out
}

fn check_unique_ids(source: &Source, rb: &ast::Runbook, diags: &mut Diagnostics) {
    fn walk<'a>(steps: &'a [ast::Step], out: &mut Vec<&'a ast::Step>) {
        for s in steps {
            out.push(s);
            walk(&s.steps, out);
        }
    }
    let mut all = Vec::new();
    walk(&rb.steps, &mut all);
    walk(&rb.rollbacks, &mut all);
    let mut first: BTreeMap<&str, &ast::Step> = BTreeMap::new();
    for s in all {
        match first.get(s.id.value.as_str()) {
            Some(prev) => {
                let mut d = Diagnostic::new(
                    Code::DuplicateId,
                    source,
                    s.id.span,
                    format!("duplicate step id `{}`", s.id.value),
                    "declared again here",
                )
                .with_help("step ids must be unique across the runbook, including nested steps and rollbacks");
                d.related.push((prev.id.span, "first declared here".into()));
                diags.push(d);
            }
            None => {
                first.insert(&s.id.value, s);
            }
        }
    }
    let mut params: BTreeMap<&str, &ast::Param> = BTreeMap::new();
    for p in &rb.params {
        if params.insert(&p.name.value, p).is_some() {
            diags.push(Diagnostic::new(
                Code::DuplicateId,
                source,
                p.name.span,
                format!("duplicate parameter `{}`", p.name.value),
                "declared again here",
            ));
        }
    }
}

fn check_rollback_decls(source: &Source, rb: &ast::Runbook, diags: &mut Diagnostics) {
    for r in &rb.rollbacks {
        let bad = [
            ("foreach", r.foreach.is_some()),
            ("steps", !r.steps.is_empty()),
            ("needs", r.needs.is_some()),
            ("rollback", !r.rollback.is_empty()),
            ("approval", r.approval.is_some()),
        ];
        for (field, present) in bad {
            if present {
                diags.push(Diagnostic::new(
                    Code::InvalidValue,
                    source,
                    r.id.span,
                    format!("rollback step `{}` cannot have `{field}`", r.id.value),
                    "rollbacks run one at a time, newest first, when a later step fails",
                ));
            }
        }
    }
}
