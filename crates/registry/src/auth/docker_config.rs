//! Credentials as docker keeps them: `~/.docker/config.json` (or `$DOCKER_CONFIG/config.json`)
//! with `auths.<host>.auth` (base64 `user:password`), and `credHelpers` / `credsStore` naming a
//! `docker-credential-<helper>` program that answers `get` with JSON on stdout.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Map, Value};

use crate::Error;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or identity token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

/// The default config file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".docker/config.json"),
    }
}

/// The keys docker may have used for `host` in `auths`.
fn keys_for(host: &str) -> Vec<String> {
    let mut keys = vec![host.to_string(), format!("https://{host}"), format!("http://{host}")];
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        keys.insert(0, "https://index.docker.io/v1/".into());
    }
    keys
}

fn read(path: &Path) -> Result<Map<String, Value>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(Error::File { path: path.display().to_string(), message: "not a JSON object".into() }),
            Err(e) => Err(Error::File { path: path.display().to_string(), message: e.to_string() }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(Error::File { path: path.display().to_string(), message: e.to_string() }),
    }
}

/// The credentials stored for `host`, if any.
pub fn lookup(path: &Path, host: &str) -> Result<Option<Credentials>, Error> {
    let config = read(path)?;
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.get(host))
        .or_else(|| config.get("credsStore"))
        .and_then(Value::as_str);
    if let Some(helper) = helper {
        return helper_get(helper, host);
    }
    let Some(auths) = config.get("auths").and_then(Value::as_object) else { return Ok(None) };
    for key in keys_for(host) {
        let Some(entry) = auths.get(&key) else { continue };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD.decode(auth).map_err(|e| Error::File { path: path.display().to_string(), message: format!("auths.{key}.auth: {e}") })?;
            let text = String::from_utf8_lossy(&decoded);
            let (u, p) = text.split_once(':').unwrap_or((&text, ""));
            return Ok(Some(Credentials { username: u.to_string(), password: p.to_string() }));
        }
        if let (Some(u), Some(p)) = (entry.get("username").and_then(Value::as_str), entry.get("password").and_then(Value::as_str)) {
            return Ok(Some(Credentials { username: u.into(), password: p.into() }));
        }
    }
    Ok(None)
}

/// Asks `docker-credential-<helper>` for `host`'s credentials.
fn helper_get(helper: &str, host: &str) -> Result<Option<Credentials>, Error> {
    let program = format!("docker-credential-{helper}");
    let fail = |message: String| Error::Auth { registry: host.to_string(), message: format!("{program}: {message}") };
    let mut child = Command::new(&program).arg("get").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(|e| fail(e.to_string()))?;
    child.stdin.take().expect("piped").write_all(host.as_bytes()).map_err(|e| fail(e.to_string()))?;
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // The helpers' agreed wording for "nothing stored".
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(text.trim().to_string()));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("bad answer: {e}")))?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("").to_string();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("").to_string();
    Ok(Some(Credentials { username: user, password: secret }))
}

/// Stores credentials for `host` as `docker login` does (in `auths`), atomically.
pub fn store(path: &Path, host: &str, creds: &Credentials) -> Result<(), Error> {
    let mut config = read(path)?;
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(auths) = auths else { return Err(Error::File { path: path.display().to_string(), message: "auths is not an object".into() }) };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", creds.username, creds.password));
    auths.insert(host.to_string(), serde_json::json!({ "auth": auth }));
    write(path, &config)
}

/// Removes `host`'s credentials; returns whether there were any.
pub fn remove(path: &Path, host: &str) -> Result<bool, Error> {
    let mut config = read(path)?;
    let removed = match config.get_mut("auths").and_then(Value::as_object_mut) {
        // Every spelling of the host goes, not only the first found.
        Some(auths) => keys_for(host).iter().filter(|k| auths.remove(*k).is_some()).count() > 0,
        None => false,
    };
    if removed {
        write(path, &config)?;
    }
    Ok(removed)
}

fn write(path: &Path, config: &Map<String, Value>) -> Result<(), Error> {
    let fail = |e: std::io::Error| Error::File { path: path.display().to_string(), message: e.to_string() };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    let bytes = serde_json::to_vec_pretty(config).map_err(|e| fail(e.into()))?;
    tmp.write_all(&bytes).map_err(fail)?;
    // Like docker: the file holds secrets, so only its owner reads it.
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file().set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_logout_round_trip_keeps_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"psFormat":"table"}"#).unwrap();
        let creds = Credentials { username: "u".into(), password: "p:w".into() };
        store(&path, "127.0.0.1:5000", &creds).unwrap();
        assert_eq!(lookup(&path, "127.0.0.1:5000").unwrap(), Some(creds));
        assert_eq!(lookup(&path, "other:5000").unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("psFormat") && text.contains("dTpwOnc="), "{text}");
        assert!(remove(&path, "127.0.0.1:5000").unwrap());
        assert_eq!(lookup(&path, "127.0.0.1:5000").unwrap(), None);
    }
}
