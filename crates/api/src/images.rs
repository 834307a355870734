//! `/images/...`: list, inspect, history, tag, remove, pull (`create`), push, `get`/`load`
//! (archives) and prune, each a call into the layer store or the registry client.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use bollard_stubs::models::{ImageDeleteResponseItem, ImageHistoryResponseItem, ImageInspect, ImageInspectRootFs, ImagePruneResponse, ImageSummary};
use forge_layerstore::export::{self, ArchiveFormat};
use forge_layerstore::store::normalize_tag;
use forge_layerstore::{Image, Store};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::json;

use crate::error::ApiError;
use crate::http::{self, Lines, Response};
use crate::query::{glob, Query};
use crate::server::Api;

/// A stored name as docker shows it: `docker.io/library/busybox:1` is `busybox:1`.
pub(crate) fn familiar(name: &str) -> String {
    let short = name.strip_prefix("docker.io/").unwrap_or(name);
    short.strip_prefix("library/").filter(|_| name.starts_with("docker.io/")).unwrap_or(short).to_string()
}

/// Every image once (by ID), with its tags in docker's spelling.
pub(crate) fn distinct_images(store: &Store) -> Result<Vec<(Image, Vec<String>)>, ApiError> {
    let mut by_id: BTreeMap<String, (Image, Vec<String>)> = BTreeMap::new();
    for (name, desc) in store.index().list()? {
        let image = store.image_of(&desc)?;
        let id = image.id()?.to_string();
        by_id.entry(id).or_insert_with(|| (image, Vec::new())).1.push(familiar(&name));
    }
    Ok(by_id.into_values().collect())
}

fn unix_time(rfc3339: Option<&str>) -> i64 {
    rfc3339
        .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

fn summary(image: &Image, tags: Vec<String>) -> Result<ImageSummary, ApiError> {
    let size: u64 = image.layers()?.iter().map(|l| l.size).sum();
    Ok(ImageSummary {
        id: image.id()?.to_string(),
        parent_id: String::new(),
        repo_tags: tags,
        repo_digests: Vec::new(),
        created: unix_time(image.config.created.as_deref()),
        size: size as i64,
        shared_size: -1,
        labels: image.config.config.labels.clone().unwrap_or_default().into_iter().collect(),
        // Not counted, as docker answers when it does not count.
        containers: -1,
        ..Default::default()
    })
}

/// The list `docker images` and `system df` show.
pub(crate) fn summaries(store: &Store) -> Result<Vec<ImageSummary>, ApiError> {
    distinct_images(store)?.into_iter().map(|(image, tags)| summary(&image, tags)).collect()
}

/// `GET /images/json`.
pub(crate) async fn list(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    // `only_ids`: sent by docker-py, which reads only the IDs then.
    let q = Query::parse(req.uri().query(), &["all", "filters", "filter", "digests", "shared-size", "manifests", "only_ids"])?;
    let filters = q.filters(&["reference", "dangling", "label", "before", "since", "until"])?;
    for unsupported in ["before", "since", "until"] {
        if !filters.values(unsupported).is_empty() {
            return Err(ApiError::bad_request(format!("the {unsupported} filter is not supported by forge yet")));
        }
    }
    // forge keeps no untagged images (an untagged manifest is garbage for `store gc`).
    let dangling = filters.boolean("dangling")?;
    let mut patterns: Vec<String> = filters.values("reference").to_vec();
    patterns.extend(q.get("filter").map(str::to_string));
    let labels = filters.values("label").to_vec();
    let store = api.store.clone();
    let images = tokio::task::spawn_blocking(move || distinct_images(&store)).await??;
    let mut out = Vec::new();
    if dangling == Some(true) {
        return Ok(http::json(StatusCode::OK, &out));
    }
    for (image, tags) in images {
        let tags: Vec<String> = if patterns.is_empty() { tags } else { tags.into_iter().filter(|t| patterns.iter().any(|p| reference_matches(p, t))).collect() };
        if tags.is_empty() {
            continue;
        }
        let image_labels = image.config.config.labels.clone().unwrap_or_default();
        let label_ok = labels.iter().all(|l| match l.split_once('=') {
            Some((k, v)) => image_labels.get(k).is_some_and(|x| x == v),
            None => image_labels.contains_key(l),
        });
        if label_ok {
            out.push(summary(&image, tags)?);
        }
    }
    Ok(http::json(StatusCode::OK, &out))
}

/// docker's reference filter: the pattern against `name:tag`, or against the name alone.
fn reference_matches(pattern: &str, tag: &str) -> bool {
    let name = tag.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(tag, |(n, _)| n);
    glob(pattern, tag) || glob(pattern, name)
}

/// `/images/{name}/{verb}`.
pub(crate) async fn by_name(api: &Api, req: Request<Incoming>, name: &str, verb: &str) -> Result<Response, ApiError> {
    match verb {
        "json" => inspect(api, req, name).await,
        "history" => history(api, req, name).await,
        "tag" => tag(api, req, name).await,
        "push" => push(api, req, name).await,
        "get" => {
            Query::parse(req.uri().query(), &["platform"])?;
            save(api, vec![name.to_string()]).await
        }
        _ => Err(ApiError::not_found(format!("page not found: /images/{name}/{verb}"))),
    }
}

fn tags_of(store: &Store, image: &Image) -> Result<Vec<String>, ApiError> {
    Ok(store.index().list()?.into_iter().filter(|(_, d)| d.digest() == image.descriptor.digest()).map(|(n, _)| familiar(&n)).collect())
}

async fn inspect(api: &Api, req: Request<Incoming>, name: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &["manifests", "platform"])?;
    let (store, name) = (api.store.clone(), name.to_string());
    let body = tokio::task::spawn_blocking(move || -> Result<ImageInspect, ApiError> {
        let image = store.image(&name)?;
        let layers = image.layers()?;
        // forge's config is the image config's JSON, whose keys are the API's.
        let config = serde_json::to_value(&image.config.config).ok().and_then(|v| serde_json::from_value(v).ok());
        Ok(ImageInspect {
            id: Some(image.id()?.to_string()),
            repo_tags: Some(tags_of(&store, &image)?),
            repo_digests: Some(Vec::new()),
            created: image.config.created.clone(),
            author: image.config.author.clone(),
            config,
            architecture: Some(image.config.architecture.clone()),
            variant: image.config.variant.clone(),
            os: Some(image.config.os.clone()),
            size: Some(layers.iter().map(|l| l.size as i64).sum()),
            root_fs: Some(ImageInspectRootFs { typ: "layers".into(), layers: Some(image.config.rootfs.diff_ids.iter().map(ToString::to_string).collect()) }),
            ..Default::default()
        })
    })
    .await??;
    // The daemon always sends these keys (null when unset); clients' templates such as
    // `{{.Config.Cmd}}` fail on a missing key, so absent ones are written as null.
    let mut value = serde_json::to_value(&body).map_err(|e| ApiError::internal(format!("encoding the image: {e}")))?;
    if let Some(config) = value.get_mut("Config").and_then(|c| c.as_object_mut()) {
        for key in ["User", "ExposedPorts", "Env", "Cmd", "Volumes", "WorkingDir", "Entrypoint", "OnBuild", "Labels"] {
            config.entry(key).or_insert(serde_json::Value::Null);
        }
    }
    Ok(http::json(StatusCode::OK, &value))
}

async fn history(api: &Api, req: Request<Incoming>, name: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &["platform"])?;
    let (store, name) = (api.store.clone(), name.to_string());
    let items = tokio::task::spawn_blocking(move || -> Result<Vec<ImageHistoryResponseItem>, ApiError> {
        let image = store.image(&name)?;
        let mut layers = image.layers()?.into_iter();
        let mut items: Vec<ImageHistoryResponseItem> = image
            .config
            .history
            .iter()
            .map(|h| ImageHistoryResponseItem {
                id: "<missing>".into(),
                created: unix_time(h.created.as_deref()),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size: if h.empty_layer == Some(true) { 0 } else { layers.next().map_or(0, |l| l.size as i64) },
                comment: h.comment.clone().unwrap_or_default(),
            })
            .collect();
        // Newest first, the top one named by the image's ID and tags, as docker lists it.
        items.reverse();
        if let Some(top) = items.first_mut() {
            top.id = image.id()?.to_string();
            top.tags = tags_of(&store, &image)?;
        }
        Ok(items)
    })
    .await??;
    Ok(http::json(StatusCode::OK, &items))
}

async fn tag(api: &Api, req: Request<Incoming>, name: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["repo", "tag", "force"])?;
    let repo = q.get("repo").filter(|r| !r.is_empty()).ok_or_else(|| ApiError::bad_request("tag: the repo parameter is required"))?;
    let target = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.to_string(),
    };
    let (store, name) = (api.store.clone(), name.to_string());
    tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
        let desc = store.resolve(&name)?;
        store.tag(&target, &desc)?;
        Ok(())
    })
    .await??;
    Ok(http::empty(StatusCode::CREATED))
}

/// The stored tags `name` stands for: itself when it is a tag (as typed or in its full
/// form), else every tag of the image it identifies.
fn tags_named(store: &Store, name: &str) -> Result<(Vec<String>, bool), ApiError> {
    let list = store.index().list()?;
    let mut candidates = vec![normalize_tag(name)];
    if let Ok(full) = forge_layerstore::reference::ImageName::parse(name) {
        candidates.push(full.to_string());
    }
    if let Some(tag) = candidates.into_iter().find(|c| list.iter().any(|(n, _)| n == c)) {
        return Ok((vec![tag], true));
    }
    let desc = store.resolve(name)?;
    Ok((list.into_iter().filter(|(_, d)| d.digest() == desc.digest()).map(|(n, _)| n).collect(), false))
}

/// `DELETE /images/{name}`: removes names; the blobs go at the next `store gc`, as with
/// `forge rmi`. Refuses (409) to take the last name of an image a container uses, and to
/// remove several names given by ID, unless forced, as docker does.
pub(crate) async fn remove(api: &Api, req: Request<Incoming>, name: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["force", "noprune", "platforms"])?;
    let force = q.flag("force");
    let (store, name) = (api.store.clone(), name.to_string());
    let items = tokio::task::spawn_blocking(move || -> Result<Vec<ImageDeleteResponseItem>, ApiError> {
        let (tags, by_tag) = tags_named(&store, &name)?;
        let desc = store.resolve(tags.first().map_or(name.as_str(), String::as_str))?;
        let image = store.image_of(&desc)?;
        let all = store.index().list()?;
        let remaining = all.iter().filter(|(n, d)| d.digest() == desc.digest() && !tags.contains(n)).count();
        if !by_tag && tags.len() > 1 && !force {
            return Err(ApiError::conflict(format!(
                "conflict: unable to delete {name} (must be forced) - image is referenced in multiple repositories"
            )));
        }
        if remaining == 0 && !force {
            let containers = forge_runtime::Containers::open(&store)?.list()?;
            if let Some(c) = containers.iter().find(|c| c.config.image_digest == desc.digest().to_string()) {
                return Err(ApiError::conflict(format!(
                    "conflict: unable to delete {name} (must be forced) - image is being used by container {}",
                    c.short_id()
                )));
            }
        }
        let mut items = Vec::new();
        for t in &tags {
            if store.index().untag(t)? {
                items.push(ImageDeleteResponseItem { untagged: Some(familiar(t)), deleted: None });
            }
        }
        if remaining == 0 {
            items.push(ImageDeleteResponseItem { untagged: None, deleted: Some(image.id()?.to_string()) });
        }
        Ok(items)
    })
    .await??;
    Ok(http::json(StatusCode::OK, &items))
}

/// `POST /images/prune`: with `dangling=false` (`docker image prune -a`) every image no
/// container uses loses its names; then `store gc` frees what nothing holds any more.
pub(crate) async fn prune(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["dangling", "until", "label"])?;
    if !filters.values("until").is_empty() || !filters.values("label").is_empty() {
        return Err(ApiError::bad_request("the until and label prune filters are not supported by forge yet"));
    }
    let all = filters.boolean("dangling")? == Some(false);
    let store = api.store.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<ImagePruneResponse, ApiError> {
        let mut deleted = Vec::new();
        if all {
            let used: Vec<String> = forge_runtime::Containers::open(&store)?.list()?.into_iter().map(|c| c.config.image_digest).collect();
            for (image, _) in distinct_images(&store)? {
                if used.contains(&image.descriptor.digest().to_string()) {
                    continue;
                }
                for (tag, d) in store.index().list()? {
                    if d.digest() == image.descriptor.digest() && store.index().untag(&tag)? {
                        deleted.push(ImageDeleteResponseItem { untagged: Some(familiar(&tag)), deleted: None });
                    }
                }
                deleted.push(ImageDeleteResponseItem { untagged: None, deleted: Some(image.id()?.to_string()) });
            }
        }
        let report = forge_layerstore::maintenance::gc(&store)?;
        Ok(ImagePruneResponse { images_deleted: Some(deleted), space_reclaimed: Some(report.bytes_freed as i64) })
    })
    .await??;
    Ok(http::json(StatusCode::OK, &body))
}

/// Blob progress as docker's JSON-lines messages (`id` is the digest's first 12 digits).
struct PullProgress {
    lines: Lines,
    pushing: bool,
    totals: Mutex<HashMap<String, (u64, u64)>>,
}

fn short(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}

impl forge_registry::Progress for PullProgress {
    fn start(&self, digest: &str, total: u64, already: u64) {
        self.totals.lock().unwrap_or_else(|e| e.into_inner()).insert(digest.to_string(), (already, total));
        let status = if self.pushing { "Pushing" } else { "Downloading" };
        self.lines.send(&json!({"status": status, "progressDetail": {"current": already, "total": total}, "id": short(digest)}));
    }

    fn advance(&self, digest: &str, bytes: u64) {
        let (current, total) = {
            let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
            let entry = totals.entry(digest.to_string()).or_insert((0, 0));
            entry.0 += bytes;
            *entry
        };
        let status = if self.pushing { "Pushing" } else { "Downloading" };
        self.lines.send(&json!({"status": status, "progressDetail": {"current": current, "total": total}, "id": short(digest)}));
    }

    fn done(&self, digest: &str, how: &str) {
        let status = match how {
            "pulled" => "Pull complete",
            "pushed" => "Pushed",
            "exists" if self.pushing => "Layer already exists",
            "exists" => "Already exists",
            "mounted" => "Mounted from another repository",
            other => other,
        };
        self.lines.send(&json!({"status": status, "progressDetail": {}, "id": short(digest)}));
    }
}

/// `POST /images/create`: a pull (`fromImage`), with progress streamed. Importing a tarball
/// (`fromSrc`) is not supported yet.
pub(crate) async fn create(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["fromImage", "fromSrc", "repo", "tag", "message", "changes", "platform"])?;
    if q.get("fromSrc").is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::not_implemented("docker import (fromSrc) is not supported by forge serve yet: use forge import"));
    }
    if let Some(p) = q.get("platform").filter(|p| !p.is_empty() && *p != "linux/amd64" && *p != "linux") {
        return Err(ApiError::bad_request(format!("platform {p:?} is not supported: forge pulls linux/amd64 only")));
    }
    let from = q.get("fromImage").filter(|f| !f.is_empty()).ok_or_else(|| ApiError::bad_request("fromImage is required"))?;
    let text = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) => format!("{from}:{t}"),
        None => from.to_string(),
    };
    let reference = forge_registry::Reference::parse(&text).map_err(|e| ApiError::bad_request(format!("invalid reference {text:?}: {e}")))?;
    let client = crate::credentials::for_registry(api, &req, reference.registry())?;
    let (lines, resp) = http::lines();
    let store = api.store.clone();
    tokio::spawn(async move {
        let lease = match store.lease("pull", &[]) {
            Ok(l) => l,
            Err(e) => return lines.error(format!("pulling {text}: {e}")),
        };
        lines.send(&json!({"status": format!("Pulling from {}", reference.repository()), "id": reference.tag().unwrap_or("latest")}));
        let progress = PullProgress { lines: lines.clone(), pushing: false, totals: Mutex::default() };
        match client.pull(&reference, &store, &progress).await {
            Ok(pulled) => {
                lines.status(format!("Digest: {}", pulled.manifest.digest()));
                lines.status(format!("Status: Downloaded newer image for {}", familiar(&pulled.name)));
            }
            Err(e) => lines.error(e),
        }
        drop(lease);
    });
    Ok(resp)
}

async fn push(api: &Api, req: Request<Incoming>, name: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["tag", "platform"])?;
    let tag = q.get("tag").filter(|t| !t.is_empty()).unwrap_or("latest");
    let local = format!("{name}:{tag}");
    let dest = forge_registry::Reference::parse(&local).map_err(|e| ApiError::bad_request(format!("invalid reference {local:?}: {e}")))?;
    let store = api.store.clone();
    let manifest = {
        let (store, local) = (store.clone(), local.clone());
        tokio::task::spawn_blocking(move || store.resolve(&local)).await??
    };
    let client = crate::credentials::for_registry(api, &req, dest.registry())?;
    let (lines, resp) = http::lines();
    let tag = tag.to_string();
    let name = name.to_string();
    tokio::spawn(async move {
        let root: Result<forge_layerstore::Digest, _> = manifest.digest().as_ref().parse();
        let lease = match root.map_err(|e| e.to_string()).and_then(|d| store.lease("push", &[d]).map_err(|e| e.to_string())) {
            Ok(l) => l,
            Err(e) => return lines.error(format!("pushing {local}: {e}")),
        };
        lines.status(format!("The push refers to repository [{name}]"));
        let progress = PullProgress { lines: lines.clone(), pushing: true, totals: Mutex::default() };
        match client.push(&store, &local, &dest, &progress).await {
            Ok(desc) => {
                lines.status(format!("{tag}: digest: {} size: {}", desc.digest(), desc.size()));
                lines.send(&json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": desc.digest().to_string(), "Size": desc.size()}}));
            }
            Err(e) => lines.error(e),
        }
        drop(lease);
    });
    Ok(resp)
}

/// `GET /images/get?names=...`.
pub(crate) async fn get(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["names", "platform"])?;
    let names: Vec<String> = q.all("names").into_iter().map(str::to_string).collect();
    if names.is_empty() {
        return Err(ApiError::bad_request("names is required: the images to save"));
    }
    save(api, names).await
}

/// A docker archive of `names`, streamed as it is written. The images are read before the
/// answer starts, so a missing one is a 404, not a cut-off archive.
async fn save(api: &Api, names: Vec<String>) -> Result<Response, ApiError> {
    let store = api.store.clone();
    let images = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let mut images = Vec::new();
            for name in &names {
                let image = store.image(name)?;
                let tagged = store.index().resolve(&normalize_tag(name))?.is_some();
                images.push((if tagged { vec![normalize_tag(name)] } else { Vec::new() }, image));
            }
            // The images stay whole while the archive is written, even if their names are
            // removed and gc runs meanwhile.
            let roots = images.iter().map(|(_, i)| i.descriptor.digest().as_ref().parse()).collect::<Result<Vec<forge_layerstore::Digest>, _>>();
            let roots = roots.map_err(|e| ApiError::internal(format!("a stored manifest digest: {e}")))?;
            let lease = store.lease("save", &roots)?;
            Ok((images, lease))
        })
        .await??
    };
    let (images, lease) = images;
    let (mut writer, resp) = http::bytes_stream("application/x-tar");
    tokio::task::spawn_blocking(move || {
        let _lease = lease;
        if let Err(e) = export::save(&store, &images, ArchiveFormat::Docker, &mut writer) {
            writer.fail(format!("writing the archive: {e}"));
        }
    });
    Ok(resp)
}

/// `POST /images/load`: the archive is read as it arrives; the answer lists what was loaded.
pub(crate) async fn load(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    // `quiet` only silences progress bars, which forge does not send for a load: the
    // `Loaded image` lines are always sent, as docker does.
    Query::parse(req.uri().query(), &["quiet", "platform"])?;
    let mut reader = http::body_reader(req.into_body());
    let store = api.store.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<Vec<(String, oci_spec::image::Descriptor)>, ApiError> {
        let _lease = store.lease("load", &[])?;
        let loaded = export::load(&store, &mut reader).map_err(|e| ApiError::bad_request(format!("loading the archive: {e}")))?;
        http::drain(&mut reader).map_err(|e| ApiError::bad_request(format!("reading the archive: {e}")))?;
        Ok(loaded)
    })
    .await??;
    let (lines, resp) = http::lines();
    for (name, d) in loaded {
        if name.is_empty() {
            lines.stream(format!("Loaded image ID: {}\n", d.digest()));
        } else {
            lines.stream(format!("Loaded image: {}\n", familiar(&name)));
        }
    }
    Ok(resp)
}
