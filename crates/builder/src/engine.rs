//! The build as a whole: parse, lower to the graph, run the needed stages level by level (the
//! stages of a level in parallel), then write the target stage as an image.

use forge_layerstore::cache::Cache;
use forge_layerstore::Store;
use forge_parser::dag::{BuildGraph, GraphOptions};
use forge_parser::dockerignore::Dockerignore;

use crate::build_file::{self, BuildFileError};
use crate::cache_import::CachePrefetch;
use crate::ctx::BuildCtx;
use crate::progress::{Event, Progress};
use crate::source::SourceTree;
use crate::stat_cache::StatCache;
use crate::{scheduler, stage};
use crate::{BaseImages, BuildOptions, Built, Error};

/// Builds the image `opts` describes into `store` (untagged; the caller tags
/// [`Built::manifest`]). `bases` fetches base images missing from the store; without it they
/// must be there already.
pub fn build(store: &Store, opts: &BuildOptions, bases: Option<&dyn BaseImages>, progress: &dyn Progress) -> Result<Built, Error> {
    // The caches are read while the Dockerfile and the context are (if the caller did not start
    // that sooner): for a build that only hits a registry's cache, that round trip is most of
    // its time. On a thread that outlives a failed build: a bad Dockerfile is reported at
    // once, not after a slow registry answers.
    let prefetch = match &opts.cache_prefetch {
        Some(p) if p.is_for(&opts.cache_from) => Some(p.clone()),
        _ => (!opts.cache_from.is_empty()).then(|| CachePrefetch::start(opts.cache_from.clone(), opts.cache_registry.clone())),
    };
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
        .map_err(|e| Error::Context { path: opts.context.clone(), message: e.to_string() })?;
    let forge_dir = store.root().join("forge");
    let stat_cache = StatCache::for_context(&forge_dir.join("statcache"), context.dir());
    let cache = Cache::open(store.root())?;
    // A torn batch (a crash while it was written) is left out: its steps run again.
    let damaged = [cache.damaged().map_err(|e| e.to_string()), store.remote().damaged().map_err(|e| format!("remote layers' records: {e}"))];
    for found in damaged {
        match found {
            Ok(batches) => batches.into_iter().for_each(|(path, problem)| progress.event(Event::Warning { message: format!("ignoring {}: {problem}", path.display()) })),
            Err(message) => progress.event(Event::Warning { message }),
        }
    }
    let mut lazy = crate::cache_import::Lazy::default();
    let fetched = prefetch.map_or_else(Vec::new, |p| p.wait());
    for (from, config) in opts.cache_from.iter().zip(fetched) {
        crate::cache_import::import(store, &cache, &mut lazy, from, config, opts.cache_registry.as_deref(), &mut |message| progress.event(Event::Warning { message }));
    }
    let new_keys = crate::layers::NewKeys::new(opts.no_cache, lazy.is_empty() && cache.is_empty());
    let ctx = BuildCtx {
        store,
        opts,
        progress,
        bases,
        file,
        escape: df.escape(),
        lines: text.lines().map(str::to_string).collect(),
        global_args: graph.global_args.clone(),
        context,
        stat_cache,
        cache,
        lazy,
        new_keys,
        used: Default::default(),
        from_records: Default::default(),
        mounts_used: Default::default(),
    };
    let finished = scheduler::run(&graph.levels, graph.stages.len(), |i, finished| stage::run_stage(&ctx, &graph, finished, i))?;
    // A failure to save the stat cache only costs re-hashing next time.
    let _ = ctx.stat_cache.save();

    let target = finished.get(graph.target);
    let mut config = target.config.clone();
    if !opts.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(Default::default);
        labels.extend(opts.labels.clone());
    }
    stage::image_created(&mut config, opts.source_date_epoch);
    let used = std::mem::take(&mut *ctx.used.lock().unwrap());
    // The image's layers that only a registry cache has stay there until they are read.
    let recorded = ctx.lazy.record_remote(store, &ctx.cache, &used).map_err(|message| Error::CacheLayer { message })?;
    // What was just recorded needs no look-up (each one lists the records' batches); a local
    // blob next: one stat, where a remote record's lookup is two failed opens.
    let elsewhere: Vec<_> = target.layers.iter().filter(|l| !recorded.contains(&l.digest) && !store.content().exists(&l.digest) && store.remote().get(&l.digest).is_none()).cloned().collect();
    ctx.fetch_layers(&elsewhere).map_err(|message| Error::CacheLayer { message })?;
    let manifest = store.write_image_unsynced(&config, &target.layers)?;
    let image_id = forge_layerstore::Digest::of(&forge_layerstore::canonical::to_vec(&config)?);
    for to in &opts.cache_to {
        crate::cache_export::export(&ctx, to, &used, &target.layers)?;
    }
    Ok(Built { manifest, image_id, config })
}

/// The ignore file for a build: `<Dockerfile>.dockerignore` beside the Dockerfile when it
/// exists, else the context's `.dockerignore`, else nothing is ignored.
fn read_dockerignore(context: &std::path::Path, dockerfile_dir: &std::path::Path, dockerfile_name: &str) -> Result<Dockerignore, Error> {
    let specific = format!("{dockerfile_name}.dockerignore");
    for (dir, name) in [(dockerfile_dir, specific.as_str()), (context, ".dockerignore")] {
        let path = dir.join(name);
        match build_file::read_in(dir, name, true) {
            Ok(Some(bytes)) => {
                return Dockerignore::parse(&String::from_utf8_lossy(&bytes)).map_err(|e| Error::Dockerignore { path, message: e.to_string() });
            }
            Ok(None) => {}
            Err(problem) => return Err(Error::BuildFile { what: ".dockerignore", path, problem }),
        }
    }
    Ok(Dockerignore::default())
}
