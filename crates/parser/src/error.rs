//! Parse errors: a message plus where it happened, rendered as `file:line:col`, the source line
//! and a caret under the column.

use std::fmt;

use crate::span::Position;

/// A Dockerfile that cannot be parsed.
///
/// `Display` gives the one-line form (`Dockerfile:3:1: ENV must have two arguments`);
/// [`Error::render`] adds the source line and a caret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Inner {
    file: String,
    position: Position,
    end_line: usize,
    message: String,
    /// The part of the source line shown: at most [`SHOWN`] characters around the column.
    source_line: Option<String>,
    /// How many characters of the line come before `source_line` (shown as `...`).
    source_skipped: usize,
}

/// How many characters of a message or source line an error shows: a Dockerfile may hold a
/// line of megabytes, which must not be echoed whole.
const SHOWN: usize = 160;

/// `s` cut to at most `max` characters, with `...` when cut.
pub(crate) fn shorten(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => s.into(),
        Some((end, _)) => format!("{}...", &s[..end]).into(),
    }
}

impl Error {
    pub(crate) fn new(position: Position, end_line: usize, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                file: String::new(),
                position,
                end_line,
                message: shorten(&message.into(), 2 * SHOWN).into_owned(),
                source_line: None,
                source_skipped: 0,
            }),
        }
    }

    /// Attaches the file name and the source text the error points into.
    pub(crate) fn in_file(mut self, file: &str, source: &str) -> Error {
        self.inner.file = file.to_string();
        let line = self.inner.position.line;
        let text = if line > 0 { source.split('\n').nth(line - 1) } else { None };
        if let Some(text) = text.map(|l| l.trim_end_matches('\r')) {
            // A window that keeps the column in view.
            let skip = self.inner.position.column.saturating_sub(SHOWN / 2 + 1);
            let start = text.char_indices().nth(skip).map_or(text.len(), |(i, _)| i);
            self.inner.source_skipped = skip;
            self.inner.source_line = Some(shorten(&text[start..], SHOWN).into_owned());
        }
        self
    }

    /// What went wrong, without the location.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Where it went wrong (line 0 means "the file as a whole").
    pub fn position(&self) -> Position {
        self.inner.position
    }

    /// The last line of the instruction the error is in.
    pub fn end_line(&self) -> usize {
        self.inner.end_line
    }

    /// The multi-line form: location and message, then the source line with a caret under the column.
    pub fn render(&self) -> String {
        let mut out = self.to_string();
        if let Some(src) = &self.inner.source_line {
            let gutter = format!("{} | ", self.inner.position.line);
            out.push('\n');
            out.push_str(&gutter);
            let lead = if self.inner.source_skipped > 0 { "..." } else { "" };
            out.push_str(lead);
            out.push_str(src);
            out.push('\n');
            out.push_str(&" ".repeat(lead.len()));
            // Tabs in the source keep the caret aligned when echoed as tabs.
            let pad: String = src
                .chars()
                .take(self.inner.position.column.saturating_sub(1 + self.inner.source_skipped))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            out.push_str(&" ".repeat(gutter.len()));
            out.push_str(&pad);
            out.push('^');
        }
        out
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if self.inner.file.is_empty() { "Dockerfile" } else { &self.inner.file };
        let p = self.inner.position;
        if p.line == 0 {
            write!(f, "{file}: {}", self.inner.message)
        } else {
            write!(f, "{file}:{}:{}: {}", p.line, p.column, self.inner.message)
        }
    }
}

impl std::error::Error for Error {}
