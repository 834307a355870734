//! The build as a whole: parse, lower to the graph, run the needed stages level by level (the
//! stages of a level in parallel), then write the target stage as an image.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use forge_layerstore::cache::Cache;
use forge_layerstore::Store;
use forge_parser::dag::{BuildGraph, GraphOptions};
use forge_parser::dockerignore::Dockerignore;

use crate::build_file::{self, BuildFileError};
use crate::progress::{Event, Progress};
use crate::source::{SourceTree, StatCache};
use crate::stage::{self, StageResult};
use crate::{BaseImages, BuildOptions, Built, Error};

/// What every stage of one build shares.
pub(crate) struct BuildCtx<'a> {
    pub(crate) store: &'a Store,
    pub(crate) opts: &'a BuildOptions,
    pub(crate) progress: &'a dyn Progress,
    pub(crate) bases: Option<&'a dyn BaseImages>,
    pub(crate) graph: &'a BuildGraph,
    pub(crate) file: String,
    pub(crate) escape: char,
    /// The Dockerfile's lines, to show a step as written.
    pub(crate) lines: Vec<String>,
    pub(crate) context: SourceTree,
    pub(crate) stat_cache: StatCache,
    pub(crate) cache: Cache,
    /// Finished stages, by index.
    pub(crate) done: Mutex<Vec<Option<Arc<StageResult>>>>,
    /// A failure in any stage stops the others at their next step.
    pub(crate) failed: std::sync::atomic::AtomicBool,
}

/// Builds the image `opts` describes into `store` (untagged; the caller tags
/// [`Built::manifest`]). `bases` fetches base images missing from the store; without it they
/// must be there already.
pub fn build(store: &Store, opts: &BuildOptions, bases: Option<&dyn BaseImages>, progress: &dyn Progress) -> Result<Built, Error> {
    let dockerfile_path = opts.dockerfile.clone().unwrap_or_else(|| opts.context.join("Dockerfile"));
    let (dockerfile_dir, dockerfile_name) = build_file::split(&dockerfile_path);
    let text = match &opts.dockerfile_text {
        Some(t) => t.clone(),
        None => {
            let fail = |problem| Error::BuildFile { what: "Dockerfile", path: dockerfile_path.clone(), problem };
            let bytes = build_file::read_in(&dockerfile_dir, &dockerfile_name, false).map_err(fail)?.unwrap_or_default();
            String::from_utf8(bytes).map_err(|_| fail(BuildFileError::NotUtf8))?
        }
    };
    let file = dockerfile_path.file_name().map_or("Dockerfile".into(), |n| n.to_string_lossy().into_owned());
    let df = forge_parser::parse(&text, &file)?;
    for w in df.warnings() {
        progress.event(Event::Warning { message: format!("{file}:{}: {}", w.line, w.message) });
    }
    let graph = BuildGraph::new(&df, &GraphOptions { build_args: opts.build_args.clone(), target: opts.target.clone() })?;
    for name in &graph.unused_build_args {
        progress.event(Event::Warning { message: format!("build argument {name:?} was not consumed by any ARG") });
    }
    let ignore = read_dockerignore(&opts.context, &dockerfile_dir, &dockerfile_name)?;
    let context = SourceTree::open(&opts.context, ignore, true)
        .map_err(|e| Error::Options(format!("build context {}: {e}", opts.context.display())))?;
    let forge_dir = store.root().join("forge");
    let ctx = BuildCtx {
        store,
        opts,
        progress,
        bases,
        graph: &graph,
        file,
        escape: df.escape(),
        lines: text.lines().map(str::to_string).collect(),
        context,
        stat_cache: StatCache::load(forge_dir.join("statcache.json")),
        cache: Cache::open(store.root()).map_err(|e| Error::Options(e.to_string()))?,
        done: Mutex::new(vec![None; graph.stages.len()]),
        failed: Default::default(),
    };

    for level in &graph.levels {
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = level
                .iter()
                .map(|&i| {
                    let ctx = &ctx;
                    s.spawn(move || {
                        let result = stage::run_stage(ctx, i);
                        match result {
                            Ok(r) => {
                                ctx.done.lock().unwrap()[i] = Some(Arc::new(r));
                                Ok(())
                            }
                            Err(e) => {
                                ctx.failed.store(true, std::sync::atomic::Ordering::SeqCst);
                                Err(e)
                            }
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Options("a build thread panicked".into())))).collect()
        });
        // The first real failure wins over the "cancelled" of stages stopped because of it.
        let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            let pos = errors.iter().position(|e| !matches!(e, Error::Cancelled)).unwrap_or(0);
            return Err(errors.swap_remove(pos));
        }
    }
    // A failure to save the stat cache only costs re-hashing next time.
    let _ = ctx.stat_cache.save();

    let target = ctx.done.lock().unwrap()[graph.target].clone().expect("the target stage ran");
    let mut config = target.config.clone();
    if !opts.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(Default::default);
        labels.extend(opts.labels.clone());
    }
    config.created = Some(stage::timestamp(opts.source_date_epoch));
    let manifest = store.write_image(&config, &target.layers)?;
    let image_id = forge_layerstore::Digest::of(&forge_layerstore::canonical::to_vec(&config).map_err(|e| Error::Options(e.to_string()))?);
    Ok(Built { manifest, image_id, config })
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
}

/// The ignore file for a build: `<Dockerfile>.dockerignore` beside the Dockerfile when it
/// exists, else the context's `.dockerignore`, else nothing is ignored.
fn read_dockerignore(context: &std::path::Path, dockerfile_dir: &std::path::Path, dockerfile_name: &str) -> Result<Dockerignore, Error> {
    let specific = format!("{dockerfile_name}.dockerignore");
    for (dir, name) in [(dockerfile_dir, specific.as_str()), (context, ".dockerignore")] {
        let path = dir.join(name);
        match build_file::read_in(dir, name, true) {
            Ok(Some(bytes)) => {
                return Dockerignore::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| Error::Options(format!("{}: {e}", path.display())));
            }
            Ok(None) => {}
            Err(problem) => return Err(Error::BuildFile { what: ".dockerignore", path, problem }),
        }
    }
    Ok(Dockerignore::default())
}

/// A fresh scratch directory in the store (same filesystem as the snapshots).
pub(crate) fn scratch_dir(store: &Store, prefix: &str) -> Result<tempfile::TempDir, Error> {
    let tmp: PathBuf = store.tmp_dir()?;
    tempfile::Builder::new().prefix(prefix).tempdir_in(&tmp).map_err(|source| Error::Io { what: "creating a scratch directory in", path: tmp, source })
}
