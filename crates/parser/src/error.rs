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
    source_line: Option<String>,
}

impl Error {
    pub(crate) fn new(position: Position, end_line: usize, message: impl Into<String>) -> Error {
        Error {
            inner: Box::new(Inner {
                file: String::new(),
                position,
                end_line,
                message: message.into(),
                source_line: None,
            }),
        }
    }

    /// Attaches the file name and the source text the error points into.
    pub(crate) fn in_file(mut self, file: &str, source: &str) -> Error {
        self.inner.file = file.to_string();
        let line = self.inner.position.line;
        if line > 0 {
            self.inner.source_line = source.split('\n').nth(line - 1).map(|l| l.trim_end_matches('\r').to_string());
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
            out.push_str(src);
            out.push('\n');
            // Tabs in the source keep the caret aligned when echoed as tabs.
            let pad: String = src
                .chars()
                .take(self.inner.position.column.saturating_sub(1))
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
