//! Image references as Docker parses them (`name`, `name:tag`, `name@sha256:...`,
//! `host:port/path/name:tag`, with the `docker.io` and `library/` defaults, by the layer store's
//! grammar), plus the rule for which hosts may be spoken to over plain HTTP.

use std::fmt;
use std::str::FromStr;

use forge_layerstore::reference::ImageName;

use crate::Error;

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    inner: ImageName,
}

impl Reference {
    /// Parses `text` with Docker's rules.
    pub fn parse(text: &str) -> Result<Reference, Error> {
        let invalid = |message: String| Error::Reference { input: text.chars().take(200).collect(), message };
        // The store's check, so that a name pulled or pushed is one that can be tagged.
        let inner = forge_layerstore::store::check_name(text).map_err(|e| match e {
            forge_layerstore::store::Error::InvalidName { reason, .. } => invalid(reason),
            other => invalid(other.to_string()),
        })?;
        Ok(Reference { inner })
    }

    /// The registry host (with port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    /// The host to connect to (`index.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        match self.registry() {
            "docker.io" => "index.docker.io",
            registry => registry,
        }
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    /// The tag, if any (a reference with neither tag nor digest means `latest`).
    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.inner.digest()
    }

    /// What to ask the registry's manifest endpoint for: the digest, else the tag, else `latest`.
    pub fn manifest_ref(&self) -> &str {
        self.digest().or(self.tag()).unwrap_or("latest")
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Reference {
        Reference { inner: ImageName::with_tag(self.registry(), self.repository(), tag) }
    }

    /// Whether this registry is spoken to over plain HTTP without being told: `localhost` and
    /// 127.0.0.0/8 (and `::1`), as docker allows.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(self.api_host())
    }
}

/// Whether `host` (with optional port) is a loopback host.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl FromStr for Reference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Reference, Error> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_rules() {
        let cases = [
            ("busybox", "docker.io", "library/busybox", Some("latest"), None),
            ("busybox:1.36", "docker.io", "library/busybox", Some("1.36"), None),
            ("user/app:v1", "docker.io", "user/app", Some("v1"), None),
            ("127.0.0.1:5000/app:1", "127.0.0.1:5000", "app", Some("1"), None),
            ("localhost:5000/a/b/c", "localhost:5000", "a/b/c", Some("latest"), None),
            ("ghcr.io/org/img@sha256:0123456789012345678901234567890123456789012345678901234567890123", "ghcr.io", "org/img", None, Some("sha256:0123456789012345678901234567890123456789012345678901234567890123")),
        ];
        for (text, registry, repo, tag, digest) in cases {
            let r = Reference::parse(text).unwrap();
            assert_eq!((r.registry(), r.repository(), r.tag(), r.digest()), (registry, repo, tag, digest), "{text}");
        }
        assert_eq!(Reference::parse("busybox").unwrap().api_host(), "index.docker.io");
        for bad in ["", "UPPER/case", "a:b:c:d", "name@sha256:short", "-leading/dash", "trailing/"] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid reference"), "{bad}: {err}");
        }
        assert!(Reference::parse("127.0.0.1:5000/x").unwrap().is_loopback());
        assert!(Reference::parse("localhost/x").unwrap().is_loopback());
        assert!(!Reference::parse("registry.example/x").unwrap().is_loopback());
    }
}
