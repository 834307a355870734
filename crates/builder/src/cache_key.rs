//! Cache keys: a step's key is the sha256 of its parent's key and everything the step's result
//! depends on (its expanded instruction, the environment it runs in, the content it reads).
//! Two steps with the same key produce the same layer, so a key found in the store's cache
//! index is reused without running anything.

use forge_layerstore::archive::Compression;
use forge_layerstore::Digest;
use sha2::{Digest as _, Sha256};

/// Builds one key: feed parts in a fixed order, then [`KeyBuilder::finish`].
pub(crate) struct KeyBuilder(Sha256);

impl KeyBuilder {
    /// Starts the key of a step on top of `parent`, of kind `kind` (`RUN`, `COPY`, ...).
    pub(crate) fn new(parent: &Digest, kind: &str) -> KeyBuilder {
        let mut h = Sha256::new();
        h.update(b"forge-cache-v1\0");
        h.update(parent.as_str());
        h.update(b"\0");
        h.update(kind);
        h.update(b"\0");
        KeyBuilder(h)
    }

    /// Adds a string part; parts are length-prefixed so that no two sequences collide.
    pub(crate) fn part(&mut self, s: &str) -> &mut KeyBuilder {
        self.0.update((s.len() as u64).to_le_bytes());
        self.0.update(s);
        self
    }

    /// Adds a list of strings.
    pub(crate) fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut KeyBuilder {
        self.0.update((items.len() as u64).to_le_bytes());
        for i in items {
            self.part(i.as_ref());
        }
        self
    }

    /// The hasher itself, for content hashing of sources.
    pub(crate) fn hasher(&mut self) -> &mut Sha256 {
        &mut self.0
    }

    /// The key.
    pub(crate) fn finish(self) -> Digest {
        Digest::from_sha256(self.0.finalize().into())
    }
}

/// The key under which a step's layer is found in the cache index: the step's key plus the
/// options that change the layer's bytes but not its files. A store that built a step with
/// gzip, or without `SOURCE_DATE_EPOCH`, then builds it again for zstd or clamped timestamps
/// instead of handing back the other layer.
pub(crate) fn layer_key(step: &Digest, compression: Compression, source_date_epoch: Option<i64>) -> Digest {
    let mut k = KeyBuilder::new(step, "LAYER");
    k.part(&format!("{compression:?}")).part(&source_date_epoch.map(|s| s.to_string()).unwrap_or_default());
    k.finish()
}

/// The key a stage starts from: `scratch`, or the base image's manifest digest.
pub(crate) fn base_key(what: &str) -> Digest {
    let mut h = Sha256::new();
    h.update(b"forge-base-v1\0");
    h.update(what);
    Digest::from_sha256(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_do_not_run_together() {
        let base = base_key("scratch");
        let mut a = KeyBuilder::new(&base, "RUN");
        a.part("ab").part("c");
        let mut b = KeyBuilder::new(&base, "RUN");
        b.part("a").part("bc");
        assert_ne!(a.finish(), b.finish());
        let mut c = KeyBuilder::new(&base, "RUN");
        c.part("ab").part("c");
        let mut d = KeyBuilder::new(&base, "RUN");
        d.part("ab").part("c");
        assert_eq!(c.finish(), d.finish());
        assert_ne!(base_key("scratch"), base_key("sha256:00"));
        let step = base_key("scratch");
        let gzip = layer_key(&step, Compression::Gzip, None);
        assert_eq!(gzip, layer_key(&step, Compression::Gzip, None));
        assert_ne!(gzip, layer_key(&step, Compression::Zstd, None));
        assert_ne!(gzip, layer_key(&step, Compression::Gzip, Some(0)));
        assert_ne!(layer_key(&step, Compression::Gzip, Some(0)), layer_key(&step, Compression::Gzip, Some(1)));
    }
}
