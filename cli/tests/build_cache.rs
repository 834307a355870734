//! The build cache through the binary: `--explain-cache` names the input that broke the cache,
//! and cache keys do not depend on where the context or the store is.

mod common;

use std::path::Path;

use common::Forge;

/// A `cache_miss` event: (step id, reason, [(kind, name, change)]).
type Miss = (String, String, Vec<(String, String, String)>);

/// The `cache_miss` events of a `--progress json` build.
fn misses(stderr: &str) -> Vec<Miss> {
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

fn explain(forge: &Forge, ctx: &Path, extra: &[&str]) -> Vec<Miss> {
    // No network for the steps (none needs one; other tests' bridges may hold every free subnet).
    let mut args = vec!["build", "--network", "none", "--progress", "json", "--explain-cache", "-t", "explain:1"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r = forge.run(&args);
    assert!(r.ok, "{}", r.stderr);
    misses(&r.stderr)
}

/// The first step that missed, and its first changed input.
fn first(m: &[Miss]) -> (&str, (&str, &str, &str), &str) {
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
    let r = a.build(&ctx_a, "p:1", &["--network", "none"]);
    assert!(r.ok, "{}", r.stderr);
    let r = b.build(&ctx_b, "p:1", &["--network", "none"]);
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

const TWO_STAGES: &str = "FROM busybox:latest AS build
COPY src /src
RUN cat /src/a /src/b > /built
FROM busybox:latest
WORKDIR /app
COPY --from=build /built /app/built
RUN echo ok > /app/ok
";

fn two_stage_files() -> [(&'static str, &'static str); 3] {
    [("Dockerfile", TWO_STAGES), ("src/a", "a"), ("src/b", "b")]
}

/// Builds with `SOURCE_DATE_EPOCH` (so two stores give the same image digests) and
/// `--explain-cache`; returns the image ID, the steps that missed and the whole stderr.
fn build_with(forge: &Forge, ctx: &Path, extra: &[&str]) -> (String, Vec<String>, String) {
    let iid = forge.dir.path().join("iid");
    let mut args = vec!["build", "--network", "none", "--progress", "json", "--explain-cache", "-t", "cached:1", "--iidfile", iid.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let r: common::Ran = forge.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(&args).output().unwrap().into();
    assert!(r.ok, "forge {args:?}:\n{}", r.stderr);
    let missed = misses(&r.stderr).into_iter().map(|m| m.0).collect();
    (std::fs::read_to_string(iid).unwrap(), missed, r.stderr)
}

/// The cache manifest of a layout: (manifest path, manifest JSON).
fn cache_manifest(dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let path = dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    (path.clone(), serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
}

fn blob(dir: &Path, digest: &serde_json::Value) -> std::path::PathBuf {
    dir.join("blobs/sha256").join(digest.as_str().unwrap().trim_start_matches("sha256:"))
}

/// The cache config of the layout at `dir`, which exports write gzipped.
fn cache_config(dir: &Path) -> serde_json::Value {
    let (_, m) = cache_manifest(dir);
    assert_eq!(m["config"]["mediaType"], "application/vnd.forge.build-cache.config.v1+json+gzip");
    let gz = std::fs::read(blob(dir, &m["config"]["digest"])).unwrap();
    serde_json::from_reader(flate2::read::GzDecoder::new(&gz[..])).unwrap()
}

fn config_entries(dir: &Path) -> usize {
    cache_config(dir)["entries"].as_array().unwrap().len()
}

#[test]
fn a_second_runner_reuses_the_first_ones_local_cache() {
    let a = Forge::with_busybox();
    let b = Forge::with_busybox_of(&a);
    let cache = a.dir.path().join("ci-cache");
    let min = a.dir.path().join("ci-cache-min");
    let ctx_a = a.context("ctx", &two_stage_files());
    let dest = format!("type=local,dest={},mode=max", cache.display());
    let dest_min = format!("type=local,dest={}", min.display());
    let (image_a, missed, _) = build_with(&a, &ctx_a, &["--cache-to", &dest, "--cache-to", &dest_min]);
    assert_eq!(missed.len(), 5, "a cold build runs every layer step: {missed:?}");
    // max has every step; min only those whose layers the image has (not the build stage's).
    assert_eq!(config_entries(&cache), 5);
    assert_eq!(config_entries(&min), 3);

    // Runner B: another store, another checkout; every step is a hit, the image the same.
    let ctx_b = b.context("elsewhere/ctx", &two_stage_files());
    let src = format!("type=local,src={}", cache.display());
    let (image_b, missed, stderr) = build_with(&b, &ctx_b, &["--cache-from", &src]);
    assert_eq!(missed, Vec::<String>::new(), "{stderr}");
    assert!(!stderr.contains("\"output\""), "no RUN ran: {stderr}");
    assert_eq!(image_b, image_a);
    b.ok(&["store", "fsck"]);

    // One file changed on B: only the steps after it run, and exporting again writes only the
    // new layers (the blobs already there are left as they are).
    let before: std::collections::BTreeMap<_, _> = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap()))
        })
        .collect();
    std::fs::write(ctx_b.join("src/b"), "b2").unwrap();
    let dest = format!("type=local,dest={},mode=max", cache.display());
    let (_, missed, _) = build_with(&b, &ctx_b, &["--cache-from", &src, "--cache-to", &dest]);
    assert_eq!(missed, ["0/1", "0/2", "1/2", "1/3"], "WORKDIR stays cached");
    let after: std::collections::BTreeMap<_, _> = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::os::unix::fs::MetadataExt::ino(&e.metadata().unwrap()))
        })
        .collect();
    for (name, ino) in &before {
        assert_eq!(after.get(name), Some(ino), "{name:?} was rewritten or removed");
    }
    // Three new layers (the last RUN's is byte for byte the one before: same files, same
    // SOURCE_DATE_EPOCH), a new config and a new manifest.
    assert_eq!(after.len(), before.len() + 5);
    assert_eq!(config_entries(&cache), 5);
}

/// A step that hits reads only its layer and time from the cache, not the inputs it noted: those
/// are the ones that made its key. A cache exported by a build that only hit still carries them,
/// so a runner importing it explains a miss by the file that changed.
#[test]
fn a_cache_exported_by_a_build_that_only_hit_still_explains_a_miss() {
    let a = Forge::with_busybox();
    let b = Forge::with_busybox_of(&a);
    let cache = a.dir.path().join("ci-cache");
    let ctx_a = a.context("ctx", &two_stage_files());
    build_with(&a, &ctx_a, &[]);
    let dest = format!("type=local,dest={},mode=max", cache.display());
    let (_, missed, stderr) = build_with(&a, &ctx_a, &["--cache-to", &dest]);
    assert_eq!(missed, Vec::<String>::new(), "{stderr}");

    let ctx_b = b.context("ctx", &two_stage_files());
    std::fs::write(ctx_b.join("src/b"), "b2").unwrap();
    let src = format!("type=local,src={}", cache.display());
    let (_, _, stderr) = build_with(&b, &ctx_b, &["--cache-from", &src]);
    let m = misses(&stderr);
    assert_eq!(first(&m), ("0/1", ("context-file", "src/b", "changed"), "context file \"src/b\" changed"), "{stderr}");
}

/// Rewrites the cache config (and the manifest and index over it) of the layout at `dir`, in
/// the plain form older exports wrote; the manifest then carries no copy of it, so the blob is
/// what is read.
fn rewrite_config(dir: &Path, config: &[u8], claimed_size: Option<u64>) {
    rewrite_config_as(dir, config, "application/vnd.forge.build-cache.config.v1+json", claimed_size)
}

fn rewrite_config_as(dir: &Path, config: &[u8], media_type: &str, claimed_size: Option<u64>) {
    use sha2::Digest as _;
    let hex = |b: &[u8]| format!("sha256:{}", hex_of(&sha2::Sha256::digest(b)));
    std::fs::write(dir.join("blobs/sha256").join(&hex(config)[7..]), config).unwrap();
    rewrite_manifest(dir, &|m| {
        m["config"]["mediaType"] = media_type.into();
        m["config"]["digest"] = hex(config).into();
        m["config"]["size"] = claimed_size.unwrap_or(config.len() as u64).into();
        m["config"].as_object_mut().unwrap().remove("data");
    });
}

/// Rewrites the cache manifest (and the index over it) of the layout at `dir` with `change`.
fn rewrite_manifest(dir: &Path, change: &dyn Fn(&mut serde_json::Value)) {
    use sha2::Digest as _;
    let hex = |b: &[u8]| format!("sha256:{}", hex_of(&sha2::Sha256::digest(b)));
    let (_, mut m) = cache_manifest(dir);
    change(&mut m);
    let mb = serde_json::to_vec(&m).unwrap();
    std::fs::write(dir.join("blobs/sha256").join(&hex(&mb)[7..]), &mb).unwrap();
    let mut index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = hex(&mb).into();
    index["manifests"][0]["size"] = (mb.len() as u64).into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_bad_cache_is_a_warning_and_nothing_of_it_enters_the_store() {
    let a = Forge::with_busybox();
    let cache = a.dir.path().join("good");
    let ctx = a.context("ctx", &two_stage_files());
    let dest = format!("type=local,dest={},mode=max", cache.display());
    let (image, _, _) = build_with(&a, &ctx, &["--cache-to", &dest]);
    let (_, manifest) = cache_manifest(&cache);
    let layers: Vec<_> = manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].clone()).collect();

    let variant = |name: &str, damage: &dyn Fn(&Path)| -> (Forge, Vec<String>, String) {
        let dir = a.dir.path().join(name);
        assert!(std::process::Command::new("cp").arg("-a").arg(&cache).arg(&dir).status().unwrap().success());
        damage(&dir);
        let b = Forge::with_busybox_of(&a);
        let src = format!("type=local,src={}", dir.display());
        let (image_b, missed, stderr) = build_with(&b, &ctx, &["--cache-from", &src]);
        assert_eq!(image_b, image, "{name}: the build made the same image without the bad entries");
        b.ok(&["store", "fsck"]);
        (b, missed, stderr)
    };

    // A layer whose bytes do not match its digest: its steps are left out, the blob not taken.
    let (_, missed, stderr) = variant("corrupt-layer", &|dir| {
        let path = blob(dir, &layers[0]);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(stderr.contains("left out"), "{stderr}");
    assert!(!missed.is_empty() && missed.len() < 5, "only the bad layer's steps ran again: {missed:?}");

    // A layer blob that is missing.
    let (_, missed, stderr) = variant("missing-layer", &|dir| std::fs::remove_file(blob(dir, &layers[1])).unwrap());
    assert!(stderr.contains("left out"), "{stderr}");
    assert!(!missed.is_empty() && missed.len() < 5, "only the missing layer's steps ran again: {missed:?}");

    // A config that is not JSON, one that claims to be huge, one with entries of the wrong shape.
    let (_, _, stderr) = variant("malformed-config", &|dir| rewrite_config(dir, b"{not json", None));
    assert!(stderr.contains("cache config"), "{stderr}");
    let (_, _, stderr) = variant("huge-config", &|dir| rewrite_config(dir, b"{}", Some(1 << 40)));
    assert!(stderr.contains("more than"), "{stderr}");
    // A small gzipped config that would unpack past the 64 MiB a config may use.
    let (_, _, stderr) = variant("gzip-bomb", &|dir| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for _ in 0..65 {
            std::io::Write::write_all(&mut gz, &[b' '; 1 << 20]).unwrap();
        }
        rewrite_config_as(dir, &gz.finish().unwrap(), "application/vnd.forge.build-cache.config.v1+json+gzip", None);
    });
    assert!(stderr.contains("cache config: more than 67108864 bytes once unpacked"), "{stderr}");
    // The copy of the config inside the manifest is not the config its digest names.
    let (_, missed, stderr) = variant("inline-config", &|dir| rewrite_manifest(dir, &|m| m["config"]["data"] = "e30=".into()));
    assert!(stderr.contains("cache config in the manifest: blob") && stderr.contains("does not match"), "{stderr}");
    assert_eq!(missed.len(), 5, "the whole cache is left out: {missed:?}");
    let (b, _, stderr) = variant("wrong-digests", &|dir| {
        rewrite_config(dir, br#"{"version":1,"entries":[{"key":"sha256:0000000000000000000000000000000000000000000000000000000000000000","layer":{"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","diff_id":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":3,"media_type":"application/vnd.oci.image.layer.v1.tar+gzip"}}]}"#, None)
    });
    assert!(stderr.contains("left out"), "{stderr}");
    assert!(!b.store().join("forge/cache").join(format!("{}.json", "0".repeat(64))).exists());

    // COPY --from records under a name that is no memo's (a path out of the store): left out.
    let (b, _, stderr) = variant("bad-from-records", &|dir| {
        let mut config = cache_config(dir);
        assert!(!config["from_records"].as_array().unwrap().is_empty(), "the cache carries the COPY --from records");
        config["from_records"] = serde_json::json!([{"id": "../../../escaped", "records": []}]);
        rewrite_config(dir, &serde_json::to_vec(&config).unwrap(), None);
    });
    assert!(stderr.contains("is not a memo's name"), "{stderr}");
    assert!(!b.dir.path().join("escaped.json").exists() && !b.store().join("escaped.json").exists());

    // No cache there yet: not an error.
    let b = Forge::with_busybox_of(&a);
    let src = format!("type=local,src={}", a.dir.path().join("never-written").display());
    build_with(&b, &ctx, &["--cache-from", &src]);
}

/// The layer digests (hex) of a store's image.
fn layer_digests(forge: &Forge, image: &str) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("index.json")).unwrap()).unwrap();
    let name = forge_layerstore::store::normalize_tag(image);
    let m = index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name.as_str()).expect("tagged");
    let hex = |v: &serde_json::Value| v.as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("blobs/sha256").join(hex(&m["digest"]))).unwrap()).unwrap();
    manifest["layers"].as_array().unwrap().iter().map(|l| hex(&l["digest"])).collect()
}

/// The blobs a `docker-registry` holds.
fn registry_blobs(registry: &forge_testkit::Registry) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let root = registry.storage().join("docker/registry/v2/blobs/sha256");
    for prefix in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for blob in std::fs::read_dir(prefix.path()).unwrap().flatten() {
            out.insert(blob.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

/// The digest (hex) of the config of the cache manifest a `docker-registry` holds at `repo:tag`.
fn registry_cache_config(registry: &forge_testkit::Registry, repo: &str, tag: &str) -> String {
    let v2 = registry.storage().join("docker/registry/v2");
    let data = |hex: &str| std::fs::read(v2.join("blobs/sha256").join(&hex[..2]).join(hex).join("data")).unwrap();
    let link = std::fs::read_to_string(v2.join("repositories").join(repo).join("_manifests/tags").join(tag).join("current/link")).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&data(link.trim().trim_start_matches("sha256:"))).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    assert!(!data(&config).is_empty());
    config
}

#[test]
fn runners_share_a_cache_through_a_registry() {
    let registry = forge_testkit::Registry::start();
    let cache_ref = format!("{}/ci/app:buildcache", registry.addr);
    let a = Forge::with_busybox();
    let ctx_a = a.context("ctx", &two_stage_files());
    let to = format!("type=registry,ref={cache_ref},mode=max");
    let from = format!("type=registry,ref={cache_ref}");
    // The first runner finds no cache yet: not an error.
    let (image_a, missed, stderr) = build_with(&a, &ctx_a, &["--cache-from", &from, "--cache-to", &to]);
    assert_eq!(missed.len(), 5, "{stderr}");
    assert!(stderr.contains("no cache there yet"), "{stderr}");
    let after_a = registry_blobs(&registry);
    // Five layers, the config, the manifest.
    assert_eq!(after_a.len(), 7, "{after_a:?}");

    // Runner B: empty store but its base; all hits, the same image.
    let b = Forge::with_busybox_of(&a);
    let ctx_b = b.context("other/checkout", &two_stage_files());
    let logged = registry.log().len();
    let (image_b, missed, stderr) = build_with(&b, &ctx_b, &["--cache-from", &from]);
    assert_eq!(missed, Vec::<String>::new(), "{stderr}");
    assert_eq!(image_b, image_a);
    b.ok(&["store", "fsck"]);
    // The cache's config was read, not stored: only what its entries name enters the store.
    let config = registry_cache_config(&registry, "ci/app", "buildcache");
    assert!(!b.store().join("blobs/sha256").join(&config).exists(), "B stored the cache config {config}");
    // It came inside the manifest: B asked the registry for the manifest only.
    let requests: Vec<String> = registry.log()[logged..].lines().filter(|l| l.contains("\"GET /v2/ci/")).map(str::to_string).collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].contains("/manifests/buildcache"), "{requests:?}");
    // B fetched only the final image's layers: those of the build stage (COPY src, RUN cat),
    // which no step of B ran on, stayed in the registry.
    let r = a.run(&["build", "-q", "--network", "none", "--target", "build", "-t", "stage:1", ctx_a.to_str().unwrap()]);
    assert!(r.ok, "{}", r.stderr);
    let stage_layers = layer_digests(&a, "stage:1");
    for d in &stage_layers[1..] {
        assert!(!b.store().join("blobs/sha256").join(d).exists(), "B fetched build-stage layer {d}");
    }
    assert!(b.store().join("blobs/sha256").join(&stage_layers[0]).exists(), "the base is there");

    // A one-file change on B: only the steps after it run; exporting again adds only the new
    // layers (three: the last RUN's layer is the same bytes) and a new config and manifest.
    std::fs::write(ctx_b.join("src/a"), "a2").unwrap();
    let (_, missed, _) = build_with(&b, &ctx_b, &["--cache-from", &from, "--cache-to", &to]);
    assert_eq!(missed, ["0/1", "0/2", "1/2", "1/3"]);
    let after_b = registry_blobs(&registry);
    assert!(after_a.is_subset(&after_b));
    assert_eq!(after_b.len(), after_a.len() + 5, "{after_b:?}");

    // A third runner gets B's steps.
    let c = Forge::with_busybox_of(&a);
    let ctx_c = c.context("third", &two_stage_files());
    std::fs::write(ctx_c.join("src/a"), "a2").unwrap();
    let (_, missed, stderr) = build_with(&c, &ctx_c, &["--cache-from", &from]);
    assert_eq!(missed, Vec::<String>::new(), "{stderr}");
}

#[test]
fn cache_mount_contents_travel_with_cache_mounts_true() {
    let registry = forge_testkit::Registry::start();
    let cache_ref = format!("{}/ci/mounts:cache", registry.addr);
    let a = Forge::with_busybox();
    let fill = "FROM busybox:latest\nRUN --mount=type=cache,target=/c,id=downloads sh -c 'echo filled-on-a > /c/f; mkdir -p /c/sub; echo deep > /c/sub/g'\n";
    let ctx_a = a.context("fill", &[("Dockerfile", fill)]);
    build_with(&a, &ctx_a, &["--cache-to", &format!("type=registry,ref={cache_ref},cache-mounts=true")]);

    // Runner B's step (another one: it runs) finds A's files in the mount.
    let b = Forge::with_busybox_of(&a);
    let read = "FROM busybox:latest\nRUN --mount=type=cache,target=/c,id=downloads cat /c/f /c/sub/g\n";
    let ctx_b = b.context("read", &[("Dockerfile", read)]);
    let (_, missed, stderr) = build_with(&b, &ctx_b, &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert_eq!(missed, ["0/1"]);
    assert!(stderr.contains("\"line\":\"filled-on-a\"") && stderr.contains("\"line\":\"deep\""), "{stderr}");

    // Without cache-mounts=true the contents stay home.
    let plain_ref = format!("{}/ci/mounts:plain", registry.addr);
    build_with(&a, &ctx_a, &["--cache-to", &format!("type=registry,ref={plain_ref}")]);
    let c = Forge::with_busybox_of(&a);
    let ctx_c = c.context("read", &[("Dockerfile", &read.replace("cat /c/f /c/sub/g", "ls /c"))]);
    let (_, _, stderr) = build_with(&c, &ctx_c, &["--cache-from", &format!("type=registry,ref={plain_ref}")]);
    assert!(!stderr.contains("\"line\":\"f\""), "{stderr}");
}

/// The memos of `COPY --from` trees a store keeps.
fn from_memos(forge: &Forge) -> Vec<std::path::PathBuf> {
    let dir = forge.store().join("forge/from-records");
    std::fs::read_dir(dir).map(|l| l.flatten().map(|e| e.path()).filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')).collect()).unwrap_or_default()
}

#[test]
fn gc_drops_the_copy_from_records_of_a_tree_whose_layers_are_gone() {
    let forge = Forge::with_busybox();
    // An image with a layer of its own that no cache entry names: imported.
    let files = forge.context("src-files", &[("f", "from the image")]);
    let tar = forge.dir.path().join("src.tar");
    assert!(std::process::Command::new("tar").arg("-C").arg(&files).arg("-cf").arg(&tar).arg(".").status().unwrap().success());
    forge.ok(&["import", tar.to_str().unwrap(), "src:1"]);
    let ctx = forge.context("ctx", &[("Dockerfile", "FROM busybox:latest\nCOPY --from=src:1 /f /g\n")]);
    build_with(&forge, &ctx, &[]);
    assert_eq!(from_memos(&forge).len(), 1, "the COPY --from tree is remembered");

    // While the image is there, gc keeps its memo.
    forge.ok(&["store", "gc"]);
    assert_eq!(from_memos(&forge).len(), 1);
    // Once its layer is gone, the memo goes too.
    forge.ok(&["rmi", "src:1"]);
    let r = forge.ok(&["store", "gc"]);
    assert!(from_memos(&forge).is_empty(), "{}", r.stdout);
    assert!(r.stdout.contains("COPY --from records of 1 trees"), "{}", r.stdout);

    // Imported again, the same tree keys the step the same: a hit, remembered anew.
    forge.ok(&["import", tar.to_str().unwrap(), "src:1"]);
    let (_, missed, stderr) = build_with(&forge, &ctx, &[]);
    assert_eq!(missed, Vec::<String>::new(), "{stderr}");
    assert_eq!(from_memos(&forge).len(), 1);
}
