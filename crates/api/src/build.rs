//! `POST /build`: docker's classic build endpoint over forge's builder. The context tar is
//! unpacked as it arrives (by the layer store's hardened extractor: a `../` entry is refused),
//! the query parameters become [`BuildOptions`] through the builder's own parsers, and the
//! builder's events go back as `stream` messages, the image ID as `aux`, as the classic
//! builder sends them.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use forge_builder::{BuildOptions, ByteSize, Event, MemorySwap, NetworkMode};
use forge_layerstore::archive::{apply_layer, ApplyOptions, WhiteoutMode};
use forge_layerstore::Store;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, Lines, Response};
use crate::query::Query;
use crate::server::Api;

/// Every parameter a docker client sends to `/build` (the classic builder's set); the ones
/// forge has no equivalent for are accepted only at their "off" value. `rm` and `forcerm`
/// concern intermediate containers, which forge's builder does not make; with `pull`, forge
/// pulls a base image only when it is missing from the store.
const PARAMS: &[&str] = &[
    "dockerfile", "t", "extrahosts", "remote", "q", "nocache", "cachefrom", "pull", "rm", "forcerm", "memory", "memswap",
    "cpushares", "cpusetcpus", "cpusetmems", "cpuperiod", "cpuquota", "buildargs", "shmsize", "squash", "labels",
    "networkmode", "platform", "target", "outputs", "version", "session", "buildid", "isolation", "ulimits",
    "cgroupparent", "securityopt",
];

/// Refuses a parameter that asks for something forge does not do, rather than ignoring it.
fn refuse_unless_off(q: &Query, name: &str, off: &[&str], why: &str) -> Result<(), ApiError> {
    match q.get(name) {
        Some(v) if !off.contains(&v) => Err(ApiError::bad_request(format!("{name}={v:?} is not supported: {why}"))),
        _ => Ok(()),
    }
}

/// Parses the request into build options (everything but the context).
fn options(q: &Query, context: PathBuf) -> Result<(BuildOptions, Vec<String>), ApiError> {
    refuse_unless_off(q, "remote", &[""], "send the context as a tar")?;
    refuse_unless_off(q, "squash", &["", "0", "false"], "forge does not squash layers")?;
    refuse_unless_off(q, "version", &["", "1"], "forge serves the classic builder protocol (version 1), not a BuildKit session")?;
    refuse_unless_off(q, "platform", &["", "linux", "linux/amd64"], "forge builds linux/amd64 only")?;
    refuse_unless_off(q, "isolation", &["", "default"], "Windows isolation does not exist here")?;
    refuse_unless_off(q, "cpusetcpus", &[""], "not supported by forge's sandbox yet")?;
    refuse_unless_off(q, "cpusetmems", &[""], "not supported by forge's sandbox yet")?;
    refuse_unless_off(q, "cgroupparent", &[""], "forge places its cgroups itself")?;
    refuse_unless_off(q, "extrahosts", &[""], "not supported by forge yet")?;
    refuse_unless_off(q, "ulimits", &["", "null", "[]"], "not supported by forge yet")?;
    refuse_unless_off(q, "outputs", &["", "null", "[]"], "the classic endpoint stores the image; use forge build -o for other outputs")?;
    refuse_unless_off(q, "cachefrom", &["", "null", "[]"], "use forge's local cache")?;
    refuse_unless_off(q, "shmsize", &["", "0"], "not supported by forge yet")?;
    for s in q.all("securityopt") {
        if s != "seccomp=unconfined" && !s.is_empty() {
            return Err(ApiError::bad_request(format!("securityopt={s:?} is not supported: forge knows seccomp=unconfined")));
        }
    }

    let tags: Vec<String> = q.all("t").into_iter().filter(|t| !t.is_empty()).map(str::to_string).collect();
    for t in &tags {
        forge_layerstore::store::check_name(t).map_err(|e| ApiError::bad_request(format!("t: {e}")))?;
    }
    let mut opts = BuildOptions::new(context);
    opts.build_args = q.json_map("buildargs")?;
    opts.labels = q.json_map("labels")?;
    opts.target = q.get("target").filter(|t| !t.is_empty()).map(str::to_string);
    opts.no_cache = q.flag("nocache");
    opts.network = match q.get("networkmode") {
        None | Some("" | "default" | "bridge") => NetworkMode::Default,
        Some(m) => m.parse().map_err(|e| ApiError::bad_request(format!("networkmode: {e}")))?,
    };
    if q.all("securityopt").contains(&"seccomp=unconfined") {
        opts.seccomp = forge_builder::Seccomp::Unconfined;
    }
    let size = |name: &str| -> Result<Option<u64>, ApiError> {
        match q.get(name) {
            None | Some("" | "0") => Ok(None),
            Some(v) => v.parse::<ByteSize>().map(|b| Some(b.0)).map_err(|e| ApiError::bad_request(format!("{name}: {e}"))),
        }
    };
    opts.limits.memory = size("memory")?;
    opts.limits.memory_swap = match q.get("memswap") {
        None | Some("" | "0") => None,
        Some(v) => Some(v.parse::<MemorySwap>().map_err(|e| ApiError::bad_request(format!("memswap: {e}")))?.0),
    };
    opts.limits.cpu_shares = q.number::<u64>("cpushares")?.filter(|s| *s != 0);
    let quota = q.number::<i64>("cpuquota")?.filter(|s| *s != 0);
    let period = q.number::<u64>("cpuperiod")?.filter(|s| *s != 0).unwrap_or(100_000);
    opts.limits.cpu_quota = quota.map(|quota| (quota, period));
    Ok((opts, tags))
}

/// The Dockerfile `name` (a path in the context, as clients send it) inside `context`. The
/// builder resolves the file's own name inside its directory, but opens that directory as a
/// host path: so no `..` may lead out, and no directory on the way may be a symlink (which a
/// context tar can hold, pointing anywhere on the host).
fn dockerfile_in(context: &Path, name: &str) -> Result<PathBuf, ApiError> {
    let rel = Path::new(name.trim_start_matches('/'));
    let parts: Vec<Component> = rel.components().collect();
    let mut dir = context.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        match part {
            Component::CurDir => {}
            Component::Normal(p) if i + 1 < parts.len() => {
                dir.push(p);
                if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(ApiError::bad_request(format!("dockerfile {name:?}: a directory on its path is a symlink; give its real path in the context")));
                }
            }
            Component::Normal(_) => {}
            _ => return Err(ApiError::bad_request(format!("dockerfile {name:?} is outside the build context"))),
        }
    }
    Ok(context.join(rel))
}

/// The builder's events as the classic builder's messages.
struct StreamProgress {
    lines: Lines,
    steps: AtomicUsize,
    quiet: bool,
}

impl forge_builder::Progress for StreamProgress {
    fn event(&self, e: Event) {
        if self.quiet {
            return;
        }
        match e {
            Event::StepStarted { stage, text, .. } => {
                let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
                self.lines.stream(format!("Step {n} [{stage}] : {text}\n"));
            }
            Event::StepCached { .. } => self.lines.stream(" ---> Using cache\n"),
            Event::Output { line, .. } => self.lines.stream(format!("{line}\n")),
            Event::StepDone { elapsed, .. } => self.lines.stream(format!(" ---> done in {:.2}s\n", elapsed.as_secs_f64())),
            Event::Warning { message } => self.lines.stream(format!("[WARNING]: {message}\n")),
            // Only reported with --explain-cache, which the classic endpoint has no parameter for.
            Event::CacheMiss { .. } => {}
        }
    }
}

/// Base images missing from the store are pulled, as `docker build` does, with the
/// credentials the client sent for the build.
struct RegistryBases {
    client: crate::credentials::RequestClient,
    runtime: tokio::runtime::Handle,
}

impl forge_builder::BaseImages for RegistryBases {
    fn fetch(&self, store: &Store, reference: &str) -> Result<String, String> {
        let r = forge_registry::Reference::parse(reference).map_err(|e| e.to_string())?;
        // Called from the builder's threads, never from the runtime's own.
        let pulled = self.runtime.block_on(self.client.pull(&r, store, &forge_registry::NoProgress)).map_err(|e| e.to_string())?;
        Ok(pulled.name)
    }
}

/// `POST /build`.
pub(crate) async fn build(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), PARAMS)?;
    let store = api.store.clone();
    let scratch = store.tmp_dir().map_err(ApiError::internal)?;
    let dir = tempfile::Builder::new().prefix("context-").tempdir_in(scratch).map_err(|e| ApiError::internal(format!("a directory for the build context: {e}")))?;
    let (mut opts, tags) = options(&q, dir.path().to_path_buf())?;
    let quiet = q.flag("q");
    // Held until the image is tagged, so a `store gc` beside the build leaves its work alone.
    let lease = store.lease("build", &[])?;

    let bases = RegistryBases { client: crate::credentials::for_build(api, &req)?, runtime: tokio::runtime::Handle::current() };
    let mut reader = http::body_reader(req.into_body());
    let context = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let apply = ApplyOptions { whiteouts: WhiteoutMode::Delete, device_nodes: false };
        apply_layer(&mut reader, &context, &apply).map_err(|e| e.to_string())?;
        http::drain(&mut reader).map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    })
    .await?
    .map_err(|e| ApiError::bad_request(format!("unpacking the build context: {e}")))?;
    if let Some(name) = q.get("dockerfile").filter(|d| !d.is_empty()) {
        opts.dockerfile = Some(dockerfile_in(dir.path(), name)?);
    }

    let (lines, resp) = http::lines();
    let cancel = opts.cancel.clone();
    let watcher_lines = lines.clone();
    // A client that goes away (Ctrl-C on `docker build`) cancels the build.
    let watcher = tokio::spawn(async move {
        watcher_lines.closed().await;
        cancel.cancel();
    });
    tokio::task::spawn_blocking(move || {
        let _dir = dir;
        let _lease = lease;
        let progress = StreamProgress { lines: lines.clone(), steps: AtomicUsize::new(0), quiet };
        let result = forge_builder::build(&store, &opts, Some(&bases), &progress).map_err(|e| e.to_string()).and_then(|built| {
            for t in &tags {
                store.tag(t, &built.manifest).map_err(|e| format!("tagging {t}: {e}"))?;
            }
            Ok(built)
        });
        match result {
            Ok(built) => {
                lines.send(&json!({"aux": {"ID": built.image_id.to_string()}}));
                if quiet {
                    lines.stream(format!("{}\n", built.image_id));
                } else {
                    let short: String = built.image_id.hex().chars().take(12).collect();
                    lines.stream(format!("Successfully built {short}\n"));
                    for t in &tags {
                        lines.stream(format!("Successfully tagged {}\n", crate::images::familiar(&forge_layerstore::store::normalize_tag(t))));
                    }
                }
            }
            Err(e) => lines.error(e),
        }
        watcher.abort();
    });
    Ok(resp)
}
