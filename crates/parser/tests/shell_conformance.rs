//! BuildKit's shell-expansion tables (../shared/conformance/buildkit-shell).

use std::collections::HashMap;
use std::path::PathBuf;

use forge_parser::expand::{expand_word, expand_words};

fn dir() -> Option<PathBuf> {
    forge_testkit::shared_data("conformance/buildkit-shell")
}

#[test]
fn env_var_test() {
    let Some(dir) = dir() else { return };
    let env: HashMap<String, String> =
        [("PWD", "/home"), ("SHELL", "bash"), ("KOREAN", "한국어"), ("NULL", "")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let text = std::fs::read_to_string(dir.join("envVarTest")).unwrap();
    let mut checked = 0;
    let mut failures = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(fields.len(), 3, "bad line {line:?}");
        if fields[0] == "W" {
            continue;
        }
        checked += 1;
        let got = expand_word(fields[1], &env, '\\');
        match (fields[2], got) {
            ("error", Err(_)) => {}
            ("error", Ok(e)) => failures.push(format!("{:?}: expected an error, got {:?}", fields[1], e.value)),
            (want, Ok(e)) if e.value == want => {}
            (want, got) => failures.push(format!("{:?}: expected {want:?}, got {got:?}", fields[1])),
        }
    }
    assert!(checked > 200, "only {checked} cases");
    assert!(failures.is_empty(), "{} of {checked} failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn words_test() {
    let Some(dir) = dir() else { return };
    let text = std::fs::read_to_string(dir.join("wordsTest")).unwrap();
    let mut env: Vec<(String, String)> = Vec::new();
    let mut checked = 0;
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start().split_once('=').unwrap();
            env.push((k.to_string(), v.to_string()));
            continue;
        }
        let Some((source, expected)) = line.split_once('|') else { continue };
        checked += 1;
        let source = source.trim();
        let expected = expected.trim_start();
        let got = expand_words(source, &env, '\\');
        if expected == "error" {
            assert!(got.is_err(), "{source:?} should fail, got {got:?}");
        } else {
            let want: Vec<&str> = expected.split(',').collect();
            assert_eq!(got.unwrap(), want, "{source:?}");
        }
    }
    assert!(checked >= 20);
}

#[test]
fn process_word_tables() {
    let Some(dir) = dir() else { return };
    let tables: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("process-word.json")).unwrap()).unwrap();
    let mut checked = 0;
    for table in ["process_with_matches", "platform_args", "mandatory_env_vars"] {
        for case in tables[table].as_array().unwrap() {
            checked += 1;
            let input = case["input"].as_str().unwrap();
            let envs: HashMap<String, String> =
                case["envs"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
            let got = expand_word(input, &envs, '\\');
            if case["error"].as_bool() == Some(true) {
                let err = got.expect_err(input);
                if let Some(part) = case["error_contains"].as_str() {
                    assert!(err.to_string().contains(part), "{input:?}: {err} lacks {part:?}");
                }
                continue;
            }
            let got = got.unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.value, case["expected"].as_str().unwrap(), "{input:?}");
            for (key, set) in [("matched", &got.matched), ("unmatched", &got.unmatched)] {
                if let Some(list) = case[key].as_array() {
                    let want: Vec<&str> = list.iter().map(|v| v.as_str().unwrap()).collect();
                    assert_eq!(set.iter().map(String::as_str).collect::<Vec<_>>(), want, "{input:?} {key}");
                }
            }
        }
    }
    assert!(checked >= 50, "only {checked} cases");
}
