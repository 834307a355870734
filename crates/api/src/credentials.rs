//! Registry credentials a client sends with a request: `X-Registry-Auth` (one registry's, for
//! a pull or a push) and `X-Registry-Config` (every registry's, for a build's base images),
//! both base64url JSON. They are used for that request only and never kept.

use std::collections::BTreeMap;

use base64::Engine;
use forge_registry::{Client, Credentials};
use hyper::body::Incoming;
use hyper::Request;

use crate::error::ApiError;
use crate::server::Api;

/// One registry's credentials as docker's clients encode them (identity tokens aside).
#[derive(serde::Deserialize, Default)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// A registry client for one request; the scratch config holding its credentials lives as
/// long as it does. Used through `Deref`, so that a task that uses the client captures the
/// whole value, scratch directory included, never the client field alone.
pub(crate) struct RequestClient {
    client: Client,
    _scratch: Option<tempfile::TempDir>,
}

impl std::ops::Deref for RequestClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

fn decode<T: serde::de::DeserializeOwned + Default>(req: &Request<Incoming>, header: &str) -> Result<T, ApiError> {
    let Some(value) = req.headers().get(header).map(|v| v.as_bytes()).filter(|v| !v.is_empty()) else { return Ok(T::default()) };
    let trimmed: Vec<u8> = value.iter().copied().filter(|b| *b != b'=').collect();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&trimmed))
        .map_err(|e| ApiError::bad_request(format!("invalid {header} header: not base64: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("invalid {header} header: {e}")))
}

/// The client for a pull or push from/to `registry`.
pub(crate) fn for_registry(api: &Api, req: &Request<Incoming>, registry: &str) -> Result<RequestClient, ApiError> {
    let auth: AuthConfig = decode(req, "X-Registry-Auth")?;
    with(api, [(registry.to_string(), auth)].into_iter().collect())
}

/// The client for a build's base images.
pub(crate) fn for_build(api: &Api, req: &Request<Incoming>) -> Result<RequestClient, ApiError> {
    let all: BTreeMap<String, AuthConfig> = decode(req, "X-Registry-Config")?;
    with(api, all.into_iter().map(|(address, auth)| (registry_host(&address), auth)).collect())
}

fn with(api: &Api, auths: BTreeMap<String, AuthConfig>) -> Result<RequestClient, ApiError> {
    let mut config = api.registry.clone();
    let auths: Vec<_> = auths.into_iter().filter(|(_, a)| !a.username.is_empty() || !a.password.is_empty()).collect();
    if auths.is_empty() {
        return Ok(RequestClient { client: Client::new(config), _scratch: None });
    }
    // The registry client reads credentials from a docker config file: one that holds only
    // these, private to this request and removed after it.
    let dir = tempfile::tempdir().map_err(|e| ApiError::internal(format!("a directory for the request's credentials: {e}")))?;
    let path = dir.path().join("config.json");
    for (registry, auth) in auths {
        let creds = Credentials { username: auth.username, password: auth.password };
        forge_registry::auth::docker_config::store(&path, &registry, &creds).map_err(ApiError::internal)?;
    }
    config.docker_config = Some(path);
    Ok(RequestClient { client: Client::new(config), _scratch: Some(dir) })
}

/// `https://host:5000/v1/` (as clients send a server address) to `host:5000`; empty or Docker
/// Hub's address to `docker.io`.
pub(crate) fn registry_host(address: &str) -> String {
    let host = address.trim_start_matches("https://").trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or("");
    match host {
        "" | "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        h => h.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_addresses_become_registry_hosts() {
        assert_eq!(super::registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(super::registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(super::registry_host("https://reg.example:443/"), "reg.example:443");
        assert_eq!(super::registry_host(""), "docker.io");
    }
}
