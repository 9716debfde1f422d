//! A runbook's source text and where it came from.
//!
//! Every diagnostic points back into a [`Source`], so it carries the display name used in
//! `file:line:column` locations and a line index that turns the positions the YAML and rhai
//! parsers report (lines and character columns) into the byte offsets miette needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which front end reads a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.yaml` / `*.yml`: the declarative format.
    Yaml,
    /// `*.rhai`: a runbook built by a script through the builder API.
    Rhai,
}

impl Format {
    /// The format implied by a file name, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Some(Format::Yaml),
            Some("rhai") => Some(Format::Rhai),
            _ => None,
        }
    }
}

/// The text of one runbook file; cheap to clone (diagnostics keep one each).
#[derive(Debug, Clone)]
pub struct Source(Arc<SourceInner>);

/// The fields of a [`Source`].
#[derive(Debug, Clone)]
pub struct SourceInner {
    /// Name shown in diagnostics: the path as the user gave it, or `runbooks/NAME.yaml` for a
    /// built-in.
    pub name: String,
    /// Where the file lives on disk, if it does (built-ins are embedded).
    pub path: Option<PathBuf>,
    /// The front end to use.
    pub format: Format,
    /// The full text.
    pub text: Arc<str>,
    /// Byte offset of the start of each line.
    line_starts: Arc<[usize]>,
    /// True if the text is ASCII, so a character column is a byte column (positions are then
    /// found in constant time, which keeps long single-line documents linear).
    ascii: bool,
    /// The same text under its display name, for miette reports.
    named: miette::NamedSource<Arc<str>>,
    /// The directory a stored copy's relative file arguments resolve against (the original
    /// runbook's, for `resume`); see `compile::file_args`.
    pub base_dir: Option<PathBuf>,
}

impl Source {
    /// Wraps text under a display name.
    pub fn new(name: impl Into<String>, format: Format, text: impl Into<Arc<str>>) -> Source {
        let name = name.into();
        let text: Arc<str> = text.into();
        let ascii = text.is_ascii();
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let named =
            miette::NamedSource::new(name.clone(), text.clone()).with_language(match format {
                Format::Yaml => "yaml",
                Format::Rhai => "rust",
            });
        Source(Arc::new(SourceInner {
            name,
            path: None,
            format,
            text,
            line_starts: starts.into(),
            ascii,
            named,
            base_dir: None,
        }))
    }

    /// This source, its relative file arguments resolving against `dir` (a stored copy of a
    /// runbook that lived there).
    pub fn with_base_dir(self, dir: PathBuf) -> Source {
        let mut inner = Arc::unwrap_or_clone(self.0);
        inner.base_dir = Some(dir);
        Source(Arc::new(inner))
    }

    /// Reads a file; the format comes from its extension.
    pub fn read(path: &Path) -> Result<Source, SourceError> {
        let format = Format::from_path(path).ok_or_else(|| SourceError::UnknownExtension {
            path: path.to_path_buf(),
        })?;
        // Read at most one byte past the limit: the front ends refuse oversized text with a
        // diagnostic, and a huge (or endless, e.g. /dev/zero) file never fills memory.
        let text = read_bounded(path).map_err(|source| SourceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let src = Source::new(path.display().to_string(), format, text);
        let mut inner = Arc::try_unwrap(src.0).map_err(|_| SourceError::UnknownExtension {
            path: path.to_path_buf(),
        })?;
        inner.path = Some(path.to_path_buf());
        Ok(Source(Arc::new(inner)))
    }

    /// Byte offset of a 1-based line and 0-based character column, clamped to the text.
    pub fn offset_of(&self, line: usize, col_chars: usize) -> usize {
        let idx = line.saturating_sub(1).min(self.line_starts.len() - 1);
        let start = self.line_starts[idx];
        let end = self
            .line_starts
            .get(idx + 1)
            .copied()
            .unwrap_or(self.text.len());
        if self.ascii {
            return start + col_chars.min(end - start);
        }
        let line_text = &self.text[start..end];
        let within = line_text
            .char_indices()
            .nth(col_chars)
            .map(|(i, _)| i)
            .unwrap_or(line_text.len());
        start + within
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let idx = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[idx];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (idx + 1, col + 1)
    }

    /// The text under its display name, for miette reports.
    pub fn named(&self) -> &miette::NamedSource<Arc<str>> {
        &self.named
    }
}

impl std::ops::Deref for Source {
    type Target = SourceInner;
    fn deref(&self) -> &SourceInner {
        &self.0
    }
}

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let limit = crate::sandbox::MAX_SOURCE_BYTES as u64 + 1;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit)
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Reading a runbook file failed before parsing started.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be read.
    #[error("cannot read `{path}`")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Neither `.yaml`/`.yml` nor `.rhai`.
    #[error("`{path}` is not a runbook: expected a .yaml, .yml or .rhai file")]
    UnknownExtension {
        /// The file.
        path: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_line_columns_round_trip() {
        let src = Source::new("t.yaml", Format::Yaml, "ab\nçd e\n\nx");
        assert_eq!(src.offset_of(1, 0), 0);
        assert_eq!(src.offset_of(2, 1), 5);
        assert_eq!(src.line_col(5), (2, 2));
        assert_eq!(src.line_col(src.offset_of(4, 0)), (4, 1));
        assert_eq!(src.offset_of(99, 99), src.text.len());
    }
}
