//! Pending tags (see `forge_layerstore::pending`): a build tags its image at once for forge
//! and leaves the layer tars to a detached `forge store finish-tags --detached`, which stores
//! them from the snapshots and then puts the tag into the layout's `index.json`. Every later
//! command restarts that process when pending tags wait and none runs (it was killed).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;
use forge_layerstore::pending::FinishStep;
use forge_layerstore::Store;

use crate::stdout::outln;

/// A tagged image whose layers kept as snapshots total less than this is stored at once, as
/// before: writing a few MiB costs less than the build's other work, and the layout is then
/// whole as soon as the build returns. `FORGE_TAG_AT_ONCE_BELOW` (bytes) overrides it, for
/// tests and measurements.
const TAG_AT_ONCE_BELOW: u64 = 8 << 20;

/// The size under which a tag's blobs are stored at once.
pub fn at_once_below() -> u64 {
    std::env::var("FORGE_TAG_AT_ONCE_BELOW").ok().and_then(|v| v.parse().ok()).unwrap_or(TAG_AT_ONCE_BELOW)
}

/// Starts a detached finisher of the store's pending tags: this executable re-executed as
/// `forge --root STORE store finish-tags --detached`, its stdio `/dev/null`.
pub fn spawn(root: &Path) -> anyhow::Result<()> {
    let program = std::env::current_exe().context("finding forge's own executable")?;
    // Absolute: the finisher outlives this command's working directory's meaning.
    let root = std::path::absolute(root).context("resolving the store's path")?;
    Command::new(program)
        .arg("--root")
        .arg(root)
        .args(["store", "finish-tags", "--detached"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the process that stores the layers of pending tags")?;
    Ok(())
}

/// Starts a finisher when pending tags wait and none runs (one was killed). Quiet: a command
/// never fails for this, the next one tries again.
pub fn resume(global: &crate::Global) {
    let Ok(root) = global.store_root() else { return };
    // One `stat` when nothing is pending, which is nearly always.
    if !forge_layerstore::index::has_pending(&root) {
        return;
    }
    if Store::open(&root).is_ok_and(|s| s.pending_unattended()) {
        let _ = spawn(&root);
    }
}

/// `forge store finish-tags`: stores the pending tags' layers and publishes the tags; waits
/// for a finisher already running first. `--detached`: the process a build started, in a
/// session of its own (no terminal's signals reach it) and at the lowest priority: it works
/// while the user's next commands run (a push compressing the same layers needs the cores).
pub fn run(store: &Store, detached: bool) -> anyhow::Result<()> {
    if detached {
        let _ = rustix::process::setsid();
        let _ = rustix::process::setpriority_process(None, 19);
        // A new session is a scheduling group of its own where the kernel groups by session
        // (`kernel.sched_autogroup_enabled`, on by default), and groups share the cores equally
        // whatever their processes' nice: a W2 push beside its build's finisher had about one
        // core of the two until the finisher ended. The group's own nice is what lowers it.
        let _ = std::fs::write("/proc/self/autogroup", "19");
    }
    // A test stops the finisher at a step (`materialize` or `promote`) to kill it there.
    let stall = std::env::var("FORGE_TEST_FINISH_TAGS_STALL").ok();
    let mut observe = |_: &forge_layerstore::index::PendingTag, step: FinishStep| {
        let name = match step {
            FinishStep::Materialize => "materialize",
            FinishStep::Promote => "promote",
        };
        if stall.as_deref() == Some(name) {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    };
    let report = store.finish_pending_tags(&mut observe)?;
    if !detached {
        for name in &report.promoted {
            outln!("{name}")?;
        }
        for (name, error) in &report.failed {
            eprintln!("warning: {name} stays pending: {error}");
        }
    }
    Ok(())
}
