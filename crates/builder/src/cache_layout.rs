//! The build cache as an OCI artifact, for `--cache-to` / `--cache-from`: a manifest whose
//! config maps cache keys to step results, and whose layers are the very blobs the images use.
//!
//! ```text
//! DIR/oci-layout, DIR/index.json          an OCI image layout; index.json names one manifest
//! manifest  artifactType  application/vnd.forge.build-cache.v1
//!           config        application/vnd.forge.build-cache.config.v1+json+gzip (the
//!                         config gzipped; up to 1 MiB also inline as the descriptor's
//!                         base64 `data`; imports read the plain `+json` form as well)
//!           layers        every layer an entry names (the images' own blobs, or with
//!                         compression=gzip|zstd their compressed forms)
//! config    {"version": 1, "entries": [{"key": "sha256:..", "layer": {digest, diff_id,
//!           size, media_type} | null, "stored": {...}?, "inputs": [{kind, name, value}, ...]}],
//!            "mounts": [{"id": "..", "sharing": "shared", "layer": {...}}]}
//! ```
//!
//! `mounts` (with `cache-mounts=true`) holds the contents of the `RUN --mount=type=cache`
//! directories the build used, one layer per mount id.
//!
//! A key is the index key of the store's cache (see `cache_key.rs`: it is portable, so one
//! runner's keys are another's). `inputs` keep `--explain-cache` working on the other side.

use std::collections::BTreeMap;
use std::path::PathBuf;

use forge_layerstore::archive::Compression;
use forge_layerstore::cache::KeyInput;
use forge_layerstore::{Digest, Layer, Store};
use serde::{Deserialize, Serialize};

/// The manifest's `artifactType`.
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.forge.build-cache.v1";
/// The config's media type, plain.
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.forge.build-cache.config.v1+json";
/// The config's media type, gzipped, as exports write it: the config is mostly the steps'
/// inputs, which shrink about sevenfold, and a registry's answer grows with the manifest (the
/// distribution registry, medians of 40: 2.97 ms for W4's 55 KB manifest with the config
/// plain, 2.13 ms for the 12 KB one with it gzipped, 1.58 ms for a 0.5 KB image manifest).
pub(crate) const CONFIG_GZIP_MEDIA_TYPE: &str = "application/vnd.forge.build-cache.config.v1+json+gzip";
/// The config's format version.
pub(crate) const VERSION: u32 = 1;

/// Bounds on what an import reads before it gives up on a cache (with a warning): an
/// `index.json` and a manifest are small; the config holds every step's inputs, file by file.
pub(crate) const MAX_INDEX: u64 = 1 << 20;
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
pub(crate) const MAX_CONFIG: u64 = 64 << 20;
/// A config up to this size also travels inside the manifest, as its descriptor's `data`
/// (OCI image-spec 1.1), so an import reads the cache in one request instead of two; the
/// config blob is pushed as well, for readers that do not look there.
pub(crate) const MAX_INLINE_CONFIG: u64 = 1 << 20;

/// The cache config.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheConfig {
    pub(crate) version: u32,
    pub(crate) entries: Vec<ConfigEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) mounts: Vec<MountEntry>,
    /// What the sources of `COPY --from` steps fed their keys, so another runner keys those
    /// steps without fetching the stages' layers (see `from_memo.rs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) from_records: Vec<FromRecords>,
}

/// One remembered set of `COPY --from` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FromRecords {
    /// The memo's name: a digest of the tree's chain ID, the sources and the excludes.
    pub(crate) id: String,
    /// The blobs of the tree's layers (caches written before this field have none).
    #[serde(default)]
    pub(crate) layers: Vec<Digest>,
    pub(crate) records: Vec<crate::source::Fed>,
}

/// A cache mount's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MountEntry {
    /// The mount's id (its target when it has none).
    pub(crate) id: String,
    /// Its sharing mode when it was exported (`shared`, `private`, `locked`).
    pub(crate) sharing: String,
    /// The directory as a layer.
    pub(crate) layer: Layer,
}

/// One step's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigEntry {
    pub(crate) key: Digest,
    pub(crate) layer: Option<Layer>,
    /// The blob the cache holds for `layer` when it was exported with `compression=`: the
    /// plain layer compressed (expanded back on import, so the image keeps its digests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stored: Option<Layer>,
    #[serde(default)]
    pub(crate) inputs: Vec<KeyInput>,
    /// When the step first ran, so another runner's image gets the same history times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) created: Option<String>,
}

/// Which steps `--cache-to` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps whose layers the final image has (BuildKit's default).
    #[default]
    Min,
    /// Every step of every stage the build ran.
    Max,
}

/// `--cache-to`: where a build exports its cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheTo {
    /// `type=local,dest=DIR[,mode=min|max]`: an OCI layout directory.
    Local {
        /// The directory (created if needed; an earlier cache there is replaced, its blobs kept).
        dest: PathBuf,
        /// Which steps.
        mode: CacheMode,
        /// `cache-mounts=true`: also the contents of the cache mounts the build used.
        cache_mounts: bool,
        /// `compression=gzip|zstd`: plain layers go into the cache compressed (through the
        /// store's memo of compressed layers, so a push of the image sends the same blobs);
        /// `uncompressed` (the default) keeps the blobs as the images have them.
        compression: Compression,
    },
    /// `type=registry,ref=REGISTRY/REPO:TAG[,mode=min|max]`: a manifest in a registry, through
    /// [`crate::CacheRegistry`]. Blobs the repository has are not sent again; those another
    /// repository of the registry has are mounted.
    Registry {
        /// The manifest's reference.
        reference: String,
        /// Which steps.
        mode: CacheMode,
        /// `cache-mounts=true`: also the contents of the cache mounts the build used.
        cache_mounts: bool,
        /// `compression=gzip|zstd`: plain layers go into the cache compressed (through the
        /// store's memo of compressed layers, so a push of the image sends the same blobs);
        /// `uncompressed` (the default) keeps the blobs as the images have them.
        compression: Compression,
    },
}

/// `--cache-from`: a cache a build may reuse steps from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheFrom {
    /// `type=local,src=DIR`: an OCI layout directory `--cache-to type=local` wrote. A directory
    /// that does not exist yet is no error (the first build of a CI pipeline).
    Local {
        /// The directory.
        src: PathBuf,
    },
    /// `type=registry,ref=REGISTRY/REPO:TAG`: a manifest `--cache-to type=registry` wrote; a
    /// reference the registry does not know yet is no error.
    Registry {
        /// The manifest's reference.
        reference: String,
    },
}

/// The registry side of `type=registry` caches, which the caller provides (the CLI, with the
/// registry crate: its credentials, retries and verified, resumable transfers). Errors are
/// text for the user.
pub trait CacheRegistry: Send + Sync + std::fmt::Debug {
    /// The manifest at `reference`; `None` when the registry has none there.
    fn manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, String>;
    /// Blob `digest` (`size` bytes, at most `max`) of `reference`'s repository, in memory and
    /// verified by digest and size: for documents read once, which the store need not keep.
    fn blob(&self, reference: &str, digest: &Digest, size: u64, max: u64) -> Result<Vec<u8>, String>;
    /// Puts blob `digest` (`size` bytes) of `reference`'s repository into `store`, verified.
    fn pull_blob(&self, store: &Store, reference: &str, digest: &Digest, size: u64) -> Result<(), String>;
    /// Makes the store's blob `digest` present in `reference`'s repository.
    fn push_blob(&self, store: &Store, reference: &str, digest: &Digest, size: u64) -> Result<(), String>;
    /// Writes the manifest at `reference`.
    fn put_manifest(&self, reference: &str, media_type: &str, bytes: Vec<u8>) -> Result<(), String>;
}

/// A `--cache-to` or `--cache-from` value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid cache option {value:?}: {reason}")]
pub struct CacheOptionError {
    value: String,
    reason: String,
}

/// `key=value` pairs, each key once.
fn fields(value: &str) -> Result<BTreeMap<String, String>, CacheOptionError> {
    let fail = |reason: String| CacheOptionError { value: value.to_string(), reason };
    let mut out = BTreeMap::new();
    for field in value.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| fail(format!("{field:?} is not key=value")))?;
        if out.insert(k.trim().to_string(), v.to_string()).is_some() {
            return Err(fail(format!("{k} is given twice")));
        }
    }
    Ok(out)
}

impl std::str::FromStr for CacheTo {
    type Err = CacheOptionError;

    fn from_str(value: &str) -> Result<CacheTo, CacheOptionError> {
        let fail = |reason: &str| CacheOptionError { value: value.to_string(), reason: reason.to_string() };
        let mut f = fields(value)?;
        let kind = f.remove("type");
        let mode = match f.remove("mode").as_deref() {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(_) => return Err(fail("mode must be min or max")),
        };
        let cache_mounts = match f.remove("cache-mounts").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(fail("cache-mounts must be true or false")),
        };
        let compression = match f.remove("compression").as_deref() {
            None | Some("uncompressed") => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some(_) => return Err(fail("compression must be gzip, zstd or uncompressed")),
        };
        let to = match kind.as_deref() {
            Some("local") => CacheTo::Local { dest: f.remove("dest").filter(|d| !d.is_empty()).ok_or_else(|| fail("dest=DIR is missing"))?.into(), mode, cache_mounts, compression },
            Some("registry") => CacheTo::Registry { reference: f.remove("ref").filter(|d| !d.is_empty()).ok_or_else(|| fail("ref=REGISTRY/REPO:TAG is missing"))?, mode, cache_mounts, compression },
            Some("inline" | "gha" | "s3" | "azblob") => return Err(fail("only type=local and type=registry are supported")),
            Some(_) => return Err(fail("unknown type (type=local or type=registry)")),
            None => return Err(fail("type= is missing (type=local,dest=DIR or type=registry,ref=REF)")),
        };
        if let Some(k) = f.keys().next() {
            return Err(fail(&format!("unknown option {k:?}")));
        }
        Ok(to)
    }
}

impl std::str::FromStr for CacheFrom {
    type Err = CacheOptionError;

    fn from_str(value: &str) -> Result<CacheFrom, CacheOptionError> {
        let fail = |reason: &str| CacheOptionError { value: value.to_string(), reason: reason.to_string() };
        let mut f = fields(value)?;
        let from = match f.remove("type").as_deref() {
            Some("local") => CacheFrom::Local { src: f.remove("src").filter(|d| !d.is_empty()).ok_or_else(|| fail("src=DIR is missing"))?.into() },
            Some("registry") => CacheFrom::Registry { reference: f.remove("ref").filter(|d| !d.is_empty()).ok_or_else(|| fail("ref=REGISTRY/REPO:TAG is missing"))? },
            Some("inline" | "gha" | "s3" | "azblob") => return Err(fail("only type=local and type=registry are supported")),
            Some(_) => return Err(fail("unknown type (type=local or type=registry)")),
            None => return Err(fail("type= is missing (type=local,src=DIR or type=registry,ref=REF)")),
        };
        if let Some(k) = f.keys().next() {
            return Err(fail(&format!("unknown option {k:?}")));
        }
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_what_they_cannot_do() {
        assert_eq!("type=local,dest=/c".parse::<CacheTo>().unwrap(), CacheTo::Local { dest: "/c".into(), mode: CacheMode::Min, cache_mounts: false, compression: Compression::None });
        assert_eq!("type=local,dest=/c,mode=max,cache-mounts=true,compression=zstd".parse::<CacheTo>().unwrap(), CacheTo::Local { dest: "/c".into(), mode: CacheMode::Max, cache_mounts: true, compression: Compression::Zstd });
        assert_eq!("type=local,src=/c".parse::<CacheFrom>().unwrap(), CacheFrom::Local { src: "/c".into() });
        assert_eq!("type=registry,ref=r:5000/c:1,mode=max,compression=gzip".parse::<CacheTo>().unwrap(), CacheTo::Registry { reference: "r:5000/c:1".into(), mode: CacheMode::Max, cache_mounts: false, compression: Compression::Gzip });
        assert_eq!("type=registry,ref=r/c".parse::<CacheFrom>().unwrap(), CacheFrom::Registry { reference: "r/c".into() });
        for bad in ["type=local", "dest=/c", "type=local,dest=/c,mode=all", "type=local,dest=/c,x=1", "type=registry", "type=gha", "type=local,dest=/c,dest=/d", "type=local,dest=/c,cache-mounts=yes", "type=local,dest=/c,compression=lz4", "local"] {
            assert!(bad.parse::<CacheTo>().is_err(), "{bad}");
        }
        assert!("type=local,dest=/c".parse::<CacheFrom>().is_err());
    }
}
