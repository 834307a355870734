//! `/containers/{id}/archive` (`docker cp`): `HEAD` states a path (the
//! `X-Docker-Container-Path-Stat` header), `GET` sends it as a tar, `PUT` extracts a tar into
//! a directory. Every path resolves inside the container's root (forge-runtime's `Rootfs`:
//! `openat2(RESOLVE_IN_ROOT)`), so `../` and absolute symlinks stay in the container.

use base64::Engine;
use forge_runtime::{ArchiveOptions, Containers, PathStat};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::running::{blocking, find};
use crate::server::Api;

/// A Unix `st_mode` as Go's `os.FileMode`, which docker's clients decode.
fn go_mode(mode: u32) -> u32 {
    let mut out = mode & 0o777;
    for (bit, go) in [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)] {
        if mode & bit != 0 {
            out |= go;
        }
    }
    out | match mode & libc_type::MASK {
        libc_type::DIR => 1 << 31,
        libc_type::LINK => 1 << 27,
        libc_type::BLOCK => 1 << 26,
        libc_type::CHAR => (1 << 26) | (1 << 21),
        libc_type::FIFO => 1 << 25,
        libc_type::SOCKET => 1 << 24,
        _ => 0,
    }
}

/// The file type bits of `st_mode` (`S_IFMT` and friends), fixed by POSIX.
mod libc_type {
    pub(super) const MASK: u32 = 0o170000;
    pub(super) const DIR: u32 = 0o040000;
    pub(super) const LINK: u32 = 0o120000;
    pub(super) const BLOCK: u32 = 0o060000;
    pub(super) const CHAR: u32 = 0o020000;
    pub(super) const FIFO: u32 = 0o010000;
    pub(super) const SOCKET: u32 = 0o140000;
}

/// The stat header: base64 of a JSON document written by hand (the Engine API's swagger, and
/// so bollard, has no model for it).
fn stat_header(st: &PathStat) -> Result<HeaderValue, ApiError> {
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(st.mtime.0.max(0) as u64, st.mtime.1);
    let doc = serde_json::json!({
        "name": st.name,
        "size": st.size,
        "mode": go_mode(st.mode),
        "mtime": humantime::format_rfc3339_nanos(mtime).to_string(),
        "linkTarget": st.link_target.clone().unwrap_or_default(),
    });
    let encoded = base64::engine::general_purpose::STANDARD.encode(doc.to_string());
    HeaderValue::from_str(&encoded).map_err(|e| ApiError::internal(format!("encoding the path's stat: {e}")))
}

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

/// `HEAD`, `GET` and `PUT /containers/{id}/archive?path=`.
pub(crate) async fn archive(api: &Api, req: Request<Incoming>, method: Method, id: &str) -> Result<Response, ApiError> {
    let known: &[&str] = if method == Method::PUT { &["path", "noOverwriteDirNonDir", "copyUIDGID"] } else { &["path"] };
    let q = Query::parse(req.uri().query(), known)?;
    let path = q.get("path").filter(|p| !p.is_empty()).ok_or_else(|| ApiError::bad_request("the path parameter is required"))?.to_string();
    let (cs, c) = find(api, id).await?;
    let write = method == Method::PUT;
    let stat_path = path.clone();
    let (root, stat) = blocking(move || {
        let root = Containers::rootfs(&cs, &c, write)?;
        let stat = root.stat(&stat_path)?;
        Ok((root, stat))
    })
    .await?;
    let Some(stat) = stat else {
        return Err(ApiError::not_found(format!("Could not find the file {path} in container {id}")));
    };
    if method == Method::PUT {
        // A symlink is followed inside the root by the extraction, which checks it too.
        if stat.mode & libc_type::MASK != libc_type::DIR && stat.link_target.is_none() {
            return Err(ApiError::bad_request(format!("extraction point is not a directory: {path}")));
        }
        // Files copied in belong to the container's root unless their owners are kept (`cp -a`).
        // `noOverwriteDirNonDir` (always sent by docker's CLI) is what forge's applier does
        // with a directory and a file at one path: the entry replaces what was there.
        let owner = if q.flag("copyUIDGID") { None } else { Some((0, 0)) };
        let mut input = http::body_reader(req.into_body());
        tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
            root.extract_under(&mut input, &path, owner)?;
            http::drain(&mut input).map_err(|e| ApiError::bad_request(format!("reading the archive: {e}")))?;
            Ok(())
        })
        .await??;
        return Ok(http::empty(StatusCode::OK));
    }
    let header = stat_header(&stat)?;
    if method == Method::HEAD {
        let mut resp = http::empty(StatusCode::OK);
        resp.headers_mut().insert(STAT_HEADER, header);
        return Ok(resp);
    }
    // The top entry is named as the path's last component (`.` for `dir/.`: its contents),
    // as docker's daemon names it; the client places it.
    let name = if path.ends_with("/.") || path == "." { ".".to_string() } else { stat.name.clone() };
    let (mut out, mut resp) = http::bytes_stream("application/x-tar");
    resp.headers_mut().insert(STAT_HEADER, header);
    tokio::task::spawn_blocking(move || {
        let archived = root.archive(&path, &name, &ArchiveOptions::default(), &mut out);
        // Unmounted and unlocked before the stream ends: a client's next request (`rm`,
        // `start`) must find the container free.
        drop(root);
        if let Err(e) = archived {
            out.fail(e.to_string());
        }
    });
    Ok(resp)
}
