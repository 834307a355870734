//! BuildKit's generic syntax tree: one [`Node`] per instruction with its keyword, flags and
//! argument list, built by the same per-instruction line parsers BuildKit uses, so that
//! [`crate::Dockerfile::dump`] matches BuildKit's `Node.Dump()` byte for byte.

use crate::heredoc::Heredoc;
use crate::span::Span;
use crate::words::{extract_flags, parse_words, split_once_whitespace, split_whitespace};

/// One instruction as BuildKit's parser sees it, before typing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, `Copy`...).
    pub keyword: String,
    /// The whole logical line, continuations joined.
    pub original: String,
    /// Leading `--flag` words, de-quoted (`--mount=type=cache,target=/x`).
    pub flags: Vec<String>,
    /// The arguments, shaped per instruction (see the crate docs).
    pub args: Vec<Arg>,
    /// True when the arguments came from a JSON array (exec form).
    pub json: bool,
    /// Here-documents announced on the line, with their bodies.
    pub heredocs: Vec<Heredoc>,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
    /// Where the instruction is.
    pub span: Span,
}

/// One argument of a [`Node`]: a string, or (for ONBUILD) a nested instruction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// A plain argument.
    Word(String),
    /// The instruction ONBUILD wraps.
    Nested(Box<Node>),
}

impl Arg {
    /// The string of a plain argument; `None` for a nested instruction.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Arg::Word(s) => Some(s),
            Arg::Nested(_) => None,
        }
    }
}

impl Node {
    /// The keyword, lowercased: what the dispatch and the dump use.
    pub fn command(&self) -> String {
        self.keyword.to_lowercase()
    }

    /// The plain string arguments (nested nodes skipped).
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.args.iter().filter_map(Arg::as_str)
    }

    /// Whether this instruction may carry heredocs: RUN, COPY, ADD (also under ONBUILD), in
    /// shell form only.
    pub(crate) fn can_contain_heredoc(&self) -> bool {
        let node = match (self.command().as_str(), self.args.first()) {
            ("onbuild", Some(Arg::Nested(inner))) => inner,
            _ => self,
        };
        matches!(node.command().as_str(), "run" | "copy" | "add") && !node.json
    }
}

/// Error message BuildKit gives for a JSON array with non-string elements.
pub(crate) const NOT_STRING_ARRAY: &str = "when using JSON array syntax, arrays must be comprised of strings only";

/// Builds the node for one logical line. Errors are messages; the caller adds the location.
pub(crate) fn node_from_line(line: &str, escape: char, comments: Vec<String>, span: Span) -> Result<Node, String> {
    nested_node(line, escape, comments, span, 0)
}

/// `node_from_line` for an instruction inside `depth` ONBUILDs.
fn nested_node(line: &str, escape: char, comments: Vec<String>, span: Span, depth: usize) -> Result<Node, String> {
    let trimmed = line.trim();
    let (keyword, rest) = split_once_whitespace(trimmed);
    let (args_text, flags) = match rest {
        Some(rest) => extract_flags(rest),
        None => (String::new(), Vec::new()),
    };
    let args_text = args_text.trim();
    let (args, json) = match keyword.to_lowercase().as_str() {
        "add" | "copy" | "volume" => maybe_json_to_list(args_text)?,
        "run" | "cmd" | "entrypoint" | "shell" => maybe_json(args_text)?,
        "from" | "expose" => (words(split_whitespace(args_text)), false),
        "env" => (name_val(args_text, "ENV", escape)?, false),
        "label" => (name_val(args_text, "LABEL", escape)?, false),
        "arg" => (words(parse_words(args_text, escape)), false),
        "maintainer" | "user" | "workdir" | "stopsignal" => (string(args_text), false),
        "healthcheck" => health(args_text)?,
        "onbuild" => {
            if args_text.is_empty() {
                (Vec::new(), false)
            } else {
                // BuildKit parses `ONBUILD ONBUILD ...` and rejects it later; the parse
                // recurses per level, so a line of thousands must stop here first.
                if depth >= crate::expand::MAX_NESTING {
                    return Err(format!("ONBUILD nested more than {} deep", crate::expand::MAX_NESTING));
                }
                let inner = nested_node(args_text, escape, Vec::new(), span, depth + 1)?;
                (vec![Arg::Nested(Box::new(inner))], false)
            }
        }
        // BuildKit keeps unknown instructions with one empty argument and rejects them later.
        _ => (vec![Arg::Word(String::new())], false),
    };
    Ok(Node {
        keyword: keyword.to_string(),
        original: line.to_string(),
        flags,
        args,
        json,
        heredocs: Vec::new(),
        comments,
        span,
    })
}

fn words(list: Vec<String>) -> Vec<Arg> {
    list.into_iter().map(Arg::Word).collect()
}

fn string(rest: &str) -> Vec<Arg> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![Arg::Word(rest.to_string())]
    }
}

/// `Ok(Some(list))` for a JSON array of strings, `Ok(None)` when the text is not JSON at all
/// (then it is shell form), `Err` for a JSON array holding something other than strings.
///
/// Like Go's `json.Decoder.Decode`, only the first JSON value counts: trailing text after the
/// closing bracket is ignored.
pub(crate) fn parse_json_array(rest: &str) -> Result<Option<Vec<String>>, String> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<serde_json::Value>();
    let Some(Ok(serde_json::Value::Array(items))) = values.next() else { return Ok(None) };
    items
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(NOT_STRING_ARRAY.to_string()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn maybe_json(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match parse_json_array(rest)? {
        Some(list) => (words(list), true),
        None => (string(rest), false),
    })
}

fn maybe_json_to_list(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    Ok(match parse_json_array(rest)? {
        Some(list) => (words(list), true),
        None => (words(split_whitespace(rest)), false),
    })
}

/// ENV and LABEL: the old `KEY value` form (key, value, "") or the `k=v ...` form (k, v, "=").
fn name_val(rest: &str, key: &str, escape: char) -> Result<Vec<Arg>, String> {
    let list = parse_words(rest, escape);
    let Some(first) = list.first() else { return Ok(Vec::new()) };
    if !first.contains('=') {
        let (name, value) = split_once_whitespace(rest);
        let Some(value) = value else {
            return Err(format!("{key} must have two arguments"));
        };
        return Ok(words(vec![name.to_string(), value.to_string(), String::new()]));
    }
    let mut out = Vec::new();
    for word in list {
        let Some((k, v)) = word.split_once('=') else {
            return Err(format!("Syntax error - can't find = in {word:?}. Must be of the form: name=value"));
        };
        out.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(words(out))
}

/// HEALTHCHECK: the first word (CMD, NONE, ...) then the rest as RUN's arguments.
fn health(rest: &str) -> Result<(Vec<Arg>, bool), String> {
    // BuildKit tests bytes with unicode.IsSpace, so 0x85 and 0xA0 bytes split too; in valid
    // UTF-8 those bytes only occur inside multi-byte characters, which we keep whole.
    let sep = rest.find(char::is_whitespace).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let typ = &rest[..sep];
    let (mut cmd, json) = maybe_json(rest[sep..].trim_start())?;
    let mut args = vec![Arg::Word(typ.to_string())];
    args.append(&mut cmd);
    Ok((args, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(line: &str) -> Result<Node, String> {
        node_from_line(line, '\\', Vec::new(), Span::default())
    }

    #[test]
    fn json_arrays() {
        assert_eq!(parse_json_array(r#"[ "a", "b" ] tail"#).unwrap(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(parse_json_array(r#"["a", 1]"#).unwrap_err(), NOT_STRING_ARRAY);
        assert_eq!(parse_json_array(r#"["a""#).unwrap(), None);
        assert_eq!(parse_json_array("echo").unwrap(), None);
    }

    #[test]
    fn env_forms() {
        let n = node("ENV a=b c=\"d e\"").unwrap();
        assert_eq!(n.words().collect::<Vec<_>>(), vec!["a", "b", "=", "c", "\"d e\"", "="]);
        assert_eq!(node("ENV onlyname").unwrap_err(), "ENV must have two arguments");
        assert!(node("LABEL a=b c").unwrap_err().contains("can't find ="));
    }

    #[test]
    fn onbuild_nests() {
        let n = node("ONBUILD COPY --from=x a b").unwrap();
        let Arg::Nested(inner) = &n.args[0] else { panic!("not nested") };
        assert_eq!(inner.flags, vec!["--from=x"]);
    }
}
