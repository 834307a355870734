//! From text to instructions: physical lines, the directive block, comments, line
//! continuations (with BuildKit's rules), and heredoc bodies.

use crate::directive::Directives;
use crate::error::Error;
use crate::heredoc::heredocs_from_line;
use crate::node::{node_from_line, Node};
use crate::span::{Position, Span};

/// BuildKit reads lines with Go's `bufio.Scanner`, whose default token limit this is.
pub const MAX_LINE_BYTES: usize = 65535;

/// A warning that does not stop the parse (an empty line inside a continuation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The message, as BuildKit words it.
    pub message: String,
    /// The last line of the instruction it concerns, where BuildKit reports it.
    pub line: usize,
    /// Why it matters.
    pub detail: &'static str,
}

/// What the scanner found: instructions, warnings and the directive block.
pub(crate) struct Scanned {
    pub nodes: Vec<Node>,
    pub warnings: Vec<Warning>,
    pub directives: Directives,
}

/// A physical line without its `\n`, and whether it had one (heredoc bodies keep it).
struct PhysicalLine<'a> {
    text: &'a str,
    newline: bool,
}

fn physical_lines(source: &str) -> Vec<PhysicalLine<'_>> {
    let mut lines: Vec<PhysicalLine<'_>> = source
        .split_inclusive('\n')
        .map(|l| PhysicalLine { text: l.strip_suffix('\n').unwrap_or(l), newline: l.ends_with('\n') })
        .collect();
    if lines.is_empty() {
        lines.push(PhysicalLine { text: "", newline: false });
    }
    lines
}

/// Go's `bytes.TrimRight(src, "\r\n")` once the `\n` is gone.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    trim_newline(s).trim_start().starts_with('#')
}

/// BuildKit's continuation rule ``([^\\])\\[ \t]*$|^\\[ \t]*$`` (with the escape character):
/// returns the line without the trailing escape, or `None` when the line does not continue.
fn strip_continuation(line: &str, escape: char) -> Option<String> {
    let body = line.trim_end_matches([' ', '\t']);
    let before = body.strip_suffix(escape)?;
    match before.chars().last() {
        None => Some(String::new()),
        Some(c) if c == escape => None,
        Some(_) => Some(before.to_string()),
    }
}

pub(crate) fn scan(source: &str) -> Result<Scanned, Error> {
    let lines = physical_lines(source);
    let mut directives = Directives::new();
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut consumed = 0usize; // lines consumed so far == 1-based number of the last one
    let at = |line: usize, column: usize, end: usize, msg: String| Error::new(Position { line, column }, end, msg);

    while consumed < lines.len() {
        let raw = lines[consumed].text;
        let raw = if consumed == 0 { raw.strip_prefix('\u{feff}').unwrap_or(raw) } else { raw };
        consumed += 1;
        let start_line = consumed;
        if raw.len() > MAX_LINE_BYTES {
            return Err(at(start_line, 1, start_line, format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}")));
        }
        let token = trim_newline(raw);
        let stripped = token.trim_start();
        let column = token.len() - stripped.len() + 1;
        let directive = directives.observe(stripped).map_err(|m| at(start_line, 1, start_line, m))?;
        if is_comment(raw) && !directive {
            // BuildKit drops the first byte of the untrimmed line, so an indented comment keeps its '#'.
            let text = raw.get(1..).unwrap_or("").trim().to_string();
            if text.is_empty() {
                comments.clear();
            } else {
                comments.push(text);
            }
        }
        let escape = directives.escape();
        let first = if is_comment(stripped) { "" } else { stripped };
        let (mut line, mut continues) = match strip_continuation(first, escape) {
            Some(l) => (l, true),
            None => (first.to_string(), false),
        };
        if !continues && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while continues && consumed < lines.len() {
            let next = lines[consumed].text;
            consumed += 1;
            if next.len() > MAX_LINE_BYTES {
                return Err(at(consumed, 1, consumed, format!("dockerfile line greater than max allowed size of {MAX_LINE_BYTES}")));
            }
            let token = trim_newline(next);
            directives.observe(token).map_err(|m| at(consumed, 1, consumed, m))?;
            if is_comment(next) {
                continue;
            }
            if token.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            match strip_continuation(token, escape) {
                Some(l) => line.push_str(&l),
                None => {
                    line.push_str(token);
                    continues = false;
                }
            }
        }
        if empty_continuation {
            warnings.push(Warning {
                message: format!("Empty continuation line found in: {line}"),
                line: consumed,
                detail: "Empty continuation lines will become errors in a future release.",
            });
        }
        let span = Span { start: Position { line: start_line, column }, end_line: consumed };
        let mut node =
            node_from_line(&line, escape, std::mem::take(&mut comments), span).map_err(|m| at(start_line, column, consumed, m))?;
        if node.can_contain_heredoc() && line.contains("<<") {
            let docs = heredocs_from_line(&line).map_err(|m| at(start_line, column, consumed, m))?;
            for mut doc in docs {
                let mut terminated = false;
                while consumed < lines.len() {
                    let body = &lines[consumed];
                    consumed += 1;
                    let mut candidate = trim_newline(body.text);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(body.text);
                    if body.newline {
                        doc.content.push('\n');
                    }
                }
                if !terminated {
                    return Err(at(start_line, column, consumed, format!("unterminated heredoc {}", doc.name)));
                }
                node.heredocs.push(doc);
            }
            node.span.end_line = consumed;
        }
        nodes.push(node);
    }
    if nodes.is_empty() {
        return Err(at(0, 0, 0, "file with no instructions".to_string()));
    }
    Ok(Scanned { nodes, warnings, directives })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_rule() {
        assert_eq!(strip_continuation("echo a \\", '\\').as_deref(), Some("echo a "));
        assert_eq!(strip_continuation("echo a \\  \t", '\\').as_deref(), Some("echo a "));
        assert_eq!(strip_continuation("\\", '\\').as_deref(), Some(""));
        assert_eq!(strip_continuation(r"C:\\", '\\'), None);
        assert_eq!(strip_continuation("echo `", '`').as_deref(), Some("echo "));
        assert_eq!(strip_continuation("echo", '\\'), None);
    }
}
