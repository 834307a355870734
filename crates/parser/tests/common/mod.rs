//! Shared access to the conformance data beside the repository (../shared/conformance).

// Each test binary uses only part of this module.
#![allow(dead_code)]

use std::path::PathBuf;

/// `../shared/conformance` beside the repository, or `None` (the test is skipped) in a clone without it.
pub fn conformance() -> Option<PathBuf> {
    forge_testkit::shared_data("conformance")
}

/// The real-world corpus: one `(case directory, Dockerfile bytes)` per case, sorted; `None`
/// without `../shared`.
pub fn real_world_dockerfiles() -> Option<Vec<(PathBuf, Vec<u8>)>> {
    let dir = conformance()?.join("real-dockerfiles");
    let mut cases: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e} (is ../shared beside the repo?)", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let bytes = std::fs::read(p.join("Dockerfile")).unwrap();
            (p, bytes)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} real-world Dockerfiles found", cases.len());
    Some(cases)
}

/// Compares a parse against BuildKit's `ast.json` for the same file (see
/// buildkit-parser/README.md): keywords as written, joined lines, flags, spans, JSON form,
/// comments above, heredoc bodies, argument nodes and warnings. Returns the differences.
pub fn ast_differences(df: &forge_parser::Dockerfile, ast: &serde_json::Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: String, got: serde_json::Value, want: &serde_json::Value| {
        if &got != want {
            diffs.push(format!("{what}: got {got}, want {want}"));
        }
    };
    let escape = df.escape().to_string();
    check("escape_token".into(), escape.into(), &ast["escape_token"]);
    let nodes = df.nodes();
    let first = nodes.first().map_or(0, |n| n.span.start.line);
    let last = nodes.last().map_or(0, |n| n.span.end_line);
    check("root start_line".into(), first.into(), &ast["start_line"]);
    check("root end_line".into(), last.into(), &ast["end_line"]);
    let warnings: Vec<serde_json::Value> = df.warnings().iter().map(|w| serde_json::json!({"short": w.message, "line": w.line})).collect();
    check("warnings".into(), warnings.into(), &ast["warnings"]);
    let children = ast["children"].as_array().cloned().unwrap_or_default();
    check("instruction count".into(), nodes.len().into(), &children.len().into());
    for (i, (node, want)) in nodes.iter().zip(&children).enumerate() {
        check(format!("child {i} ({})", node.original), node_json(node, true), want);
    }
    diffs
}

/// One node in the `ast.json` shape; nested (ONBUILD) nodes carry no spans there.
fn node_json(node: &forge_parser::Node, top: bool) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut obj = serde_json::Map::new();
    obj.insert("value".into(), node.keyword.clone().into());
    obj.insert("original".into(), node.original.clone().into());
    if !node.flags.is_empty() {
        obj.insert("flags".into(), node.flags.clone().into());
    }
    if top {
        obj.insert("start_line".into(), node.span.start.line.into());
        obj.insert("end_line".into(), node.span.end_line.into());
    }
    if node.json {
        obj.insert("attributes".into(), json!({"json": true}));
    }
    if !node.comments.is_empty() {
        obj.insert("prev_comment".into(), node.comments.clone().into());
    }
    if !node.heredocs.is_empty() {
        let docs: Vec<Value> = node
            .heredocs
            .iter()
            .map(|h| json!({"name": h.name, "fd": h.fd, "expand": h.expand, "chomp": h.chomp, "content": h.content}))
            .collect();
        obj.insert("heredocs".into(), docs.into());
    }
    let next: Vec<Value> = node
        .args
        .iter()
        .map(|a| match a {
            forge_parser::Arg::Word(w) => json!({"value": w}),
            forge_parser::Arg::Nested(inner) => {
                json!({"value": "", "children": [node_json(inner, false)]})
            }
        })
        .collect();
    if !next.is_empty() {
        obj.insert("next".into(), next.into());
    }
    Value::Object(obj)
}
