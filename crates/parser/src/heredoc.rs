//! Here-documents (`RUN <<EOF`, `COPY <<-"EOT" /dst`): finding the `<<` words of an
//! instruction line and reading their names. The bodies are consumed by the line scanner.

use nom::bytes::complete::{tag, take_while};
use nom::character::complete::digit0;
use nom::combinator::opt;
use nom::{IResult, Parser};

/// One here-document of an instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed (`EOF` for `<<'EOF'`).
    pub name: String,
    /// The file descriptor before `<<` (`3<<EOF`), 0 when absent.
    pub fd: u32,
    /// False when any part of the delimiter was quoted: the body is taken literally.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped from the body lines (see [`chomp`]).
    pub chomp: bool,
    /// The raw body, every line with its newline, leading tabs still present.
    pub content: String,
}

/// Removes leading tabs from every line, as `<<-` asks.
pub fn chomp(content: &str) -> String {
    content.split_inclusive('\n').map(|l| l.trim_start_matches('\t')).collect()
}

/// `(\d*)<<(-?)\s*(rest)` where rest has no `<`.
fn marker(word: &str) -> IResult<&str, (&str, bool)> {
    let (rest, (fd, _, dash, _)) =
        (digit0, tag("<<"), opt(tag("-")), take_while(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c')))
            .parse(word)?;
    Ok((rest, (fd, dash.is_some())))
}

/// Parses one word as a heredoc marker. `Ok(None)`: not a heredoc. `Err`: a heredoc with an
/// unbalanced quote in its name.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, String> {
    let Ok((rest, (fd, chomp))) = marker(word) else { return Ok(None) };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = if fd.is_empty() { 0 } else { fd.parse().map_err(|_| format!("invalid heredoc file descriptor {fd:?}"))? };
    let words = shell_words(rest, false)?;
    let [name] = words.as_slice() else { return Ok(None) };
    let raw = shell_words(rest, true)?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw.len() == 1 && quotes(&raw[0]) == quotes(name);
    Ok(Some(Heredoc { name: name.clone(), fd, expand, chomp, content: String::new() }))
}

/// The heredocs an instruction line (after its keyword and flags) announces, in order.
/// A line that does not lex (an unbalanced quote) announces none, as in BuildKit.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let Ok(words) = shell_words(line, true) else { return Ok(Vec::new()) };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Splits shell words for heredoc detection. With `raw`, quotes and backslashes stay in the
/// words; without, they are removed. `$` is never expanded here (BuildKit lexes with no
/// variables and keeps unset ones). `<<` pulls an optional `-` and following blanks into the
/// word, so `<<- EOF` stays one word, as BuildKit's lexer does.
fn shell_words(s: &str, raw: bool) -> Result<Vec<String>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
                i += 1;
            }
            '\'' | '"' => {
                in_word = true;
                if raw {
                    word.push(c);
                }
                i += 1;
                loop {
                    let Some(&q) = chars.get(i) else {
                        let kind = if c == '\'' { "single" } else { "double" };
                        return Err(format!("unexpected end of statement while looking for matching {kind}-quote"));
                    };
                    i += 1;
                    if q == c {
                        if raw {
                            word.push(q);
                        }
                        break;
                    }
                    if q == '\\' && c == '"' && i < chars.len() {
                        if raw {
                            word.push(q);
                        }
                        word.push(chars[i]);
                        i += 1;
                        continue;
                    }
                    word.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if raw {
                    word.push(c);
                }
                if let Some(&next) = chars.get(i + 1) {
                    word.push(next);
                }
                i += 2;
            }
            '<' if chars.get(i + 1) == Some(&'<') => {
                in_word = true;
                word.push_str("<<");
                i += 2;
                if chars.get(i) == Some(&'-') {
                    word.push('-');
                    i += 1;
                }
                while let Some(&b) = chars.get(i).filter(|b| **b == ' ' || **b == '\t') {
                    word.push(b);
                    i += 1;
                }
            }
            _ => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        let d = parse_heredoc_word("<<'EOF'").unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.expand, d.chomp), ("EOF", false, false));
        let d = parse_heredoc_word("<<-EOF").unwrap().unwrap();
        assert_eq!((d.name.as_str(), d.expand, d.chomp), ("EOF", true, true));
        assert!(parse_heredoc_word("<<'EOF").is_err());
        assert_eq!(parse_heredoc_word("<<EOF sh").unwrap(), None);
        assert_eq!(parse_heredoc_word("<<<EOF").unwrap(), None);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
