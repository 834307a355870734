//! `/volumes/...`: the runtime's named volumes (list, create, inspect, remove, prune).

use bollard_stubs::models::{Volume as ApiVolume, VolumeListResponse, VolumePruneResponse, VolumeScopeEnum};
use forge_runtime::{Volume, Volumes};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::server::Api;

fn api_volume(v: Volume) -> ApiVolume {
    ApiVolume {
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint.display().to_string(),
        created_at: Some(v.created_at),
        scope: Some(VolumeScopeEnum::LOCAL),
        labels: v.labels.into_iter().collect(),
        ..Default::default()
    }
}

/// `GET /volumes`.
pub(crate) async fn list(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["name", "driver", "dangling", "label"])?;
    if !filters.values("dangling").is_empty() {
        return Err(ApiError::bad_request("the dangling volume filter is not supported by forge yet"));
    }
    let labels = filters.values("label").to_vec();
    let (names, drivers) = (filters.values("name").to_vec(), filters.values("driver").to_vec());
    let store = api.store.clone();
    let volumes = tokio::task::spawn_blocking(move || Volumes::open(&store)?.list()).await??;
    let volumes: Vec<ApiVolume> = volumes
        .into_iter()
        .filter(|v| names.is_empty() || names.iter().any(|n| v.name.contains(n.as_str())))
        .filter(|v| drivers.is_empty() || drivers.contains(&v.driver))
        .filter(|v| labels.iter().all(|l| crate::query::label_matches(&v.labels, l)))
        .map(api_volume)
        .collect();
    Ok(http::json(StatusCode::OK, &VolumeListResponse { volumes: Some(volumes), warnings: Some(Vec::new()) }))
}

/// A create request's `HostConfig.Binds` (docker's `-v`) as the runtime's mounts.
pub(crate) fn binds(host: Option<&bollard_stubs::models::HostConfig>) -> Result<Vec<forge_runtime::MountSpec>, ApiError> {
    let binds = host.and_then(|h| h.binds.as_deref()).unwrap_or_default();
    binds.iter().map(|b| forge_runtime::MountSpec::from_volume_flag(b).map_err(|e| ApiError::bad_request(format!("HostConfig.Binds: {e}")))).collect()
}

/// `HostConfig.Mounts` (`docker run --mount`) as the runtime's mounts. What forge cannot
/// honour (propagation, recursion and consistency choices, volume drivers and labels, tmpfs
/// modes and options) is refused, not dropped.
pub(crate) fn mounts(host: Option<&bollard_stubs::models::HostConfig>) -> Result<Vec<forge_runtime::MountSpec>, ApiError> {
    use bollard_stubs::models::MountType;
    use forge_runtime::{MountSource, MountSpec};
    let bad = |target: &str, why: &str| ApiError::bad_request(format!("HostConfig.Mounts ({target}): {why}"));
    let mut out = Vec::new();
    for m in host.and_then(|h| h.mounts.as_deref()).unwrap_or_default() {
        let target = m.target.clone().unwrap_or_default();
        if !target.starts_with('/') {
            return Err(bad(&target, "the target must be an absolute path"));
        }
        let source = m.source.clone().unwrap_or_default();
        if m.bind_options.as_ref().is_some_and(|b| b.propagation.is_some() || b.non_recursive == Some(true) || b.read_only_non_recursive == Some(true) || b.read_only_force_recursive == Some(true)) {
            return Err(bad(&target, "bind propagation and recursion options are not supported by forge"));
        }
        let source = match m.typ {
            Some(MountType::BIND) => {
                // As docker's --mount (unlike -v): a missing source is an error, not made.
                if !source.starts_with('/') || !std::path::Path::new(&source).exists() {
                    return Err(bad(&target, &format!("bind source path {source:?} does not exist (it must be an existing absolute path)")));
                }
                MountSource::Bind(source.into())
            }
            Some(MountType::VOLUME) => {
                let o = m.volume_options.as_ref();
                if o.is_some_and(|o| o.driver_config.is_some() || o.labels.as_ref().is_some_and(|l| !l.is_empty()) || o.subpath.as_deref().is_some_and(|s| !s.is_empty())) {
                    return Err(bad(&target, "volume drivers, labels and subpaths are not supported by forge"));
                }
                MountSource::Volume { name: source, nocopy: o.and_then(|o| o.no_copy) == Some(true) }
            }
            Some(MountType::TMPFS) => {
                let o = m.tmpfs_options.as_ref();
                if !source.is_empty() || o.is_some_and(|o| o.mode.is_some() || o.options.as_ref().is_some_and(|v| !v.is_empty())) {
                    return Err(bad(&target, "a tmpfs takes no source, and forge takes only its size"));
                }
                let size = o.and_then(|o| o.size_bytes).map(|b| u64::try_from(b).map_err(|_| bad(&target, "a negative tmpfs size"))).transpose()?;
                MountSource::Tmpfs(size)
            }
            other => return Err(bad(&target, &format!("mount type {other:?} is not supported by forge (bind, volume and tmpfs are)"))),
        };
        out.push(MountSpec { source, target, read_only: m.read_only == Some(true) });
    }
    Ok(out)
}

/// The body of `POST /volumes/create` (bollard-stubs' `VolumeCreateOptions` carries cluster
/// fields forge has no use for; these are the ones a local volume takes).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    driver_opts: std::collections::HashMap<String, String>,
    #[serde(default)]
    labels: std::collections::HashMap<String, String>,
}

/// `POST /volumes/create`.
pub(crate) async fn create(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let body: CreateBody = http::read_json(req.into_body(), "volume config").await?;
    if !body.driver.is_empty() && body.driver != "local" {
        return Err(ApiError::bad_request(format!("volume driver {:?} is not supported: forge has the local driver", body.driver)));
    }
    if !body.driver_opts.is_empty() {
        return Err(ApiError::bad_request("volume driver options are not supported by forge yet"));
    }
    let store = api.store.clone();
    let name = Some(body.name).filter(|n| !n.is_empty());
    let labels = body.labels.into_iter().collect();
    let volume = tokio::task::spawn_blocking(move || Volumes::open(&store)?.create(name.as_deref(), labels)).await??;
    Ok(http::json(StatusCode::CREATED, &api_volume(volume)))
}

/// `POST /volumes/prune`: the anonymous volumes no container names, or with the `all=true`
/// filter every such volume, as docker (API 1.42 on) prunes. A named volume is never taken by
/// a plain prune.
pub(crate) async fn prune(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["all", "label"])?;
    if !filters.values("label").is_empty() {
        return Err(ApiError::bad_request("the label prune filter is not supported by forge yet"));
    }
    let all = filters.boolean("all")? == Some(true);
    let store = api.store.clone();
    let deleted = tokio::task::spawn_blocking(move || -> Result<Vec<String>, forge_runtime::Error> {
        let volumes = Volumes::open(&store)?;
        let mut deleted = Vec::new();
        for v in volumes.list()? {
            if !(all || v.anonymous) {
                continue;
            }
            match volumes.remove(&v.name) {
                Ok(()) => deleted.push(v.name),
                Err(forge_runtime::Error::VolumeInUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    })
    .await??;
    Ok(http::json(StatusCode::OK, &VolumePruneResponse { volumes_deleted: Some(deleted), space_reclaimed: Some(0) }))
}

/// `GET` and `DELETE /volumes/{name}`.
pub(crate) async fn by_name(api: &Api, req: Request<Incoming>, method: Method, name: &str) -> Result<Response, ApiError> {
    let store = api.store.clone();
    let name = name.to_string();
    match method {
        Method::GET => {
            Query::parse(req.uri().query(), &[])?;
            let volume = tokio::task::spawn_blocking(move || Volumes::open(&store)?.get(&name)).await??;
            Ok(http::json(StatusCode::OK, &api_volume(volume)))
        }
        Method::DELETE => {
            let q = Query::parse(req.uri().query(), &["force"])?;
            if q.flag("force") {
                return Err(ApiError::bad_request("force is not supported: remove the containers that use the volume first"));
            }
            tokio::task::spawn_blocking(move || Volumes::open(&store)?.remove(&name)).await??;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        m => Err(ApiError::not_found(format!("page not found: {m} /volumes/{{name}}"))),
    }
}
