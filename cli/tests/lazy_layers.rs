//! Remote-backed (lazy) layers through the binary: a runner that takes every step from a
//! registry cache writes its image without the layers' bytes; `run`, `save` and `push` fetch
//! them when they read them and give what the first runner gives; a registry that lost a
//! blob is a clear error at fetch time, and the store stays sound.

mod common;

use std::path::Path;

use common::Forge;

const DOCKERFILE: &str = "FROM busybox:latest AS build
COPY src /src
RUN cat /src/a /src/b > /built
FROM busybox:latest
COPY --from=build /built /app/built
RUN echo ok > /app/ok
";

fn files() -> [(&'static str, &'static str); 3] {
    [("Dockerfile", DOCKERFILE), ("src/a", "a"), ("src/b", "b")]
}

/// Builds `cached:1` with a fixed `SOURCE_DATE_EPOCH` (two stores give the same digests);
/// returns the image ID and the stderr.
fn build(forge: &Forge, ctx: &Path, extra: &[&str]) -> (String, String) {
    let iid = forge.dir.path().join("iid");
    // No network for the steps: they need none, and other tests may hold every free subnet.
    let mut args = vec!["build", "--progress", "plain", "--network", "none", "-t", "cached:1", "--iidfile", iid.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r: common::Ran = forge.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(&args).output().unwrap().into();
    assert!(r.ok, "forge {args:?}:\n{}", r.stderr);
    (std::fs::read_to_string(iid).unwrap(), r.stderr)
}

/// The layer digests (hex) of a store's image `cached:1`, bottom first.
fn layers(forge: &Forge) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("index.json")).unwrap()).unwrap();
    let m = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "cached:1").expect("tagged");
    let hex = |v: &serde_json::Value| v.as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("blobs/sha256").join(hex(&m["digest"]))).unwrap()).unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| hex(&l["digest"])).collect()
}

fn has_blob(forge: &Forge, hex: &str) -> bool {
    forge.store().join("blobs/sha256").join(hex).exists()
}

/// Runner A builds with `--cache-to`; returns A, its context, the cache ref and A's image ID.
fn runner_a(registry: &forge_testkit::Registry) -> (Forge, std::path::PathBuf, String, String) {
    let cache_ref = format!("{}/ci/lazy:cache", registry.addr);
    let a = Forge::with_busybox();
    let ctx = a.context("ctx", &files());
    let (image, _) = build(&a, &ctx, &["--cache-to", &format!("type=registry,ref={cache_ref},mode=max")]);
    (a, ctx, cache_ref, image)
}

/// Runner B: the same base, every step from the cache.
fn runner_b(a: &Forge, cache_ref: &str, image_a: &str) -> Forge {
    let b = Forge::with_busybox_of(a);
    let ctx = b.context("checkout", &files());
    let (image, stderr) = build(&b, &ctx, &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert_eq!(image, image_a, "{stderr}");
    b
}

#[test]
fn a_cached_image_keeps_its_layers_remote_until_they_are_read() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let built = layers(&a);
    assert_eq!(built.len(), 3, "base, COPY --from, RUN");

    // B's image is there without the bytes of its steps' layers (the base is B's own).
    let b = runner_b(&a, &cache_ref, &image_a);
    assert_eq!(layers(&b), built);
    assert!(has_blob(&b, &built[0]));
    for d in &built[1..] {
        assert!(!has_blob(&b, d), "B fetched layer {d} no step needed");
    }
    // Nor the build stage's: its COPY --from is keyed from the records the cache carries.
    for entry in std::fs::read_dir(b.store().join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let hex = path.file_name().unwrap().to_string_lossy().into_owned();
        let json = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).unwrap()).is_ok();
        assert!(hex == built[0] || json, "B fetched blob {hex}, which is no manifest or config");
    }
    // Listing, inspecting and checking the store need no layer bytes; fsck says they are remote.
    assert!(b.ok(&["images"]).stdout.contains("cached"));
    assert_eq!(b.inspect("cached:1")["Id"], image_a.as_str());
    let fsck = b.ok(&["store", "fsck", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&fsck.stdout).unwrap();
    let remote: Vec<String> = report["remote"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().trim_start_matches("sha256:").to_string()).collect();
    assert_eq!(remote, { let mut r = built[1..].to_vec(); r.sort(); r });
    // A gc keeps a tagged image's remote layers remote-backed.
    b.ok(&["store", "gc"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&b.ok(&["store", "fsck", "--format", "json"]).stdout).unwrap()["remote"], report["remote"]);

    // `run` fetches them, and the container sees the image's files.
    let ran = b.ok(&["run", "--rm", "--network", "none", "cached:1", "cat", "/app/built", "/app/ok"]);
    assert_eq!(ran.stdout, "abok\n");
    for d in &built {
        assert!(has_blob(&b, d), "run fetched {d}");
    }
    let report: serde_json::Value = serde_json::from_str(&b.ok(&["store", "fsck", "--format", "json"]).stdout).unwrap();
    assert_eq!(report["remote"], serde_json::json!([]));

    // `save` from a fresh B gives A's archive, byte for byte.
    let save = |forge: &Forge| {
        let out = forge.dir.path().join("saved.tar");
        forge.ok(&["save", "-o", out.to_str().unwrap(), "cached:1"]);
        std::fs::read(out).unwrap()
    };
    let b2 = runner_b(&a, &cache_ref, &image_a);
    assert!(save(&b2) == save(&a), "B's archive differs from A's");

    // `push` from a fresh B gives A's manifest digest.
    let push = |forge: &Forge, repo: &str| {
        let dest = format!("{}/{repo}:1", registry.addr);
        let out = forge.ok(&["push", "-q", "cached:1", &dest]).stdout;
        out.trim().rsplit_once('@').expect("name@digest").1.to_string()
    };
    let b3 = runner_b(&a, &cache_ref, &image_a);
    assert_eq!(push(&b3, "from-b"), push(&a, "from-a"));
}

/// The steps a runner took from a registry cache join its own cache with the inputs of their
/// keys (a hit labels them only when something reads them again): its next build, one file
/// changed and no cache given, explains the miss by that file.
#[test]
fn steps_taken_from_a_registry_cache_explain_a_later_local_miss() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let b = runner_b(&a, &cache_ref, &image_a);
    let ctx = b.dir.path().join("checkout");
    std::fs::write(ctx.join("src/b"), "b2").unwrap();
    let (_, stderr) = build(&b, &ctx, &["--explain-cache"]);
    assert!(stderr.contains("cache miss: context file \"src/b\" changed"), "{stderr}");
}

#[test]
fn a_registry_that_lost_a_layer_fails_the_fetch_clearly_and_corrupts_nothing() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let b = runner_b(&a, &cache_ref, &image_a);
    let top = layers(&b).pop().unwrap();
    assert!(!has_blob(&b, &top));

    // The registry loses the top layer's bytes, then serves other bytes of its size under its
    // name: each time `run` fails, naming the blob and where it was.
    let data = |hex: &str| registry.storage().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data");
    let good = std::fs::read(data(&top)).unwrap();
    std::fs::remove_file(data(&top)).unwrap();
    let r = b.run(&["run", "--rm", "--network", "none", "cached:1", "true"]);
    assert!(!r.ok);
    assert!(r.stderr.contains(&format!("blob sha256:{top} is not in the store yet, only in {}/ci/lazy", registry.addr)), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    std::fs::write(data(&top), vec![b'x'; good.len()]).unwrap();
    let r = b.run(&["run", "--rm", "--network", "none", "cached:1", "true"]);
    assert!(!r.ok);
    assert!(r.stderr.contains(&top) && r.stderr.contains("digest"), "{}", r.stderr);
    // Nothing of it entered the store, the image is still whole (remote), and a later fetch
    // from a mended registry works.
    assert!(!has_blob(&b, &top));
    let report: serde_json::Value = serde_json::from_str(&b.ok(&["store", "fsck", "--format", "json"]).stdout).unwrap();
    assert!(report["remote"].as_array().unwrap().iter().any(|d| d.as_str().unwrap().ends_with(&top)), "{report}");
    std::fs::write(data(&top), good).unwrap();
    assert_eq!(b.ok(&["run", "--rm", "--network", "none", "cached:1", "cat", "/app/ok"]).stdout, "ok\n");
}

/// A blob of the registry's storage, by digest (`sha256:...`).
fn registry_blob(registry: &forge_testkit::Registry, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(registry.storage().join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")).unwrap()
}

#[test]
fn a_cache_exported_compressed_gives_the_same_image_and_its_blobs_to_a_push() {
    let registry = forge_testkit::Registry::start();
    let cache_ref = format!("{}/ci/gz:cache", registry.addr);
    let a = Forge::with_busybox();
    let ctx = a.context("ctx", &files());
    let (image_a, _) = build(&a, &ctx, &["--cache-to", &format!("type=registry,ref={cache_ref},mode=max,compression=gzip")]);

    // The cache holds gzip blobs; its entries name the image's plain layers and those blobs.
    let link = registry.storage().join("docker/registry/v2/repositories/ci/gz/_manifests/tags/cache/current/link");
    let manifest: serde_json::Value = serde_json::from_slice(&registry_blob(&registry, &std::fs::read_to_string(link).unwrap())).unwrap();
    let cached: Vec<String> = manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    assert_eq!(cached.len(), 4, "{manifest}");
    for l in manifest["layers"].as_array().unwrap() {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip", "{manifest}");
    }
    let built = layers(&a);
    assert!(built[1..].iter().all(|d| !cached.contains(&format!("sha256:{d}"))), "the image keeps its plain layers");

    // B: A's image, its layers remote; a container fetches and expands them.
    let b = runner_b(&a, &cache_ref, &image_a);
    assert_eq!(layers(&b), built);
    assert!(built[1..].iter().all(|d| !has_blob(&b, d)));
    assert_eq!(b.ok(&["run", "--rm", "--network", "none", "cached:1", "cat", "/app/built", "/app/ok"]).stdout, "abok\n");
    // B keeps the cache's gzip blobs of the image's layers, read by run, as their compressed
    // forms: a push sends those bytes, and gives A's manifest digest. The build stage's are
    // never fetched (its COPY --from is keyed from the records the cache carries).
    let kept = cached.iter().filter(|d| has_blob(&b, d.trim_start_matches("sha256:"))).count();
    assert_eq!(kept, 2, "the gzip forms of the image's two step layers, and only those");
    let push = |forge: &Forge, repo: &str| {
        let out = forge.ok(&["push", "-q", "cached:1", &format!("{}/{repo}:1", registry.addr)]).stdout;
        out.trim().rsplit_once('@').expect("name@digest").1.to_string()
    };
    assert_eq!(push(&b, "gz-from-b"), push(&a, "gz-from-a"));
}

/// The blobs a registry's access log shows uploaded (a `PUT` completing an upload), in order.
fn uploads_in_log(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains("\" 201 "))
        .filter_map(|l| l.split("digest=").nth(1)?.split([' ', '&']).next().map(|d| d.replace("%3A", ":")))
        .collect()
}

/// The blobs a registry stores (digests).
fn stored_blobs(registry: &forge_testkit::Registry) -> std::collections::BTreeSet<String> {
    let root = registry.storage().join("docker/registry/v2/blobs/sha256");
    let mut out = std::collections::BTreeSet::new();
    for prefix in std::fs::read_dir(&root).unwrap().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            out.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
        }
    }
    out
}

#[test]
fn a_runner_that_changed_one_file_uploads_only_the_new_blobs() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, _) = runner_a(&registry);
    let log = registry.dir.path().join("registry.log");
    let before = stored_blobs(&registry);
    let logged = std::fs::read_to_string(&log).unwrap().len();

    // B changes one file: the steps after it run; its export sends only what the cache lacks.
    let b = Forge::with_busybox_of(&a);
    let ctx = b.context("checkout", &files());
    std::fs::write(ctx.join("src/a"), "a2").unwrap();
    build(&b, &ctx, &["--cache-from", &format!("type=registry,ref={cache_ref}"), "--cache-to", &format!("type=registry,ref={cache_ref},mode=max")]);
    let uploaded = uploads_in_log(&std::fs::read_to_string(&log).unwrap()[logged..]);
    // The registry stores the new cache manifest as a blob too; it is PUT as a manifest.
    let manifest = std::fs::read_to_string(registry.storage().join("docker/registry/v2/repositories/ci/lazy/_manifests/tags/cache/current/link")).unwrap();
    let added: Vec<String> = stored_blobs(&registry).difference(&before).filter(|d| **d != manifest).cloned().collect();
    let mut sorted = uploaded.clone();
    sorted.sort();
    assert_eq!(sorted, added, "each new blob uploaded once, nothing the registry had");
    // Three new layers (COPY src, RUN cat, COPY --from; the last RUN gives the same bytes) and
    // the new cache config.
    assert_eq!(uploaded.len(), 4, "{uploaded:?}");
}

#[test]
fn a_store_remembers_that_a_loopback_registry_speaks_plain_http() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let b = runner_b(&a, &cache_ref, &image_a);
    // B probed HTTPS once and recorded the answer, so its next build skips the probe.
    let schemes = std::fs::read_to_string(b.store().join("registry-schemes")).expect("schemes file written");
    assert!(schemes.lines().any(|l| l == format!("{} http", registry.addr)), "{schemes}");
    // A torn entry is not trusted: the next build probes again and rewrites it whole.
    std::fs::write(b.store().join("registry-schemes"), format!("{} htt", registry.addr)).unwrap();
    let ctx = b.context("checkout2", &files());
    let (image, stderr) = build(&b, &ctx, &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert_eq!(image, image_a, "{stderr}");
    let schemes = std::fs::read_to_string(b.store().join("registry-schemes")).unwrap();
    assert_eq!(schemes, format!("{} http\n", registry.addr));
    // A stale entry (the registry no longer speaks what is remembered).
    a_stale_scheme_is_probed_again(&b, &registry.addr, &cache_ref, &image_a, "https", "http");
}

/// B remembers `stale` for the registry at `addr`, which speaks `fresh`: the build's first
/// failure there makes it probe again, and it still hits the cache, with no warning.
fn a_stale_scheme_is_probed_again(b: &Forge, addr: &str, cache_ref: &str, image_a: &str, stale: &str, fresh: &str) {
    std::fs::write(b.store().join("registry-schemes"), format!("{addr} {stale}\n")).unwrap();
    let ctx = b.context(&format!("stale-{stale}"), &files());
    let (image, stderr) = build(b, &ctx, &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert_eq!(image, image_a, "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");
    let schemes = std::fs::read_to_string(b.store().join("registry-schemes")).unwrap();
    assert_eq!(schemes, format!("{addr} {fresh}\n"), "the stale entry stayed");
}

#[test]
fn a_pull_remembers_the_scheme_so_the_build_after_it_does_not_probe() {
    // A fresh CI runner pulls its base image, then builds: the pull's probe is the only one.
    let registry = forge_testkit::Registry::start();
    let a = Forge::with_busybox();
    let dest = format!("{}/ci/base:1", registry.addr);
    a.ok(&["push", "-q", "busybox:latest", &dest]);
    let b = Forge::empty();
    b.ok(&["pull", "-q", &dest]);
    let schemes = std::fs::read_to_string(b.store().join("registry-schemes")).expect("schemes file written by the pull");
    assert_eq!(schemes, format!("{} http\n", registry.addr));
}

#[test]
fn a_remembered_plain_http_scheme_is_probed_again_when_the_registry_moves_to_tls() {
    // A loopback registry on TLS: forge probes HTTPS first (and, as docker does for an
    // insecure registry, takes its self-signed certificate) and remembers it.
    let registry = forge_testkit::Registry::start_tls();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let b = runner_b(&a, &cache_ref, &image_a);
    let schemes = std::fs::read_to_string(b.store().join("registry-schemes")).expect("schemes file written");
    assert!(schemes.lines().any(|l| l == format!("{} https", registry.addr)), "{schemes}");
    // Remembered plain HTTP, but the registry now speaks TLS on that port: plain HTTP reaches
    // it and gets an answer (Go's 400 page), not a refused connection.
    a_stale_scheme_is_probed_again(&b, &registry.addr, &cache_ref, &image_a, "http", "https");
}

#[test]
fn a_torn_batch_of_cache_entries_is_ignored_with_a_warning() {
    let registry = forge_testkit::Registry::start();
    let (a, _ctx, cache_ref, image_a) = runner_a(&registry);
    let b = runner_b(&a, &cache_ref, &image_a);
    // B wrote the entries and remote layers' records it took from the cache as batches (one
    // file each per kind and write), not as a file per entry.
    let batches = |kind: &str| -> Vec<std::path::PathBuf> {
        let dir = b.store().join("forge").join(kind).join("batches");
        std::fs::read_dir(&dir).map(|l| l.map(|e| e.unwrap().path()).collect()).unwrap_or_default()
    };
    assert!(!batches("remote").is_empty() && !batches("cache").is_empty(), "no batches written");
    let own_entries = std::fs::read_dir(b.store().join("forge/cache")).unwrap().filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "json")).count();
    assert_eq!(own_entries, 0, "entries taken from the cache were written one by one");
    // The entries' batches as a crash while writing them can leave them: their first half.
    for batch in batches("cache") {
        let bytes = std::fs::read(&batch).unwrap();
        std::fs::write(&batch, &bytes[..bytes.len() / 2]).unwrap();
    }
    // The next build says so, runs the steps again (fetching the layers they stand on) and
    // makes the same image.
    let ctx = b.context("checkout2", &files());
    let (image, stderr) = build(&b, &ctx, &[]);
    assert!(stderr.contains("ignoring") && stderr.contains("do not match its name"), "{stderr}");
    assert_eq!(image, image_a, "{stderr}");
    // fsck names them; its repair removes them.
    let fsck = b.run(&["store", "fsck"]);
    assert!(!fsck.ok && fsck.stdout.contains("damaged batch"), "{}{}", fsck.stdout, fsck.stderr);
    b.run(&["store", "fsck", "--repair"]);
    assert!(batches("cache").is_empty());
    b.ok(&["store", "fsck"]);
}
