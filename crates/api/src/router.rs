//! One request to its handler: the version prefix is checked and stripped, the path and
//! method choose the handler, and every answer gets the daemon's headers.

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::server::Api;
use crate::{build, containers, images, system, version, volumes};

/// Answers `req`; failures become docker's error documents.
pub(crate) async fn handle(api: &Api, req: Request<Incoming>) -> Response {
    let mut resp = match route(api, req).await {
        Ok(resp) => resp,
        Err(err) => {
            if err.status.is_server_error() {
                eprintln!("forge serve: {} {}", err.status.as_u16(), err.message);
            }
            http::error(err)
        }
    };
    let headers = resp.headers_mut();
    headers.insert("Api-Version", HeaderValue::from_static(crate::API_VERSION));
    headers.insert("Docker-Experimental", HeaderValue::from_static("false"));
    headers.insert("Ostype", HeaderValue::from_static("linux"));
    headers.insert("Server", HeaderValue::from_static(concat!("forge/", env!("CARGO_PKG_VERSION"), " (linux)")));
    resp
}

async fn route(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let (_version, path) = version::strip(&path)?;
    let method = req.method().clone();
    // Paths holding an image name (which may contain `/`): `/images/{name}/{verb}`.
    if let Some(rest) = path.strip_prefix("/images/") {
        for (verb, m) in [("json", Method::GET), ("history", Method::GET), ("get", Method::GET), ("tag", Method::POST), ("push", Method::POST)] {
            if let Some(name) = rest.strip_suffix(&format!("/{verb}")).filter(|n| !n.is_empty()) {
                if method == m {
                    return images::by_name(api, req, &decode(name)?, verb).await;
                }
            }
        }
    }
    match (&method, path) {
        (&Method::GET | &Method::HEAD, "/_ping") => Ok(system::ping(&method)),
        (&Method::GET, "/version") => system::version(api, req).await,
        (&Method::GET, "/info") => system::info(api, req).await,
        (&Method::GET, "/system/df") => system::df(api, req).await,
        (&Method::GET, "/events") => system::events(api, req).await,
        (&Method::POST, "/auth") => system::auth(api, req).await,
        (&Method::GET, "/images/json") => images::list(api, req).await,
        (&Method::POST, "/images/create") => images::create(api, req).await,
        (&Method::POST, "/images/load") => images::load(api, req).await,
        (&Method::GET, "/images/get") => images::get(api, req).await,
        (&Method::POST, "/images/prune") => images::prune(api, req).await,
        (&Method::POST, "/build") => build::build(api, req).await,
        (&Method::GET, "/containers/json") => containers::list(api, req).await,
        (&Method::POST, "/containers/create") => containers::create(api, req).await,
        (&Method::POST, "/containers/prune") => containers::prune(api, req).await,
        (&Method::GET, "/volumes") => volumes::list(api, req).await,
        (&Method::POST, "/volumes/create") => volumes::create(api, req).await,
        (&Method::POST, "/volumes/prune") => volumes::prune(api, req).await,
        (m, p) if p.starts_with("/volumes/") => volumes::by_name(api, req, m.clone(), &decode(&p["/volumes/".len()..])?).await,
        (&Method::DELETE, p) if p.starts_with("/images/") => images::remove(api, req, &decode(&p["/images/".len()..])?).await,
        (m, p) if p.starts_with("/containers/") => {
            let rest = &p["/containers/".len()..];
            let (id, verb) = rest.split_once('/').unwrap_or((rest, ""));
            containers::by_id(api, req, m.clone(), &decode(id)?, verb).await
        }
        (m, p) if p.starts_with("/exec/") => {
            let rest = &p["/exec/".len()..];
            let (id, verb) = rest.split_once('/').unwrap_or((rest, ""));
            crate::exec::by_id(api, req, m.clone(), &decode(id)?, verb).await
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("page not found: {method} {path}"))),
    }
}

/// A path segment as the client encoded it (`%2F` in names).
fn decode(segment: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::bad_request(format!("invalid path segment {segment:?}: not UTF-8")))
}
