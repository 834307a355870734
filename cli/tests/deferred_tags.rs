//! Tagged builds that keep their layers as snapshots: the tag is pending (forge sees it,
//! the OCI layout's `index.json` does not) until a detached `forge store finish-tags` stores
//! the layer tars; skopeo never sees a tag whose blobs are missing, a killed finisher is
//! restarted by the next command, gc keeps what a pending tag needs, the newest build of a
//! tag wins, and `run`/`save`/`push` work at once (a push compresses straight from the
//! snapshots). `FORGE_TAG_AT_ONCE_BELOW=1` makes a small test image take the path a big one
//! takes; `FORGE_TEST_FINISH_TAGS_STALL` stops the finisher at a step.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Forge;

const DOCKERFILE: &str = "FROM busybox\nCOPY data /data\nRUN echo made > /made\n";

fn context(forge: &Forge, data: &str) -> PathBuf {
    forge.context("ctx", &[("Dockerfile", DOCKERFILE), ("data", &data.repeat(20_000))])
}

/// Builds `app:1` with a fixed `SOURCE_DATE_EPOCH`, its tag deferred however small the image,
/// with `env` for the build (and so for the finisher it starts); returns the manifest digest.
fn build_deferred(forge: &Forge, ctx: &Path, env: &[(&str, &str)]) -> String {
    let mut cmd = forge.cmd();
    cmd.env("SOURCE_DATE_EPOCH", "1700000000").env("FORGE_TAG_AT_ONCE_BELOW", "1").args(["build", "-q", "--network", "none", "-t", "app:1"]).arg(ctx);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let r: common::Ran = cmd.output().unwrap().into();
    assert!(r.ok, "{}", r.stderr);
    // Read from the pending tag, not with another command: that would start a finisher of
    // its own if it came before the build's took its lock.
    let pending: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("forge/pending-tags.json")).expect("a pending tag")).unwrap();
    assert_eq!(pending[0]["name"], "app:1");
    pending[0]["descriptor"]["digest"].as_str().unwrap().to_string()
}

fn manifest_of(forge: &Forge, name: &str) -> String {
    forge.inspect(name)["ManifestDigest"].as_str().unwrap().to_string()
}

/// The manifest digest `index.json` gives `name`, if it names it.
fn published(forge: &Forge, name: &str) -> Option<String> {
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(forge.store().join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().iter().find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name).map(|m| m["digest"].as_str().unwrap().to_string())
}

fn blob(forge: &Forge, digest: &str) -> PathBuf {
    forge.store().join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// The layer digests of a stored manifest.
fn layers(forge: &Forge, manifest: &str) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(blob(forge, manifest)).unwrap()).unwrap();
    m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// What skopeo, reading the store as an OCI layout, says of `app:1`.
fn skopeo_inspect(forge: &Forge) -> common::Ran {
    Command::new("skopeo").arg("inspect").arg(format!("oci:{}:app:1", forge.store().display())).output().unwrap().into()
}

/// Every blob a manifest names is in the store.
fn whole(forge: &Forge, manifest: &str) -> bool {
    blob(forge, manifest).exists() && layers(forge, manifest).iter().all(|l| blob(forge, l).exists())
}

/// The finisher working for the store (it holds the finisher's lock and a lease), once it is.
fn finisher(forge: &Forge) -> u32 {
    let leased = || {
        let dir = std::fs::read_dir(forge.store().join("forge/leases")).ok()?;
        dir.flatten().find_map(|e| {
            let lease: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            (lease["operation"] == "finish-tags").then(|| lease["pid"].as_u64().unwrap() as u32)
        })
    };
    assert!(common::eventually(|| leased().is_some()), "no finisher runs: {:?}", forge.finishers());
    leased().unwrap()
}

fn kill(forge: &Forge, pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    assert!(common::eventually(|| !forge.finishers().contains(&pid)), "finisher {pid} outlived kill -9");
}

/// The digests the same build gives with its tag stored at once.
fn eager_manifest(base: &Forge, data: &str) -> (Forge, String) {
    let eager = Forge::with_busybox_of(base);
    let ctx = context(&eager, data);
    let r: common::Ran = eager.cmd().env("SOURCE_DATE_EPOCH", "1700000000").args(["build", "-q", "--network", "none", "-t", "app:1"]).arg(&ctx).output().unwrap().into();
    assert!(r.ok, "{}", r.stderr);
    assert!(!eager.store().join("forge/pending-tags.json").exists(), "a small image is tagged at once by default");
    let m = manifest_of(&eager, "app:1");
    assert_eq!(published(&eager, "app:1").as_deref(), Some(m.as_str()));
    (eager, m)
}

#[test]
fn a_pending_tag_is_used_by_forge_at_once_and_published_only_whole_even_after_a_kill() {
    let forge = Forge::with_busybox();
    let ctx = context(&forge, "pending\n");
    let manifest = build_deferred(&forge, &ctx, &[("FORGE_TEST_FINISH_TAGS_STALL", "materialize")]);
    let built = layers(&forge, &manifest);
    // The finisher holds before storing anything: the layers are snapshots only, and the
    // layout names no app:1, so skopeo finds no such image rather than a broken one.
    let stalled = finisher(&forge);
    // At the lowest priority, and so is its scheduling group, where the kernel has them: a
    // session of its own is a group of its own, which its nice alone does not lower.
    let stat = std::fs::read_to_string(format!("/proc/{stalled}/stat")).unwrap();
    let nice = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap();
    assert_eq!(nice, "19", "{stat}");
    if let Ok(group) = std::fs::read_to_string(format!("/proc/{stalled}/autogroup")) {
        assert!(group.trim_end().ends_with("nice 19"), "{group}");
    }
    assert!(built[1..].iter().all(|l| !blob(&forge, l).exists()), "the build wrote its layers' tars");
    assert_eq!(published(&forge, "app:1"), None);
    assert!(!skopeo_inspect(&forge).ok);

    // forge sees the tag: images, run, save; a gc keeps what the pending tag needs.
    assert!(forge.ok(&["images"]).stdout.contains("app"));
    assert_eq!(forge.ok(&["run", "--rm", "--network", "none", "app:1", "cat", "/made"]).stdout, "made\n");
    let archive = forge.dir.path().join("app.tar");
    forge.ok(&["save", "-o", archive.to_str().unwrap(), "app:1"]);
    forge.ok(&["store", "gc"]);
    assert!(blob(&forge, &manifest).exists());
    assert_eq!(forge.ok(&["store", "fsck"]).code, Some(0));

    // Killed before it stored anything: still nothing published. The next command restarts
    // a finisher, which publishes the tag with every blob stored.
    kill(&forge, stalled);
    assert_eq!(published(&forge, "app:1"), None);
    forge.ok(&["images"]);
    forge.ok(&["store", "finish-tags"]);
    assert_eq!(published(&forge, "app:1").as_deref(), Some(manifest.as_str()));
    assert!(whole(&forge, &manifest));
    assert!(!forge.store().join("forge/pending-tags.json").exists());
    let seen = skopeo_inspect(&forge);
    assert!(seen.ok, "{}", seen.stderr);
    assert_eq!(forge.podman_run("app:1", &["cat", "/made"]), "made\n");

    // The digests of a build whose tag is stored at once.
    let (_eager, eager) = eager_manifest(&forge, "pending\n");
    assert_eq!(manifest, eager);
}

#[test]
fn a_finisher_killed_after_storing_the_tars_leaves_them_to_gc_never_and_the_tag_to_the_next_command() {
    let forge = Forge::with_busybox();
    let ctx = context(&forge, "stored\n");
    let manifest = build_deferred(&forge, &ctx, &[("FORGE_TEST_FINISH_TAGS_STALL", "promote")]);
    let stalled = finisher(&forge);
    assert!(common::eventually(|| whole(&forge, &manifest)), "the finisher stored no tars");
    // The tars are stored, but only a pending tag names them: the layout still has no app:1.
    assert_eq!(published(&forge, "app:1"), None);
    assert!(!skopeo_inspect(&forge).ok);
    kill(&forge, stalled);
    // gc keeps the pending tag's blobs (nothing in index.json names them).
    forge.ok(&["store", "gc"]);
    assert!(whole(&forge, &manifest), "gc removed blobs of a pending tag");
    // Any command restarts the finisher; `store finish-tags` waits for it.
    forge.ok(&["inspect", "app:1"]);
    forge.ok(&["store", "finish-tags"]);
    assert_eq!(published(&forge, "app:1").as_deref(), Some(manifest.as_str()));
    assert!(skopeo_inspect(&forge).ok);
}

#[test]
fn a_rebuild_while_a_finisher_runs_ends_with_the_newest_image_tagged() {
    let forge = Forge::with_busybox();
    let ctx = context(&forge, "first\n");
    let first = build_deferred(&forge, &ctx, &[("FORGE_TEST_FINISH_TAGS_STALL", "promote")]);
    let stalled = finisher(&forge);
    assert!(common::eventually(|| whole(&forge, &first)));
    // A second build of the tag: its finisher waits for the first one's lock.
    std::fs::write(ctx.join("data"), "second\n".repeat(20_000)).unwrap();
    let second = build_deferred(&forge, &ctx, &[]);
    assert_ne!(first, second);
    assert_eq!(manifest_of(&forge, "app:1"), second, "forge sees the newest build at once");
    assert_eq!(published(&forge, "app:1"), None);
    // The first finisher ends (here: killed just before it would have published the first
    // image); the waiting one publishes the second, never the first.
    kill(&forge, stalled);
    forge.ok(&["store", "finish-tags"]);
    assert_eq!(published(&forge, "app:1").as_deref(), Some(second.as_str()));
    assert!(whole(&forge, &second));
    assert!(!forge.store().join("forge/pending-tags.json").exists());
}

#[test]
fn a_pending_tag_is_pushed_from_its_snapshots_with_the_digests_of_an_eager_build() {
    let registry = forge_testkit::Registry::start();
    let forge = Forge::with_busybox();
    let ctx = context(&forge, "pushed\n");
    let manifest = build_deferred(&forge, &ctx, &[("FORGE_TEST_FINISH_TAGS_STALL", "materialize")]);
    let stalled = finisher(&forge);
    let push = |f: &Forge, repo: &str| {
        let out = f.ok(&["push", "-q", "app:1", &format!("{}/{repo}:1", registry.addr)]).stdout;
        out.trim().rsplit_once('@').expect("name@digest").1.to_string()
    };
    let pushed = push(&forge, "deferred");
    // The push compressed straight from the snapshots: no plain tar was written.
    assert!(layers(&forge, &manifest)[1..].iter().all(|l| !blob(&forge, l).exists()), "the push wrote a plain tar");
    let (eager, _) = eager_manifest(&forge, "pushed\n");
    assert_eq!(pushed, push(&eager, "eager"), "the same pushed digest as an image whose tars were stored");
    // A second push sends the remembered compressed blobs.
    assert_eq!(push(&forge, "again"), pushed);
    kill(&forge, stalled);
    forge.ok(&["store", "finish-tags"]);
    assert_eq!(published(&forge, "app:1").as_deref(), Some(manifest.as_str()));
}

#[test]
fn a_removed_pending_tag_is_not_published() {
    let forge = Forge::with_busybox();
    let ctx = context(&forge, "removed\n");
    build_deferred(&forge, &ctx, &[("FORGE_TEST_FINISH_TAGS_STALL", "promote")]);
    let stalled = finisher(&forge);
    forge.ok(&["rmi", "app:1"]);
    assert!(!forge.run(&["inspect", "app:1"]).ok);
    kill(&forge, stalled);
    forge.ok(&["store", "finish-tags"]);
    assert_eq!(published(&forge, "app:1"), None);
    assert!(!forge.ok(&["images"]).stdout.contains("app"));
}
