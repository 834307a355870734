//! Variable expansion in Dockerfile words, with BuildKit's `shell.Lex` semantics: `$a`,
//! `${a}`, `${a:-w}`, `${a-w}`, `${a:+w}`, `${a+w}`, `${a:?msg}`, `${a?msg}`, `${a#p}`,
//! `${a##p}`, `${a%p}`, `${a%%p}`, `${a/p/r}`, `${a//p/r}`, single and double quotes, and the
//! escape character. Positional and special parameters (`$1`, `$@`, ...) expand to nothing.
//!
//! It is a hand-written scanner rather than a nom grammar because its results are defined by
//! BuildKit's scanner step by step (where an escape is kept, when a word splits), and the
//! glob patterns of `#`/`%`/`/` are matched directly instead of through a regex engine.
//!
//! ```
//! use std::collections::HashMap;
//! use forge_parser::expand::{expand_word, expand_words};
//! let vars = HashMap::from([("BASE".to_string(), "busybox".to_string())]);
//! let e = expand_word("${BASE}:${TAG:-latest}", &vars, '\\').unwrap();
//! assert_eq!(e.value, "busybox:latest");
//! assert!(e.matched.contains("BASE") && e.unmatched.contains("TAG"));
//! assert_eq!(expand_words("a \"b c\" $BASE", &vars, '\\').unwrap(), ["a", "b c", "busybox"]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::glob::{self, Tok};

/// How deep `${...}` may nest in one word (`${a:-${b:-...}}`), and `ONBUILD ONBUILD ...` in
/// one instruction. Both are parsed by recursion, on build threads with small stacks; real
/// Dockerfiles nest two or three deep.
pub const MAX_NESTING: usize = 100;

/// The largest result of expanding one word (1 MiB). Each `ENV a=$a$a` doubles a value, so
/// without a bound a few dozen lines exhaust memory; no real value comes near it (Linux
/// refuses to pass a single environment string over 128 KiB to a program anyway).
pub const MAX_EXPANDED_BYTES: usize = 1 << 20;

/// Where variable values come from.
pub trait Vars {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

impl Vars for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

/// `KEY=value` pairs in order; a later pair wins, as in an image's `Env`.
impl Vars for [(String, String)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self.as_slice(), name)
    }
}

/// The result of expanding one word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expanded {
    /// The expanded text, quotes removed.
    pub value: String,
    /// Variables that were looked up and set (the builder counts these as "used" build args).
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and unset.
    pub unmatched: BTreeSet<String>,
}

/// A word that cannot be expanded. Its message shows at most the first 100 characters of
/// the word and 300 of what is wrong (`${a:?$big}` makes the latter as long as a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {:?}: {}", crate::error::shorten(word, 100), crate::error::shorten(message, 300))]
pub struct ExpandError {
    /// The word as given.
    pub word: String,
    /// What is wrong with it.
    pub message: String,
}

/// Expands one word with no field splitting (ENV values, LABEL, WORKDIR, USER, FROM, ...).
pub fn expand_word(word: &str, vars: &(impl Vars + ?Sized), escape: char) -> Result<Expanded, ExpandError> {
    let mut lex = Lexer::new(word, vars, escape);
    let (value, _) = lex.process_until(&[]).map_err(|message| ExpandError { word: word.to_string(), message })?;
    Ok(Expanded { value, matched: lex.matched, unmatched: lex.unmatched })
}

/// Expands and splits into fields as a shell would (COPY/ADD sources, EXPOSE, VOLUME):
/// whitespace from variables splits, quoted text does not.
pub fn expand_words(word: &str, vars: &(impl Vars + ?Sized), escape: char) -> Result<Vec<String>, ExpandError> {
    let mut lex = Lexer::new(word, vars, escape);
    let (_, words) = lex.process_until(&[]).map_err(|message| ExpandError { word: word.to_string(), message })?;
    Ok(words)
}

/// Accumulates fields: plain characters split on whitespace, quoted and escaped ones do not.
#[derive(Default)]
struct Fields {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Fields {
    fn add_char(&mut self, c: char) {
        if c.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(c);
        }
    }

    fn add_raw_char(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
    }

    fn add_str(&mut self, s: &str) {
        s.chars().for_each(|c| self.add_char(c));
    }

    fn add_raw_str(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

struct Lexer<'a, V: ?Sized> {
    chars: Vec<char>,
    pos: usize,
    /// How many `${...}` enclose the current position.
    depth: usize,
    vars: &'a V,
    escape: char,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<'a, V: Vars + ?Sized> Lexer<'a, V> {
    fn new(word: &str, vars: &'a V, escape: char) -> Self {
        Lexer { chars: word.chars().collect(), pos: 0, depth: 0, vars, escape, matched: BTreeSet::new(), unmatched: BTreeSet::new() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.vars.get(name).map(str::to_string);
        if value.is_some() {
            self.matched.insert(name.to_string());
        } else {
            self.unmatched.insert(name.to_string());
        }
        value
    }

    /// Processes until one of `stops` (consumed) or, with no stops, the end. `raw_escapes`
    /// keeps escape characters in the result (patterns need them to tell `\*` from `*`).
    fn process(&mut self, stops: &[char], raw_escapes: bool) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut fields = Fields::default();
        while let Some(c) = self.peek() {
            check_size(&result)?;
            if stops.contains(&c) {
                self.next();
                check_size(&result)?;
                return Ok((result, fields.finish()));
            }
            match c {
                '\'' => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    fields.add_raw_str(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    fields.add_raw_str(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    fields.add_str(&s);
                }
                _ => {
                    self.next();
                    if c == self.escape {
                        if raw_escapes {
                            fields.add_raw_char(c);
                            result.push(c);
                        }
                        let Some(escaped) = self.next() else { break };
                        fields.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        fields.add_char(c);
                        result.push(c);
                    }
                }
            }
        }
        if let Some(stop) = stops.first() {
            return Err(format!("unexpected end of statement while looking for matching {stop}"));
        }
        check_size(&result)?;
        Ok((result, fields.finish()))
    }

    fn process_until(&mut self, stops: &[char]) -> Result<(String, Vec<String>), String> {
        self.process(stops, false)
    }

    fn single_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut s = String::new();
        loop {
            match self.next() {
                None => return Err("unexpected end of statement while looking for matching single-quote".into()),
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        self.next();
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err("unexpected end of statement while looking for matching double-quote".into()),
                Some('"') => {
                    self.next();
                    return Ok(s);
                }
                Some('$') => {
                    s.push_str(&self.dollar()?);
                    check_size(&s)?;
                }
                Some(c) => {
                    self.next();
                    if c == self.escape {
                        match self.peek() {
                            None => continue,
                            Some(n) if n == '"' || n == '$' || n == self.escape => {
                                self.next();
                                s.push(n);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    s.push(c);
                }
            }
        }
    }

    /// A name after `$`: letters, digits and `_`; or a run of digits (positional); or one
    /// special parameter character.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            self.next();
            name.push(c);
        }
        name
    }

    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err(format!("substitutions nested more than {MAX_NESTING} deep"));
        }
        self.depth += 1;
        let result = self.braced();
        self.depth -= 1;
        let value = result?;
        check_size(&value)?;
        Ok(value)
    }

    /// The rest of a `${...}` after the `{`.
    fn braced(&mut self) -> Result<String, String> {
        let name = self.name();
        let Some(mut op) = self.next() else { return Err("syntax error: missing '}'".into()) };
        let mut op_text = op.to_string();
        match op {
            '}' => Ok(self.lookup(&name).unwrap_or_default()),
            '/' => self.replace(&name),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = op == ':';
                if null_is_unset {
                    op = self.next().unwrap_or('\0');
                    op_text.push(op);
                }
                let pattern_op = op == '#' || op == '%';
                if null_is_unset && pattern_op {
                    return Err(format!("unsupported modifier ({op_text}) in substitution"));
                }
                let word = self.word_until('}', pattern_op, "syntax error: missing '}'")?;
                let value = self.lookup(&name);
                let empty_or_unset = value.as_deref().is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    '-' => Ok(if empty_or_unset { word } else { value.unwrap_or_default() }),
                    '+' => Ok(if empty_or_unset { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be unset" } else { &word })),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(format!("{name}: {}", if word.is_empty() { "is not allowed to be empty" } else { &word }))
                        }
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        let (greedy, pattern) = match word.strip_prefix(op) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let glob = Glob::parse(pattern)?;
                        let value = value.unwrap_or_default();
                        Ok(if op == '#' { glob.trim_prefix(&value, greedy) } else { glob.trim_suffix(&value, greedy) })
                    }
                    _ => Err(format!("unsupported modifier ({op_text}) in substitution")),
                }
            }
            _ => Err(format!("unsupported modifier ({op_text}) in substitution")),
        }
    }

    fn word_until(&mut self, stop: char, raw_escapes: bool, at_end: &str) -> Result<String, String> {
        match self.process(&[stop], raw_escapes) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(at_end.to_string()),
            Err(e) => Err(e),
        }
    }

    fn replace(&mut self, name: &str) -> Result<String, String> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = self.word_until('/', true, "syntax error: missing '/' in ${}")?;
        let replacement = self.word_until('}', true, "syntax error: missing '}'")?;
        let value = self.lookup(name).unwrap_or_default();
        let glob = Glob::parse(&pattern)?;
        glob.replace(&value, &replacement, all)
    }
}

/// A `${VAR#pattern}` pattern: `*` and `?` match anything (including `/`), `\\*`, `\\?` and
/// `\\\\` are literal, and `\\}`/`\\/` are how `}` and `/` are written inside `${...}`.
struct Glob(Vec<Tok>);

impl Glob {
    fn parse(pattern: &str) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut out = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => out.push(Tok::Star { slash: true }),
                '?' => out.push(Tok::Any { slash: true }),
                '\\' => match chars.get(i + 1) {
                    Some('}' | '/') => {}
                    Some(&c @ ('*' | '?' | '\\')) => {
                        out.push(Tok::Lit(c));
                        i += 1;
                    }
                    other => {
                        let c = other.map(|c| c.to_string()).unwrap_or_default();
                        return Err(format!("invalid pattern ({pattern}) in substitution: invalid escape '\\{c}'"));
                    }
                },
                c => out.push(Tok::Lit(c)),
            }
            i += 1;
        }
        Ok(Glob(out))
    }

    fn trim_prefix(&self, value: &str, greedy: bool) -> String {
        let chars: Vec<char> = value.chars().collect();
        match glob::prefix_len(&self.0, &chars, greedy) {
            Some(n) => chars[n..].iter().collect(),
            None => value.to_string(),
        }
    }

    /// Suffix removal as BuildKit does it: reverse the pattern and the value, trim a prefix.
    fn trim_suffix(&self, value: &str, greedy: bool) -> String {
        let reversed: Vec<Tok> = self.0.iter().rev().cloned().collect();
        let chars: Vec<char> = value.chars().rev().collect();
        match glob::prefix_len(&reversed, &chars, greedy) {
            Some(n) => chars[n..].iter().rev().collect(),
            None => value.to_string(),
        }
    }

    /// Replaces the first (or every) leftmost-longest match, like Go's regexp with greedy `.*`.
    /// Fails once the result grows past [`MAX_EXPANDED_BYTES`] (`${a//?/$a}` squares it).
    fn replace(&self, value: &str, replacement: &str, all: bool) -> Result<String, String> {
        let chars: Vec<char> = value.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        let mut replaced = false;
        while i <= chars.len() {
            let hit = if replaced && !all { None } else { glob::prefix_len(&self.0, &chars[i..], true) };
            if let Some(n) = hit {
                out.push_str(replacement);
                check_size(&out)?;
                replaced = true;
                if n > 0 {
                    i += n;
                    continue;
                }
            }
            if let Some(&c) = chars.get(i) {
                out.push(c);
            }
            i += 1;
        }
        Ok(out)
    }
}

fn check_size(s: &str) -> Result<(), String> {
    if s.len() > MAX_EXPANDED_BYTES {
        return Err(format!("the expanded word is larger than the limit of {MAX_EXPANDED_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn patterns() {
        let v = vars(&[("F", "xxyy")]);
        assert_eq!(expand_word("${F#*x}", &v, '\\').unwrap().value, "xyy");
        assert_eq!(expand_word("${F##*x}", &v, '\\').unwrap().value, "yy");
        assert_eq!(expand_word("${F%y*}", &v, '\\').unwrap().value, "xxy");
        assert_eq!(expand_word("${F%%y*}", &v, '\\').unwrap().value, "xx");
        assert_eq!(expand_word("${F/x/z}", &v, '\\').unwrap().value, "zxyy");
        assert_eq!(expand_word("${F//x/z}", &v, '\\').unwrap().value, "zzyy");
    }

    #[test]
    fn errors_name_the_word() {
        let err = expand_word("${A:?must be set}", &vars(&[]), '\\').unwrap_err();
        assert_eq!(err.to_string(), "failed to process \"${A:?must be set}\": A: must be set");
    }
}
