//! Inputs that once crashed or hung a fuzz target (testdata/fuzz-regressions/<target>/): each
//! must now be handled without a panic, exactly as the fuzz targets exercise them.

use std::path::Path;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/fuzz-regressions").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| (e.path().display().to_string(), std::fs::read(e.path()).unwrap())).collect())
        .unwrap_or_default();
    out.retain(|(name, _)| !name.ends_with(".gitkeep"));
    out.sort();
    out
}

#[test]
fn parse_regressions() {
    for (name, data) in inputs("parse") {
        if let Ok(df) = forge_parser::parse_bytes(&data, &name) {
            let _ = df.dump();
            let _ = df.instructions();
            let _ = forge_parser::dag::BuildGraph::new(&df, &Default::default());
        }
    }
}

#[test]
fn expand_regressions() {
    let vars = vec![("A".to_string(), "a b".to_string())];
    for (_, data) in inputs("expand") {
        let word = String::from_utf8_lossy(&data);
        let _ = forge_parser::expand::expand_word(&word, &vars, '\\');
        let _ = forge_parser::expand::expand_words(&word, &vars, '`');
    }
}

#[test]
fn dockerignore_regressions() {
    for (_, data) in inputs("dockerignore") {
        let text = String::from_utf8_lossy(&data);
        let (patterns, path) = text.rsplit_once('\n').unwrap_or((&text, "a/b"));
        if let Ok(ig) = forge_parser::dockerignore::Dockerignore::parse(patterns) {
            let _ = ig.is_excluded(path);
            let _ = ig.can_skip_dir(path);
        }
    }
}
