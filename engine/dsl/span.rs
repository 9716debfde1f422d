//! Byte ranges into a [`Source`](crate::source::Source), and values that remember theirs.
//!
//! Every node of the authoring AST keeps the span it was read from (just's `Token`), so the
//! compiler can point at the offending text long after parsing.

use serde::Serialize;

/// A byte range in one source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (0 for a point).
    pub len: usize,
}

impl Span {
    /// A span from an offset and a length.
    pub fn new(offset: usize, len: usize) -> Span {
        Span { offset, len }
    }

    /// The byte just past the end.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(s: Span) -> miette::SourceSpan {
        miette::SourceSpan::new(s.offset.into(), s.len)
    }
}

/// A value together with the span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pairs a value with its span.
    pub fn new(value: T, span: Span) -> Spanned<T> {
        Spanned { value, span }
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
