//! Canonical JSON for everything the store hashes (configs, manifests, the index): object keys
//! sorted at every depth, no insignificant whitespace. oci-spec serializes several maps through
//! `HashMap`, so the same value could otherwise hash differently from run to run.

use serde::Serialize;
use serde_json::{Map, Value};

/// Serializes `value` canonically.
pub fn to_vec<T: Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&sorted(serde_json::to_value(value)?))
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v = serde_json::json!({"b": 1, "a": {"z": [ {"y": 1, "x": 2} ], "c": null}});
        assert_eq!(String::from_utf8(super::to_vec(&v).unwrap()).unwrap(), r#"{"a":{"c":null,"z":[{"x":2,"y":1}]},"b":1}"#);
    }
}
