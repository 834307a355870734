//! Image names as Docker parses them: `name`, `name:tag`, `name@sha256:...`,
//! `host:port/path/name:tag`, with Docker Hub's `docker.io` and `library/` defaults.
//!
//! Written by hand rather than through oci-spec's `Reference::from_str`: that parser compiles a
//! regular expression whose `\w` is Unicode, 30–60 ms of CPU in every process that parses a name
//! (most of a no-op rebuild), and it lets a tag hold non-ASCII letters, which Docker's grammar
//! (Go's ASCII `\w`) refuses. The grammar below is distribution's `reference` grammar; the tests
//! check it against oci-spec's parser on the inputs where both follow that grammar.

use std::fmt;

/// The longest repository path (after `library/` is added), as Docker allows.
const REPOSITORY_MAX: usize = 255;

/// A parsed image name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageName {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl ImageName {
    /// Parses `text` with Docker's grammar. A name with neither tag nor digest gets `latest`.
    /// The error is the reason, in Docker's words.
    pub fn parse(text: &str) -> Result<ImageName, &'static str> {
        if text.is_empty() {
            return Err("repository name must have at least one component");
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
            None => (text, None),
        };
        // A tag follows the last ':' that has no '/' after it (`host:5000/app` has no tag).
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
            _ => (rest, None),
        };
        if let Some(tag) = tag {
            if !is_tag(tag) {
                return Err("invalid reference format");
            }
        }
        let named = is_remote_name(name) || name.split_once('/').is_some_and(|(domain, path)| is_domain(domain) && is_remote_name(path));
        if !named {
            return Err("invalid reference format");
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > REPOSITORY_MAX {
            return Err("repository name must not be more than 255 characters");
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (tag, _) => tag.map(str::to_string),
        };
        Ok(ImageName { registry, repository, tag, digest: digest.map(str::to_string) })
    }

    /// Builds a name from parts already known to be valid (a registry, repository and tag).
    pub fn with_tag(registry: &str, repository: &str, tag: &str) -> ImageName {
        ImageName { registry: registry.into(), repository: repository.into(), tag: Some(tag.into()), digest: None }
    }

    /// The registry host (with port), `docker.io` for Docker Hub.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
}

/// The full form: `docker.io/library/busybox:latest`.
impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `algorithm:hex`, with the lengths of the algorithms Docker knows.
fn check_digest(digest: &str) -> Result<&str, &'static str> {
    let (algorithm, hex) = digest.split_once(':').ok_or("invalid reference format")?;
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|c| c.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) && c.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("invalid reference format");
    }
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm"),
    };
    if hex.len() != want {
        return Err("invalid checksum digest length");
    }
    Ok(digest)
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128 && tag.bytes().next().is_some_and(word) && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `host[:port]`, the host being dot-separated components of letters, digits and inner dashes.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    let component = |c: &str| !c.is_empty() && !c.starts_with('-') && !c.ends_with('-') && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    host.split('.').all(component) && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Path components separated by `/`: runs of `[a-z0-9]` joined by `.`, `_`, `__` or dashes.
fn is_remote_name(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        match bytes[i] {
            b'.' => i += 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => i += 2,
            b'_' => i += 1,
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Docker's normalization: a first component without `.` or `:` (and not `localhost`) is part
/// of a Docker Hub path, and a one-component Hub path is an official image under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut path) = match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => (first.to_string(), rest.to_string()),
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !path.contains('/') {
        path = format!("library/{path}");
    }
    (domain, path)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    /// The inputs where oci-spec's parser follows Docker's grammar: both parsers must agree on
    /// every part, or both refuse.
    #[test]
    fn agrees_with_oci_spec() {
        let hex64 = "f".repeat(64);
        let long = "a".repeat(250);
        let inputs = [
            "busybox".to_string(),
            "busybox:1.36".into(),
            "user/app:v1".into(),
            "127.0.0.1:5000/app:1".into(),
            "localhost:5000/a/b/c".into(),
            "localhost/x".into(),
            "test.com:tag".into(),
            "test.com:5000".into(),
            "test:5000/repo".into(),
            format!("test:5000/repo@sha256:{hex64}"),
            format!("test:5000/repo:tag@sha256:{hex64}"),
            format!("name@sha512:{}", "0".repeat(128)),
            format!("name@sha256:{}", "0".repeat(40)),
            format!("name@md5:{}", "0".repeat(32)),
            "name@sha256:short".into(),
            "lowercase:Uppercase".into(),
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            "foo_bar.com:8080".into(),
            "foo/foo_bar.com:8080".into(),
            "a__b/c---d/e.f_g".into(),
            "a___b".into(),
            "a_.b".into(),
            "a..b".into(),
            "index.docker.io/busybox".into(),
            "docker.io/library/busybox:latest".into(),
            "Uppercase:tag".into(),
            "test:5000/Uppercase/lowercase:tag".into(),
            "aa/asdf$$^/aa".into(),
            "a:b:c:d".into(),
            "-leading/dash".into(),
            "trailing/".into(),
            "/leading".into(),
            "a//b".into(),
            "host-:5000/a".into(),
            "host:/a".into(),
            "a:".into(),
            ":tag".into(),
            "a:-tag".into(),
            "a:.tag".into(),
            format!("a:{}", "t".repeat(128)),
            format!("a:{}", "t".repeat(129)),
            format!("x/{long}"),
            format!("{long}xxxxxx"),
            "a@b@c".into(),
        ];
        for input in &inputs {
            let ours = ImageName::parse(input).map(|n| (n.registry().to_string(), n.repository().to_string(), n.tag().map(str::to_string), n.digest().map(str::to_string)));
            let theirs = oci_spec::distribution::Reference::from_str(input).map(|r| (r.registry().to_string(), r.repository().to_string(), r.tag().map(str::to_string), r.digest().map(str::to_string)));
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{input}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{input}: ours {ours:?}, oci-spec {theirs:?}"),
            }
        }
    }

    #[test]
    fn tags_are_ascii_as_in_docker() {
        assert!(ImageName::parse("app:café").is_err());
        assert_eq!(ImageName::parse("busybox").unwrap().to_string(), "docker.io/library/busybox:latest");
        assert_eq!(ImageName::parse(&format!("h:1/a:t@sha256:{}", "a".repeat(64))).unwrap().to_string(), format!("h:1/a:t@sha256:{}", "a".repeat(64)));
    }
}
