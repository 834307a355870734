//! The word splitters BuildKit's line parsers use before any variable expansion: `parseWords`
//! (quotes and escapes kept), builder-flag extraction (`--flag` words, de-quoted), and plain
//! whitespace splitting. They are small state machines rather than nom grammars because their
//! quirks (an escape at end of line is dropped, `--` ends the flags) are what must match.

/// Go's `unicode.IsSpace`, which is the Unicode White_Space property, like Rust's.
pub(crate) fn is_space(c: char) -> bool {
    c.is_whitespace()
}

/// BuildKit's `reWhitespace` (`[\t\v\f\r ]+`), used to split FROM, EXPOSE and friends.
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Splits on runs of `[\t\v\f\r ]`, dropping empty fields at the ends as Go's regexp split of
/// a trimmed string does.
pub(crate) fn split_whitespace(s: &str) -> Vec<String> {
    s.split(is_split_space).filter(|w| !w.is_empty()).map(str::to_string).collect()
}

/// Splits at the first run of `[\t\v\f\r ]` into at most two parts.
pub(crate) fn split_once_whitespace(s: &str) -> (&str, Option<&str>) {
    match s.find(is_split_space) {
        None => (s, None),
        Some(i) => (&s[..i], Some(s[i..].trim_start_matches(is_split_space))),
    }
}

/// BuildKit's `parseWords`: whitespace-separated words where quotes group and are kept, and the
/// escape character keeps the next character (both are kept in the word).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq, Clone, Copy)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        match phase {
            Phase::Spaces => {
                if is_space(ch) {
                    i += 1;
                    continue;
                }
                phase = Phase::Word;
                continue;
            }
            Phase::Word | Phase::Quote(_) => {
                let escapes = match phase {
                    Phase::Quote(quote) => {
                        if ch == quote {
                            phase = Phase::Word;
                        }
                        // Nothing can be escaped inside single quotes.
                        ch == escape && quote != '\''
                    }
                    _ => {
                        if is_space(ch) {
                            if blank_ok || !word.is_empty() {
                                words.push(std::mem::take(&mut word));
                            }
                            blank_ok = false;
                            phase = Phase::Spaces;
                            i += 1;
                            continue;
                        }
                        if ch == '\'' || ch == '"' {
                            blank_ok = true;
                            phase = Phase::Quote(ch);
                        }
                        ch == escape
                    }
                };
                if escapes {
                    // An escape at the very end is dropped (and ends an open quote); otherwise
                    // both it and the escaped character stay in the word.
                    match chars.get(i + 1) {
                        None => phase = Phase::Word,
                        Some(&next) => {
                            word.push(ch);
                            word.push(next);
                        }
                    }
                    i += 2;
                    continue;
                }
                word.push(ch);
                i += 1;
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// BuildKit's `extractBuilderFlags`: leading `--flag` words of `line`, de-quoted and
/// de-escaped (always with `\\`), then the rest of the line. A bare `--` ends the flags.
///
/// BuildKit walks bytes and tests each with `unicode.IsSpace`, so the bytes 0x85 and 0xA0
/// inside a multi-byte character split a word there. We walk characters instead: a flag such
/// as `--chown=élan` stays whole and valid UTF-8, and no split can fall inside a character.
pub(crate) fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut chars = line.char_indices().peekable();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    while let Some(&(pos, ch)) = chars.peek() {
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    chars.next();
                    continue;
                }
                if !line[pos..].starts_with("--") {
                    return (line[pos..].to_string(), words);
                }
                phase = Phase::Word;
            }
            Phase::Word => {
                chars.next();
                if ch.is_whitespace() {
                    if word == "--" {
                        return (line[pos..].to_string(), words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    // An escape at the very end is dropped.
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                chars.next();
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    // An escape at the very end drops out of the quote.
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (String::new(), words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(parse_words(r#"X Y=1 "Z=2 3""#, '\\'), vec!["X", "Y=1", "\"Z=2 3\""]);
        assert_eq!(parse_words(r"a\ b c", '\\'), vec![r"a\ b", "c"]);
        assert_eq!(parse_words("a \\", '\\'), vec!["a"]);
        assert_eq!(parse_words("''", '\\'), vec!["''"]);
    }

    #[test]
    fn flags_are_dequoted_and_stop_at_first_non_flag() {
        let (rest, flags) = extract_flags(r#"--mount=type=cache,target="/a b" --x echo --y"#);
        assert_eq!(flags, vec!["--mount=type=cache,target=/a b", "--x"]);
        assert_eq!(rest, "echo --y");
        let (rest, flags) = extract_flags("--a -- --b c");
        assert_eq!(flags, vec!["--a"]);
        assert_eq!(rest.trim(), "--b c");
        assert_eq!(extract_flags("--only").1, vec!["--only"]);
        assert_eq!(extract_flags("--a\u{0830} x"), ("x".to_string(), vec!["--a\u{0830}".to_string()]));
        assert_eq!(extract_flags("--chown=caf\u{e0} a b").1, vec!["--chown=caf\u{e0}"]);
        assert_eq!(extract_flags(r#"--x="a\"b" --y=a\ b c"#), ("c".to_string(), vec![r#"--x=a"b"#.to_string(), "--y=a b".to_string()]));
    }
}
