//! One module per kind of step. Config-only steps (`config.rs`) are pure functions of the
//! stage's image; layer steps (`run.rs`, `copy.rs`, `workdir.rs`) get a [`StepCtx`] with what
//! they read and return what they [`Made`]; the stage applies it.

pub(crate) mod config;
pub(crate) mod copy;
pub(crate) mod run;
pub(crate) mod workdir;

use forge_layerstore::{Digest, Layer};

use crate::cache_key::Inputs;
use crate::ctx::BuildCtx;
use crate::error::At;
use crate::layers::{self, Snapshot};
use crate::scheduler::Finished;
use crate::Error;
use config::{Scope, StageImage};

/// What a layer step reads: the build, the stages finished so far, and its own stage's image,
/// layers and cache key so far.
pub(crate) struct StepCtx<'a> {
    pub(crate) build: &'a BuildCtx<'a>,
    pub(crate) finished: &'a Finished,
    pub(crate) at: &'a At,
    pub(crate) image: &'a StageImage,
    pub(crate) layers: &'a [Layer],
    /// The cache key of the step before.
    pub(crate) parent_key: &'a Digest,
}

/// What a layer step made: the stage records it.
pub(crate) struct Made {
    pub(crate) key: Digest,
    /// `None` when the cache said the step made no layer.
    pub(crate) layer: Option<Layer>,
    /// When the step first ran (it keeps that time on cache hits).
    pub(crate) created: String,
    pub(crate) created_by: String,
}

/// What config steps read from the build.
pub(crate) fn scope<'a>(build: &'a BuildCtx<'_>) -> Scope<'a> {
    Scope { escape: build.escape, build_args: &build.opts.build_args, global_args: &build.global_args }
}

impl StepCtx<'_> {
    pub(crate) fn scope(&self) -> Scope<'_> {
        scope(self.build)
    }

    pub(crate) fn expand(&self, word: &str) -> Result<String, Error> {
        self.image.expand(&self.scope(), word).map_err(|e| self.at.locate(e))
    }

    pub(crate) fn expand_all(&self, words: &[String]) -> Result<Vec<String>, Error> {
        self.image.expand_all(&self.scope(), words).map_err(|e| self.at.locate(e))
    }

    /// The step's layer for `key` and when it was first made: cached, or made by `change`
    /// (see `layers.rs`).
    pub(crate) fn layer(&self, key: &Digest, inputs: Inputs, change: impl FnOnce(&Snapshot<'_>) -> Result<Option<forge_layerstore::diff::LayerInfo>, Error>) -> Result<(Option<Layer>, String), Error> {
        layers::layer_step(self.build, self.at, self.layers, self.parent_key, key, inputs, change)
    }

    /// [`StepCtx::layer`] for a step that cannot hit the cache, its key computed by `key`
    /// after `change` (see `layers.rs`); returns the key too.
    pub(crate) fn layer_keyed_after(
        &self,
        change: impl FnOnce(&Snapshot<'_>) -> Result<Option<forge_layerstore::diff::LayerInfo>, Error>,
        key: impl FnOnce() -> Result<(Digest, Inputs), Error>,
    ) -> Result<(Digest, Option<Layer>, String), Error> {
        layers::layer_step_keyed_after(self.build, self.at, self.layers, self.parent_key, change, key)
    }
}
