//! COPY and ADD: expand the instruction, find the sources (the context, a stage's or image's
//! tree, or URLs for ADD), key them by content, and write them into the step's snapshot
//! (`files.rs` places them). A copy from the context that cannot hit the cache
//! (`layers::NewKeys`) is written first and keyed after, from the hashes the copy made of
//! what it read: a cold build reads each context file once.

use forge_parser::dag::Source;
use forge_parser::dockerignore::Dockerignore;
use forge_parser::Copy;
use forge_layerstore::diff::LayerInfo;
use forge_layerstore::Layer;

use crate::cache_key::{InputKind, KeyBuilder, StepKey};
use crate::files::{copy_into, CopyOptions, InlineFile};
use crate::layers::{self, Snapshot};
use crate::one_pass;
use crate::mount::OverlayMount;
use crate::from_memo::FromMemo;
use crate::source::{feed, reads_one_context_file_at_most, hash_matches, records, Matched, SourceError, SourceTree};
use crate::step::{Made, StepCtx};
use crate::stat_cache::StatCache;
use crate::users::resolve_owner;
use crate::error::StepErrorKind;
use crate::Error;

/// The instruction with its words expanded.
struct Expanded {
    verb: &'static str,
    /// Absolute, keeping a trailing `/` (or `.`) that says "a directory".
    dest: String,
    /// As written after expansion, for history.
    shown_dest: String,
    chown: Option<String>,
    chmod_text: Option<String>,
    chmod: Option<u32>,
    exclude: Dockerignore,
    /// The `--exclude` patterns as expanded (the memo of a `--from` tree is kept under them).
    exclude_patterns: Vec<String>,
    /// Each source is one word after expansion (a value with spaces names one file), as in BuildKit.
    sources: Vec<String>,
    checksum: Option<String>,
    inline: Vec<InlineFile>,
}

/// Where the sources are read from, and what is mounted to read them.
struct Origin {
    /// `None`: the build context.
    tree: Option<SourceTree>,
    _holders: Vec<OverlayMount>,
}

/// The sources found, and the downloads they need kept.
struct Found {
    matches: Vec<Matched>,
    /// Digests of downloaded files: they enter the key by content, living outside the tree.
    remote_digests: Vec<String>,
    _downloads: Option<tempfile::TempDir>,
}

/// Runs one COPY or ADD.
pub(crate) fn copy(step: &StepCtx<'_>, c: &Copy, sources: &[Source]) -> Result<Made, Error> {
    let x = expand(step, c)?;
    let from = from_layers(step, c, sources)?;
    // A `--from` tree keyed before is keyed from its memo; it is mounted only on a miss.
    let memo = from.as_ref().filter(|_| !x.sources.iter().any(|s| crate::remote::is_url(s))).map(|(layers, _)| FromMemo::new(step.build.store, layers, &x.sources, &x.exclude_patterns));
    let remembered = memo.as_ref().and_then(FromMemo::read);
    // Kept for `--cache-to`, so another runner keys this step without the stage's layers.
    let keep_for_cache_to = |memo: &FromMemo, records: &[crate::source::Fed]| {
        if !step.build.opts.cache_to.is_empty() {
            step.build.from_records.lock().unwrap().insert(memo.id(), (memo.layers().to_vec(), records.to_vec()));
        }
    };
    if let (Some(memo), Some(records)) = (&memo, &remembered) {
        keep_for_cache_to(memo, records);
    }
    let mut located = match remembered {
        Some(_) => None,
        None => Some(locate(step, &x, from.as_ref())?),
    };
    let origin_key = from.as_ref().map_or("context", |(_, k)| k.as_str());
    let kind = if from.is_none() { InputKind::ContextFile } else { InputKind::FromFile };
    let fail = |e: SourceError| step.at.fail(e.kind(), e.to_string());
    let opts = CopyOptions { owner: None, from_context: c.from.is_none(), chmod: x.chmod, extract_archives: c.add, parents: c.parents };
    // The key reads the files the stat cache does not remember on many threads (a context
    // paged out is read back in parallel), the copy one after another: keyed after the copy,
    // W1's COPY of 5,000 files paged out took 0.71-0.79 s instead of 0.29-0.37 s. So only
    // when the key would read one file at most.
    let few_to_read = |(_, found): &(Origin, Found)| reads_one_context_file_at_most(&found.matches, &step.build.stat_cache);
    if from.is_none() && step.build.new_keys.cannot_hit(step.parent_key) && located.as_ref().is_some_and(few_to_read) {
        // Nothing to look up: the files are copied first, their hashes remembered as they are
        // read, and the key made from those.
        let (_, found) = located.take().expect("the context is located, never remembered");
        let remote_digests = &found.remote_digests[..];
        let (key, layer, created) = step.layer_keyed_after(
            |snap| write(step, &x, opts, &found, Some(&step.build.stat_cache), snap),
            || cache_key(step, c, &x, origin_key, remote_digests, |key| hash_matches(&step.build.context, &found.matches, &step.build.stat_cache, key, kind).map_err(fail)),
        )?;
        return Ok(Made { key, layer, created, created_by: created_by(c, &x) });
    }
    let remote_digests = located.as_ref().map_or(&[][..], |(_, f)| &f.remote_digests[..]);
    let (key, inputs) = cache_key(step, c, &x, origin_key, remote_digests, |key| match (remembered, &located) {
        (Some(records), _) => {
            feed(records, key, kind);
            Ok(())
        }
        (None, Some((origin, found))) => match (&origin.tree, &memo) {
            (Some(tree), Some(memo)) => {
                let records = records(tree, &found.matches, &step.build.stat_cache).map_err(fail)?;
                // Not remembered only costs reading the tree again next time.
                let _ = memo.write(&records);
                keep_for_cache_to(memo, &records);
                feed(records, key, kind);
                Ok(())
            }
            (tree, _) => hash_matches(tree.as_ref().unwrap_or(&step.build.context), &found.matches, &step.build.stat_cache, key, kind).map_err(fail),
        },
        (None, None) => unreachable!("located when not remembered"),
    })?;
    let (layer, created) = step.layer(&key, inputs, |snap| {
        // The origin's mounts stay until the files are copied.
        let (_origin, found) = match located.take() {
            Some(l) => l,
            None => locate(step, &x, from.as_ref())?,
        };
        write(step, &x, opts, &found, None, snap)
    })?;
    Ok(Made { key, layer, created, created_by: created_by(c, &x) })
}

/// Writes the sources `found` into the step's snapshot `snap`; returns the layer when the
/// one-pass copy wrote it (see `one_pass.rs`). With `learn`, the one-pass copy remembers the
/// content hashes of the context files it reads there.
fn write(step: &StepCtx<'_>, x: &Expanded, opts: CopyOptions, found: &Found, learn: Option<&StatCache>, snap: &Snapshot<'_>) -> Result<Option<LayerInfo>, Error> {
    let (mount, root) = snap.mount(step.build.store, step.at)?;
    let owner = x.chown.as_deref().map(|spec| resolve_owner(&root, spec)).transpose().map_err(|e| step.at.fail(StepErrorKind::UnknownUser, e))?;
    let opts = CopyOptions { owner, ..opts };
    let claimed = one_pass::claim(&root, &found.matches, &x.inline, &x.dest, &opts).map_err(|e| step.at.fail(StepErrorKind::Io, format!("{}: {e}", x.dest)))?;
    if let Some(target) = claimed {
        // Nothing may hold the overlay while its upperdir is written directly.
        drop((root, mount));
        return one_pass::copy(step.build.store, step.at, snap.upperdir, &target, &found.matches[0], &opts, &snap.layer_opts, snap.lazy, learn).map(Some);
    }
    copy_into(&root, &found.matches, &x.inline, &x.dest, &opts).map_err(|e| step.at.locate(e))?;
    Ok(None)
}

/// The origin mounted (for `--from`) and the sources found in it.
fn locate(step: &StepCtx<'_>, x: &Expanded, from: Option<&(Vec<Layer>, String)>) -> Result<(Origin, Found), Error> {
    let origin = match from {
        None => Origin { tree: None, _holders: Vec::new() },
        Some((layers, _)) => mount_origin(step, layers)?,
    };
    let found = find(step, x, origin.tree.as_ref().unwrap_or(&step.build.context))?;
    Ok((origin, found))
}

fn expand(step: &StepCtx<'_>, c: &Copy) -> Result<Expanded, Error> {
    let fail = |m: &str| step.at.fail(StepErrorKind::Unsupported, m);
    let shown_dest = step.expand(&c.dest)?;
    let mut dest = shown_dest.clone();
    if !dest.starts_with('/') {
        let keep_slash = dest.ends_with('/') || dest == ".";
        dest = step.image.absolute(&dest);
        if keep_slash && !dest.ends_with('/') {
            dest.push('/');
        }
    }
    let chown = c.chown.as_deref().map(|s| step.expand(s)).transpose()?;
    let chmod_text = c.chmod.as_deref().map(|m| step.expand(m)).transpose()?;
    let chmod = match &chmod_text {
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| step.at.fail(StepErrorKind::InvalidInstruction, format!("invalid --chmod {m:?}: must be octal")))?),
        None => None,
    };
    let exclude_patterns = step.expand_all(&c.exclude)?;
    let exclude = Dockerignore::new(exclude_patterns.clone()).map_err(|e| step.at.fail(StepErrorKind::InvalidInstruction, e.to_string()))?;
    let sources = c.sources.iter().map(|s| step.expand(s)).collect::<Result<Vec<_>, _>>()?;
    if sources.iter().any(|s| s.starts_with("git@") || s.ends_with(".git")) {
        return Err(fail("ADD from a git repository is not supported; clone it into the context"));
    }
    if !c.add && sources.iter().any(|s| crate::remote::is_url(s)) {
        return Err(fail("COPY does not take URLs; use ADD"));
    }
    let checksum = c.checksum.as_deref().map(|s| step.expand(s)).transpose()?;
    let inline = c
        .inline
        .iter()
        .map(|h| {
            let body = if h.expand { step.expand(&h.content)? } else { h.content.clone() };
            Ok(InlineFile { name: h.name.clone(), content: body.into_bytes() })
        })
        .collect::<Result<_, Error>>()?;
    let verb = if c.add { "ADD" } else { "COPY" };
    Ok(Expanded { verb, dest, shown_dest, chown, chmod_text, chmod, exclude, exclude_patterns, sources, checksum, inline })
}

/// For `--from`, the layers of the stage or image read, and what the cache key says about it
/// (the stage's key or the image's manifest digest); `None` for the build context.
fn from_layers(step: &StepCtx<'_>, c: &Copy, sources: &[Source]) -> Result<Option<(Vec<Layer>, String)>, Error> {
    let Some(from) = &c.from else { return Ok(None) };
    Ok(Some(match sources.first() {
        Some(Source::Stage(j)) => {
            let r = step.finished.get(*j);
            (r.layers.clone(), r.key.to_string())
        }
        src => {
            let reference = match src {
                Some(Source::Image(r)) => r.clone(),
                _ => step.expand(from)?,
            };
            let image = step.build.base_image(step.at, &reference)?;
            (image.layers().map_err(|e| step.at.fail(StepErrorKind::Store, e.to_string()))?, image.descriptor.digest().to_string())
        }
    }))
}

/// A stage's or image's tree mounted read-only.
fn mount_origin(step: &StepCtx<'_>, layers: &[Layer]) -> Result<Origin, Error> {
    let mut holders = Vec::new();
    let dir = layers::view(step.build, step.at, layers, &mut holders)?;
    let tree = SourceTree::open(&dir, Dockerignore::default(), false).map_err(|e| step.at.fail(StepErrorKind::Io, e.to_string()))?;
    Ok(Origin { tree: Some(tree), _holders: holders })
}

/// The matches of every source; URLs are downloaded (into a directory made only then: a
/// COPY's key computation, run on every build, touches no disk).
fn find(step: &StepCtx<'_>, x: &Expanded, tree: &SourceTree) -> Result<Found, Error> {
    let mut found = Found { matches: Vec::new(), remote_digests: Vec::new(), _downloads: None };
    for s in &x.sources {
        if !crate::remote::is_url(s) {
            found.matches.extend(tree.matches(s, &x.exclude).map_err(|e| step.at.fail(e.kind(), format!("source {e}")))?);
            continue;
        }
        if found._downloads.is_none() {
            found._downloads = Some(step.build.scratch_dir("add-")?);
        }
        let dir = found._downloads.as_ref().expect("made just above").path();
        let (m, digest) = crate::remote::fetch(s, dir, x.checksum.as_deref()).map_err(|e| step.at.fail(StepErrorKind::Download, e))?;
        found.remote_digests.push(digest.to_string());
        found.matches.push(m);
    }
    Ok(found)
}

fn cache_key(step: &StepCtx<'_>, c: &Copy, x: &Expanded, origin_key: &str, remote_digests: &[String], sources: impl FnOnce(&mut KeyBuilder) -> Result<(), Error>) -> Result<StepKey, Error> {
    let mut key = KeyBuilder::new(step.parent_key, x.verb);
    key.part(&x.dest).part(x.chown.as_deref().unwrap_or("")).part(&format!("{:?}", x.chmod)).part(origin_key);
    key.part(&format!("parents={} add={}", c.parents, c.add));
    key.note(InputKind::Instruction, "destination", &x.dest)
        .note(InputKind::Instruction, "--chown", x.chown.as_deref().unwrap_or(""))
        .note(InputKind::Instruction, "--chmod", x.chmod_text.as_deref().unwrap_or(""))
        .note(InputKind::Instruction, "--from", origin_key)
        .note(InputKind::Instruction, "--parents", &c.parents.to_string());
    for f in &x.inline {
        key.part(&f.name).part(&String::from_utf8_lossy(&f.content));
        key.note(InputKind::Instruction, &format!("<<{}", f.name), &String::from_utf8_lossy(&f.content));
    }
    key.list(remote_digests);
    for (url, digest) in x.sources.iter().filter(|s| crate::remote::is_url(s)).zip(remote_digests) {
        key.note(InputKind::Instruction, url, digest);
    }
    key.note(InputKind::Instruction, "sources", &x.sources.join(" "));
    sources(&mut key)?;
    Ok(key.finish_with_inputs())
}

/// BuildKit's wording: the flags that change the files, then the expanded sources.
fn created_by(c: &Copy, x: &Expanded) -> String {
    let mut shown: Vec<String> = vec![x.verb.to_string()];
    if c.parents {
        shown.push("--parents".into());
    }
    shown.extend(x.chown.iter().map(|o| format!("--chown={o}")));
    shown.extend(x.chmod_text.iter().map(|m| format!("--chmod={m}")));
    shown.extend(x.sources.iter().cloned());
    shown.extend(c.inline.iter().map(|h| format!("<<{}", h.name)));
    shown.push(x.shown_dest.clone());
    format!("{} # buildkit", shown.join(" "))
}
