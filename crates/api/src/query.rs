//! Query parameters: parsed once, checked against the endpoint's known names (an unknown one
//! is a 400, as a misspelt flag would be), and read typed: booleans as docker reads them,
//! JSON-encoded maps (`buildargs`, `labels`) and docker's `filters`.

use std::collections::{BTreeMap, HashMap};

use crate::error::ApiError;

/// The parameters of one request.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `query` and refuses names outside `known`.
    pub(crate) fn parse(query: Option<&str>, known: &[&str]) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect();
        if let Some((name, _)) = pairs.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            return Err(ApiError::bad_request(format!("unknown query parameter {name:?} (this endpoint takes: {})", known.join(", "))));
        }
        Ok(Query { pairs })
    }

    /// The last value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated `name` (`t=a&t=b`).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// A boolean as docker reads one: absent, empty, `0`, `false` and `no` are false.
    pub(crate) fn flag(&self, name: &str) -> bool {
        !matches!(self.get(name).map(str::to_ascii_lowercase).as_deref(), None | Some("" | "0" | "false" | "no"))
    }

    /// A number, or a 400 naming the parameter.
    pub(crate) fn number<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad_request(format!("invalid {name} {v:?}: not a number"))),
        }
    }

    /// A JSON object of strings (`buildargs`, `labels`); `null` values are dropped.
    pub(crate) fn json_map(&self, name: &str) -> Result<BTreeMap<String, String>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(BTreeMap::new()),
            Some(v) => {
                let map: BTreeMap<String, Option<String>> =
                    serde_json::from_str(v).map_err(|e| ApiError::bad_request(format!("invalid {name}: expected a JSON object of strings: {e}")))?;
                Ok(map.into_iter().filter_map(|(k, v)| Some((k, v?))).collect())
            }
        }
    }

    /// docker's `filters`: `{"name": ["a", "b"]}`, or the old `{"name": {"a": true}}`.
    pub(crate) fn filters(&self, known: &[&str]) -> Result<Filters, ApiError> {
        let Some(text) = self.get("filters").filter(|t| !t.is_empty()) else { return Ok(Filters::default()) };
        let value: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| ApiError::bad_request(format!("invalid filters: expected a JSON object: {e}")))?;
        let mut filters = BTreeMap::new();
        for (name, v) in value {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter {name:?} (this endpoint takes: {})", known.join(", "))));
            }
            let values: Vec<String> = match v {
                serde_json::Value::Array(items) => items.into_iter().map(|i| i.as_str().map(str::to_string)).collect::<Option<_>>(),
                serde_json::Value::Object(map) => Some(map.into_iter().filter(|(_, on)| on.as_bool() == Some(true)).map(|(k, _)| k).collect()),
                _ => None,
            }
            .ok_or_else(|| ApiError::bad_request(format!("invalid filter {name:?}: expected a list of strings")))?;
            filters.insert(name, values);
        }
        Ok(Filters(filters))
    }
}

/// Parsed `filters`: a filter with several values matches any of them.
#[derive(Debug, Default)]
pub(crate) struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// The values of one filter (empty: not given).
    pub(crate) fn values(&self, name: &str) -> &[String] {
        self.0.get(name).map_or(&[], Vec::as_slice)
    }

    /// A boolean filter (`dangling=true`); a 400 for anything but true/false/1/0.
    pub(crate) fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.values(name).first().map(String::as_str) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_request(format!("invalid filter '{name}={other}': expected true or false"))),
        }
    }
}

/// docker's `label` filter, `KEY` (present) or `KEY=VALUE`, against `labels`.
pub(crate) fn label_matches(labels: &BTreeMap<String, String>, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(filter),
    }
}

/// `pattern` (docker's reference filter: a path glob with `*` and `?`, not crossing `/`)
/// against `name`.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    fn matches(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], n) || (!n.is_empty() && n[0] != b'/' && matches(p, &n[1..])),
            (Some(b'?'), Some(c)) if *c != b'/' => matches(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => matches(&p[1..], &n[1..]),
            _ => false,
        }
    }
    // A hand-written matcher: docker's filter is Go's path.Match, which no well-kept crate
    // reproduces exactly (globset lets `*` cross `/` unless configured, and adds syntax).
    matches(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::{glob, Query};

    #[test]
    fn unknown_parameters_are_refused_by_name() {
        let err = Query::parse(Some("all=1&bogus=2"), &["all", "filters"]).err().unwrap();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("\"bogus\""), "{}", err.message);
        let q = Query::parse(Some("all=1&t=a&t=b&q=false"), &["all", "t", "q"]).unwrap();
        assert!(q.flag("all") && !q.flag("q"));
        assert_eq!(q.all("t"), ["a", "b"]);
    }

    #[test]
    fn filters_take_both_encodings() {
        let q = Query::parse(Some(r#"filters={"reference":["app*"],"dangling":{"true":true}}"#), &["filters"]).unwrap();
        let f = q.filters(&["reference", "dangling"]).unwrap();
        assert_eq!(f.values("reference"), ["app*"]);
        assert_eq!(f.boolean("dangling").unwrap(), Some(true));
        assert!(q.filters(&["reference"]).unwrap_err().message.contains("dangling"));
        let bad = Query::parse(Some("filters={nope"), &["filters"]).unwrap();
        assert!(bad.filters(&[]).unwrap_err().message.starts_with("invalid filters"));
    }

    #[test]
    fn reference_globs_stop_at_slashes() {
        assert!(glob("app*", "app:1"));
        assert!(glob("*/app:?", "reg/app:1"));
        assert!(!glob("*", "reg/app"));
        assert!(!glob("app", "app2"));
    }
}
