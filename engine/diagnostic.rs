//! Authoring errors: one type, rendered by miette with a label under the offending text.
//!
//! Both front ends (YAML and rhai) and the compiler report problems as [`Diagnostic`]s and
//! collect all of them before giving up ([`Diagnostics`]), so an author sees every mistake in a
//! file at once. Each diagnostic names `file:line:column`, carries a stable [`Code`] and, where
//! a near name exists, a "did you mean" help line.

use std::fmt;

use crate::dsl::span::Span;
use crate::source::Source;

/// Stable identifiers of the kinds of authoring error (shown as `runbook::<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The YAML is not well formed.
    YamlSyntax,
    /// The rhai script does not parse.
    ScriptSyntax,
    /// The rhai script failed while building the runbook (including hitting a limit).
    ScriptError,
    /// A key the format does not know.
    UnknownField,
    /// A required key is absent.
    MissingField,
    /// A value of the wrong type.
    WrongType,
    /// A value of the right type that is not allowed (bad duration, unknown enum value…).
    InvalidValue,
    /// Two steps, params or rollbacks share an id.
    DuplicateId,
    /// `action:` names no action in the catalog.
    UnknownAction,
    /// An argument the action, guard or condition does not take.
    UnknownArgument,
    /// A required argument is missing.
    MissingArgument,
    /// A guard name not in the catalog.
    UnknownGuard,
    /// A wait condition not in the catalog.
    UnknownCondition,
    /// `needs:` or `rollback:` names no step.
    UnknownStep,
    /// A parameter that the runbook does not declare.
    UnknownParam,
    /// A required parameter was not given.
    MissingParam,
    /// A parameter value that does not fit its type.
    InvalidParam,
    /// The `needs` edges form a cycle.
    Cycle,
    /// A disruptive action without a safety guard and without `unguarded:`.
    UnguardedDisruptive,
    /// An expression that does not parse.
    ExprSyntax,
    /// An expression names something that does not exist or is not in scope.
    ExprName,
    /// An expression could not be evaluated at plan time (e.g. `foreach`).
    ExprEval,
    /// A step claims a weaker idempotency class than its action allows.
    Idempotency,
}

impl Code {
    /// True for problems with the parameters given on the command line (a usage error), as
    /// opposed to problems in the runbook itself.
    pub fn is_param_error(self) -> bool {
        matches!(
            self,
            Code::UnknownParam | Code::MissingParam | Code::InvalidParam
        )
    }

    /// The kebab-case name used in `runbook::<name>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::YamlSyntax => "yaml-syntax",
            Code::ScriptSyntax => "script-syntax",
            Code::ScriptError => "script-error",
            Code::UnknownField => "unknown-field",
            Code::MissingField => "missing-field",
            Code::WrongType => "wrong-type",
            Code::InvalidValue => "invalid-value",
            Code::DuplicateId => "duplicate-id",
            Code::UnknownAction => "unknown-action",
            Code::UnknownArgument => "unknown-argument",
            Code::MissingArgument => "missing-argument",
            Code::UnknownGuard => "unknown-guard",
            Code::UnknownCondition => "unknown-condition",
            Code::UnknownStep => "unknown-step",
            Code::UnknownParam => "unknown-param",
            Code::MissingParam => "missing-param",
            Code::InvalidParam => "invalid-param",
            Code::Cycle => "cycle",
            Code::UnguardedDisruptive => "unguarded-disruptive",
            Code::ExprSyntax => "expr-syntax",
            Code::ExprName => "expr-name",
            Code::ExprEval => "expr-eval",
            Code::Idempotency => "idempotency",
        }
    }
}

/// One authoring error, pointing into its source.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// What kind of error.
    pub code: Code,
    /// A lowercase sentence fragment; names in backticks.
    pub message: String,
    /// The source it points into.
    pub source: Source,
    /// The offending text.
    pub span: Span,
    /// Text shown under the span.
    pub label: String,
    /// A hint such as "did you mean `talos.reboot`?".
    pub help: Option<String>,
    /// Further labelled places (e.g. every step of a cycle).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    /// A diagnostic with a label under `span`.
    pub fn new(
        code: Code,
        source: &Source,
        span: Span,
        message: impl Into<String>,
        label: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            source: source.clone(),
            span,
            label: label.into(),
            help: None,
            related: Vec::new(),
        }
    }

    /// Adds a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a help line only if there is one.
    pub fn with_help_opt(mut self, help: Option<String>) -> Diagnostic {
        self.help = help;
        self
    }

    /// 1-based line and column of the start of the span.
    pub fn line_col(&self) -> (usize, usize) {
        self.source.line_col(self.span.offset)
    }

    /// `file:line:column` of the start of the span.
    pub fn location(&self) -> String {
        let (line, col) = self.line_col();
        format!("{}:{line}:{col}", self.source.name)
    }

    /// The one-line form used in logs, JSON and tests: `file:line:col: message`.
    pub fn one_line(&self) -> String {
        format!("{}: {}", self.location(), self.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(format!("runbook::{}", self.code.as_str())))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(self.source.named())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        let first = miette::LabeledSpan::new_primary_with_span(Some(self.label.clone()), self.span);
        let rest = self
            .related
            .iter()
            .map(|(span, label)| miette::LabeledSpan::new_with_span(Some(label.clone()), *span));
        Some(Box::new(std::iter::once(first).chain(rest)))
    }
}

/// Every authoring error found in one file, in source order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True if nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sorts by position and drops exact duplicates.
    pub fn finish(mut self) -> Diagnostics {
        self.0.sort_by_key(|d| (d.span.offset, d.code.as_str()));
        self.0
            .dedup_by(|a, b| a.span == b.span && a.message == b.message);
        self
    }

    /// `Ok(value)` if nothing was reported, else all diagnostics.
    pub fn into_result<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self.finish())
        }
    }

    /// Renders every diagnostic with miette's graphical handler (no colour when `plain`).
    pub fn render(&self, plain: bool) -> String {
        let handler = if plain {
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        } else {
            miette::GraphicalReportHandler::new()
        };
        let mut out = String::new();
        for d in &self.0 {
            // Writing into a String cannot fail; a handler error would only drop the frame.
            let _ = handler.render_report(&mut out, d);
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{}", d.one_line())?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// "did you mean `x`?" for the closest of `candidates` to `name`, if one is close enough.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 3.max(name.len() / 3) && *d < c.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["talos.reboot", "talos.reset", "etcd.leave"];
        assert_eq!(
            did_you_mean("talos.rebot", names).as_deref(),
            Some("did you mean `talos.reboot`?")
        );
        assert_eq!(did_you_mean("kube.frobnicate", names), None);
    }
}
