//! moby/patternmatcher's tables (../shared/conformance/dockerignore).

use std::path::PathBuf;

use forge_parser::dockerignore::{clean, Dockerignore};

fn dir() -> Option<PathBuf> {
    forge_testkit::shared_data("conformance/dockerignore")
}

/// Runs one row: the `Matches` API cleans the path and never matches ".".
fn check(patterns: &[&str], path: &str, api: &str) -> Result<bool, String> {
    let ig = Dockerignore::new(patterns).map_err(|e| e.to_string())?;
    let path = if api == "Matches" {
        let cleaned = clean(path);
        if cleaned == "." {
            return Ok(false);
        }
        cleaned
    } else {
        path.to_string()
    };
    ig.is_excluded(&path).map_err(|e| e.to_string())
}

/// Runs a table's rows and returns how many there were, or `None` without `../shared`.
fn run_table(file: &str, split_patterns: bool) -> Option<usize> {
    let text = std::fs::read_to_string(dir()?.join(file)).unwrap();
    let mut failures = Vec::new();
    let mut rows = 0;
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (patterns, path, expected, api) = (cols[0], cols[1], cols[2], cols[3]);
        let list: Vec<&str> = if split_patterns { patterns.split(' ').filter(|p| !p.is_empty()).collect() } else { vec![patterns] };
        rows += 1;
        let got = check(&list, path, api);
        let ok = match expected {
            "error" => got.is_err(),
            "true" => got == Ok(true),
            _ => got == Ok(false),
        };
        if !ok {
            failures.push(format!("{patterns:?} {path:?}: expected {expected}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{file}: {} of {rows} failed:\n{}", failures.len(), failures.join("\n"));
    Some(rows)
}

#[test]
fn patterns_table() {
    if let Some(rows) = run_table("patterns.tsv", false) {
        assert!(rows > 100);
    }
}

#[test]
fn multi_pattern_table() {
    if let Some(rows) = run_table("patterns-multi.tsv", true) {
        assert!(rows > 10);
    }
}

#[test]
fn ignorefile_reading() {
    let Some(dir) = dir() else { return };
    let input = std::fs::read_to_string(dir.join("ignorefile/input.dockerignore")).unwrap();
    let expected = std::fs::read_to_string(dir.join("ignorefile/expected-patterns.txt")).unwrap();
    // A lone "!" is kept by the reader and rejected by the matcher, as upstream.
    let err = Dockerignore::parse(&input).unwrap_err();
    assert_eq!(err.to_string(), "illegal exclusion pattern: \"!\"");
    let kept: Vec<&str> = expected.lines().filter(|l| *l != "!").collect();
    let ig = Dockerignore::new(&kept).unwrap();
    assert!(ig.is_excluded("test1").unwrap());
    assert!(ig.is_excluded("a/file/here/x").unwrap());
    assert!(!ig.is_excluded("inverted/abs/path").unwrap());
}
