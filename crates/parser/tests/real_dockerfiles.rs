//! The real-world corpus (../shared/conformance/real-dockerfiles): every file parses, dumps
//! exactly as BuildKit does, matches BuildKit's AST (spans, heredocs, comments), converts to
//! typed instructions and lowers to a build graph.

mod common;

use forge_parser::dag::{BuildGraph, GraphOptions};

#[test]
fn dump_equals_result() {
    let Some(cases) = common::real_world_dockerfiles() else { return };
    let mut failures = Vec::new();
    for (path, src) in &cases {
        let name = path.file_name().unwrap().to_string_lossy();
        let expected = std::fs::read_to_string(path.join("result")).unwrap();
        match forge_parser::parse_bytes(src, &name) {
            Ok(df) if df.dump() == expected => {}
            Ok(df) => failures.push(format!("{name}: dump differs\n--- expected\n{expected}--- got\n{}", df.dump())),
            Err(e) => failures.push(e.render()),
        }
    }
    assert!(failures.is_empty(), "{} of {} differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn ast_matches_buildkit() {
    let Some(cases) = common::real_world_dockerfiles() else { return };
    let mut failures = Vec::new();
    for (path, src) in cases {
        let ast: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path.join("ast.json")).unwrap()).unwrap();
        let df = forge_parser::parse_bytes(&src, "Dockerfile").unwrap();
        for d in common::ast_differences(&df, &ast) {
            failures.push(format!("{}: {d}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_file_types_and_lowers() {
    let Some(cases) = common::real_world_dockerfiles() else { return };
    for (path, src) in cases {
        let df = forge_parser::parse_bytes(&src, &path.display().to_string()).unwrap();
        df.instructions().unwrap_or_else(|e| panic!("{}", e.render()));
        let g = BuildGraph::new(&df, &GraphOptions::default()).unwrap_or_else(|e| panic!("{}", e.render()));
        assert!(g.levels.iter().flatten().any(|&i| i == g.target), "{}", path.display());
    }
}
