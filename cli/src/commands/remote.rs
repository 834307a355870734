//! forge's CLI as a thin client of a `forge serve` (`forge -H unix:///run/forge.sock ...`, or
//! `FORGE_HOST`): `ps`, `images` and `version` ask the server, over the Docker Engine API, and
//! print what the local commands print. Everything else runs on the local store only, so it
//! refuses to run with `-H` rather than act on a store the user did not mean.
//!
//! Plain HTTP/1.1 on a unix socket or a loopback TCP address (hyper's client connection, one
//! request each); TLS client certificates are not supported yet.

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Where a `forge serve` listens, as `-H` names it.
#[derive(Debug, Clone)]
pub enum Client {
    /// `unix:///path`.
    Unix(std::path::PathBuf),
    /// `tcp://host:port`.
    Tcp(String),
}

impl Client {
    /// The server `host` names (`unix:///path` or `tcp://host:port`).
    pub fn new(host: &str) -> anyhow::Result<Client> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Ok(Client::Unix(path.into()));
        }
        if let Some(addr) = host.strip_prefix("tcp://") {
            return Ok(Client::Tcp(addr.trim_end_matches('/').to_string()));
        }
        bail!("invalid -H {host:?}: use unix:///path/to/socket or tcp://host:port")
    }

    fn name(&self) -> String {
        match self {
            Client::Unix(path) => format!("unix://{}", path.display()),
            Client::Tcp(addr) => format!("tcp://{addr}"),
        }
    }

    /// `GET path` (under the API version forge speaks); the JSON answer, or the server's
    /// error message.
    pub fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the client's runtime")?;
        let (status, body) = rt.block_on(self.request(path)).with_context(|| format!("asking the server at {}", self.name()))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["message"].as_str().map(str::to_string));
            bail!("the server at {} answered {status}: {}", self.name(), message.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()));
        }
        serde_json::from_slice(&body).with_context(|| format!("the server at {} answered GET {path} with something that is not JSON", self.name()))
    }

    async fn request(&self, path: &str) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
        let req = hyper::Request::get(format!("/v{}{path}", forge_api::API_VERSION)).header("Host", "forge").body(Empty::<Bytes>::new())?;
        let resp = match self {
            Client::Unix(socket) => send(tokio::net::UnixStream::connect(socket).await.with_context(|| format!("connecting to {}", socket.display()))?, req).await?,
            Client::Tcp(addr) => send(tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?, req).await?,
        };
        let status = resp.status();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }
}

async fn send<S>(stream: S, req: hyper::Request<Empty<Bytes>>) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender.send_request(req).await?)
}

/// `forge version`: this binary's version and, with `-H`, the server's.
pub fn version(host: Option<&str>) -> anyhow::Result<()> {
    use crate::stdout::outln;
    outln!("Client: forge {}", env!("CARGO_PKG_VERSION"))?;
    let Some(host) = host else { return Ok(()) };
    let v = Client::new(host)?.get("/version")?;
    let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    outln!("Server: {} {} (API {}, oldest {}), {}/{}", v["Platform"]["Name"].as_str().unwrap_or("?"), text("Version"), text("ApiVersion"), text("MinAPIVersion"), text("Os"), text("Arch"))
}
