//! Parser directives (`# syntax=…`, `# escape=…`, `# check=…`): honoured only in the block of
//! lines at the very top of the file, ended by the first line that is not one.

use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::satisfy;
use nom::combinator::recognize;
use nom::sequence::pair;
use nom::{IResult, Parser};

/// The directives BuildKit knows; any other `# key=value` line ends the directive block.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Go's RE2 `\s`: ASCII blanks only (no `\v`).
fn is_re2_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')
}

/// `#` blanks key blanks `=` blanks value — BuildKit's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`.
fn directive_line(input: &str) -> IResult<&str, (&str, &str)> {
    directive_line_with(input, "#")
}

/// [`directive_line`] with another comment marker (`//` for syntax detection).
fn directive_line_with<'a>(input: &'a str, comment: &str) -> IResult<&'a str, (&'a str, &'a str)> {
    let (rest, (_, _, key, _, _, _)) = (
        tag(comment),
        take_while(is_re2_space),
        recognize(pair(satisfy(|c| c.is_ascii_alphabetic()), take_while(|c: char| c.is_ascii_alphanumeric()))),
        take_while(is_re2_space),
        tag("="),
        take_while(is_re2_space),
    )
        .parse(input)?;
    let (_, value) = take_while1(|_| true).parse(rest)?;
    Ok(("", (key, value.trim_end_matches(is_re2_space))))
}

/// Tracks the directive block and the escape character it sets.
#[derive(Debug)]
pub(crate) struct Directives {
    done: bool,
    seen: Vec<String>,
    escape: char,
    /// `(name, value)` pairs in source order, names lowercased.
    pub(crate) found: Vec<(String, String)>,
}

impl Directives {
    pub(crate) fn new() -> Directives {
        Directives { done: false, seen: Vec::new(), escape: '\\', found: Vec::new() }
    }

    /// The escape character: `\` unless `# escape=` said `` ` ``.
    pub(crate) fn escape(&self) -> char {
        self.escape
    }

    /// Looks at one physical line (left-trimmed for the first line of an instruction) and
    /// says whether it was a directive (then it is not a comment of the next instruction).
    /// Returns an error message for a repeated directive or a bad escape character.
    pub(crate) fn observe(&mut self, line: &str) -> Result<bool, String> {
        if self.done {
            return Ok(false);
        }
        let Ok((_, (key, value))) = directive_line(line) else {
            self.done = true;
            return Ok(false);
        };
        let key = key.to_ascii_lowercase();
        if !KNOWN.contains(&key.as_str()) {
            self.done = true;
            return Ok(false);
        }
        if self.seen.contains(&key) {
            return Err(format!("only one {key} parser directive can be used"));
        }
        self.seen.push(key.clone());
        if key == "escape" {
            match value {
                "\\" => self.escape = '\\',
                "`" => self.escape = '`',
                other => return Err(format!("invalid escape token '{other}' does not match ` or \\")),
            }
        }
        self.found.push((key, value.to_string()));
        Ok(true)
    }
}

/// A directive found by [`detect_syntax`] or [`find_directive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectiveValue {
    /// The value up to the first space (`docker/dockerfile:1` for `docker/dockerfile:1 // opts`).
    pub reference: String,
    /// The whole value.
    pub cmdline: String,
    /// The 1-based line it is on.
    pub line: usize,
}

/// Finds the `syntax` directive as BuildKit's `DetectSyntax` does: after an optional BOM and
/// `#!` line, in the `#` directive block, else in a `//` directive block, else in a JSON object.
pub fn detect_syntax(source: &str) -> Option<DirectiveValue> {
    scan_directive("syntax", source, true)
}

/// Finds the `#`-comment directive `key` (such as `check`) in the directive block.
pub fn find_directive(key: &str, source: &str) -> Option<DirectiveValue> {
    scan_directive(key, source, false)
}

fn scan_directive(key: &str, source: &str, any_format: bool) -> Option<DirectiveValue> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let (body, first_line) = match source.strip_prefix("#!") {
        Some(rest) => (rest.split_once('\n').map_or("", |(_, r)| r), 1),
        None => (source, 0),
    };
    let value = |v: &str, line: usize| DirectiveValue {
        reference: v.split(' ').next().unwrap_or_default().to_string(),
        cmdline: v.to_string(),
        line,
    };
    let markers: &[&str] = if any_format { &["#", "//"] } else { &["#"] };
    for marker in markers {
        for (i, line) in body.split('\n').enumerate() {
            let line = line.trim_end_matches('\r');
            let Ok((_, (k, v))) = directive_line_with(line, marker) else {
                break;
            };
            let k = k.to_ascii_lowercase();
            if !KNOWN.contains(&k.as_str()) {
                break;
            }
            if k == key {
                return Some(value(v, first_line + i + 1));
            }
        }
    }
    if any_format {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(body) {
            if let Some(serde_json::Value::String(v)) = map.get(key) {
                return Some(value(v, 1));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_directives() {
        assert_eq!(directive_line("# escape = ` ").unwrap().1, ("escape", "`"));
        assert_eq!(directive_line("#syntax=docker/dockerfile:1").unwrap().1, ("syntax", "docker/dockerfile:1"));
        assert!(directive_line("# not a directive").is_err());
        assert!(directive_line("#=x").is_err());
    }

    #[test]
    fn block_ends_at_first_other_line() {
        let mut d = Directives::new();
        d.observe("# escape=`").unwrap();
        d.observe("# comment").unwrap();
        d.observe("# syntax=x").unwrap();
        assert_eq!(d.escape(), '`');
        assert_eq!(d.found.len(), 1);
    }

    #[test]
    fn repeated_and_bad_escape_fail() {
        let mut d = Directives::new();
        d.observe("# escape=\\").unwrap();
        assert!(d.observe("# escape=`").unwrap_err().contains("only one escape"));
        let mut d = Directives::new();
        assert!(d.observe("# escape=x").unwrap_err().contains("invalid escape token"));
    }
}
