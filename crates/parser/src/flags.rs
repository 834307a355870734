//! Instruction flags as typed values: `--mount=type=cache,target=/x`, `--network=none`,
//! durations for HEALTHCHECK, booleans, and which flags each instruction accepts.

use std::time::Duration;

/// A raw `--name[=value]` flag split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFlag {
    pub name: String,
    pub value: Option<String>,
}

/// Splits `--name=value` words; duplicates of single-valued flags are errors.
pub(crate) fn split_flags(flags: &[String], allowed: &[&str], repeatable: &[&str]) -> Result<Vec<RawFlag>, String> {
    let mut out: Vec<RawFlag> = Vec::new();
    for flag in flags {
        let body = flag.strip_prefix("--").unwrap_or(flag);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if !allowed.contains(&name.as_str()) {
            return Err(format!("unknown flag: --{name}"));
        }
        if !repeatable.contains(&name.as_str()) && out.iter().any(|f| f.name == name) {
            return Err(format!("Duplicate flag specified: --{name}"));
        }
        out.push(RawFlag { name, value });
    }
    Ok(out)
}

/// A flag that takes a value must have one.
pub(crate) fn string_value(flag: &RawFlag) -> Result<String, String> {
    flag.value.clone().ok_or_else(|| format!("missing a value on flag: --{}", flag.name))
}

/// `--link`, `--link=true`, `--link=false`.
pub(crate) fn bool_value(flag: &RawFlag) -> Result<bool, String> {
    match flag.value.as_deref() {
        None => Ok(true),
        Some(v) => parse_bool(v).ok_or_else(|| format!("expecting boolean value for flag --{}, not: {v}", flag.name)),
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units (`1m30s`, `1.5h`,
/// `100ms`); `0` alone is allowed; negative durations are rejected since no flag takes one.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let invalid = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return Err(invalid());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {s:?}")),
            other => return Err(format!("time: unknown unit {other:?} in duration {s:?}")),
        };
        total += value * nanos;
        rest = next;
    }
    if total > u64::MAX as f64 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as u64))
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    /// A read-only (by default) view of the context or of another stage or image.
    Bind,
    /// A persistent cache directory shared across builds.
    Cache,
    /// A fresh tmpfs.
    Tmpfs,
    /// A secret file, never stored in a layer.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Many writers at once.
    Shared,
    /// Each writer gets its own copy when the cache is busy.
    Private,
    /// One writer at a time; others wait.
    Locked,
}

/// A parsed `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `type=`.
    pub kind: MountKind,
    /// `target=` / `dst=` / `destination=`: where it appears in the container.
    pub target: Option<String>,
    /// `source=` / `src=`: the path in the context, stage or image.
    pub source: Option<String>,
    /// `from=`: a stage name, index or image to take the source from.
    pub from: Option<String>,
    /// `readonly` / `ro` (default true for bind, false for cache).
    pub readonly: bool,
    /// `id=`: the cache or secret id.
    pub id: Option<String>,
    /// `sharing=` for caches.
    pub sharing: Sharing,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` for tmpfs, in bytes.
    pub size: Option<u64>,
    /// `required=` for secrets and ssh.
    pub required: bool,
    /// `env=` for secrets: expose as an environment variable instead of a file.
    pub env: Option<String>,
}

/// Parses the value of one `--mount` flag (CSV of `key=value`).
pub fn parse_mount(value: &str) -> Result<Mount, String> {
    let mut fields = Vec::new();
    for field in value.split(',') {
        let field = field.trim();
        if field.is_empty() {
            continue;
        }
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
            None => (field.to_ascii_lowercase(), None),
        };
        fields.push((k, v));
    }
    let kind = match fields.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_deref().unwrap_or("")) {
        None | Some("bind") => MountKind::Bind,
        Some("cache") => MountKind::Cache,
        Some("tmpfs") => MountKind::Tmpfs,
        Some("secret") => MountKind::Secret,
        Some("ssh") => MountKind::Ssh,
        Some(other) => return Err(format!("unsupported mount type {other:?}")),
    };
    let mut m = Mount {
        kind,
        target: None,
        source: None,
        from: None,
        readonly: kind == MountKind::Bind,
        id: None,
        sharing: Sharing::Shared,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
    };
    let need = |k: &str, v: &Option<String>| v.clone().ok_or_else(|| format!("invalid field '{k}' must be a key=value pair"));
    for (k, v) in &fields {
        match k.as_str() {
            "type" => {}
            "target" | "dst" | "destination" => m.target = Some(need(k, v)?),
            "source" | "src" => m.source = Some(need(k, v)?),
            "from" => m.from = Some(need(k, v)?),
            "id" => m.id = Some(need(k, v)?),
            "env" => m.env = Some(need(k, v)?),
            "readonly" | "ro" => {
                m.readonly = match v {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| format!("invalid value for {k}: {v}"))?,
                }
            }
            "readwrite" | "rw" => {
                m.readonly = match v {
                    None => false,
                    Some(v) => !parse_bool(v).ok_or_else(|| format!("invalid value for {k}: {v}"))?,
                }
            }
            "required" => {
                m.required = match v {
                    None => true,
                    Some(v) => parse_bool(v).ok_or_else(|| format!("invalid value for {k}: {v}"))?,
                }
            }
            "sharing" => {
                m.sharing = match need(k, v)?.as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    other => return Err(format!("unsupported sharing value {other:?}")),
                }
            }
            "mode" => {
                let v = need(k, v)?;
                m.mode = Some(u32::from_str_radix(&v, 8).map_err(|_| format!("invalid mode {v:?}: must be octal"))?);
            }
            "uid" | "gid" => {
                let v = need(k, v)?;
                let n = v.parse().map_err(|_| format!("invalid {k} {v:?}: must be a number"))?;
                if k == "uid" {
                    m.uid = Some(n)
                } else {
                    m.gid = Some(n)
                }
            }
            "size" => {
                let v = need(k, v)?;
                m.size = Some(parse_size(&v).ok_or_else(|| format!("invalid size {v:?}"))?);
            }
            other => return Err(format!("unexpected key '{other}' in '{value}'")),
        }
    }
    // BuildKit lets a bind mount omit its target (it then mounts at the source path), as real
    // Dockerfiles rely on; a cache or tmpfs has nowhere to go without one.
    if matches!(m.kind, MountKind::Cache | MountKind::Tmpfs) && m.target.is_none() {
        return Err(format!("mount type {:?} requires a target (in '{value}')", format!("{:?}", m.kind).to_lowercase()));
    }
    if m.kind == MountKind::Secret && m.target.is_none() && m.id.is_none() && m.env.is_none() {
        return Err(format!("secret mount needs an id, a target or an env (in '{value}')"));
    }
    Ok(m)
}

/// `64m`, `1g`, `512k`, `100` (bytes), as docker's units parse them (binary multiples).
fn parse_size(s: &str) -> Option<u64> {
    let lower = s.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.chars().last()? {
        'k' => (&trimmed[..trimmed.len() - 1], 1u64 << 10),
        'm' => (&trimmed[..trimmed.len() - 1], 1 << 20),
        'g' => (&trimmed[..trimmed.len() - 1], 1 << 30),
        't' => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: f64 = num.parse().ok()?;
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// `RUN --network=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// The builder's default network.
    Default,
    /// No network but loopback.
    None,
    /// The host's network.
    Host,
}

/// A network mode forge does not know (`RUN --network=`, `forge build --network`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported network mode {0:?}: forge knows default, none and host")]
pub struct UnknownNetworkMode(pub String);

impl std::str::FromStr for NetworkMode {
    type Err = UnknownNetworkMode;

    fn from_str(v: &str) -> Result<NetworkMode, UnknownNetworkMode> {
        match v {
            "default" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            other => Err(UnknownNetworkMode(other.to_string())),
        }
    }
}

/// `RUN --security=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// The usual sandbox.
    Sandbox,
    /// All capabilities (needs the builder to allow it).
    Insecure,
}

pub(crate) fn parse_security(v: &str) -> Result<Security, String> {
    match v {
        "sandbox" => Ok(Security::Sandbox),
        "insecure" => Ok(Security::Insecure),
        other => Err(format!("unsupported security mode {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5").unwrap_err().contains("missing unit"));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,id=pip,sharing=locked").unwrap();
        assert_eq!((m.kind, m.target.as_deref(), m.sharing, m.readonly), (MountKind::Cache, Some("/root/.cache"), Sharing::Locked, false));
        let m = parse_mount("target=/src,from=build,rw").unwrap();
        assert_eq!((m.kind, m.from.as_deref(), m.readonly), (MountKind::Bind, Some("build"), false));
        assert!(parse_mount("type=nfs,target=/x").unwrap_err().contains("unsupported mount type"));
        assert!(parse_mount("type=cache").unwrap_err().contains("requires a target"));
        assert!(parse_mount("type=tmpfs,target=/t,bogus=1").unwrap_err().contains("unexpected key"));
        assert_eq!(parse_mount("type=tmpfs,target=/t,size=64m").unwrap().size, Some(64 << 20));
        assert_eq!(parse_mount("type=secret,id=tok").unwrap().id.as_deref(), Some("tok"));
    }
}
