//! What every stage and step of one build reads: the store, the options, the Dockerfile's text
//! and the context. Set up before the first stage and never changed after; what changes (the
//! stages' results) is the scheduler's.

use std::path::PathBuf;

use forge_layerstore::cache::Cache;
use forge_layerstore::{Image, Store};

use crate::error::{At, StepErrorKind};
use crate::progress::Progress;
use crate::source::SourceTree;
use crate::stat_cache::StatCache;
use crate::{BaseImages, BuildOptions, Error};

pub(crate) struct BuildCtx<'a> {
    pub(crate) store: &'a Store,
    pub(crate) opts: &'a BuildOptions,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) bases: Option<&'a dyn BaseImages>,
    /// The Dockerfile's name, for errors.
    pub(crate) file: String,
    pub(crate) escape: char,
    /// The Dockerfile's lines, to show a step as written.
    pub(crate) lines: Vec<String>,
    /// ARGs declared before the first FROM.
    pub(crate) global_args: Vec<(String, Option<String>)>,
    pub(crate) context: SourceTree,
    pub(crate) stat_cache: StatCache,
    pub(crate) cache: Cache,
    /// The cache mounts RUN steps named: id to (sharing mode, directory), for `cache-mounts=true`.
    pub(crate) mounts_used: std::sync::Mutex<std::collections::BTreeMap<String, (String, PathBuf)>>,
    /// Steps of registry caches whose layers are fetched when needed (`cache_import.rs`).
    pub(crate) lazy: crate::cache_import::Lazy,
    /// The cache entries the build's steps used or made (index key, entry), for `--cache-to`.
    pub(crate) used: std::sync::Mutex<Vec<(forge_layerstore::Digest, forge_layerstore::cache::CacheEntry)>>,
    /// Which steps cannot hit the cache, known before their keys are.
    pub(crate) new_keys: crate::layers::NewKeys,
    /// The `COPY --from` memos the build's steps used or made (id, records), for `--cache-to`.
    pub(crate) from_records: std::sync::Mutex<std::collections::BTreeMap<String, (Vec<forge_layerstore::Digest>, Vec<crate::source::Fed>)>>,
}

impl BuildCtx<'_> {
    /// The first line of the instruction at `span`, shortened for display.
    pub(crate) fn line_text(&self, span: forge_parser::Span) -> String {
        let line = self.lines.get(span.start.line.saturating_sub(1)).map_or("", |l| l.trim());
        let mut text: String = line.chars().take(100).collect();
        if text.len() < line.len() {
            text.push_str("...");
        }
        text
    }

    /// Makes the blobs of `layers` present, fetching those only a registry cache has so far.
    pub(crate) fn fetch_layers(&self, layers: &[forge_layerstore::Layer]) -> Result<(), String> {
        self.lazy.ensure(self.store, &self.cache, self.opts.cache_registry.as_deref(), layers)
    }

    /// A fresh scratch directory in the store (same filesystem as the snapshots).
    pub(crate) fn scratch_dir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        let tmp: PathBuf = self.store.tmp_dir()?;
        tempfile::Builder::new().prefix(prefix).tempdir_in(&tmp).map_err(|source| Error::Io { what: "creating a scratch directory in", path: tmp, source })
    }

    /// A base or `--from` image: from the store, else fetched when the build may; its blobs
    /// are held by the build's lease from here on.
    pub(crate) fn base_image(&self, at: &At, reference: &str) -> Result<Image, Error> {
        let image = self.find_image(at, reference)?;
        self.store.hold(&image).map_err(|e| at.fail(StepErrorKind::BaseImage, format!("base image {reference:?}: {e}")))?;
        Ok(image)
    }

    fn find_image(&self, at: &At, reference: &str) -> Result<Image, Error> {
        match self.store.image(reference) {
            Ok(image) => Ok(image),
            Err(forge_layerstore::store::Error::NotFound(_)) => {
                let Some(bases) = self.bases else {
                    return Err(at.fail(StepErrorKind::BaseImage, format!("base image {reference:?} is not in the store (forge pull it or forge import a rootfs)")));
                };
                let name = bases.fetch(self.store, reference).map_err(|e| at.fail(StepErrorKind::BaseImage, format!("pulling base image {reference:?}: {e}")))?;
                self.store.image(&name).map_err(|e| at.fail(StepErrorKind::BaseImage, e.to_string()))
            }
            Err(e) => Err(at.fail(StepErrorKind::BaseImage, e.to_string())),
        }
    }
}
