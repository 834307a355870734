//! The build cache through the binary: `--explain-cache` names the input that broke the cache,
//! and cache keys do not depend on where the context or the store is.

mod common;

use std::path::Path;

use common::Forge;

/// The `cache_miss` events of a `--progress json` build: (step id, reason, [(kind, name, change)]).
fn misses(stderr: &str) -> Vec<(String, String, Vec<(String, String, String)>)> {
    let mut out = Vec::new();
    for line in stderr.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if v["event"] != "cache_miss" {
            continue;
        }
        let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let changes = v["changes"].as_array().unwrap().iter().map(|c| (s(&c["kind"]), s(&c["name"]), s(&c["change"]))).collect();
        out.push((s(&v["id"]), s(&v["reason"]), changes));
    }
    out
}

const DOCKERFILE: &str = "FROM busybox:latest
ARG V=1
ENV E=1
COPY a.txt b.txt /app/
RUN --mount=type=bind,source=m.txt,target=/m cat /m > /mounted
RUN echo $V $E > /out
";

fn explain(forge: &Forge, ctx: &Path, extra: &[&str]) -> Vec<(String, String, Vec<(String, String, String)>)> {
    let mut args = vec!["build", "--progress", "json", "--explain-cache", "-t", "explain:1"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = forge.run(&args);
    assert!(r.ok, "{}", r.stderr);
    misses(&r.stderr)
}

/// The first step that missed, and its first changed input.
fn first(m: &[(String, String, Vec<(String, String, String)>)]) -> (&str, (&str, &str, &str), &str) {
    let (id, reason, changes) = m.first().expect("a step missed");
    let c = changes.first().unwrap_or_else(|| panic!("no change named: {reason}"));
    (id.as_str(), (c.0.as_str(), c.1.as_str(), c.2.as_str()), reason.as_str())
}

#[test]
fn explain_cache_names_the_input_that_changed() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("ctx", &[("Dockerfile", DOCKERFILE), ("a.txt", "a"), ("b.txt", "b"), ("m.txt", "m")]);

    // Cold: nothing to compare with, and each miss says so.
    let m = explain(&forge, &ctx, &[]);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m[0].1.starts_with("no cached COPY step"), "{m:?}");
    // Warm: every step hits, nothing to explain.
    assert_eq!(explain(&forge, &ctx, &[]), vec![]);

    // A context file: the COPY names it, the steps after it name their parent.
    std::fs::write(ctx.join("b.txt"), "b2").unwrap();
    let m = explain(&forge, &ctx, &[]);
    assert_eq!(first(&m).0, "0/3");
    assert_eq!(first(&m).1, ("context-file", "b.txt", "changed"));
    assert_eq!(first(&m).2, "context file \"b.txt\" changed");
    assert_eq!(m[0].2.len(), 1, "only b.txt changed: {m:?}");
    assert_eq!(m[1].2, [("parent".to_string(), "parent".to_string(), "changed".to_string())]);
    assert_eq!(m[2].2[0].0, "parent");

    // A bind mount's source file.
    std::fs::write(ctx.join("m.txt"), "m2").unwrap();
    let m = explain(&forge, &ctx, &[]);
    assert_eq!((first(&m).0, first(&m).1), ("0/4", ("mount-file", "m.txt", "changed")));

    // An ARG's value.
    let m = explain(&forge, &ctx, &["--build-arg", "V=2"]);
    assert_eq!((first(&m).0, first(&m).1), ("0/4", ("arg", "V", "changed")));
    assert_eq!(first(&m).2, "ARG V changed");

    // An ENV's value.
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE.replace("ENV E=1", "ENV E=2")).unwrap();
    let m = explain(&forge, &ctx, &[]);
    assert_eq!((first(&m).0, first(&m).1), ("0/4", ("env", "E", "changed")));

    // The instruction's text.
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE.replace("echo $V $E", "echo $V $E again")).unwrap();
    let m = explain(&forge, &ctx, &[]);
    assert_eq!(m.len(), 1, "{m:?}");
    assert_eq!((first(&m).0, first(&m).1), ("0/5", ("instruction", "command", "changed")));

    // --no-cache says so; plain progress shows the reason on the step's line.
    let r = forge.build(&ctx, "explain:1", &["--explain-cache", "--no-cache"]);
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stderr.contains("cache miss: --no-cache"), "{}", r.stderr);
}

/// The names of the cache index's entries: the keys the build looked up.
fn cache_keys(forge: &Forge) -> Vec<String> {
    let mut keys: Vec<String> = std::fs::read_dir(forge.store().join("forge/cache")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    keys.sort();
    keys
}

#[test]
fn cache_keys_do_not_depend_on_the_context_or_store_path() {
    let a = Forge::with_busybox();
    let b = Forge::with_busybox_of(&a);
    let files = [
        ("Dockerfile", "FROM busybox:latest\nWORKDIR /w\nCOPY . /w/\nRUN --mount=type=bind,source=sub,target=/s ls /s > /listing\n"),
        ("one.txt", "1"),
        ("sub/two.txt", "2"),
    ];
    let ctx_a = a.context("first-place", &files);
    // Another directory, written later (other inodes, mtimes and ctimes), in another store.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let ctx_b = b.context("somewhere/else/entirely", &files);
    let r = a.build(&ctx_a, "p:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let r = b.build(&ctx_b, "p:1", &[]);
    assert!(r.ok, "{}", r.stderr);
    let keys = cache_keys(&a);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(keys, cache_keys(&b));

    // The keys do follow content: one changed byte gives other keys for COPY and what follows.
    std::fs::write(ctx_b.join("sub/two.txt"), "3").unwrap();
    let r = b.build(&ctx_b, "p:2", &[]);
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(cache_keys(&b).len(), 5);
}
