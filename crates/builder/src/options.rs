//! Build options as typed values, parsed once from the text `docker build` takes (`-m 512m`,
//! `--cpus 1.5`, `--secret id=x,src=f`, `--security-opt seccomp=unconfined`, `--network none`,
//! `--build-arg K=V`, `--label K=V`, `SOURCE_DATE_EPOCH`).
//! A front end maps its strings through these `FromStr` impls and hands the values on; nothing
//! later parses them again.

use std::path::PathBuf;
use std::str::FromStr;

use crate::{Seccomp, Secret};

/// Why an option's text cannot be used. The messages name the flag as `docker build` spells it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    /// A byte size that is not a number with an optional `k`/`m`/`g` unit.
    #[error("invalid size {0:?} (use e.g. 512m or 2g)")]
    Size(String),
    /// A negative byte size.
    #[error("invalid size {0:?}: negative")]
    NegativeSize(String),
    /// `--cpus` that is not a positive number.
    #[error("--cpus must be a positive number, got {0}")]
    Cpus(String),
    /// A `--secret` that is not `id=ID,src=PATH` or `id=ID,env=VAR`.
    #[error("invalid --secret {0:?}: expected id=ID,src=PATH or id=ID,env=VAR")]
    SecretSyntax(String),
    /// A `--secret` with both a file and a variable.
    #[error("invalid --secret {0:?}: give src= or env=, not both")]
    SecretBoth(String),
    /// A `--secret` file that is not a regular file.
    #[error("--secret {spec:?}: {} is not a file", path.display())]
    SecretNotFile {
        /// The spec as given.
        spec: String,
        /// Its `src=`.
        path: PathBuf,
    },
    /// A `--secret` variable that is not set.
    #[error("--secret {spec:?}: environment variable {var} is not set")]
    SecretEnvUnset {
        /// The spec as given.
        spec: String,
        /// Its `env=`.
        var: String,
    },
    /// A `--security-opt` forge does not know.
    #[error("--security-opt {0:?} is not supported: forge knows seccomp=unconfined")]
    SecurityOpt(String),
    /// A `--security-opt seccomp=` profile forge does not know.
    #[error("--security-opt {opt}: {source}")]
    Seccomp {
        /// The option as given.
        opt: String,
        /// Why the profile is refused.
        source: forge_sandbox::UnknownProfile,
    },
    /// A `SOURCE_DATE_EPOCH` that is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds")]
    SourceDateEpoch(String),
}

/// `KEY=VALUE`, or a bare `KEY` (`--build-arg`, `--label`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The text before the first `=`.
    pub key: String,
    /// The text after it; `None` without a `=`.
    pub value: Option<String>,
}

impl FromStr for KeyValue {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<KeyValue, Self::Err> {
        Ok(match s.split_once('=') {
            Some((k, v)) => KeyValue { key: k.to_string(), value: Some(v.to_string()) },
            None => KeyValue { key: s.to_string(), value: None },
        })
    }
}

impl KeyValue {
    /// As a `--build-arg`: a bare `KEY` takes its value from this process's environment, or
    /// is skipped (`None`) when the variable is not set, as docker does.
    pub fn build_arg(self) -> Option<(String, String)> {
        let value = match self.value {
            Some(v) => v,
            None => std::env::var(&self.key).ok()?,
        };
        Some((self.key, value))
    }

    /// As a `--label`: a bare `KEY` is an empty label.
    pub fn label(self) -> (String, String) {
        (self.key, self.value.unwrap_or_default())
    }
}

/// `SOURCE_DATE_EPOCH`: seconds since the epoch that fix a build's timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceDateEpoch(pub i64);

impl FromStr for SourceDateEpoch {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<SourceDateEpoch, OptionError> {
        s.parse().map(SourceDateEpoch).map_err(|_| OptionError::SourceDateEpoch(s.to_string()))
    }
}

/// A byte count: `512`, `512k`, `64m`, `2g` (binary units, a trailing `b` allowed, as docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<ByteSize, OptionError> {
        let lower = s.trim().to_lowercase();
        let lower = lower.trim_end_matches('b');
        let (num, mult) = match lower.chars().last() {
            Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
            Some('m') => (&lower[..lower.len() - 1], 1 << 20),
            Some('g') => (&lower[..lower.len() - 1], 1 << 30),
            _ => (lower, 1),
        };
        let n: f64 = num.parse().map_err(|_| OptionError::Size(s.to_string()))?;
        if n < 0.0 {
            return Err(OptionError::NegativeSize(s.to_string()));
        }
        Ok(ByteSize((n * mult as f64) as u64))
    }
}

/// `--memory-swap`: a size, or `-1` for unlimited swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemorySwap(pub u64);

impl FromStr for MemorySwap {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<MemorySwap, OptionError> {
        match s {
            // The sandbox's "no limit" for memory plus swap.
            "-1" => Ok(MemorySwap(u64::MAX)),
            s => Ok(MemorySwap(s.parse::<ByteSize>()?.0)),
        }
    }
}

/// `--cpus`: how many CPUs a step may use, a positive number (`1.5`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cpus(f64);

impl FromStr for Cpus {
    type Err = OptionError;

    fn from_str(s: &str) -> Result<Cpus, OptionError> {
        match s.trim().parse::<f64>() {
            Ok(n) if n > 0.0 && n.is_finite() => Ok(Cpus(n)),
            _ => Err(OptionError::Cpus(s.to_string())),
        }
    }
}

impl Cpus {
    /// The CFS quota and period (microseconds) that give this many CPUs, as docker sets them.
    pub fn cfs_quota(self) -> (i64, u64) {
        let period = 100_000u64;
        ((self.0 * period as f64) as i64, period)
    }
}

/// A `--secret` as given: its id and where its value comes from (`src=` or `env=`), not read
/// yet. [`SecretSpec::resolve`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    /// The id steps mount it by (default: the file's name or the variable's).
    pub id: String,
    spec: String,
    from: SecretFrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum SecretFrom {
    File(PathBuf),
    Env(String),
}

impl FromStr for SecretSpec {
    type Err = OptionError;

    fn from_str(spec: &str) -> Result<SecretSpec, OptionError> {
        let syntax = || OptionError::SecretSyntax(spec.to_string());
        let (mut id, mut src, mut env) = (None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => return Err(syntax()),
            }
        }
        let from = match (src, env) {
            (Some(_), Some(_)) => return Err(OptionError::SecretBoth(spec.to_string())),
            (Some(src), None) => {
                id = id.or_else(|| src.file_name().map(|n| n.to_string_lossy().into_owned()));
                SecretFrom::File(src)
            }
            (None, Some(var)) => {
                id = id.or_else(|| Some(var.clone()));
                SecretFrom::Env(var)
            }
            (None, None) => return Err(syntax()),
        };
        Ok(SecretSpec { id: id.ok_or_else(syntax)?, spec: spec.to_string(), from })
    }
}

impl SecretSpec {
    /// The secret: a file checked to be one, or the variable's value read from this process's
    /// environment and held in memory (the builder puts it on a tmpfs only while a step uses it).
    pub fn resolve(&self) -> Result<Secret, OptionError> {
        match &self.from {
            SecretFrom::File(path) if path.is_file() => Ok(Secret::File(path.clone())),
            SecretFrom::File(path) => Err(OptionError::SecretNotFile { spec: self.spec.clone(), path: path.clone() }),
            SecretFrom::Env(var) => match std::env::var_os(var) {
                Some(value) => Ok(Secret::Value(std::os::unix::ffi::OsStringExt::into_vec(value))),
                None => Err(OptionError::SecretEnvUnset { spec: self.spec.clone(), var: var.clone() }),
            },
        }
    }
}

/// A `--security-opt` forge knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityOpt {
    /// `seccomp=PROFILE` (or `seccomp:PROFILE`).
    Seccomp(Seccomp),
}

impl FromStr for SecurityOpt {
    type Err = OptionError;

    fn from_str(o: &str) -> Result<SecurityOpt, OptionError> {
        match o.split_once(['=', ':']) {
            Some(("seccomp", profile)) => {
                profile.parse().map(SecurityOpt::Seccomp).map_err(|source| OptionError::Seccomp { opt: o.to_string(), source })
            }
            _ => Err(OptionError::SecurityOpt(o.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let size = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(size("512").unwrap(), 512);
        assert_eq!(size("512k").unwrap(), 512 << 10);
        assert_eq!(size("64M").unwrap(), 64 << 20);
        assert_eq!(size("2gb").unwrap(), 2 << 30);
        assert_eq!(size("1.5g").unwrap(), 3 << 29);
        assert_eq!(size("12x").unwrap_err().to_string(), r#"invalid size "12x" (use e.g. 512m or 2g)"#);
        assert!(matches!(size("-1m"), Err(OptionError::NegativeSize(_))));
        assert_eq!("-1".parse::<MemorySwap>().unwrap().0, u64::MAX);
        assert_eq!("1g".parse::<MemorySwap>().unwrap().0, 1 << 30);
    }

    #[test]
    fn cpus() {
        assert_eq!("1.5".parse::<Cpus>().unwrap().cfs_quota(), (150_000, 100_000));
        assert_eq!("0.01".parse::<Cpus>().unwrap().cfs_quota(), (1_000, 100_000));
        for bad in ["0", "-1", "abc", "inf", "NaN"] {
            assert!(bad.parse::<Cpus>().unwrap_err().to_string().starts_with("--cpus must be a positive number"), "{bad}");
        }
    }

    #[test]
    fn secret_specs() {
        let s: SecretSpec = "id=tok,src=/etc/hostname".parse().unwrap();
        assert_eq!(s.id, "tok");
        assert_eq!(s.resolve().unwrap(), Secret::File("/etc/hostname".into()));
        assert_eq!("src=/run/key.pem".parse::<SecretSpec>().unwrap().id, "key.pem");
        assert_eq!("type=env,env=FORGE_OPTIONS_TEST_UNSET".parse::<SecretSpec>().unwrap().id, "FORGE_OPTIONS_TEST_UNSET");
        assert!(matches!("env=FORGE_OPTIONS_TEST_UNSET".parse::<SecretSpec>().unwrap().resolve(), Err(OptionError::SecretEnvUnset { .. })));
        assert!(matches!("id=x,src=/nonexistent".parse::<SecretSpec>().unwrap().resolve(), Err(OptionError::SecretNotFile { .. })));
        assert!(matches!("id=x,src=a,env=B".parse::<SecretSpec>(), Err(OptionError::SecretBoth(_))));
        for bad in ["nonsense", "id=x", "id=x,mode=0400,src=f", "src=/"] {
            assert!(matches!(bad.parse::<SecretSpec>(), Err(OptionError::SecretSyntax(_))), "{bad}");
        }
    }

    #[test]
    fn key_values_and_epochs() {
        let kv = |s: &str| s.parse::<KeyValue>().unwrap();
        assert_eq!(kv("A=b=c").build_arg(), Some(("A".into(), "b=c".into())));
        assert_eq!(kv("A=").label(), ("A".into(), String::new()));
        assert_eq!(kv("A").label(), ("A".into(), String::new()));
        assert_eq!(kv("FORGE_OPTIONS_TEST_UNSET").build_arg(), None);
        assert_eq!(kv("PATH").build_arg().map(|(_, v)| v), std::env::var("PATH").ok());
        assert_eq!("1700000000".parse::<SourceDateEpoch>().unwrap().0, 1_700_000_000);
        assert_eq!("yesterday".parse::<SourceDateEpoch>().unwrap_err().to_string(), r#"SOURCE_DATE_EPOCH="yesterday" is not a number of seconds"#);
    }

    #[test]
    fn security_opts_and_networks() {
        assert_eq!("seccomp=unconfined".parse::<SecurityOpt>().unwrap(), SecurityOpt::Seccomp(Seccomp::Unconfined));
        assert_eq!("seccomp:default".parse::<SecurityOpt>().unwrap(), SecurityOpt::Seccomp(Seccomp::Default));
        assert!(matches!("seccomp=/etc/profile.json".parse::<SecurityOpt>(), Err(OptionError::Seccomp { .. })));
        assert!(matches!("apparmor=unconfined".parse::<SecurityOpt>(), Err(OptionError::SecurityOpt(_))));
        assert_eq!("none".parse::<crate::NetworkMode>().unwrap(), crate::NetworkMode::None);
        assert_eq!("default".parse::<crate::NetworkMode>().unwrap(), crate::NetworkMode::Default);
        assert!("bridge".parse::<crate::NetworkMode>().is_err());
    }
}
