//! The rebuild path through the binary: what a rebuild remembers to skip reading files (the
//! context's stat cache, the records of `COPY --from` trees) must never hide a change.

mod common;

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use common::Forge;

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap()
}

fn build(forge: &Forge, ctx: &Path, tag: &str, extra: &[&str]) -> String {
    let mut args = vec!["--network", "none"];
    args.extend_from_slice(extra);
    let r = forge.build(ctx, tag, &args);
    assert!(r.ok, "{}", r.stderr);
    r.stderr
}

const FROM_STAGE: &str = "FROM busybox:latest AS a
RUN mkdir /out && head -c 16 /dev/urandom | od -x > /out/r
FROM busybox:latest
COPY --from=a /out/ /got/
";

#[test]
fn copy_from_follows_the_stage_content_not_its_key() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("ctx", &[("Dockerfile", FROM_STAGE)]);
    build(&forge, &ctx, "from:1", &[]);
    let first = read(&forge.rootfs("from:1"), "/got/r");

    // Nothing changed: both steps come from the cache, the COPY keyed without reading the stage.
    let again = build(&forge, &ctx, "from:2", &[]);
    assert_eq!(again.matches(" CACHED").count(), 2, "{again}");
    assert_eq!(read(&forge.rootfs("from:2"), "/got/r"), first);

    // The stage runs again (same keys, other bytes) and its new layer replaces the cached one.
    build(&forge, &ctx, "from:3", &["--no-cache"]);
    let rerun = read(&forge.rootfs("from:3"), "/got/r");
    assert_ne!(rerun, first);
    // The stage's step is cached with the new layer: the COPY must take the new file, not
    // what the stage's unchanged key gave it before.
    build(&forge, &ctx, "from:4", &[]);
    assert_eq!(read(&forge.rootfs("from:4"), "/got/r"), rerun);
}

#[test]
fn the_stat_cache_keeps_context_files_only() {
    let forge = Forge::with_busybox();
    let df = "FROM busybox:latest AS a\nRUN mkdir /out && echo x > /out/x\nFROM busybox:latest\nCOPY --from=a /out/ /got/\nCOPY f /f\n";
    let ctx = forge.context("ctx", &[("Dockerfile", df), ("f", "f")]);
    let f = ctx.join("f");
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap();
    // Remembered only once a second old (see below).
    std::thread::sleep(Duration::from_millis(1100));
    build(&forge, &ctx, "sc:1", &[]);
    build(&forge, &ctx, "sc:2", &[]);
    let forge_dir = forge.store().join("forge");
    assert!(!forge_dir.join("statcache.json").exists());
    let caches: Vec<_> = std::fs::read_dir(forge_dir.join("statcache")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(caches.len(), 1, "one cache for the one context: {caches:?}");
    // One entry (a 16-byte header; the path's length, the path, four numbers and a sha256;
    // the file's own sha256): the context's file by its path in the context, nothing of the
    // stage's mounted tree.
    let bytes = std::fs::read(&caches[0]).unwrap();
    assert_eq!(bytes.len(), 16 + 4 + "f".len() + 4 * 8 + 32 + 32, "{:?}", String::from_utf8_lossy(&bytes));
}

#[test]
fn a_file_rewritten_with_its_size_and_mtime_put_back_is_copied_anew() {
    let forge = Forge::with_busybox();
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox:latest\nCOPY f /f\n"), ("f", "aaaa")]);
    let f = ctx.join("f");
    let mtime = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
    // Older than a second, so the first build remembers its hash.
    std::thread::sleep(Duration::from_millis(1100));
    build(&forge, &ctx, "same:1", &[]);
    assert_eq!(read(&forge.rootfs("same:1"), "/f"), "aaaa");

    // As `touch -d` would: same size, mtime put back; only the ctime tells.
    std::fs::write(&f, "bbbb").unwrap();
    std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
    let out = build(&forge, &ctx, "same:2", &[]);
    assert_eq!(out.matches(" CACHED").count(), 0, "{out}");
    assert_eq!(read(&forge.rootfs("same:2"), "/f"), "bbbb");
}

#[test]
fn a_fully_cached_rebuild_gives_the_same_image_with_each_layers_first_time() {
    let forge = Forge::with_busybox();
    let first = "FROM busybox:latest\nRUN echo hi > /x\n";
    let ctx = forge.context("ctx", &[("Dockerfile", first)]);
    build(&forge, &ctx, "times:1", &[]);
    let early = forge.inspect("times:1")["Created"].as_str().unwrap().to_string();
    // Times are kept to the second: the next layer is made in a later one.
    std::thread::sleep(Duration::from_millis(1100));

    let full = format!("{first}ENV A=1\nRUN echo b > /b\nENV B=1\n");
    std::fs::write(ctx.join("Dockerfile"), &full).unwrap();
    build(&forge, &ctx, "times:2", &[]);
    let image = forge.inspect("times:2");
    let history = image["History"].as_array().unwrap();
    let time_of = |created_by: &str| history.iter().find(|h| h["created_by"].as_str().unwrap().starts_with(created_by)).unwrap_or_else(|| panic!("{created_by} in {history:?}"))["created"].as_str().unwrap().to_string();
    // The cached RUN keeps the time it was made; the image and the steps without a layer take
    // the last layer's, as BuildKit sets them.
    assert_eq!(time_of("RUN /bin/sh -c echo hi"), early);
    let late = time_of("RUN /bin/sh -c echo b");
    assert!(late > early, "{late} after {early}");
    assert_eq!(image["Created"].as_str().unwrap(), late);
    assert_eq!(time_of("ENV A=1"), late);
    assert_eq!(time_of("ENV B=1"), late);

    std::thread::sleep(Duration::from_millis(1100));
    build(&forge, &ctx, "times:3", &[]);
    assert_eq!(forge.inspect("times:3")["Id"], image["Id"], "a fully cached rebuild is the same image");
    // Under a tag that already names it, the store's index is not rewritten.
    let index = forge.store().join("index.json");
    let before = std::fs::metadata(&index).unwrap().modified().unwrap();
    build(&forge, &ctx, "times:3", &[]);
    assert_eq!(std::fs::metadata(&index).unwrap().modified().unwrap(), before, "index.json rewritten");
    // A change to a step without a layer keeps the layers' times.
    std::fs::write(ctx.join("Dockerfile"), full.replace("ENV B=1", "ENV B=2")).unwrap();
    build(&forge, &ctx, "times:4", &[]);
    let changed = forge.inspect("times:4");
    assert_ne!(changed["Id"], image["Id"]);
    assert_eq!(changed["Created"].as_str().unwrap(), late);
}

#[test]
fn a_copy_keyed_after_it_runs_gets_the_key_a_rebuild_computes() {
    let forge = Forge::with_busybox();
    // Past the size the one-pass copy reads whole, so its hash is made as the layer reads it.
    let big = |n: usize| -> String { (n..n + 300_000).map(|i| format!("{i:07}\n")).collect() };
    let df = "FROM busybox:latest\nCOPY big /big\nCOPY dir/ /dir/\n";
    let ctx = forge.context("ctx", &[("Dockerfile", df), ("big", &big(0)), ("dir/a", "a"), ("dir/sub/b", "b")]);
    let age = |files: &[&str]| {
        for f in files {
            std::fs::File::options().write(true).open(ctx.join(f)).unwrap().set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000_000)).unwrap();
        }
        // A second old, so the hashes are remembered (and the copy's make the key).
        std::thread::sleep(Duration::from_millis(1100));
    };
    age(&["big", "dir/a", "dir/sub/b"]);
    build(&forge, &ctx, "after:1", &[]);
    // Now each COPY has one file the stat cache does not remember. With --no-cache no step
    // looks its key up, so each is copied first and keyed from what the copy read.
    std::fs::write(ctx.join("big"), big(1)).unwrap();
    std::fs::write(ctx.join("dir/sub/b"), "b2").unwrap();
    age(&["big", "dir/sub/b"]);
    let out = build(&forge, &ctx, "after:2", &["--no-cache"]);
    assert_eq!(out.matches(" CACHED").count(), 0, "{out}");
    assert_eq!(read(&forge.rootfs("after:2"), "/big"), big(1));
    // Without the hashes the copies remembered, the rebuild reads each file for its key, as a
    // step that can hit does: the same keys, so both steps are found.
    std::fs::remove_dir_all(forge.store().join("forge/statcache")).unwrap();
    let again = build(&forge, &ctx, "after:3", &[]);
    assert_eq!(again.matches(" CACHED").count(), 2, "{again}");
    assert_eq!(forge.inspect("after:3")["Id"], forge.inspect("after:2")["Id"]);
}

#[test]
fn a_step_an_earlier_stage_of_the_same_cold_build_made_is_found() {
    let forge = Forge::with_busybox();
    // The second stage starts as the first does and runs after it (it copies from it). The
    // store's cache is empty as the build begins, so the first stage's COPY is keyed after it
    // runs; the second stage's must still find it.
    let df = "FROM busybox:latest AS a\nCOPY f /f\nRUN echo a > /a\nFROM busybox:latest\nCOPY f /f\nCOPY --from=a /a /a\n";
    let ctx = forge.context("ctx", &[("Dockerfile", df), ("f", "f")]);
    let out = build(&forge, &ctx, "twice:1", &[]);
    assert_eq!(out.matches(" CACHED").count(), 1, "{out}");
    assert_eq!(read(&forge.rootfs("twice:1"), "/a"), "a\n");
}
