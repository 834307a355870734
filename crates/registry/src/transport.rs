//! HTTP to a registry: the scheme (plain HTTP only for loopback or `insecure`), TLS with extra
//! CA files per host, authentication on demand (a 401 challenge gets answered once), and
//! retries with backoff on connection errors, 429 and 5xx, honouring `Retry-After`.
//!
//! Written on reqwest rather than oci-client because oci-client buffers whole layers for
//! push and pull, retries nothing and cannot resume or accept a 202 mount fallback.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use crate::auth::{challenge, docker_config, TokenCache};
use crate::reference::is_loopback_host;
use crate::{ClientConfig, Error};

/// Where a request goes, for auth scope and error messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The host to connect to.
    pub(crate) host: &'a str,
    /// The registry name credentials are stored under.
    pub(crate) registry: &'a str,
    /// The repository.
    pub(crate) repository: &'a str,
    /// Whether push access is needed.
    pub(crate) push: bool,
}

impl Target<'_> {
    fn scope(&self) -> String {
        let actions = if self.push { "pull,push" } else { "pull" };
        format!("repository:{}:{actions}", self.repository)
    }
}

/// Shared HTTP state of a [`crate::Client`].
#[derive(Debug)]
pub(crate) struct Transport {
    pub(crate) config: ClientConfig,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    /// The base URL found for each host (insecure hosts are probed once).
    bases: Mutex<HashMap<String, String>>,
    /// Hosts whose base came from the schemes file and has not answered yet: a failure there
    /// may mean the registry changed scheme, so it is probed again at once.
    unconfirmed: Mutex<HashSet<String>>,
    tokens: TokenCache,
}

impl Transport {
    pub(crate) fn new(config: ClientConfig) -> Transport {
        Transport { config, clients: Mutex::new(HashMap::new()), bases: Mutex::new(HashMap::new()), unconfirmed: Mutex::new(HashSet::new()), tokens: TokenCache::default() }
    }

    /// Whether `host` is an insecure registry in docker's sense: loopback, or any with
    /// `insecure`. Those get HTTPS without certificate checks when they speak it, else HTTP.
    fn insecure(&self, host: &str) -> bool {
        self.config.insecure || is_loopback_host(host)
    }

    /// `https://host`, or for an insecure registry whichever of HTTPS and HTTP it answers,
    /// HTTPS first (as docker does), found once per host.
    pub(crate) async fn base_url(&self, host: &str) -> Result<String, Error> {
        if !self.insecure(host) {
            return Ok(format!("https://{host}"));
        }
        if let Some(b) = self.bases.lock().unwrap().get(host) {
            return Ok(b.clone());
        }
        if let Some(scheme) = self.config.schemes.as_deref().and_then(|f| read_schemes(f).remove(host)) {
            let base = format!("{scheme}://{host}");
            self.bases.lock().unwrap().insert(host.to_string(), base.clone());
            self.unconfirmed.lock().unwrap().insert(host.to_string());
            return Ok(base);
        }
        let client = self.client(host)?;
        let https = format!("https://{host}");
        let probe = tokio::time::timeout(Duration::from_secs(10), client.get(format!("{https}/v2/")).send()).await;
        let base = match probe {
            Ok(Ok(_)) => https,
            _ => format!("http://{host}"),
        };
        self.bases.lock().unwrap().insert(host.to_string(), base.clone());
        self.remember_scheme(host, base.split_once("://").map(|(s, _)| s));
        Ok(base)
    }

    /// Records `scheme` for `host` in the schemes file (or drops the entry when `None`).
    /// Written to a temporary file and renamed, so a reader sees the old or the new file, never
    /// half of one; not fsynced, since losing it only costs one probe.
    fn remember_scheme(&self, host: &str, scheme: Option<&str>) {
        let Some(file) = self.config.schemes.as_deref() else { return };
        let mut all = read_schemes(file);
        let changed = match scheme {
            Some(s) => all.insert(host.to_string(), s.to_string()).as_deref() != Some(s),
            None => all.remove(host).is_some(),
        };
        if !changed {
            return;
        }
        let text: String = all.iter().map(|(h, s)| format!("{h} {s}\n")).collect();
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, file)) {
            let _ = std::fs::remove_file(&tmp);
            tracing::warn!(file = %file.display(), error = %e, "cannot record registry schemes");
        }
    }

    /// The client for `host`, trusting `<certs_dir>/<host>/*.crt` besides the system roots.
    fn client(&self, host: &str) -> Result<reqwest::Client, Error> {
        if let Some(c) = self.clients.lock().unwrap().get(host) {
            return Ok(c.clone());
        }
        // reqwest is built without a TLS provider of its own (see the workspace's Cargo.toml);
        // an error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .danger_accept_invalid_certs(self.insecure(host));
        let dir: PathBuf = self.config.certs_dir.join(host);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "crt") {
                    let pem = std::fs::read(&path).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
                    let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
                    builder = builder.add_root_certificate(cert);
                }
            }
        }
        let client = builder.build().map_err(|e| Error::Connection { url: host.to_string(), message: e.to_string() })?;
        self.clients.lock().unwrap().insert(host.to_string(), client.clone());
        Ok(client)
    }

    /// Sends a request built by `build` (called again for every attempt, so bodies can be
    /// re-created), authenticating when challenged and retrying transient failures. Returns
    /// the first response that is neither a challenge nor transient; the caller checks its status.
    pub(crate) async fn send(&self, target: Target<'_>, method: Method, url: &str, build: impl Fn(RequestBuilder) -> RequestBuilder) -> Result<Response, Error> {
        let client = self.client(target.host)?;
        let scope = target.scope();
        let mut attempt = 0u32;
        let mut challenged = false;
        let mut url = url.to_string();
        loop {
            let mut req = client.request(method.clone(), &url);
            if let Some(auth) = self.tokens.get(target.host, &scope) {
                req = req.header(AUTHORIZATION, auth);
            }
            let result = build(req).send().await;
            // Plain HTTP to a TLS port is answered (Go's servers send a 400), not refused.
            let wrong_scheme = match &result {
                Ok(resp) => resp.status() == StatusCode::BAD_REQUEST && url.starts_with("http://"),
                Err(e) => !e.is_builder(),
            };
            if self.unconfirmed.lock().unwrap().remove(target.host) && wrong_scheme {
                if let Some(fresh) = self.reprobe(target.host, &url).await? {
                    url = fresh;
                    continue;
                }
            }
            let wait = match result {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED && !challenged => {
                    challenged = true;
                    self.tokens.forget(target.host, &scope);
                    self.authenticate(target, &resp).await?;
                    continue;
                }
                Ok(resp) if resp.status() == StatusCode::TOO_MANY_REQUESTS || resp.status().is_server_error() => {
                    if attempt >= self.config.max_retries {
                        return Ok(resp);
                    }
                    retry_after(&resp).unwrap_or_else(|| backoff(attempt))
                }
                Ok(resp) => return Ok(resp),
                Err(e) => {
                    // The remembered scheme may be stale (the registry moved to HTTPS or back):
                    // any failure to talk to it, not only a refused connection (plain HTTP to a
                    // TLS port fails after connecting), makes the next process probe again.
                    if !e.is_builder() && self.bases.lock().unwrap().remove(target.host).is_some() {
                        self.remember_scheme(target.host, None);
                    }
                    if attempt >= self.config.max_retries || e.is_builder() {
                        return Err(Error::Connection { url, message: error_chain(&e) });
                    }
                    backoff(attempt)
                }
            };
            attempt += 1;
            tracing::debug!(url, attempt, ?wait, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a request whose body can be sent only once (a stream), as the requests before
    /// it were authenticated, in one attempt: the caller has another way to fail over to.
    pub(crate) async fn send_once(&self, target: Target<'_>, method: Method, url: &str, build: impl FnOnce(RequestBuilder) -> RequestBuilder) -> Result<Response, Error> {
        let mut req = self.client(target.host)?.request(method, url);
        if let Some(auth) = self.tokens.get(target.host, &target.scope()) {
            req = req.header(AUTHORIZATION, auth);
        }
        build(req).send().await.map_err(|e| Error::Connection { url: url.to_string(), message: error_chain(&e) })
    }

    /// Forgets the remembered scheme of `host`, probes it again and returns `url` on the base
    /// found, or `None` when the probe finds the same base.
    async fn reprobe(&self, host: &str, url: &str) -> Result<Option<String>, Error> {
        let Some(stale) = self.bases.lock().unwrap().remove(host) else { return Ok(None) };
        self.remember_scheme(host, None);
        let fresh = self.base_url(host).await?;
        tracing::debug!(host, stale, fresh, "the remembered scheme failed; probed again");
        Ok(url.strip_prefix(&stale).filter(|_| fresh != stale).map(|rest| format!("{fresh}{rest}")))
    }

    /// Answers a 401 challenge: Basic with stored credentials, or a token from the realm.
    async fn authenticate(&self, target: Target<'_>, resp: &Response) -> Result<(), Error> {
        let fail = |message: String| Error::Auth { registry: target.registry.to_string(), message };
        let header = resp.headers().get(WWW_AUTHENTICATE).and_then(|h| h.to_str().ok()).ok_or_else(|| fail("401 without a WWW-Authenticate challenge".into()))?;
        let ch = challenge::parse(header).ok_or_else(|| fail(format!("unreadable challenge {header:?}")))?;
        let config_path = self.config.docker_config.clone().unwrap_or_else(docker_config::default_path);
        let creds = docker_config::lookup(&config_path, target.registry)?;
        let scope = target.scope();
        match ch.scheme.as_str() {
            "basic" => {
                let c = creds.ok_or_else(|| fail(format!("the registry wants a user name and password: forge login {}", target.registry)))?;
                self.tokens.put(target.host, &scope, basic(&c.username, &c.password), Duration::from_secs(365 * 24 * 3600));
                Ok(())
            }
            "bearer" => {
                let realm = ch.params.get("realm").ok_or_else(|| fail("bearer challenge without a realm".into()))?;
                let mut url = reqwest::Url::parse(realm).map_err(|e| fail(format!("bad realm {realm:?}: {e}")))?;
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(service) = ch.params.get("service") {
                        q.append_pair("service", service);
                    }
                    q.append_pair("scope", &scope);
                }
                let realm_host = url.host_str().unwrap_or(target.host).to_string();
                let client = self.client(&realm_host)?;
                let mut req = client.get(url.clone());
                if let Some(c) = &creds {
                    req = req.header(AUTHORIZATION, basic(&c.username, &c.password));
                }
                let resp = req.send().await.map_err(|e| fail(format!("token server {url}: {}", error_chain(&e))))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    return Err(fail(format!("token server answered {status}: {}", body.chars().take(300).collect::<String>())));
                }
                #[derive(serde::Deserialize)]
                struct TokenAnswer {
                    token: Option<String>,
                    access_token: Option<String>,
                    expires_in: Option<u64>,
                }
                let answer: TokenAnswer = resp.json().await.map_err(|e| fail(format!("token server answer: {e}")))?;
                let token = answer.token.or(answer.access_token).ok_or_else(|| fail("token server sent no token".into()))?;
                let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(60).max(10));
                self.tokens.put(target.host, &scope, format!("Bearer {token}"), lifetime);
                Ok(())
            }
            other => Err(fail(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// Checks a response's status, turning an unexpected one into [`Error::Status`] with the
    /// registry's error body.
    pub(crate) async fn expect(resp: Response, method: &str, ok: &[u16]) -> Result<Response, Error> {
        if ok.contains(&resp.status().as_u16()) {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let body = resp.text().await.unwrap_or_default();
        Err(Error::Status { method: method.to_string(), url, status, body: body.chars().take(500).collect() })
    }
}

/// The schemes file: a line `host scheme` per registry. A line that is not exactly that (a torn
/// or foreign file) is skipped with a warning, so its host is probed again.
fn read_schemes(file: &std::path::Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(file) else { return HashMap::new() };
    parse_schemes(&text, file)
}

fn parse_schemes(text: &str, file: &std::path::Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines() {
        match line.split_once(' ') {
            Some((host, scheme @ ("http" | "https"))) if !host.is_empty() && !host.contains(char::is_whitespace) => {
                out.insert(host.to_string(), scheme.to_string());
            }
            _ => tracing::warn!(file = %file.display(), line, "ignoring a malformed registry scheme entry"),
        }
    }
    if !text.is_empty() && !text.ends_with('\n') {
        // A last line without its newline may be cut short ("http" of "https"): not trusted.
        if let Some(last) = text.lines().last().and_then(|l| l.split_once(' ')) {
            out.remove(last.0);
        }
        tracing::warn!(file = %file.display(), "registry schemes file ends mid-line; its last entry is ignored");
    }
    out
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Exponential backoff: 250 ms, 500 ms, 1 s ... capped at 8 s.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(8))
}

/// `Retry-After` in seconds (capped at 60).
fn retry_after(resp: &Response) -> Option<Duration> {
    let v: &HeaderValue = resp.headers().get(RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// An error with its causes, which reqwest keeps in the source chain.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::parse_schemes;
    use std::path::Path;

    #[test]
    fn schemes_file_keeps_whole_lines_only() {
        let f = Path::new("schemes");
        let all = parse_schemes("127.0.0.1:5000 http\nlocalhost:5001 https\n", f);
        assert_eq!(all.get("127.0.0.1:5000").map(String::as_str), Some("http"));
        assert_eq!(all.get("localhost:5001").map(String::as_str), Some("https"));
        // Torn: "https" cut to "http" with no newline must not be trusted, nor garbage.
        let torn = parse_schemes("127.0.0.1:5000 http\nlocalhost:5001 http", f);
        assert_eq!(torn.len(), 1);
        assert!(!torn.contains_key("localhost:5001"));
        let junk = parse_schemes("\0\0\0\nhost ftp\nhost\n", f);
        assert!(junk.is_empty());
    }
}
