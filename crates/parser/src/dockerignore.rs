//! `.dockerignore` matching with moby's patternmatcher semantics: Go `filepath.Match`-style
//! globs plus `**`, `!` exceptions where the last matching pattern wins, and a path counting
//! as excluded when one of its parent directories is.
//!
//! It is not gitignore: the `ignore` and `globset` crates answer differently (anchoring,
//! `**` handling, parent matches), so the matcher is written here against moby's tables.
//!
//! ```
//! use forge_parser::dockerignore::Dockerignore;
//! let ig = Dockerignore::parse("# build output\nnode_modules\n!node_modules/keep\n*.log\n").unwrap();
//! assert!(ig.is_excluded("node_modules/a/b.js").unwrap());
//! assert!(!ig.is_excluded("node_modules/keep").unwrap());
//! assert!(ig.is_excluded("debug.log").unwrap());
//! // node_modules itself is excluded but an exception reaches inside: the walker must enter it.
//! assert!(!ig.can_skip_dir("node_modules").unwrap());
//! ```

use crate::glob::{self, Tok};

/// A pattern list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A lone `!`.
    #[error("illegal exclusion pattern: \"!\"")]
    LoneBang,
    /// A pattern whose glob syntax is broken (an unterminated `[`, a reversed range...).
    #[error("syntax error in pattern {:?}: {reason}", crate::error::shorten(pattern, 100))]
    BadPattern {
        /// The pattern as cleaned.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    /// The compiled form, or why it does not compile (reported when matching, as upstream).
    toks: Result<Vec<Tok>, String>,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

impl Dockerignore {
    /// Compiles patterns as given (one per entry; blank ones are skipped).
    pub fn new<S: AsRef<str>>(patterns: impl IntoIterator<Item = S>) -> Result<Dockerignore, IgnoreError> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let mut p = clean(p);
            let exclusion = p.starts_with('!');
            if exclusion {
                if p.len() == 1 {
                    return Err(IgnoreError::LoneBang);
                }
                p = p[1..].to_string();
            }
            let toks = compile(&p);
            if let Err(reason) = &toks {
                // Upstream rejects at build time what filepath.Match rejects (broken syntax),
                // and only at match time what its regexp compiler rejects (reversed ranges).
                if !reason.starts_with("invalid character class range") {
                    return Err(IgnoreError::BadPattern { pattern: p, reason: reason.clone() });
                }
            }
            out.push(Pattern { exclusion, cleaned: p, toks });
        }
        Ok(Dockerignore { patterns: out })
    }

    /// Parses the text of a `.dockerignore` file: `#` comment lines, blank lines skipped,
    /// patterns trimmed and cleaned, a leading `/` dropped.
    pub fn parse(text: &str) -> Result<Dockerignore, IgnoreError> {
        Dockerignore::new(read_patterns(text))
    }

    /// True when there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `path` (relative to the context, `/`-separated) is excluded: the last pattern
    /// that matches it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> Result<bool, IgnoreError> {
        let parent = go_dir(path);
        let parents: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            // An exception only matters once something matched; an inclusion only until then.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(path)?;
            if !hit && parent != "." {
                for i in 0..parents.len() {
                    if pattern.matches(&parents[..=i].join("/"))? {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Whether a context walker may skip the directory `dir` without reading it: it is
    /// excluded and no `!` exception could re-include anything below it.
    pub fn can_skip_dir(&self, dir: &str) -> Result<bool, IgnoreError> {
        if !self.is_excluded(dir)? {
            return Ok(false);
        }
        let dir_parts: Vec<&str> = dir.split('/').collect();
        Ok(!self.patterns.iter().filter(|p| p.exclusion).any(|p| could_match_below(&p.cleaned, &dir_parts)))
    }
}

/// Whether an exception pattern might match `dir` or a path below it: its leading components
/// must be able to match `dir`'s, and `**` could match anything.
fn could_match_below(pattern: &str, dir_parts: &[&str]) -> bool {
    for (i, part) in pattern.split('/').enumerate() {
        if part.contains("**") {
            return true;
        }
        let Some(dir_part) = dir_parts.get(i) else { return true };
        match compile(part) {
            Ok(toks) => {
                if !glob::matches(&toks, &dir_part.chars().collect::<Vec<_>>()) {
                    return false;
                }
            }
            Err(_) => return true,
        }
    }
    // The pattern names `dir` itself or one of its parents: it re-includes everything below.
    true
}

impl Pattern {
    fn matches(&self, path: &str) -> Result<bool, IgnoreError> {
        let toks = self
            .toks
            .as_ref()
            .map_err(|reason| IgnoreError::BadPattern { pattern: self.cleaned.clone(), reason: reason.clone() })?;
        let chars: Vec<char> = path.chars().collect();
        Ok(glob::matches(toks, &chars))
    }
}

/// One pattern in `.dockerignore` syntax (`*`, `?`, `[...]`, `**`) matched against a whole
/// `/`-separated path, with no parent-directory rule: what COPY and ADD source wildcards mean.
#[derive(Debug, Clone)]
pub struct Glob {
    toks: Vec<Tok>,
}

impl Glob {
    /// Compiles `pattern` (cleaned first, as a source path is).
    pub fn new(pattern: &str) -> Result<Glob, IgnoreError> {
        let cleaned = clean(pattern);
        compile(&cleaned)
            .map(|toks| Glob { toks })
            .map_err(|reason| IgnoreError::BadPattern { pattern: cleaned, reason })
    }

    /// Whether the whole of `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        let chars: Vec<char> = path.chars().collect();
        glob::matches(&self.toks, &chars)
    }

    /// Whether `s` has any wildcard character, i.e. whether it needs matching at all.
    pub fn has_wildcards(s: &str) -> bool {
        s.contains(['*', '?', '['])
    }
}

fn read_patterns(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = if i == 0 { line.strip_prefix('\u{feff}').unwrap_or(line) } else { line };
        if line.starts_with('#') {
            continue;
        }
        let mut p = line.trim();
        if p.is_empty() {
            continue;
        }
        let invert = p.starts_with('!');
        if invert {
            p = p[1..].trim();
        }
        let mut pattern = String::new();
        if !p.is_empty() {
            pattern = clean(p);
            if pattern.len() > 1 && pattern.starts_with('/') {
                pattern.remove(0);
            }
        }
        out.push(if invert { format!("!{pattern}") } else { pattern });
    }
    out
}

/// Go's `filepath.Clean` for `/`-separated paths: the form patterns are compared in.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir`.
fn go_dir(path: &str) -> String {
    match path.rfind('/') {
        None => ".".into(),
        Some(i) => clean(&path[..=i]),
    }
}

/// Compiles a cleaned pattern the way patternmatcher builds its regexp.
fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                toks.push(if i >= chars.len() { Tok::Star { slash: true } } else { Tok::AnyDirs });
            }
            '*' => toks.push(Tok::Star { slash: false }),
            '?' => toks.push(Tok::Any { slash: false }),
            '\\' => {
                let n = *chars.get(i).ok_or("trailing backslash")?;
                toks.push(Tok::Lit(n));
                i += 1;
            }
            '[' => {
                let (class, next) = parse_class(&chars, i)?;
                toks.push(class);
                i = next;
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// A `[...]` class starting after the `[`, with `filepath.Match`'s syntax: items cannot start
/// with `-` or `]`, `\\` escapes, `lo-hi` ranges. Returns the token and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Result<(Tok, usize), String> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Tok::Class { negated, ranges }, i + 1));
        }
        let lo = class_char(chars, &mut i)?;
        let mut hi = lo;
        if chars.get(i) == Some(&'-') {
            i += 1;
            hi = class_char(chars, &mut i)?;
        }
        if lo > hi {
            return Err(format!("invalid character class range: `{lo}-{hi}`"));
        }
        ranges.push((lo, hi));
    }
}

/// One character of a class (Go's `getEsc`).
fn class_char(chars: &[char], i: &mut usize) -> Result<char, String> {
    let bad = || "malformed character class".to_string();
    let c = *chars.get(*i).ok_or_else(bad)?;
    if c == '-' || c == ']' {
        return Err(bad());
    }
    *i += 1;
    if c != '\\' {
        return Ok(c);
    }
    let escaped = *chars.get(*i).ok_or_else(bad)?;
    *i += 1;
    Ok(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_clean() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/../a/"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
    }

    #[test]
    fn skip_dir_decisions() {
        let ig = Dockerignore::parse("build\nlogs\n!logs/keep.txt\n!**/*.md\n").unwrap();
        // **/*.md could re-include a README anywhere.
        assert!(!ig.can_skip_dir("build").unwrap());
        let ig = Dockerignore::parse("build\nlogs\n!logs/keep.txt\n").unwrap();
        assert!(ig.can_skip_dir("build").unwrap());
        assert!(!ig.can_skip_dir("logs").unwrap());
        assert!(!ig.can_skip_dir("src").unwrap());
    }
}
