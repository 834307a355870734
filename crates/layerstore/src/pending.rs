//! Tagging an image whose layers are still kept as snapshots, without ever showing outside
//! tools a tag whose blobs are missing.
//!
//! A build keeps its plain layers as their committed snapshots ([`crate::snapshot_blob`]): the
//! tar of a big layer is the largest write of the build, and Docker's overlay2 store never makes
//! it before a push or save either. But the store is an OCI layout that skopeo, umoci and podman
//! read directly, so `index.json` may name only images whose blobs are all stored. The tag is
//! therefore [pending](crate::index#pending-tags) first: forge sees it at once (run, push,
//! save, inspect, images; gc keeps what it needs, snapshots included), and
//! [`Store::finish_pending_tags`] stores the blobs from the snapshots and then moves the tag into
//! `index.json`. forge runs that in a detached process after the build, and again from any
//! later command that finds pending tags nobody is finishing (a finisher killed midway).
//!
//! Crash safety: blobs are committed through ingests (all or nothing), and the tag enters
//! `index.json` only after every blob of its image is stored, so a kill at any point leaves a
//! pending tag to finish, never a published tag with missing blobs. One finisher runs at a
//! time (an `flock` on `forge/finish-tags.lock`, which the next command's check also tries); it
//! holds a [lease](crate::lease) naming the pending images while it works.

use std::path::PathBuf;

use crate::digest::Digest;
use crate::index::PendingTag;
use crate::lock::FileLock;
use crate::store::{Error, Store};

/// What [`Store::finish_pending_tags`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FinishReport {
    /// Tags moved into `index.json`.
    pub promoted: Vec<String>,
    /// Tags whose blobs could not be made, and why (left pending with the error; `forge store
    /// fsck` reports their images).
    pub failed: Vec<(String, String)>,
}

/// Where a finisher is, for a caller's observer (tests stop a finisher at these points).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishStep {
    /// About to store the blobs of a pending tag's image.
    Materialize,
    /// Its blobs are stored; about to move the tag into `index.json`.
    Promote,
}

fn lock_path(store: &Store) -> PathBuf {
    store.root().join("forge").join("finish-tags.lock")
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

impl Store {
    /// Points tag `name` at `manifest`: at once when the image's blobs are stored (or those
    /// still kept as snapshots total less than `inline_below` bytes, which are then stored
    /// now, as [`Store::tag`] does), else as a pending tag a later
    /// [`Store::finish_pending_tags`] completes. Whether the tag is pending.
    pub fn tag_or_defer(&self, name: &str, manifest: &oci_spec::image::Descriptor, inline_below: u64) -> Result<bool, Error> {
        crate::store::check_name(name)?;
        let kept: u64 = match self.image_of(manifest).and_then(|i| i.layers()) {
            Ok(layers) => layers.iter().filter(|l| !self.content().exists(&l.digest)).filter_map(|l| self.snapshot_blobs().get(&l.digest)).map(|b| b.size).sum(),
            // An image that cannot be read is tagged as before (fsck reports it).
            Err(_) => 0,
        };
        if kept == 0 || kept < inline_below {
            self.tag(name, manifest)?;
            return Ok(false);
        }
        self.sync_image(manifest)?;
        self.index().tag_pending(&crate::store::normalize_tag(name), manifest)?;
        Ok(true)
    }

    /// Whether pending tags wait for a finisher: some have not failed, and no finisher runs.
    pub fn pending_unattended(&self) -> bool {
        if !self.index().has_pending() {
            return false;
        }
        let waiting = self.index().pending().is_ok_and(|p| p.iter().any(|t| t.error.is_none()));
        // The lock is dropped at once: a finisher started after this takes it.
        waiting && FileLock::try_exclusive(&lock_path(self)).is_ok_and(|l| l.is_some())
    }

    /// Stores the blobs of every pending tag's image that are kept as snapshots, then moves the
    /// tag into `index.json`; tags that failed before are tried again. Waits for a finisher
    /// already running, then does what it left (or what was tagged since). `observe` is told
    /// each step before it is taken.
    pub fn finish_pending_tags(&self, observe: &mut dyn FnMut(&PendingTag, FinishStep)) -> Result<FinishReport, Error> {
        let file = std::fs::File::options().create(true).truncate(false).write(true).open(lock_path(self)).map_err(io("opening the finisher's lock"))?;
        let _one = FileLock::exclusive(file).map_err(io("locking the finisher's lock"))?;
        let mut report = FinishReport::default();
        let mut tried: Vec<(String, Option<Digest>)> = Vec::new();
        loop {
            // Tags made while this runs are finished too; each (name, image) is tried once.
            let todo: Vec<PendingTag> = self.index().pending()?.into_iter().filter(|p| !tried.contains(&(p.name.clone(), p.manifest()))).collect();
            if todo.is_empty() {
                return Ok(report);
            }
            let roots: Vec<Digest> = todo.iter().filter_map(PendingTag::manifest).collect();
            let _lease = self.lease("finish-tags", &roots)?;
            for tag in todo {
                tried.push((tag.name.clone(), tag.manifest()));
                let Some(manifest) = tag.manifest() else { continue };
                match self.finish_one(&tag, &manifest, observe) {
                    Ok(true) => report.promoted.push(tag.name.clone()),
                    // A newer tag of the name, or its removal, came first.
                    Ok(false) => {}
                    Err(e) => {
                        let message = e.to_string();
                        self.index().fail_pending(&tag.name, &manifest, &message)?;
                        report.failed.push((tag.name.clone(), message));
                    }
                }
            }
        }
    }

    fn finish_one(&self, tag: &PendingTag, manifest: &Digest, observe: &mut dyn FnMut(&PendingTag, FinishStep)) -> Result<bool, Error> {
        observe(tag, FinishStep::Materialize);
        let layers = self.image_of(&tag.descriptor)?.layers()?;
        self.materialize(&layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>())?;
        // Remote layers (a registry build cache's) stay remote, as in any tagged image.
        if let Some(l) = layers.iter().find(|l| !self.content().exists(&l.digest) && self.remote().get(&l.digest).is_none()) {
            return Err(Error::NotFound(format!("blob {} of image {manifest}", l.digest)));
        }
        observe(tag, FinishStep::Promote);
        Ok(self.index().promote(&tag.name, manifest)?)
    }
}
