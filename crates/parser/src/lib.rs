//! The Dockerfile front end of forge.
//!
//! [`parse`] turns Dockerfile text into a [`Dockerfile`]: one [`Node`] per instruction, with
//! its keyword, flags, arguments, heredocs and [`Span`], exactly as BuildKit's parser shapes
//! them (so [`Dockerfile::dump`] prints BuildKit's AST dump byte for byte). Errors carry the
//! file, line and column and render the source line with a caret.
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), forge_parser::Error> {
//! let df = forge_parser::parse("FROM busybox AS base\nRUN --network=none echo hi\n", "Dockerfile")?;
//! assert_eq!(df.nodes().len(), 2);
//! assert_eq!(df.nodes()[1].flags, vec!["--network=none"]);
//! assert_eq!(df.dump(), "(from \"busybox\" \"AS\" \"base\")\n(run [\"--network=none\"] \"echo hi\")\n");
//!
//! let err = forge_parser::parse("FROM busybox\nENV ONLYNAME\n", "Dockerfile").unwrap_err();
//! assert_eq!(err.to_string(), "Dockerfile:2:1: ENV must have two arguments");
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod dag;
pub mod directive;
pub mod dockerignore;
pub mod expand;
mod dump;
mod error;
pub mod flags;
mod glob;
pub mod heredoc;
mod instruction;
mod line;
mod node;
mod span;
mod words;

pub use error::Error;
pub use heredoc::Heredoc;
pub use instruction::{ArgDecl, Command, Copy, From, Healthcheck, Instruction, Run, Spanned};
pub use line::{Warning, MAX_LINE_BYTES};
pub use node::{Arg, Node};
pub use span::{Position, Span};

/// A parsed Dockerfile.
#[derive(Debug)]
pub struct Dockerfile {
    nodes: Vec<Node>,
    warnings: Vec<Warning>,
    escape: char,
    directives: Vec<(String, String)>,
    file: String,
    source: String,
}

impl Dockerfile {
    /// The instructions, in source order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Warnings that did not stop the parse.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The escape character (`\`, or `` ` `` after `# escape=`).
    pub fn escape(&self) -> char {
        self.escape
    }

    /// The parser directives at the top of the file, names lowercased, in source order.
    pub fn directives(&self) -> &[(String, String)] {
        &self.directives
    }

    /// The instructions, typed. Fails on the first instruction that is not valid (an unknown
    /// keyword, a flag it does not take, a missing argument), naming its line.
    pub fn instructions(&self) -> Result<Vec<Spanned<Instruction>>, Error> {
        self.nodes
            .iter()
            .map(|node| {
                instruction::instruction_from_node(node)
                    .map(|value| Spanned { value, span: node.span })
                    .map_err(|m| self.error_at(node.span, m))
            })
            .collect()
    }

    /// An error located at `span` in this file.
    pub(crate) fn error_at(&self, span: Span, message: String) -> Error {
        Error::new(span.start, span.end_line, message).in_file(&self.file, &self.source)
    }

    /// BuildKit's AST dump: one `(keyword ["--flags"] "arg" ...)` line per instruction.
    pub fn dump(&self) -> String {
        dump::dump(&self.nodes)
    }
}

/// Parses Dockerfile text. `file` names the file in error messages.
pub fn parse(source: &str, file: &str) -> Result<Dockerfile, Error> {
    let scanned = line::scan(source).map_err(|e| e.in_file(file, source))?;
    Ok(Dockerfile {
        nodes: scanned.nodes,
        warnings: scanned.warnings,
        escape: scanned.directives.escape(),
        directives: scanned.directives.found,
        file: file.to_string(),
        source: source.to_string(),
    })
}

/// Parses Dockerfile bytes; invalid UTF-8 is replaced (U+FFFD) rather than rejected, since
/// BuildKit reads bytes and real files in other encodings still parse.
pub fn parse_bytes(source: &[u8], file: &str) -> Result<Dockerfile, Error> {
    parse(&String::from_utf8_lossy(source), file)
}
