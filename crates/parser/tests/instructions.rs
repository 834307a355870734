//! Typed instructions: BuildKit's instruction-level tables, flag errors with locations, and
//! the real-world corpus converting cleanly.

use std::path::PathBuf;

use forge_parser::flags::{MountKind, NetworkMode};
use forge_parser::{Command, Healthcheck, Instruction};

mod common;

fn tables() -> Option<PathBuf> {
    Some(common::conformance()?.join("buildkit-parser/go-tables/instructions"))
}

fn first(src: &str) -> Result<Instruction, forge_parser::Error> {
    let df = forge_parser::parse(src, "Dockerfile")?;
    Ok(df.instructions()?.remove(0).value)
}

#[test]
fn buildkit_instruction_errors() {
    let Some(tables) = tables() else { return };
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tables.join("instruction-errors.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() > 15);
    for case in cases {
        let src = case["dockerfile"].as_str().unwrap();
        let err = first(src).expect_err(src);
        if let Some(exact) = case["error_equals"].as_str() {
            assert_eq!(err.message(), exact, "{src:?}");
        } else {
            let part = case["error_contains"].as_str().unwrap();
            assert!(err.message().contains(part), "{src:?}: {:?} lacks {part:?}", err.message());
        }
    }
}

#[test]
fn buildkit_instruction_heredocs() {
    let Some(tables) = tables() else { return };
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tables.join("instruction-heredocs.json")).unwrap()).unwrap();
    for case in t["copy"].as_array().unwrap() {
        let src = case["dockerfile"].as_str().unwrap();
        let Instruction::Copy(c) = first(src).unwrap() else { panic!("{src:?} is not COPY") };
        assert_eq!(c.dest, case["dest_path"].as_str().unwrap(), "{src:?}");
        let sources: Vec<&str> = case["source_paths"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(c.sources, sources, "{src:?}");
        let contents = case["source_contents"].as_array().unwrap();
        assert_eq!(c.inline.len(), contents.len(), "{src:?}");
        for (got, want) in c.inline.iter().zip(contents) {
            assert_eq!(got.name, want["path"].as_str().unwrap());
            assert_eq!(got.content, want["data"].as_str().unwrap(), "{src:?}");
            assert_eq!(got.expand, want["expand"].as_bool().unwrap(), "{src:?}");
        }
    }
    for case in t["run"].as_array().unwrap() {
        let src = case["dockerfile"].as_str().unwrap();
        let Instruction::Run(r) = first(src).unwrap() else { panic!("{src:?} is not RUN") };
        let cmd_line: Vec<&str> = case["cmd_line"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        match (&r.command, case["prepend_shell"].as_bool().unwrap()) {
            (Command::Shell(s), true) => assert_eq!(vec![s.as_str()], cmd_line, "{src:?}"),
            (Command::Exec(v), false) => assert_eq!(v, &cmd_line, "{src:?}"),
            (other, _) => panic!("{src:?}: unexpected {other:?}"),
        }
        let files = case["files"].as_array().unwrap();
        assert_eq!(r.heredocs.len(), files.len(), "{src:?}");
        for (got, want) in r.heredocs.iter().zip(files) {
            assert_eq!(got.content, want["data"].as_str().unwrap(), "{src:?}");
            assert_eq!(got.chomp, want["chomp"].as_bool().unwrap(), "{src:?}");
        }
    }
}

#[test]
fn typed_flags() {
    let Instruction::Run(r) = first("RUN --mount=type=cache,target=/c,id=x --network=none make").unwrap() else { panic!() };
    assert_eq!(r.mounts[0].kind, MountKind::Cache);
    assert_eq!(r.network, Some(NetworkMode::None));
    let Instruction::Copy(c) = first("COPY --from=build --chown=app:app --chmod=755 --link --exclude=*.md --exclude=x a b /dst/").unwrap()
    else {
        panic!()
    };
    assert_eq!((c.from.as_deref(), c.chown.as_deref(), c.chmod.as_deref(), c.link), (Some("build"), Some("app:app"), Some("755"), true));
    assert_eq!(c.exclude, vec!["*.md", "x"]);
    assert_eq!(c.sources, vec!["a", "b"]);
    let Instruction::Healthcheck(Healthcheck::Cmd { interval, retries, .. }) =
        first("HEALTHCHECK --interval=1m30s --retries=3 CMD curl -f http://localhost/").unwrap()
    else {
        panic!()
    };
    assert_eq!((interval.unwrap().as_secs(), retries), (90, Some(3)));
}

#[test]
fn flag_errors_point_at_the_line() {
    for (src, part) in [
        ("FROM a\nRUN --mount=type=nfs,target=/x true\n", "unsupported mount type \"nfs\""),
        ("FROM a\nHEALTHCHECK --interval=5 CMD true\n", "missing unit in duration"),
        ("FROM a\nCOPY --network=none a b\n", "unknown flag: --network"),
        ("FROM a\nRUN --network=bridge true\n", "unsupported network mode"),
        ("FROM a\nCOPY --chmod=rwx a b\n", "must be an octal mode"),
        ("FROM a\nCOPY --link=maybe a b\n", "expecting boolean value"),
    ] {
        let err = forge_parser::parse(src, "Dockerfile").unwrap().instructions().expect_err(src);
        assert!(err.message().contains(part), "{src:?}: {}", err.message());
        assert_eq!(err.position().line, 2, "{src:?}");
        let rendered = err.render();
        assert!(rendered.starts_with("Dockerfile:2:1: "), "{rendered}");
        assert!(rendered.ends_with('^'), "{rendered}");
    }
}
