//! The accept loops and the shutdown: on SIGTERM or SIGINT the sockets close at once, idle
//! connections are closed, requests in flight run to their end (a build or a pull is not cut
//! halfway), then [`serve`] returns. A second signal ends it without waiting.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use forge_layerstore::Store;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::listen::{ListenSpec, Listener};

/// What `forge serve` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store.
    pub root: PathBuf,
    /// Where to listen (`-H`, repeatable).
    pub listen: Vec<ListenSpec>,
    /// The group given access to unix sockets (`--group`).
    pub group: Option<String>,
    /// How images are pulled and pushed (plain HTTP, CA certificates).
    pub registry: forge_registry::ClientConfig,
    /// Mutual TLS on every TCP listener (`--tlsverify`).
    pub tls: Option<crate::TlsFiles>,
    /// How containers started through the API get their monitor (the CLI's own re-execution,
    /// so a container outlives the server).
    pub monitor: forge_runtime::MonitorCommand,
}

/// What every handler shares: nothing but handles on the store and the settings.
pub(crate) struct Api {
    pub(crate) store: Store,
    pub(crate) registry: forge_registry::ClientConfig,
    pub(crate) monitor: forge_runtime::MonitorCommand,
    pub(crate) execs: crate::exec::Execs,
    /// Flips to true when the server stops: endless streams (events) end on it.
    pub(crate) stopping: watch::Receiver<bool>,
}

/// Serves the Engine API on `opts.listen` until SIGTERM or SIGINT, then drains. Must run on a
/// multi-threaded tokio runtime (the handlers run library calls on blocking threads).
pub async fn serve(opts: Options) -> Result<(), Error> {
    for spec in &opts.listen {
        spec.check(opts.tls.is_some())?;
    }
    let tls = opts.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    // Images a build took from a registry cache may have layers still only there.
    let store = Store::open(&opts.root)?.with_fetcher(Arc::new(forge_registry::RemoteFetcher::new(opts.registry.clone())));
    let listeners = opts.listen.iter().map(|spec| Listener::bind(spec, opts.group.as_deref())).collect::<Result<Vec<_>, _>>()?;
    let (stop_tx, stopping) = watch::channel(false);
    let api = Arc::new(Api { store, registry: opts.registry.clone(), monitor: opts.monitor.clone(), execs: Default::default(), stopping: stopping.clone() });

    let mut term = signal(SignalKind::terminate()).map_err(|source| Error::Socket { what: "handling SIGTERM for", addr: "forge serve".into(), source })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| Error::Socket { what: "handling SIGINT for", addr: "forge serve".into(), source })?;

    let addrs: Vec<String> = opts
        .listen
        .iter()
        .map(|l| match (l, &tls) {
            (ListenSpec::Tcp(_), Some(_)) => format!("{l} (mutual TLS)"),
            _ => l.to_string(),
        })
        .collect();
    let access = match &opts.group {
        Some(g) => format!("mode 0660, root:{g}"),
        None => "mode 0660, root:root".to_string(),
    };
    eprintln!(
        "forge serve: Docker Engine API {} (oldest {}) on {} ({access}), store {}",
        crate::API_VERSION,
        crate::MIN_API_VERSION,
        addrs.join(", "),
        opts.root.display()
    );

    let mut accepting = JoinSet::new();
    let connections = TaskTracker::new();
    for listener in listeners {
        accepting.spawn(accept_loop(listener, tls.clone(), api.clone(), stopping.clone(), connections.clone()));
    }

    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let _ = stop_tx.send(true);
    // The accept loops end and drop their listeners (removing the socket files).
    while accepting.join_next().await.is_some() {}
    connections.close();
    eprintln!("forge serve: {name}: no new connections; waiting for {} open connection(s) to finish", connections.len());
    tokio::select! {
        _ = connections.wait() => eprintln!("forge serve: stopped"),
        _ = term.recv() => eprintln!("forge serve: second signal: stopping without waiting"),
        _ = int.recv() => eprintln!("forge serve: second signal: stopping without waiting"),
    }
    Ok(())
}

async fn accept_loop(listener: Listener, tls: Option<TlsAcceptor>, api: Arc<Api>, mut stopping: watch::Receiver<bool>, connections: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            _ = async { let _ = stopping.wait_for(|s| *s).await; } => return,
            a = accept(&listener) => a,
        };
        match accepted {
            Ok(Conn::Unix(s)) => connections.spawn(connection(s, api.clone(), stopping.clone())),
            Ok(Conn::Tcp(s)) => match tls.clone() {
                None => connections.spawn(connection(s, api.clone(), stopping.clone())),
                // The handshake runs in the connection's task: a slow client holds up no one.
                Some(tls) => {
                    let (api, stopping) = (api.clone(), stopping.clone());
                    connections.spawn(async move {
                        let peer = s.peer_addr().map_or_else(|_| "?".to_string(), |a| a.to_string());
                        match tls.accept(s).await {
                            Ok(stream) => connection(stream, api, stopping).await,
                            Err(e) => eprintln!("forge serve: TLS handshake with {peer} refused: {e}"),
                        }
                    })
                }
            },
            // Out of descriptors and the like: the next accept may work; a busy loop must not
            // follow, so wait a little.
            Err(e) => {
                eprintln!("forge serve: accepting a connection: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
    }
}

enum Conn {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Conn> {
    match listener {
        Listener::Unix(l, _) => Ok(Conn::Unix(l.accept().await?.0)),
        Listener::Tcp(l) => Ok(Conn::Tcp(l.accept().await?.0)),
    }
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, api: Arc<Api>, mut stopping: watch::Receiver<bool>) {
    let service = hyper::service::service_fn(move |req| {
        let api = api.clone();
        async move { Ok::<_, Infallible>(crate::router::handle(&api, req).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = async { let _ = stopping.wait_for(|s| *s).await; } => {
            // Ends the connection after the request in flight, if any.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}
