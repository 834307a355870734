//! What is done to a container once created: start, stop, kill, restart, pause, unpause,
//! wait, logs, attach, top, stats, changes, export. Each calls forge-runtime (detached
//! containers run under their monitors, so they outlive this server) and shapes the answer.
//!
//! Output streams (`logs`, `attach`) use docker's framing: without a terminal, each piece is
//! an 8-byte header (stream 1 stdout or 2 stderr, three zero bytes, the length big-endian)
//! and the bytes; with one, the bytes alone.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bollard_stubs::models::{
    ChangeType, ContainerBlkioStatEntry, ContainerBlkioStats, ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerPidsStats,
    ContainerStatsResponse, ContainerTopResponse, FilesystemChange,
};
use forge_runtime::{Container, Containers, LogEntry, Status, WaitCondition};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::server::Api;

/// Runs a library call on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, forge_runtime::Error> + Send + 'static) -> Result<T, ApiError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// The container `id` names, with the store's containers.
pub(crate) async fn find(api: &Api, id: &str) -> Result<(Containers, Container), ApiError> {
    let (store, id) = (api.store.clone(), id.to_string());
    blocking(move || {
        let cs = Containers::open(&store)?;
        let c = cs.get(&id)?;
        Ok((cs, c))
    })
    .await
}

/// `POST /containers/{id}/start`: under a monitor; 304 when it already runs.
pub(crate) async fn start(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    // `detachKeys` only matters to an attached terminal, which forge's attach does not read.
    Query::parse(req.uri().query(), &["detachKeys"])?;
    let (cs, c) = find(api, id).await?;
    if c.state.status == Status::Running {
        return Ok(http::empty(StatusCode::NOT_MODIFIED));
    }
    let monitor = api.monitor.clone();
    blocking(move || match cs.start_detached(&c, &monitor) {
        Ok(_) => Ok(()),
        Err(e) => {
            // As docker's daemon: an auto-removed container that cannot start is removed, so a
            // client waiting for its removal (`run --rm`) ends.
            if c.config.auto_remove {
                let _ = cs.get(c.id()).and_then(|now| cs.remove(&now, true));
            }
            Err(e)
        }
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `t` (seconds; docker's `-1` waits for ever, which forge spells as a very long time).
fn timeout(q: &Query) -> Result<Option<u32>, ApiError> {
    Ok(q.number::<i64>("t")?.map(|t| if t < 0 { u32::MAX } else { t.min(u32::MAX as i64) as u32 }))
}

/// `POST /containers/{id}/stop?t=&signal=`: 304 when it does not run.
pub(crate) async fn stop(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["t", "signal"])?;
    let (t, signal) = (timeout(&q)?, q.get("signal").filter(|s| !s.is_empty()).map(str::to_string));
    let (cs, c) = find(api, id).await?;
    if c.state.status != Status::Running {
        return Ok(http::empty(StatusCode::NOT_MODIFIED));
    }
    blocking(move || cs.stop(&c, signal.as_deref(), t)).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/restart?t=&signal=`: stopped as by `stop`, then started.
pub(crate) async fn restart(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["t", "signal"])?;
    let (t, signal) = (timeout(&q)?, q.get("signal").filter(|s| !s.is_empty()).map(str::to_string));
    let (cs, c) = find(api, id).await?;
    let monitor = api.monitor.clone();
    blocking(move || {
        cs.stop(&c, signal.as_deref(), t)?;
        cs.start_detached(&c, &monitor).map(drop)
    })
    .await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/kill?signal=` (default SIGKILL).
pub(crate) async fn kill(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["signal"])?;
    let signal = q.get("signal").filter(|s| !s.is_empty()).unwrap_or("SIGKILL").to_string();
    let (cs, c) = find(api, id).await?;
    blocking(move || cs.kill(&c, &signal)).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/pause` and `/unpause`.
pub(crate) async fn pause(api: &Api, req: Request<Incoming>, id: &str, freeze: bool) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let (cs, c) = find(api, id).await?;
    blocking(move || if freeze { cs.pause(&c) } else { cs.unpause(&c) }).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `POST /containers/{id}/wait?condition=`: the headers at once (a client may start the
/// container only then), `{"StatusCode": N, "Error": null}` once the condition is met.
pub(crate) async fn wait(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["condition"])?;
    let condition = match q.get("condition").unwrap_or("") {
        "" | "not-running" => WaitCondition::NotRunning,
        "next-exit" => WaitCondition::NextExit,
        "removed" => WaitCondition::Removed,
        other => return Err(ApiError::bad_request(format!("invalid condition {other:?}: not-running, next-exit or removed"))),
    };
    let (cs, c) = find(api, id).await?;
    // In place before the headers go: a client may start the container as soon as it has them
    // (docker's CLI does), and its exit must not come before the wait.
    let (cs, waiter) = blocking(move || cs.waiter(&c).map(|w| (cs, w))).await?;
    let (lines, resp) = http::lines();
    let stopping = api.stopping.clone();
    tokio::task::spawn_blocking(move || {
        // Written by hand: bollard's model leaves out a null `Error`, which docker sends.
        let answer = match cs.wait_for(waiter, condition, &|| lines.is_closed() || *stopping.borrow()) {
            Ok(Some(state)) => serde_json::json!({ "StatusCode": state.exit_code, "Error": null }),
            // The client is gone, or the server stops: the connection ends without an answer.
            Ok(None) => return,
            Err(e) => serde_json::json!({ "StatusCode": -1, "Error": { "Message": e.to_string() } }),
        };
        lines.send(&answer);
    });
    Ok(resp)
}

/// docker's frame of `bytes` from `stream` (`stdout`/`stderr`), or the bytes alone on a terminal.
pub(crate) fn frame(tty: bool, stderr: bool, bytes: &[u8], out: &mut Vec<u8>) {
    if !tty {
        out.extend_from_slice(&[if stderr { 2 } else { 1 }, 0, 0, 0]);
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(bytes);
}

/// The content type of a container's output stream.
pub(crate) fn stream_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Which log entries a `logs` or `attach` request wants, and how they are written.
struct Selection {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    tty: bool,
}

impl Selection {
    /// Writes `e` if selected; a client gone is the writer's error.
    fn write(&self, e: &LogEntry, out: &mut dyn Write) -> std::io::Result<()> {
        let stderr = e.stream == "stderr";
        if (stderr && !self.stderr) || (!stderr && !self.stdout) {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(e.log.len() + 48);
        let text = if self.timestamps { format!("{} {}", e.time, e.log) } else { e.log.clone() };
        frame(self.tty, stderr, text.as_bytes(), &mut buf);
        out.write_all(&buf)?;
        out.flush()
    }
}

/// A Unix time in seconds, with a fraction (`since`, `until`); 0 is none.
fn unix_time(q: &Query, name: &str) -> Result<Option<SystemTime>, ApiError> {
    match q.number::<f64>(name)? {
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s))),
        Some(s) if s != 0.0 => Err(ApiError::bad_request(format!("invalid {name} {s}: not a Unix time"))),
        _ => Ok(None),
    }
}

/// `GET /containers/{id}/logs`.
pub(crate) async fn logs(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["stdout", "stderr", "follow", "since", "until", "timestamps", "tail", "details"])?;
    if q.flag("details") {
        return Err(ApiError::bad_request("details: forge's containers carry no log attributes"));
    }
    let (stdout, stderr) = (q.flag("stdout"), q.flag("stderr"));
    if !stdout && !stderr {
        return Err(ApiError::bad_request("Bad parameters: you must choose at least one stream"));
    }
    let (since, until) = (unix_time(&q, "since")?, unix_time(&q, "until")?);
    let tail = match q.get("tail").unwrap_or("all") {
        "all" | "" => None,
        n => Some(n.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid tail {n:?}: a number of lines or all")))?),
    };
    let follow = q.flag("follow");
    let (cs, c) = find(api, id).await?;
    let sel = Selection { stdout, stderr, timestamps: q.flag("timestamps"), tty: c.config.tty };
    let (mut out, resp) = http::bytes_stream(stream_type(sel.tty));
    let stopping = api.stopping.clone();
    tokio::task::spawn_blocking(move || {
        let at = |e: &LogEntry| humantime::parse_rfc3339(&e.time).ok();
        let in_time = |e: &LogEntry| since.is_none_or(|s| at(e).is_some_and(|t| t >= s)) && until.is_none_or(|u| at(e).is_some_and(|t| t <= u));
        let done = (|| -> Result<(), forge_runtime::Error> {
            let (mut entries, offset) = forge_runtime::read_log(&cs.log_path(c.id()), 0)?;
            entries.retain(|e| in_time(e));
            if let Some(n) = tail {
                entries.drain(..entries.len().saturating_sub(n.max(0) as usize));
            }
            let io = |e: std::io::Error| forge_runtime::Error::Copy { message: format!("sending the log: {e}") };
            for e in &entries {
                sel.write(e, &mut out).map_err(io)?;
            }
            if follow && until.is_none_or(|u| u > SystemTime::now()) {
                let closed = out.closed_check();
                cs.follow_log_until(
                    c.id(),
                    offset,
                    &mut |e: &LogEntry| -> Result<(), forge_runtime::Error> {
                        if in_time(e) {
                            sel.write(e, &mut out).map_err(io)?;
                        }
                        Ok(())
                    },
                    &|| closed() || *stopping.borrow() || until.is_some_and(|u| u <= SystemTime::now()),
                )?;
            }
            Ok(())
        })();
        if let Err(e) = done {
            out.fail(e.to_string());
        }
    });
    Ok(resp)
}

/// Where a hijacked endpoint writes: the upgraded connection (HTTP 101, as docker's clients
/// ask with `Upgrade: tcp`), or, for a client that does not ask, a plain streamed body.
pub(crate) enum Hijack {
    Upgraded(hyper::upgrade::OnUpgrade),
    Plain,
}

impl Hijack {
    /// What `req` asks for; take it before the request's body is read.
    pub(crate) fn of(req: &mut Request<Incoming>) -> Hijack {
        let upgrade = req.headers().get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"tcp"));
        if upgrade {
            Hijack::Upgraded(hyper::upgrade::on(req))
        } else {
            Hijack::Plain
        }
    }

    /// Answers at once and runs `work` on a blocking thread with the connection's output, and
    /// its input when upgraded; the stream ends when `work` returns.
    pub(crate) fn run(
        self,
        content_type: &'static str,
        work: impl FnOnce(&mut dyn Write, Option<Box<dyn std::io::Read + Send>>) -> Result<(), String> + Send + 'static,
    ) -> Response {
        match self {
            Hijack::Upgraded(on) => {
                tokio::spawn(async move {
                    let upgraded = match on.await {
                        Ok(u) => u,
                        Err(e) => return eprintln!("forge serve: upgrading the connection: {e}"),
                    };
                    let (r, w) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
                    let _ = tokio::task::spawn_blocking(move || {
                        let mut w = tokio_util::io::SyncIoBridge::new(w);
                        let input: Box<dyn std::io::Read + Send> = Box::new(tokio_util::io::SyncIoBridge::new(r));
                        if let Err(e) = work(&mut w, Some(input)) {
                            // The status is sent: the client sees the stream end.
                            eprintln!("forge serve: {e}");
                        }
                        let _ = w.shutdown();
                    })
                    .await;
                });
                let mut resp = http::empty(StatusCode::SWITCHING_PROTOCOLS);
                let h = resp.headers_mut();
                h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
                h.insert(UPGRADE, HeaderValue::from_static("tcp"));
                h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                resp
            }
            Hijack::Plain => {
                let (mut out, resp) = http::bytes_stream(content_type);
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = work(&mut out, None) {
                        out.fail(e);
                    }
                });
                resp
            }
        }
    }
}

/// `POST /containers/{id}/attach`: its output (the log so far with `logs`, and with `stream`
/// what it writes until it ends, waiting for its start when it was only created, as `docker
/// run` attaches first); with `stdin`, the client's input goes to a container made with `-i`.
pub(crate) async fn attach(api: &Api, mut req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["stream", "stdin", "stdout", "stderr", "logs", "detachKeys"])?;
    let (cs, c) = find(api, id).await?;
    let feed = q.flag("stdin") && c.config.open_stdin;
    // Without `StdinOnce` the end of this client's input is not the command's but ends this
    // attach, output included, as docker's does (its CLI then waits for the container).
    let input_ended = Arc::new(AtomicBool::new(false));
    let sel = Selection { stdout: q.flag("stdout"), stderr: q.flag("stderr"), timestamps: false, tty: c.config.tty };
    let (logs, stream) = (q.flag("logs"), q.flag("stream"));
    // In place before the client is answered: it may start the container then (`docker run`).
    let follower = if stream {
        let (cs, c) = (Containers::open(&api.store)?, c.clone());
        Some(blocking(move || cs.follower(&c, logs)).await?)
    } else {
        None
    };
    let hijack = Hijack::of(&mut req);
    let stopping = api.stopping.clone();
    let store = api.store.clone();
    Ok(hijack.run(stream_type(sel.tty), move |out, input| {
        if let Some(mut input) = input {
            let (c, stopping, input_ended) = (c.clone(), stopping.clone(), input_ended.clone());
            // Not joined: it ends with the client's input (or the container's).
            std::thread::spawn(move || {
                let stdin = if feed { Containers::open(&store).and_then(|cs| cs.open_stdin(&c, &|| *stopping.borrow())).ok().flatten() } else { None };
                match stdin {
                    Some(mut stdin) => {
                        let _ = std::io::copy(&mut input, &mut stdin);
                        input_ended.store(!c.config.stdin_once, Ordering::SeqCst);
                    }
                    // Read and dropped, so the client never blocks on a full socket.
                    None => drop(std::io::copy(&mut input, &mut std::io::sink())),
                }
            });
        }
        let send = |e: &LogEntry, out: &mut dyn Write| sel.write(e, out).map_err(|e| forge_runtime::Error::Copy { message: format!("sending its output: {e}") });
        if logs && follower.is_none() {
            let (entries, _) = forge_runtime::read_log(&cs.log_path(c.id()), 0).map_err(|e| e.to_string())?;
            for e in &entries {
                send(e, out).map_err(|e| e.to_string())?;
            }
        }
        if let Some(follower) = follower {
            // A client gone is seen at the next output; the server's stop ends it at once.
            cs.follow_run(follower, &mut |e: &LogEntry| send(e, out), &|| *stopping.borrow() || input_ended.load(Ordering::SeqCst)).map_err(|e| e.to_string())?;
        }
        Ok(())
    }))
}

/// `POST /containers/{id}/rename?name=`.
pub(crate) async fn rename(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["name"])?;
    let name = q.get("name").filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request("the name parameter is required"))?.to_string();
    let (cs, c) = find(api, id).await?;
    blocking(move || cs.rename(&c, &name)).await?;
    Ok(http::empty(StatusCode::NO_CONTENT))
}

/// `GET /containers/{id}/top?ps_args=`.
pub(crate) async fn top(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["ps_args"])?;
    let ps_args: Vec<String> = q.get("ps_args").unwrap_or("").split_whitespace().map(str::to_string).collect();
    let (cs, c) = find(api, id).await?;
    let top = blocking(move || cs.top(&c, &ps_args)).await?;
    Ok(http::json(StatusCode::OK, &ContainerTopResponse { titles: Some(top.titles()), processes: Some(top.processes()) }))
}

/// One sample of a running container's accounting, in docker's shape (cgroup v1 keys); `None`
/// once it no longer runs.
fn sample(cs: &Containers, c: &Container) -> Option<(ContainerCpuStats, ContainerStatsResponse)> {
    let s = cs.cgroup(c, "only a running container has stats").ok()?.stats();
    let (online, system) = forge_runtime::host_cpu();
    let cpu = ContainerCpuStats {
        cpu_usage: Some(ContainerCpuUsage { total_usage: Some(s.cpu_time.as_nanos() as u64), ..Default::default() }),
        system_cpu_usage: Some(system),
        online_cpus: Some(online),
        throttling_data: None,
    };
    let entry = |op: &str, value| ContainerBlkioStatEntry { major: Some(0), minor: Some(0), op: Some(op.into()), value: Some(value) };
    let stats = ContainerStatsResponse {
        id: Some(c.id().to_string()),
        name: Some(format!("/{}", c.config.name.clone().unwrap_or_default())),
        os_type: Some("linux".into()),
        read: Some(humantime::format_rfc3339_nanos(SystemTime::now()).to_string()),
        cpu_stats: Some(cpu.clone()),
        memory_stats: Some(ContainerMemoryStats {
            usage: Some(s.memory_usage),
            stats: Some([("total_inactive_file".to_string(), s.memory_inactive_file), ("inactive_file".to_string(), s.memory_inactive_file)].into()),
            limit: Some(s.memory_limit.unwrap_or(u64::MAX).min(forge_runtime::host_memory())),
            ..Default::default()
        }),
        pids_stats: Some(ContainerPidsStats { current: Some(s.pids), limit: c.config.limits.pids }),
        blkio_stats: Some(ContainerBlkioStats { io_service_bytes_recursive: Some(vec![entry("read", s.block_read), entry("write", s.block_write)]), ..Default::default() }),
        num_procs: Some(0),
        ..Default::default()
    };
    Some((cpu, stats))
}

/// `GET /containers/{id}/stats?stream=&one-shot=`: one sample a second, each with the one
/// before (`precpu_stats`, from which clients compute the CPU share); `stream=false` waits
/// for the second sample unless `one-shot`.
pub(crate) async fn stats(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["stream", "one-shot"])?;
    let stream = q.get("stream").is_none() || q.flag("stream");
    let one_shot = q.flag("one-shot");
    let (cs, c) = find(api, id).await?;
    let first = blocking({
        let c = c.clone();
        move || Ok(sample(&cs, &c))
    })
    .await?;
    let Some(mut before) = first else {
        return Err(ApiError::conflict(format!("container {} is not running", c.short_id())));
    };
    if !stream && one_shot {
        return Ok(http::json(StatusCode::OK, &before.1));
    }
    let (lines, resp) = http::lines();
    let store = api.store.clone();
    let mut stopping = api.stopping.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = lines.closed() => return,
                _ = stopping.wait_for(|s| *s) => return,
            }
            let (store, c) = (store.clone(), c.clone());
            let Ok(Ok(Some(mut now))) = tokio::task::spawn_blocking(move || Containers::open(&store).map(|cs| sample(&cs, &c))).await else { return };
            now.1.precpu_stats = Some(before.0.clone());
            lines.send(&serde_json::to_value(&now.1).unwrap_or_default());
            if !stream {
                return;
            }
            before = now;
        }
    });
    Ok(resp)
}

/// `GET /containers/{id}/changes`.
pub(crate) async fn changes(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let (cs, c) = find(api, id).await?;
    let changes = blocking(move || cs.changes(&c)).await?;
    let out: Vec<FilesystemChange> = changes
        .into_iter()
        .map(|(kind, path)| FilesystemChange {
            path,
            kind: match kind {
                'A' => ChangeType::_1,
                'D' => ChangeType::_2,
                _ => ChangeType::_0,
            },
        })
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

/// `GET /containers/{id}/export`: its files (without its mounts) as a tar, streamed.
pub(crate) async fn export(api: &Api, req: Request<Incoming>, id: &str) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let (cs, c) = find(api, id).await?;
    // Mounted before answering, so a failure is still a status code.
    let root = blocking(move || cs.snapshot_view(&c)).await?;
    let (mut out, resp) = http::bytes_stream("application/x-tar");
    tokio::task::spawn_blocking(move || {
        let archived = root.archive("/", "", &forge_runtime::ArchiveOptions::default(), &mut out);
        // Unmounted and unlocked before the stream ends, so the client's next request finds
        // the container free.
        drop(root);
        if let Err(e) = archived {
            out.fail(e.to_string());
        }
    });
    Ok(resp)
}
