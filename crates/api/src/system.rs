//! `/_ping`, `/version`, `/info`, `/system/df`, `/auth` (`/events` is `events.rs`).

use bollard_stubs::models::{LocalNodeState, PluginsInfo, SwarmInfo, SystemInfo, SystemVersion, SystemVersionComponents, SystemVersionPlatform};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::server::Api;

/// `/_ping`: what a client reads before its first real request. `Builder-Version: 1` makes
/// the docker CLI use the classic `/build` endpoint (forge speaks no BuildKit session).
pub(crate) fn ping(method: &Method) -> Response {
    let mut resp = if method == Method::HEAD { http::empty(StatusCode::OK) } else { http::text(StatusCode::OK, "OK") };
    let h = resp.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Cache-Control", HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    resp
}

fn uname() -> (String, String) {
    match nix::sys::utsname::uname() {
        Ok(u) => (u.release().to_string_lossy().into_owned(), u.nodename().to_string_lossy().into_owned()),
        Err(_) => (String::new(), String::new()),
    }
}

/// `/version`.
pub(crate) async fn version(_api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let version = env!("CARGO_PKG_VERSION").to_string();
    let (kernel, _) = uname();
    let engine = SystemVersionComponents {
        name: "Engine".into(),
        version: version.clone(),
        details: Some(
            [
                ("ApiVersion", crate::API_VERSION),
                ("MinAPIVersion", crate::MIN_API_VERSION),
                ("Os", "linux"),
                ("Arch", go_arch()),
                ("KernelVersion", kernel.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
    };
    let body = SystemVersion {
        platform: Some(SystemVersionPlatform { name: "forge".into() }),
        components: Some(vec![engine]),
        version: Some(version),
        api_version: Some(crate::API_VERSION.into()),
        min_api_version: Some(crate::MIN_API_VERSION.into()),
        os: Some("linux".into()),
        arch: Some(go_arch().into()),
        kernel_version: Some(kernel),
        experimental: Some(false),
        ..Default::default()
    };
    Ok(http::json(StatusCode::OK, &body))
}

/// Docker spells architectures as Go does.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `/info`.
pub(crate) async fn info(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let store = api.store.clone();
    let (images, containers) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let images = crate::images::distinct_images(&store)?;
        let containers = forge_runtime::Containers::open(&store)?.list()?;
        Ok((images.len(), containers))
    })
    .await??;
    let running = containers.iter().filter(|c| c.state.status == forge_runtime::Status::Running).count();
    let (kernel, hostname) = uname();
    let mem_total = nix::sys::sysinfo::sysinfo().map(|s| s.ram_total() as i64).unwrap_or(0);
    let body = SystemInfo {
        id: Some(hostname.clone()),
        name: Some(hostname),
        containers: Some(containers.len() as i64),
        containers_running: Some(running as i64),
        containers_paused: Some(0),
        containers_stopped: Some((containers.len() - running) as i64),
        images: Some(images as i64),
        driver: Some("overlay".into()),
        docker_root_dir: Some(api.store.root().display().to_string()),
        kernel_version: Some(kernel),
        operating_system: Some(os_name()),
        os_type: Some("linux".into()),
        architecture: Some(std::env::consts::ARCH.into()),
        ncpu: Some(std::thread::available_parallelism().map_or(1, |n| n.get()) as i64),
        mem_total: Some(mem_total),
        server_version: Some(env!("CARGO_PKG_VERSION").into()),
        logging_driver: Some("none".into()),
        default_runtime: Some("forge".into()),
        security_options: Some(vec!["name=seccomp,profile=builtin".into()]),
        experimental_build: Some(false),
        // No swarm and no plugins: said so, so that clients print "inactive" and empty lists.
        swarm: Some(SwarmInfo { local_node_state: Some(LocalNodeState::INACTIVE), ..Default::default() }),
        plugins: Some(PluginsInfo { volume: Some(Vec::new()), network: Some(vec!["bridge".into(), "host".into(), "none".into()]), ..Default::default() }),
        ..Default::default()
    };
    Ok(http::json(StatusCode::OK, &body))
}

fn os_name() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| text.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())))
        .unwrap_or_else(|| "Linux".into())
}

/// `/system/df`. Written by hand: bollard-stubs follows API 1.52, whose shape
/// (`ImageUsage`, ...) the clients of the version forge speaks (1.43) do not read.
pub(crate) async fn df(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &["type", "verbose"])?;
    let store = api.store.clone();
    let (images, containers, volumes) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let images = crate::images::summaries(&store)?;
        let containers = forge_runtime::Containers::open(&store)?.list()?;
        let volumes = forge_runtime::Volumes::open(&store)?.list()?;
        Ok((images, containers, volumes))
    })
    .await??;
    let layers_size: i64 = images.iter().map(|i| i.size).sum();
    // Sizes and reference counts are not computed: -1, as docker answers then.
    let volumes: Vec<_> = volumes
        .iter()
        .map(|v| serde_json::json!({"Name": v.name, "Driver": v.driver, "Mountpoint": v.mountpoint, "CreatedAt": v.created_at, "Scope": v.scope, "Labels": {}, "Options": {}, "UsageData": {"Size": -1, "RefCount": -1}}))
        .collect();
    let containers: Vec<_> = containers.iter().map(crate::containers::summary).collect();
    let body = serde_json::json!({
        "LayersSize": layers_size,
        "Images": images,
        "Containers": containers,
        "Volumes": volumes,
        "BuildCache": [],
    });
    Ok(http::json(StatusCode::OK, &body))
}

/// The body of `POST /auth` (bollard-stubs has `AuthConfig`, but with every field optional
/// and no way to tell a missing password from an empty one, which a login must refuse).
#[derive(serde::Deserialize)]
struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
}

/// `POST /auth`: checks credentials against the registry, as the daemon does; they are kept
/// by the client (in its own config), never by the server.
pub(crate) async fn auth(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let body: AuthBody = http::read_json(req.into_body(), "credentials").await?;
    if body.username.is_empty() || body.password.is_empty() {
        return Err(ApiError::bad_request("username and password are required (identity tokens are not supported)"));
    }
    let registry = crate::credentials::registry_host(&body.serveraddress);
    // `Client::login` checks, then writes the credentials to a docker config: here one in a
    // directory of this request, removed when it ends.
    let scratch = tempfile::tempdir().map_err(|e| ApiError::internal(format!("a directory for the login check: {e}")))?;
    let config = forge_registry::ClientConfig { docker_config: Some(scratch.path().join("config.json")), ..api.registry.clone() };
    let creds = forge_registry::Credentials { username: body.username, password: body.password };
    match forge_registry::Client::new(config).login(&registry, &creds).await {
        Ok(()) => Ok(http::json(StatusCode::OK, &serde_json::json!({"Status": "Login Succeeded", "IdentityToken": ""}))),
        Err(e @ forge_registry::Error::Auth { .. }) => Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())),
        Err(e) => Err(ApiError::internal(format!("logging in to {registry}: {e}"))),
    }
}
