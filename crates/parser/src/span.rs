//! Source positions. Nodes carry 1-based line and column numbers; errors render them.

use std::fmt;

/// A 1-based line and column (columns count bytes, as BuildKit's do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number.
    pub column: usize,
}

/// The lines an instruction covers, from its keyword to its last continuation or heredoc line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// Where the instruction keyword starts.
    pub start: Position,
    /// The last line of the instruction (inclusive), heredoc bodies included.
    pub end_line: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}
