//! `GET /events`: the store's event journal ([`forge_layerstore::events`]), which every forge
//! process appends to, as docker's stream: the kept events from `since`, then new ones as
//! they are recorded, until `until`, the client hanging up or the server stopping.

use std::time::Duration;

use forge_layerstore::events::{Event, Tail};
use hyper::body::Incoming;
use hyper::Request;

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::{Filters, Query};
use crate::server::Api;

/// How often the journal is read again for new lines. Any process may append to it, so the
/// server polls: a read of the few new bytes is cheaper than a filesystem watch, and 200 ms is
/// well within what a client waiting on events notices.
const POLL: Duration = Duration::from_millis(200);

/// A `since`/`until` value: Unix seconds (with a fraction, as the docker CLI sends them) or an
/// RFC 3339 time; in nanoseconds.
fn parse_time(q: &Query, name: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = q.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Ok(secs) = v.parse::<f64>() {
        return Ok(Some((secs * 1e9) as i64));
    }
    humantime::parse_rfc3339_weak(v.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| Some(d.as_nanos() as i64))
        .ok_or_else(|| ApiError::bad_request(format!("invalid {name} {v:?}: expected Unix seconds or an RFC 3339 time")))
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// Whether `e` passes the filters: every filter given must match (one of its values), as
/// docker's.
fn matches(f: &Filters, e: &Event) -> bool {
    let attr = |k: &str| e.attributes.get(k).map(String::as_str).unwrap_or("");
    let any = |name: &str, m: &dyn Fn(&str) -> bool| f.values(name).is_empty() || f.values(name).iter().any(|v| m(v));
    let is = |kind: &str| e.kind == kind;
    any("type", &|v| e.kind == v)
        && any("event", &|v| e.action == v)
        && any("container", &|v| is("container") && (e.id.starts_with(v) || attr("name") == v) || is("network") && attr("container").starts_with(v))
        && any("image", &|v| is("image") && (e.id == v || attr("name") == v) || is("container") && attr("image") == v)
        && any("network", &|v| is("network") && (e.id == v || attr("name") == v))
        && any("volume", &|v| is("volume") && e.id == v)
        && any("scope", &|v| v == "local")
        && f.values("label").iter().all(|l| crate::query::label_matches(&e.attributes, l))
}

/// docker's event message. Written by hand: besides bollard-stubs' `EventMessage` fields it
/// carries `status`, `id` and `from`, which clients of API 1.41 (docker-compose 1.29, the
/// 20.10 CLI's templates) still read.
fn message(store_root: &std::path::Path, e: &Event) -> serde_json::Value {
    // A network's journal ID is its name; clients know it by the ID `/networks` shows.
    let id = if e.kind == "network" { crate::networks::network_id(store_root, &e.id) } else { e.id.clone() };
    let mut m = serde_json::json!({
        "Type": e.kind,
        "Action": e.action,
        "Actor": { "ID": id, "Attributes": e.attributes },
        "scope": "local",
        "time": e.time_nano / 1_000_000_000,
        "timeNano": e.time_nano,
    });
    if e.kind == "container" {
        m["status"] = e.action.clone().into();
        m["id"] = id.into();
        m["from"] = e.attributes.get("image").cloned().unwrap_or_default().into();
    }
    m
}

/// `GET /events?since=&until=&filters=`.
pub(crate) async fn events(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["since", "until", "filters"])?;
    let filters = q.filters(&["config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"])?;
    for unsupported in ["config", "node", "plugin", "secret", "service"] {
        if !filters.values(unsupported).is_empty() {
            return Err(ApiError::bad_request(format!("the {unsupported} event filter names swarm or plugin objects, which forge does not have")));
        }
    }
    let since = parse_time(&q, "since")?;
    let until = parse_time(&q, "until")?;
    let started = now_nanos();
    let (lines, resp) = http::lines();
    let store_root = api.store.root().to_path_buf();
    let mut stopping = api.stopping.clone();
    tokio::spawn(async move {
        let mut tail = Tail::new(&store_root);
        let mut first = true;
        loop {
            let (t, batch) = match tokio::task::spawn_blocking(move || {
                let batch = tail.poll();
                (tail, batch)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => return lines.error(format!("reading the event journal: {e}")),
            };
            tail = t;
            let batch = match batch {
                Ok(b) => b,
                Err(e) => return lines.error(format!("reading the event journal: {e}")),
            };
            for e in batch {
                // Without `since`, only what happens from now on, as docker.
                let from = since.unwrap_or(if first { started } else { i64::MIN });
                if e.time_nano >= from && until.is_none_or(|u| e.time_nano <= u) && matches(&filters, &e) {
                    lines.send(&message(&store_root, &e));
                }
            }
            first = false;
            if until.is_some_and(|u| now_nanos() > u) {
                return;
            }
            tokio::select! {
                _ = stopping.wait_for(|s| *s) => return,
                _ = lines.closed() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    });
    Ok(resp)
}
