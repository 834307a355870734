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
    let (rest, (_, _, key, _, _, _)) = (
        tag("#"),
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

    /// Looks at one physical line (left-trimmed for the first line of an instruction).
    /// Returns an error message for a repeated directive or a bad escape character.
    pub(crate) fn observe(&mut self, line: &str) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let Ok((_, (key, value))) = directive_line(line) else {
            self.done = true;
            return Ok(());
        };
        let key = key.to_ascii_lowercase();
        if !KNOWN.contains(&key.as_str()) {
            self.done = true;
            return Ok(());
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
        Ok(())
    }
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
