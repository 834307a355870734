//! Authentication: credentials from docker's config, `WWW-Authenticate` challenges, and the
//! bearer tokens a token server issues per repository scope (cached until they expire).

pub(crate) mod challenge;
pub mod docker_config;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use docker_config::Credentials;

/// What to send in `Authorization` for one (host, scope).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn get(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap();
        let (value, expires) = tokens.get(&(host.to_string(), scope.to_string()))?;
        (Instant::now() < *expires).then(|| value.clone())
    }

    pub(crate) fn put(&self, host: &str, scope: &str, header: String, lifetime: Duration) {
        // Refresh a little early so a token never expires mid-request.
        let expires = Instant::now() + lifetime.saturating_sub(Duration::from_secs(10));
        self.tokens.lock().unwrap().insert((host.to_string(), scope.to_string()), (header, expires));
    }

    pub(crate) fn forget(&self, host: &str, scope: &str) {
        self.tokens.lock().unwrap().remove(&(host.to_string(), scope.to_string()));
    }
}
