//! `/containers/...`: create, list, inspect, remove, prune here; what is done to a created
//! container (start, stop, logs, ...) in `running.rs`, through `by_id`.


use bollard_stubs::models::{
    ContainerConfig, ContainerCreateBody, ContainerCreateResponse, ContainerInspectResponse, ContainerPruneResponse, ContainerState,
    ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
};
use forge_runtime::{Container, Containers, CreateOptions, Status};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::running;
use crate::server::Api;

fn unix_time(rfc3339: &str) -> i64 {
    humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z'))
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// docker's status line: `Created`, `Up`, `Exited (0)`.
fn status_text(c: &Container) -> String {
    match c.state.status {
        Status::Created => "Created".into(),
        Status::Running if c.state.paused => "Up (Paused)".into(),
        Status::Running => "Up".into(),
        Status::Exited => format!("Exited ({})", c.state.exit_code),
    }
}

/// One row of `docker ps`.
pub(crate) fn summary(c: &Container) -> ContainerSummary {
    ContainerSummary {
        id: Some(c.id().to_string()),
        names: Some(c.config.name.iter().map(|n| format!("/{n}")).collect()),
        image: Some(c.config.image.clone()),
        image_id: Some(c.config.image_digest.clone()),
        command: Some(c.config.args.join(" ")),
        created: Some(unix_time(&c.config.created)),
        ports: Some(Vec::new()),
        labels: Some(c.config.labels.clone().into_iter().collect()),
        state: Some(match c.state.status {
            Status::Created => ContainerSummaryStateEnum::CREATED,
            Status::Running if c.state.paused => ContainerSummaryStateEnum::PAUSED,
            Status::Running => ContainerSummaryStateEnum::RUNNING,
            Status::Exited => ContainerSummaryStateEnum::EXITED,
        }),
        status: Some(status_text(c)),
        ..Default::default()
    }
}

/// `GET /containers/json`.
pub(crate) async fn list(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    // `trunc_cmd`: sent by docker-py, which shortens the answer itself.
    let q = Query::parse(req.uri().query(), &["all", "limit", "size", "filters", "before", "since", "trunc_cmd"])?;
    if q.get("before").is_some_and(|b| !b.is_empty()) || q.get("since").is_some_and(|b| !b.is_empty()) {
        return Err(ApiError::bad_request("the before and since parameters are not supported by forge yet"));
    }
    let filters = q.filters(&["id", "name", "status", "ancestor", "exited", "label", "before", "since", "network", "volume", "health", "isolation", "publish", "expose", "is-task"])?;
    for unsupported in ["before", "since", "network", "volume", "health", "isolation", "publish", "expose", "is-task"] {
        if !filters.values(unsupported).is_empty() {
            return Err(ApiError::bad_request(format!("the {unsupported} filter is not supported by forge yet")));
        }
    }
    let all = q.flag("all");
    let limit = q.number::<i64>("limit")?.filter(|l| *l > 0);
    let store = api.store.clone();
    let mut containers = tokio::task::spawn_blocking(move || Containers::open(&store)?.list()).await??;
    containers.sort_by(|a, b| b.config.created.cmp(&a.config.created));
    let matches = |c: &Container| -> bool {
        let any = |name: &str, f: &dyn Fn(&str) -> bool| filters.values(name).is_empty() || filters.values(name).iter().any(|v| f(v));
        any("id", &|v| c.id().starts_with(v))
            && any("name", &|v| c.config.name.as_deref().is_some_and(|n| n.contains(v)))
            && any("status", &|v| v == c.state.status.to_string())
            && any("ancestor", &|v| c.config.image == v || c.config.image_digest == v)
            && any("exited", &|v| c.state.status == Status::Exited && v.parse() == Ok(c.state.exit_code))
            && filters.values("label").iter().all(|l| crate::query::label_matches(&c.config.labels, l))
    };
    let mut out: Vec<ContainerSummary> = containers
        .iter()
        .filter(|c| all || !filters.values("status").is_empty() || c.state.status == Status::Running)
        .filter(|c| matches(c))
        .map(summary)
        .collect();
    if let Some(limit) = limit {
        out.truncate(limit as usize);
    }
    Ok(http::json(StatusCode::OK, &out))
}

/// What of a create request forge's runtime cannot honour yet: refused, not ignored.
fn refuse_unsupported(body: &ContainerCreateBody) -> Result<(), ApiError> {
    let Some(host) = &body.host_config else { return Ok(()) };
    let nonempty = |v: &Option<Vec<String>>| v.as_ref().is_some_and(|v| !v.is_empty());
    // The runtime has these since the security and volumes work; mapping them here is still to
    // do, and until then a container must not start without the rights it asked for.
    let resources = [
        ("CapAdd", nonempty(&host.cap_add)),
        ("CapDrop", nonempty(&host.cap_drop)),
        ("SecurityOpt", nonempty(&host.security_opt)),
        ("ReadonlyRootfs", host.readonly_rootfs == Some(true)),
        ("Tmpfs", host.tmpfs.as_ref().is_some_and(|t| !t.is_empty())),
        ("VolumesFrom", nonempty(&host.volumes_from)),
        ("Devices", host.devices.as_ref().is_some_and(|d| !d.is_empty())),
        ("Privileged", host.privileged == Some(true)),
    ];
    if let Some((name, _)) = resources.iter().find(|(_, on)| *on) {
        return Err(ApiError::bad_request(format!("HostConfig.{name} is not supported by forge serve yet (forge run takes it)")));
    }
    Ok(())
}

/// The resource limits of a create request, in the sandbox's terms; docker's rules between
/// them are checked by the runtime at create (a 400 from there).
fn limits(host: Option<&bollard_stubs::models::HostConfig>) -> Result<forge_runtime::Limits, ApiError> {
    let Some(host) = host else { return Ok(forge_runtime::Limits::default()) };
    let positive = |name: &str, v: Option<i64>| -> Result<Option<u64>, ApiError> {
        match v {
            None | Some(0) => Ok(None),
            Some(n) if n > 0 => Ok(Some(n as u64)),
            Some(n) => Err(ApiError::bad_request(format!("HostConfig.{name}: {n} is negative"))),
        }
    };
    if host.nano_cpus.is_some_and(|n| n != 0) && host.cpu_quota.is_some_and(|q| q != 0) {
        return Err(ApiError::bad_request("conflicting options: NanoCpus and CpuQuota cannot both be set"));
    }
    let period = positive("CpuPeriod", host.cpu_period)?.unwrap_or(100_000);
    let cpu_quota = match (positive("NanoCpus", host.nano_cpus)?, host.cpu_quota.filter(|q| *q != 0)) {
        // As docker turns --cpus into a quota: per 100 ms.
        (Some(nano), _) => Some(((nano as u128 * 100_000 / 1_000_000_000) as i64, 100_000)),
        (None, Some(quota)) => Some((quota, period)),
        (None, None) => None,
    };
    Ok(forge_runtime::Limits {
        memory: positive("Memory", host.memory)?,
        // -1: unlimited swap, as docker's --memory-swap -1.
        memory_swap: match host.memory_swap {
            Some(-1) => Some(u64::MAX),
            v => positive("MemorySwap", v)?,
        },
        memory_reservation: positive("MemoryReservation", host.memory_reservation)?,
        cpu_shares: positive("CpuShares", host.cpu_shares)?,
        cpu_quota,
        cpuset_cpus: host.cpuset_cpus.clone().filter(|c| !c.is_empty()),
        pids: host.pids_limit.filter(|n| *n > 0).map(|n| n as u64),
        blkio_weight: host.blkio_weight.filter(|w| *w != 0),
        oom_kill_disable: host.oom_kill_disable == Some(true),
    })
}

/// `POST /containers/create?name=`.
pub(crate) async fn create(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["name", "platform"])?;
    let name = q.get("name").filter(|n| !n.is_empty()).map(str::to_string);
    let body: ContainerCreateBody = http::read_json(req.into_body(), "container config").await?;
    refuse_unsupported(&body)?;
    let image = body.image.clone().filter(|i| !i.is_empty()).ok_or_else(|| ApiError::bad_request("config: Image is required"))?;
    // forge's entrypoint is one program (the CLI's `--entrypoint`); the API's is a list, whose
    // remaining words go before the command, which is where docker puts them too.
    let mut cmd = Vec::new();
    let entrypoint = match body.entrypoint.clone() {
        None => None,
        Some(list) if list.is_empty() || list == [""] => Some(String::new()),
        Some(list) => {
            cmd.extend(list[1..].iter().cloned());
            Some(list[0].clone())
        }
    };
    cmd.extend(body.cmd.clone().unwrap_or_default());
    let mut opts = CreateOptions {
        image,
        name,
        cmd,
        entrypoint,
        env: body.env.clone().unwrap_or_default(),
        working_dir: body.working_dir.clone().filter(|w| !w.is_empty()),
        user: body.user.clone().filter(|u| !u.is_empty()),
        hostname: body.hostname.clone().filter(|h| !h.is_empty()),
        auto_remove: body.host_config.as_ref().and_then(|h| h.auto_remove).unwrap_or(false),
        limits: limits(body.host_config.as_ref())?,
        interactive: body.open_stdin.unwrap_or(false),
        stdin_once: body.stdin_once.unwrap_or(false),
        tty: body.tty.unwrap_or(false),
        labels: body.labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect(),
        mounts: crate::volumes::binds(body.host_config.as_ref())?.into_iter().chain(crate::volumes::mounts(body.host_config.as_ref())?).collect(),
        // Security: refused above when asked for.
        ..CreateOptions::default()
    };
    let others = crate::networks::create_options(&body, &mut opts)?;
    let store = api.store.clone();
    let created = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let containers = Containers::open(&store)?;
        let created = containers.create(&opts)?;
        for (network, aliases) in &others {
            // As docker: a create that cannot be done whole is not done.
            if let Err(e) = containers.connect(&created, network, aliases) {
                let _ = containers.remove(&created, true);
                return Err(e.into());
            }
        }
        Ok(created)
    })
    .await??;
    Ok(http::json(StatusCode::CREATED, &ContainerCreateResponse { id: created.id().to_string(), warnings: Vec::new() }))
}

fn inspect_of(c: &Container) -> ContainerInspectResponse {
    let s = &c.state;
    ContainerInspectResponse {
        id: Some(c.id().to_string()),
        created: Some(c.config.created.clone()),
        path: c.config.args.first().cloned(),
        args: Some(c.config.args.iter().skip(1).cloned().collect()),
        state: Some(ContainerState {
            status: Some(match s.status {
                Status::Created => ContainerStateStatusEnum::CREATED,
                Status::Running if s.paused => ContainerStateStatusEnum::PAUSED,
                Status::Running => ContainerStateStatusEnum::RUNNING,
                Status::Exited => ContainerStateStatusEnum::EXITED,
            }),
            running: Some(s.status == Status::Running),
            paused: Some(s.paused),
            restarting: Some(false),
            oom_killed: Some(s.oom_killed),
            dead: Some(false),
            pid: Some(i64::from(s.pid)),
            exit_code: Some(i64::from(s.exit_code)),
            error: Some(s.error.clone()),
            started_at: Some(if s.started_at.is_empty() { "0001-01-01T00:00:00Z".into() } else { s.started_at.clone() }),
            finished_at: Some(if s.finished_at.is_empty() { "0001-01-01T00:00:00Z".into() } else { s.finished_at.clone() }),
            health: None,
        }),
        image: Some(c.config.image_digest.clone()),
        name: Some(format!("/{}", c.config.name.clone().unwrap_or_default())),
        restart_count: Some(0),
        driver: Some("overlay".into()),
        platform: Some("linux".into()),
        config: Some(ContainerConfig {
            hostname: Some(c.config.hostname.clone()),
            user: Some(c.config.user.clone()),
            env: Some(c.config.env.clone()),
            cmd: Some(c.config.args.clone()),
            image: Some(c.config.image.clone()),
            working_dir: Some(c.config.working_dir.clone()),
            tty: Some(c.config.tty),
            open_stdin: Some(c.config.open_stdin),
            stdin_once: Some(c.config.stdin_once),
            labels: Some(c.config.labels.clone().into_iter().collect()),
            ..Default::default()
        }),
        // docker's clients read it (`start -a`, `run`): never left out.
        host_config: Some(bollard_stubs::models::HostConfig {
            auto_remove: Some(c.config.auto_remove),
            // What forge's monitor writes (docker-py reads it to decide whether logs can be read).
            log_config: Some(bollard_stubs::models::HostConfigLogConfig { typ: Some("json-file".into()), config: Some(Default::default()) }),
            network_mode: Some(c.config.network.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `POST /containers/prune`.
pub(crate) async fn prune(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["until", "label"])?;
    if !filters.values("until").is_empty() || !filters.values("label").is_empty() {
        return Err(ApiError::bad_request("the until and label prune filters are not supported by forge yet"));
    }
    let store = api.store.clone();
    let removed = tokio::task::spawn_blocking(move || Containers::open(&store)?.prune()).await??;
    Ok(http::json(StatusCode::OK, &ContainerPruneResponse { containers_deleted: Some(removed), space_reclaimed: Some(0) }))
}

/// `/containers/{id}/{verb}` and `DELETE /containers/{id}`.
pub(crate) async fn by_id(api: &Api, req: Request<Incoming>, method: Method, id: &str, verb: &str) -> Result<Response, ApiError> {
    let store = api.store.clone();
    let id = id.to_string();
    match (method, verb) {
        (Method::GET, "json") => {
            Query::parse(req.uri().query(), &["size"])?;
            let body = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let containers = Containers::open(&store)?;
                let c = containers.get(&id)?;
                let mut body = serde_json::to_value(inspect_of(&c)).map_err(ApiError::internal)?;
                body["NetworkSettings"] = crate::networks::settings_of(&containers, store.root(), &c)?;
                Ok(body)
            })
            .await??;
            Ok(http::json(StatusCode::OK, &body))
        }
        (Method::DELETE, "") => {
            let q = Query::parse(req.uri().query(), &["force", "v", "link"])?;
            if q.flag("link") {
                return Err(ApiError::bad_request("links do not exist in forge"));
            }
            let force = q.flag("force");
            tokio::task::spawn_blocking(move || -> Result<(), forge_runtime::Error> {
                let containers = Containers::open(&store)?;
                let c = containers.get(&id)?;
                containers.remove(&c, force)
            })
            .await??;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        (Method::POST, "start") => running::start(api, req, &id).await,
        (Method::POST, "stop") => running::stop(api, req, &id).await,
        (Method::POST, "restart") => running::restart(api, req, &id).await,
        (Method::POST, "kill") => running::kill(api, req, &id).await,
        (Method::POST, "pause") => running::pause(api, req, &id, true).await,
        (Method::POST, "unpause") => running::pause(api, req, &id, false).await,
        (Method::POST, "wait") => running::wait(api, req, &id).await,
        (Method::POST, "attach") => running::attach(api, req, &id).await,
        (Method::GET, "logs") => running::logs(api, req, &id).await,
        (Method::GET, "top") => running::top(api, req, &id).await,
        (Method::GET, "stats") => running::stats(api, req, &id).await,
        (Method::GET, "changes") => running::changes(api, req, &id).await,
        (Method::GET, "export") => running::export(api, req, &id).await,
        (Method::POST, "exec") => crate::exec::create(api, req, &id).await,
        (Method::POST, "rename") => running::rename(api, req, &id).await,
        (Method::POST, "resize") => crate::exec::resize_container(api, req, &id).await,
        (m @ (Method::GET | Method::PUT | Method::HEAD), "archive") => crate::archive::archive(api, req, m, &id).await,
        (m, v) => Err(ApiError::not_found(format!("page not found: {m} /containers/{{id}}/{v}"))),
    }
}
