//! `WWW-Authenticate` challenges (RFC 7235): `Basic realm="..."` or
//! `Bearer realm="...",service="...",scope="..."`.

use std::collections::BTreeMap;

/// A parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// `basic` or `bearer`, lowercased.
    pub(crate) scheme: String,
    /// The auth-params, keys lowercased.
    pub(crate) params: BTreeMap<String, String>,
}

/// Parses one challenge header value. Quoted values may contain commas.
pub(crate) fn parse(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect::<String>().trim().to_string();
        }
        params.insert(key.trim().to_lowercase(), value);
    }
    Some(Challenge { scheme: scheme.to_lowercase(), params })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_and_basic() {
        let c = parse(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["service"], "registry.example");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let b = parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!((b.scheme.as_str(), b.params["realm"].as_str()), ("basic", "Registry Realm"));
    }
}
