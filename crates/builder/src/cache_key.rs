//! Cache keys: a step's key is the sha256 of its parent's key and everything the step's result
//! depends on (its expanded instruction, the environment it runs in, the content it reads).
//! Two steps with the same key produce the same layer, so a key found in the store's cache
//! index is reused without running anything.
//!
//! Keys are portable: the same Dockerfile and context give the same keys on any machine, from
//! any directory, in any store, so a cache made on one runner serves another. What enters a key:
//!
//! - the parent's key (a stage starts from `scratch` or its base image's manifest digest, a
//!   stage built `FROM` another from that stage's last key);
//! - the step's kind and its instruction after variable expansion: RUN's argv, COPY/ADD's
//!   destination, `--chown`, `--chmod`, `--from` (a stage's key or an image's manifest digest),
//!   `--parents`, `--exclude`d sources, heredoc bodies; WORKDIR's path;
//! - the environment a RUN sees: its variables (ENV and the ARGs in scope, by value), USER,
//!   WORKDIR, network mode, `--mount` flags, and the seccomp profile when not the default;
//! - the content a step reads: for each file COPY/ADD or a `RUN --mount=type=bind` takes from
//!   the context or a stage, its path relative to the source, type, mode, link target and the
//!   BLAKE3 hash of its bytes (`stat_cache::content_hash`; owners too for files from stages and
//!   images, which keep them); for
//!   `ADD <url>`, the sha256 of what was downloaded;
//! - for the layer itself, the compression and `SOURCE_DATE_EPOCH` (`layer_key`).
//!
//! Never in a key: the context's or the store's absolute path, inode numbers, mtimes and
//! ctimes (the stat cache uses them only to skip re-hashing a file it has hashed), owners of
//! context files (COPY makes them root's), host names or times of day.
//!
//! Each part that the user can change is also recorded as a labelled [`KeyInput`] beside the
//! key in the cache entry, so a later miss can be explained input by input (`explain.rs`).

use forge_layerstore::archive::Compression;
use forge_layerstore::cache::KeyInput;
use forge_layerstore::Digest;
use sha2::{Digest as _, Sha256};

/// What sort of input a [`KeyInput`] is; its `kind` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputKind {
    /// The parent step's key.
    Parent,
    /// The step's kind and expanded instruction, part by part.
    Instruction,
    /// A build argument's value, as a RUN sees it.
    Arg,
    /// An ENV variable's value, as a RUN sees it.
    Env,
    /// USER, WORKDIR and other config a RUN runs under.
    Config,
    /// A build option (network, seccomp, compression, `SOURCE_DATE_EPOCH`).
    Option,
    /// A file COPY/ADD reads from the context.
    ContextFile,
    /// A file COPY/ADD reads from a stage or image (`--from`).
    FromFile,
    /// A file a `RUN --mount=type=bind` reads from the context.
    MountFile,
}

impl InputKind {
    pub(crate) const ALL: [InputKind; 9] = [
        InputKind::Parent,
        InputKind::Instruction,
        InputKind::Arg,
        InputKind::Env,
        InputKind::Config,
        InputKind::Option,
        InputKind::ContextFile,
        InputKind::FromFile,
        InputKind::MountFile,
    ];

    /// The name stored in cache entries and shown in `--progress json`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InputKind::Parent => "parent",
            InputKind::Instruction => "instruction",
            InputKind::Arg => "arg",
            InputKind::Env => "env",
            InputKind::Config => "config",
            InputKind::Option => "option",
            InputKind::ContextFile => "context-file",
            InputKind::FromFile => "from-file",
            InputKind::MountFile => "mount-file",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<InputKind> {
        InputKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A step's key and its labelled inputs.
pub(crate) type StepKey = (Digest, Inputs);

/// The name of the instruction input that holds the step's kind (`RUN`, `COPY`, ...).
pub(crate) const STEP_KIND: &str = "step";

/// Builds one key: feed parts in a fixed order, then [`KeyBuilder::finish`]. Labelled inputs
/// ([`KeyBuilder::note`]) are recorded beside it; they never change the key.
pub(crate) struct KeyBuilder {
    hasher: Sha256,
    inputs: Inputs,
}

/// The labelled inputs of a key, in the order they were noted. A source's entries (one per
/// file: thousands for a big context) are kept as the bytes the key took for them and
/// labelled only when the inputs are read, which a cache hit does only for `--cache-to` or an
/// entry of a registry cache: labelling W1's 5,000 files took 3 ms of its 25 ms no-op rebuild.
#[derive(Default)]
pub(crate) struct Inputs(Vec<Noted>);

enum Noted {
    One(KeyInput),
    /// Entries of one kind: each one's path and the bytes the key took for it.
    Entries(InputKind, Vec<(String, Vec<u8>)>),
}

impl Inputs {
    pub(crate) fn push(&mut self, input: KeyInput) {
        self.0.push(Noted::One(input));
    }

    /// The inputs, an entry valued by 64 bits of the sha256 of its bytes: enough to tell a
    /// changed file from an unchanged one in an explanation.
    pub(crate) fn labelled(self) -> Vec<KeyInput> {
        let mut out = Vec::with_capacity(self.0.iter().map(|n| if let Noted::Entries(_, e) = n { e.len() } else { 1 }).sum());
        for noted in self.0 {
            match noted {
                Noted::One(i) => out.push(i),
                Noted::Entries(kind, entries) => out.extend(entries.into_iter().map(|(name, bytes)| input(kind, name, crate::explain::short_digest(&bytes)))),
            }
        }
        out
    }
}

impl KeyBuilder {
    /// Starts the key of a step on top of `parent`, of kind `kind` (`RUN`, `COPY`, ...).
    pub(crate) fn new(parent: &Digest, kind: &str) -> KeyBuilder {
        let mut h = Sha256::new();
        h.update(b"forge-cache-v1\0");
        h.update(parent.as_str());
        h.update(b"\0");
        h.update(kind);
        h.update(b"\0");
        let mut k = KeyBuilder { hasher: h, inputs: Inputs::default() };
        k.note(InputKind::Parent, "parent", parent.as_str()).note(InputKind::Instruction, STEP_KIND, kind);
        k
    }

    /// Records a labelled input for explanations; the key itself does not change.
    pub(crate) fn note(&mut self, kind: InputKind, name: &str, value: &str) -> &mut KeyBuilder {
        self.inputs.push(input(kind, name, value));
        self
    }

    /// Adds a string part; parts are length-prefixed so that no two sequences collide.
    pub(crate) fn part(&mut self, s: &str) -> &mut KeyBuilder {
        self.hasher.update((s.len() as u64).to_le_bytes());
        self.hasher.update(s);
        self
    }

    /// Adds a list of strings.
    pub(crate) fn list<S: AsRef<str>>(&mut self, items: &[S]) -> &mut KeyBuilder {
        self.hasher.update((items.len() as u64).to_le_bytes());
        for i in items {
            self.part(i.as_ref());
        }
        self
    }

    /// Notes a source's entries as inputs of kind `kind`: each one's path, and the bytes the
    /// key took for it (fed through [`KeyBuilder::hasher`]).
    pub(crate) fn note_entries(&mut self, kind: InputKind, entries: Vec<(String, Vec<u8>)>) {
        self.inputs.0.push(Noted::Entries(kind, entries));
    }

    /// The hasher itself, for content hashing of sources.
    pub(crate) fn hasher(&mut self) -> &mut Sha256 {
        &mut self.hasher
    }

    /// The key.
    pub(crate) fn finish(self) -> Digest {
        Digest::from_sha256(self.hasher.finalize().into())
    }

    /// The key and its labelled inputs.
    pub(crate) fn finish_with_inputs(self) -> StepKey {
        (Digest::from_sha256(self.hasher.finalize().into()), self.inputs)
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

/// Records the options [`layer_key`] adds, as inputs of the step.
pub(crate) fn note_layer_options(inputs: &mut Inputs, compression: Compression, source_date_epoch: Option<i64>) {
    inputs.push(input(InputKind::Option, "compression", format!("{compression:?}")));
    inputs.push(input(InputKind::Option, "SOURCE_DATE_EPOCH", source_date_epoch.map(|s| s.to_string()).unwrap_or_default()));
}

/// A labelled input.
pub(crate) fn input(kind: InputKind, name: impl Into<String>, value: impl Into<String>) -> KeyInput {
    KeyInput { kind: kind.as_str().into(), name: name.into(), value: value.into() }
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
