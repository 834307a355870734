//! BuildKit's own parser test data (../shared/conformance/buildkit-parser): our dump must equal
//! BuildKit's byte for byte, and spans, heredocs and warnings must match its AST.

use std::path::{Path, PathBuf};

mod common;
use common::conformance;

fn cases(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (is ../shared beside the repo?)", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

#[test]
fn testfiles_dump_equals_result() {
    let Some(conf) = conformance() else { return };
    let dir = conf.join("buildkit-parser/testfiles");
    let mut failures = Vec::new();
    let all = cases(&dir);
    assert!(all.len() >= 33, "expected 33 cases, found {}", all.len());
    for case in &all {
        let src = std::fs::read(case.join("Dockerfile")).unwrap();
        let expected = std::fs::read_to_string(case.join("result")).unwrap();
        match forge_parser::parse_bytes(&src, "Dockerfile") {
            Ok(df) if df.dump() == expected => {}
            Ok(df) => failures.push(format!("{}:\n--- expected\n{expected}--- got\n{}", case.display(), df.dump())),
            Err(e) => failures.push(format!("{}: {}", case.display(), e.render())),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), all.len(), failures.join("\n"));
}

#[test]
fn testfiles_ast_matches_buildkit() {
    let Some(conf) = conformance() else { return };
    let generated = conf.join("buildkit-parser/generated/testfiles");
    let mut failures = Vec::new();
    for case in cases(&conf.join("buildkit-parser/testfiles")) {
        let ast_path = generated.join(case.file_name().unwrap()).join("ast.json");
        let ast: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ast_path).unwrap()).unwrap();
        let df = forge_parser::parse_bytes(&std::fs::read(case.join("Dockerfile")).unwrap(), "Dockerfile").unwrap();
        for d in common::ast_differences(&df, &ast) {
            failures.push(format!("{}: {d}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn other_asts_match_buildkit() {
    let Some(conf) = conformance() else { return };
    let root = conf.join("buildkit-parser");
    for (dockerfile, ast) in [
        ("testfile-line/Dockerfile", "generated/testfile-line/ast.json"),
        ("go-tables/heredoc-json-form/Dockerfile", "go-tables/heredoc-json-form/ast.json"),
        ("go-tables/heredoc-extract/Dockerfile", "go-tables/heredoc-extract/ast.json"),
        ("go-tables/empty-continuation-warnings/Dockerfile", "go-tables/empty-continuation-warnings/ast.json"),
    ] {
        let ast: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(root.join(ast)).unwrap()).unwrap();
        let df = forge_parser::parse_bytes(&std::fs::read(root.join(dockerfile)).unwrap(), "Dockerfile").unwrap();
        let diffs = common::ast_differences(&df, &ast);
        assert!(diffs.is_empty(), "{dockerfile}:\n{}", diffs.join("\n"));
    }
}

#[test]
fn negative_cases_fail_with_buildkits_message() {
    let Some(conf) = conformance() else { return };
    let dir = conf.join("buildkit-parser/testfiles-negative");
    let generated = conf.join("buildkit-parser/generated/testfiles-negative");
    for case in cases(&dir) {
        let src = std::fs::read(case.join("Dockerfile")).unwrap();
        let err = forge_parser::parse_bytes(&src, "Dockerfile").expect_err(&case.display().to_string());
        let name = case.file_name().unwrap();
        let expected = std::fs::read_to_string(generated.join(name).join("error.txt")).unwrap();
        let message = expected.lines().next().unwrap();
        assert_eq!(err.message(), message, "{}", case.display());
    }
}

#[test]
fn line_numbers_match() {
    let Some(conf) = conformance() else { return };
    let dir = conf.join("buildkit-parser/testfile-line");
    let df = forge_parser::parse(&std::fs::read_to_string(dir.join("Dockerfile")).unwrap(), "Dockerfile").unwrap();
    let table = std::fs::read_to_string(dir.join("expected-lines.tsv")).unwrap();
    for row in table.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (start, end): (usize, usize) = (cols[1].parse().unwrap(), cols[2].parse().unwrap());
        if cols[0] == "root" {
            let first = df.nodes().first().unwrap().span.start.line;
            let last = df.nodes().last().unwrap().span.end_line;
            assert_eq!((first, last), (start, end), "root span");
        } else {
            let i: usize = cols[0].trim_start_matches("child").parse().unwrap();
            let span = df.nodes()[i].span;
            assert_eq!((span.start.line, span.end_line), (start, end), "{}", cols[0]);
        }
    }
}

#[test]
fn heredoc_words() {
    let Some(conf) = conformance() else { return };
    let table = std::fs::read_to_string(conf.join("buildkit-parser/go-tables/heredoc-word.tsv")).unwrap();
    for row in table.lines().skip(1) {
        let (word, expected) = row.split_once('\t').unwrap();
        let got = forge_parser::heredoc::parse_heredoc_word(word);
        match expected {
            "error" => assert!(got.is_err(), "{word:?} should fail"),
            "none" => assert_eq!(got.unwrap(), None, "{word:?}"),
            name => assert_eq!(got.unwrap().map(|h| h.name), Some(name.to_string()), "{word:?}"),
        }
    }
}

#[test]
fn heredocs_from_lines() {
    let Some(conf) = conformance() else { return };
    let table = std::fs::read_to_string(conf.join("buildkit-parser/go-tables/heredocs-from-line.tsv")).unwrap();
    for row in table.lines().skip(1) {
        let (line, names) = row.split_once('\t').unwrap_or((row, ""));
        let got: Vec<String> = forge_parser::heredoc::heredocs_from_line(line).unwrap().into_iter().map(|h| h.name).collect();
        let expected: Vec<String> = names.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
        assert_eq!(got, expected, "{line:?}");
    }
}

#[test]
fn heredoc_bodies_are_extracted() {
    let Some(conf) = conformance() else { return };
    let dir = conf.join("buildkit-parser/go-tables/heredoc-extract");
    let df = forge_parser::parse(&std::fs::read_to_string(dir.join("Dockerfile")).unwrap(), "Dockerfile").unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected-heredocs.json")).unwrap()).unwrap();
    let cases = expected.as_array().expect("a list of cases");
    assert!(!cases.is_empty());
    for case in cases {
        let i = case["child_index"].as_u64().unwrap() as usize;
        let docs = &df.nodes()[i].heredocs;
        let want = case["heredocs"].as_array().unwrap();
        assert_eq!(docs.len(), want.len(), "child {i}");
        for (got, want) in docs.iter().zip(want) {
            assert_eq!(got.name, want["name"].as_str().unwrap(), "child {i}");
            assert_eq!(got.content, want["content"].as_str().unwrap(), "child {i} {}", got.name);
            assert_eq!(got.expand, want["expand"].as_bool().unwrap(), "child {i} {}", got.name);
            assert_eq!(got.chomp, want["chomp"].as_bool().unwrap(), "child {i} {}", got.name);
            assert_eq!(u64::from(got.fd), want["fd"].as_u64().unwrap(), "child {i} {}", got.name);
        }
    }
}

#[test]
fn directive_detection() {
    let Some(conf) = conformance() else { return };
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(conf.join("buildkit-parser/go-tables/directives.json")).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        match case["function"].as_str().unwrap() {
            "DirectiveParser.ParseAll" => {
                let df = forge_parser::parse(&format!("{input}FROM x\n"), "Dockerfile").unwrap();
                let want: Vec<(String, String)> = case["expected_directives"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| (d["name"].as_str().unwrap().to_string(), d["value"].as_str().unwrap().to_string()))
                    .collect();
                assert_eq!(df.directives(), want.as_slice(), "{input:?}");
            }
            function => {
                let got = if function == "DetectSyntax" {
                    forge_parser::directive::detect_syntax(input)
                } else {
                    forge_parser::directive::find_directive("check", input)
                };
                assert_eq!(got.is_some(), case["ok"].as_bool().unwrap(), "{function} {input:?}: {got:?}");
                if let Some(got) = got {
                    if let Some(r) = case["ref"].as_str() {
                        assert_eq!(got.reference, r, "{input:?}");
                    }
                    if let Some(c) = case["cmdline"].as_str() {
                        assert_eq!(got.cmdline, c, "{input:?}");
                    }
                    if let Some(l) = case["line"].as_u64() {
                        assert_eq!(got.line as u64, l, "{input:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn json_arrays_and_parse_words() {
    let Some(conf) = conformance() else { return };
    let tables = conf.join("buildkit-parser/go-tables");
    let arrays: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tables.join("json-arrays.json")).unwrap()).unwrap();
    for case in arrays["valid"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let df = forge_parser::parse(&format!("CMD {input}\n"), "Dockerfile").unwrap();
        let node = &df.nodes()[0];
        assert!(node.json, "{input:?} should be exec form");
        let want: Vec<&str> = case["expected"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(node.words().collect::<Vec<_>>(), want, "{input:?}");
    }
    for input in arrays["invalid_not_string_array"].as_array().unwrap() {
        let input = input.as_str().unwrap();
        let err = forge_parser::parse(&format!("CMD {input}\n"), "Dockerfile").unwrap_err();
        assert!(err.message().contains("arrays must be comprised of strings only"), "{input:?}");
    }
    let words: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tables.join("parse-words.json")).unwrap()).unwrap();
    for case in words.as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        // ARG's arguments are exactly BuildKit's parseWords of the rest of the line.
        let df = forge_parser::parse(&format!("ARG {input}\n"), "Dockerfile").unwrap();
        let node = &df.nodes()[0];
        let want: Vec<&str> = case["expect"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(node.words().collect::<Vec<_>>(), want, "{input:?}");
    }
}

#[test]
fn empty_continuation_warnings() {
    let Some(conf) = conformance() else { return };
    let dir = conf.join("buildkit-parser/go-tables/empty-continuation-warnings");
    let df = forge_parser::parse(&std::fs::read_to_string(dir.join("Dockerfile")).unwrap(), "Dockerfile").unwrap();
    assert_eq!(df.dump(), std::fs::read_to_string(dir.join("result")).unwrap());
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(df.warnings().len() as u64, expected["warning_count"].as_u64().unwrap());
    for (warning, parts) in df.warnings().iter().zip(expected["warnings_short_contains"].as_array().unwrap()) {
        for part in parts.as_array().unwrap() {
            assert!(warning.message.contains(part.as_str().unwrap()), "{:?} lacks {part}", warning.message);
        }
        assert!(warning.detail.contains(expected["warning_detail_contains"].as_str().unwrap()));
    }
}
