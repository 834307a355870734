//! `exec`: `POST /containers/{id}/exec` makes an exec instance, `POST /exec/{id}/start` runs
//! it on the hijacked connection (its input from the client, its output framed as docker's),
//! `GET /exec/{id}/json` tells whether it runs and its exit code.
//!
//! Exec instances are the one thing this server keeps in memory: they are docker's too (they
//! live only as long as the daemon), and nothing of them is worth a record in the store; the
//! command itself runs in the container, whose records are the store's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard_stubs::models::{ExecConfig, ExecInspectResponse, ExecStartConfig, ProcessConfig};
use forge_runtime::{ExecOptions, Status, Stream};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::running::{find, frame, stream_type, Hijack};
use crate::server::Api;

/// One exec instance.
struct Exec {
    container: String,
    config: ExecConfig,
    started: bool,
    running: bool,
    exit_code: Option<i64>,
    /// When it ended: an ended instance is forgotten a while later.
    ended: Option<std::time::Instant>,
    /// Its terminal's master side while it runs (with a tty), for `resize`.
    terminal: Option<std::fs::File>,
}

/// How long an ended exec instance can still be inspected (its client reads its exit code
/// right after its stream ends); docker's daemon keeps them a few minutes too.
const KEEP_ENDED: std::time::Duration = std::time::Duration::from_secs(300);

/// The exec instances made through this server, by ID.
#[derive(Default)]
pub(crate) struct Execs(Mutex<HashMap<String, Arc<Mutex<Exec>>>>);

impl Execs {
    fn get(&self, id: &str) -> Result<Arc<Mutex<Exec>>, ApiError> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).cloned().ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }
}

fn lock(e: &Mutex<Exec>) -> std::sync::MutexGuard<'_, Exec> {
    e.lock().unwrap_or_else(|e| e.into_inner())
}

/// `POST /containers/{id}/exec`.
pub(crate) async fn create(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let config: ExecConfig = http::read_json(req.into_body(), "exec config").await?;
    if config.cmd.as_ref().is_none_or(|c| c.is_empty()) {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if config.privileged == Some(true) {
        return Err(ApiError::bad_request("privileged exec is not supported by forge"));
    }
    let (_, c) = find(api, id).await?;
    if c.state.status != Status::Running {
        return Err(ApiError::conflict(format!("Container {} is not running", c.id())));
    }
    if c.state.paused {
        return Err(ApiError::conflict(format!("Container {} is paused, unpause the container before exec", c.id())));
    }
    let exec_id = tokio::task::spawn_blocking(forge_runtime::new_id).await??;
    let exec = Exec { container: c.id().to_string(), config, started: false, running: false, exit_code: None, ended: None, terminal: None };
    let mut execs = api.execs.0.lock().unwrap_or_else(|e| e.into_inner());
    execs.retain(|_, e| lock(e).ended.is_none_or(|t| t.elapsed() < KEEP_ENDED));
    execs.insert(exec_id.clone(), Arc::new(Mutex::new(exec)));
    drop(execs);
    // Written by hand: bollard's `IdResponse` serializes its key as `id`; docker's is `Id`.
    Ok(http::json(StatusCode::CREATED, &serde_json::json!({ "Id": exec_id })))
}

/// `POST /exec/{id}/start`.
pub(crate) async fn start(api: &Api, mut req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let exec = api.execs.get(id)?;
    let hijack = Hijack::of(&mut req);
    let start: ExecStartConfig = http::read_json(req.into_body(), "exec start config").await?;
    let (config, container) = {
        let mut e = lock(&exec);
        if e.started {
            return Err(ApiError::conflict(format!("exec instance {id} was already started")));
        }
        e.started = true;
        e.running = true;
        (e.config.clone(), e.container.clone())
    };
    let (cs, c) = match find(api, &container).await {
        Ok(found) => found,
        Err(err) => {
            lock(&exec).running = false;
            return Err(err);
        }
    };
    let tty = config.tty.unwrap_or(false) || start.tty.unwrap_or(false);
    let (want_out, want_err) = (config.attach_stdout.unwrap_or(true), config.attach_stderr.unwrap_or(true));
    let holder = exec.clone();
    let work = move |out: &mut dyn std::io::Write, input: Option<Box<dyn std::io::Read + Send>>| -> Result<(), String> {
        let opts = ExecOptions {
            on_terminal: Some(Box::new(move |master| lock(&holder).terminal = Some(master))),
            cmd: config.cmd.clone().unwrap_or_default(),
            env: config.env.clone().unwrap_or_default(),
            user: config.user.clone().filter(|u| !u.is_empty()),
            working_dir: config.working_dir.clone().filter(|w| !w.is_empty()),
            input: if config.attach_stdin == Some(true) { input } else { None },
            tty,
            // `[rows, columns]`, from the start (newer clients) or the create; zeros are none.
            tty_size: [&start.console_size, &config.console_size]
                .into_iter()
                .flatten()
                .find_map(|s| match s[..] {
                    [h, w] if h > 0 && w > 0 => Some([h.min(u16::MAX as usize) as u16, w.min(u16::MAX as usize) as u16]),
                    _ => None,
                }),
        };
        let mut gone = false;
        let mut output = |stream: Stream, bytes: &[u8]| {
            let stderr = matches!(stream, Stream::Stderr);
            if gone || (stderr && !want_err) || (!stderr && !want_out) {
                return;
            }
            let mut buf = Vec::with_capacity(bytes.len() + 8);
            frame(tty, stderr, bytes, &mut buf);
            // A client that went away stops getting output; the command runs to its end.
            gone = out.write_all(&buf).and_then(|()| out.flush()).is_err();
        };
        let code = match cs.exec(&c, opts, &mut output, None) {
            Ok(code) => i64::from(code),
            Err(e) => {
                // As docker's: the failure on the stream, and 126/127 as the exit code.
                let mut buf = Vec::new();
                frame(tty, true, format!("{e}\n").as_bytes(), &mut buf);
                let _ = out.write_all(&buf);
                i64::from(e.exit_code())
            }
        };
        let mut e = lock(&exec);
        e.running = false;
        e.terminal = None;
        e.exit_code = Some(code);
        e.ended = Some(std::time::Instant::now());
        Ok(())
    };
    if start.detach == Some(true) {
        tokio::task::spawn_blocking(move || work(&mut std::io::sink(), None));
        return Ok(http::empty(StatusCode::OK));
    }
    Ok(hijack.run(stream_type(tty), work))
}

/// `GET /exec/{id}/json`.
pub(crate) async fn inspect(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let exec = api.execs.get(id)?;
    let e = lock(&exec);
    let cmd = e.config.cmd.clone().unwrap_or_default();
    Ok(http::json(
        StatusCode::OK,
        &ExecInspectResponse {
            id: Some(id.to_string()),
            container_id: Some(e.container.clone()),
            running: Some(e.running),
            exit_code: e.exit_code,
            can_remove: Some(false),
            open_stdin: Some(e.config.attach_stdin == Some(true)),
            open_stdout: Some(e.config.attach_stdout.unwrap_or(true)),
            open_stderr: Some(e.config.attach_stderr.unwrap_or(true)),
            pid: Some(0),
            process_config: Some(ProcessConfig {
                privileged: Some(false),
                user: e.config.user.clone(),
                tty: e.config.tty,
                entrypoint: cmd.first().cloned(),
                arguments: Some(cmd.iter().skip(1).cloned().collect()),
            }),
            ..Default::default()
        },
    ))
}

/// The `h` and `w` of a resize request.
fn size_of(req: &Request<Incoming>) -> Result<(u16, u16), ApiError> {
    let q = Query::parse(req.uri().query(), &["h", "w"])?;
    match (q.number::<u16>("h")?, q.number::<u16>("w")?) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(ApiError::bad_request("a resize needs h and w")),
    }
}

/// `POST /exec/{id}/resize`: an exec without a terminal, or one that ended, has nothing to
/// resize (docker's clients resize at every start; an error would only be noise to them).
async fn resize(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let (h, w) = size_of(&req)?;
    let exec = api.execs.get(id)?;
    let e = lock(&exec);
    if let Some(master) = &e.terminal {
        forge_runtime::resize_terminal(master, h, w).map_err(|e| ApiError::internal(format!("resizing exec {id}'s terminal: {e}")))?;
    }
    Ok(http::empty(StatusCode::OK))
}

/// `POST /containers/{id}/resize`, through the runtime (the terminal is its supervisor's).
pub(crate) async fn resize_container(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let (h, w) = size_of(&req)?;
    let (cs, c) = find(api, id).await?;
    tokio::task::spawn_blocking(move || cs.resize(&c, h, w)).await??;
    Ok(http::empty(StatusCode::OK))
}

/// `/exec/{id}/{verb}`.
pub(crate) async fn by_id(api: &Api, req: Request<Incoming>, method: hyper::Method, id: &str, verb: &str) -> Result<Response, ApiError> {
    match (method, verb) {
        (hyper::Method::POST, "start") => start(api, req, id).await,
        (hyper::Method::GET, "json") => inspect(api, req, id).await,
        (hyper::Method::POST, "resize") => resize(api, req, id).await,
        (m, v) => Err(ApiError::not_found(format!("page not found: {m} /exec/{{id}}/{v}"))),
    }
}
