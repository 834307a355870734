//! The build cache as an OCI artifact, for `--cache-to` / `--cache-from`: a manifest whose
//! config maps cache keys to step results, and whose layers are the very blobs the images use.
//!
//! ```text
//! DIR/oci-layout, DIR/index.json          an OCI image layout; index.json names one manifest
//! manifest  artifactType  application/vnd.forge.build-cache.v1
//!           config        application/vnd.forge.build-cache.config.v1+json
//!           layers        every layer an entry names (the images' own blobs)
//! config    {"version": 1, "entries": [{"key": "sha256:..", "layer": {digest, diff_id,
//!           size, media_type} | null, "inputs": [{kind, name, value}, ...]}]}
//! ```
//!
//! A key is the index key of the store's cache (see `cache_key.rs`: it is portable, so one
//! runner's keys are another's). `inputs` keep `--explain-cache` working on the other side.

use std::collections::BTreeMap;
use std::path::PathBuf;

use forge_layerstore::cache::KeyInput;
use forge_layerstore::{Digest, Layer};
use serde::{Deserialize, Serialize};

/// The manifest's `artifactType`.
pub(crate) const ARTIFACT_TYPE: &str = "application/vnd.forge.build-cache.v1";
/// The config's media type.
pub(crate) const CONFIG_MEDIA_TYPE: &str = "application/vnd.forge.build-cache.config.v1+json";
/// The config's format version.
pub(crate) const VERSION: u32 = 1;

/// Bounds on what an import reads before it gives up on a cache (with a warning): an
/// `index.json` and a manifest are small; the config holds every step's inputs, file by file.
pub(crate) const MAX_INDEX: u64 = 1 << 20;
pub(crate) const MAX_MANIFEST: u64 = 4 << 20;
pub(crate) const MAX_CONFIG: u64 = 64 << 20;

/// The cache config.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CacheConfig {
    pub(crate) version: u32,
    pub(crate) entries: Vec<ConfigEntry>,
}

/// One step's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ConfigEntry {
    pub(crate) key: Digest,
    pub(crate) layer: Option<Layer>,
    #[serde(default)]
    pub(crate) inputs: Vec<KeyInput>,
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
        match f.remove("type").as_deref() {
            Some("local") => {}
            Some("registry" | "inline" | "gha" | "s3" | "azblob") => return Err(fail("only type=local is supported yet")),
            Some(_) => return Err(fail("unknown type (type=local)")),
            None => return Err(fail("type= is missing (type=local,dest=DIR)")),
        }
        let dest = f.remove("dest").filter(|d| !d.is_empty()).ok_or_else(|| fail("dest=DIR is missing"))?;
        let mode = match f.remove("mode").as_deref() {
            None | Some("min") => CacheMode::Min,
            Some("max") => CacheMode::Max,
            Some(_) => return Err(fail("mode must be min or max")),
        };
        if let Some(k) = f.keys().next() {
            return Err(fail(&format!("unknown option {k:?}")));
        }
        Ok(CacheTo::Local { dest: dest.into(), mode })
    }
}

impl std::str::FromStr for CacheFrom {
    type Err = CacheOptionError;

    fn from_str(value: &str) -> Result<CacheFrom, CacheOptionError> {
        let fail = |reason: &str| CacheOptionError { value: value.to_string(), reason: reason.to_string() };
        let mut f = fields(value)?;
        match f.remove("type").as_deref() {
            Some("local") => {}
            Some("registry" | "inline" | "gha" | "s3" | "azblob") => return Err(fail("only type=local is supported yet")),
            Some(_) => return Err(fail("unknown type (type=local)")),
            None => return Err(fail("type= is missing (type=local,src=DIR)")),
        }
        let src = f.remove("src").filter(|d| !d.is_empty()).ok_or_else(|| fail("src=DIR is missing"))?;
        if let Some(k) = f.keys().next() {
            return Err(fail(&format!("unknown option {k:?}")));
        }
        Ok(CacheFrom::Local { src: src.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_what_they_cannot_do() {
        assert_eq!("type=local,dest=/c".parse::<CacheTo>().unwrap(), CacheTo::Local { dest: "/c".into(), mode: CacheMode::Min });
        assert_eq!("type=local,dest=/c,mode=max".parse::<CacheTo>().unwrap(), CacheTo::Local { dest: "/c".into(), mode: CacheMode::Max });
        assert_eq!("type=local,src=/c".parse::<CacheFrom>().unwrap(), CacheFrom::Local { src: "/c".into() });
        for bad in ["type=local", "dest=/c", "type=local,dest=/c,mode=all", "type=local,dest=/c,x=1", "type=registry,ref=r/x", "type=local,dest=/c,dest=/d", "local"] {
            assert!(bad.parse::<CacheTo>().is_err(), "{bad}");
        }
        assert!("type=local,dest=/c".parse::<CacheFrom>().is_err());
    }
}
