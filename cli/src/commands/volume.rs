//! Mount flags of `run` and `create` (docker's `-v`, `--mount`, `--tmpfs`, `--read-only`),
//! parsed once into the runtime's [`MountSpec`]s, and `forge volume create|ls|inspect|rm|prune`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use forge_builder::ByteSize;
use forge_layerstore::Store;
use forge_runtime::{MountSource, MountSpec, Volumes};

use crate::commands::run::Exit;
use crate::stdout::outln;

/// docker's mount flags; read by [`MountFlags::mounts`] rather than by clap, so a bad value
/// fails like any other create failure (exit code 125).
#[derive(Args, Debug)]
pub struct MountFlags {
    /// A bind mount (`/host/path:/in/container[:ro]`), a named volume (`NAME:/in/container[:ro]`,
    /// made on first use and filled with the image's files there) or an anonymous one (`/path`).
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    volumes: Vec<String>,
    /// A mount as `type=bind|volume|tmpfs,source=...,target=...[,readonly]`.
    #[arg(long = "mount", value_name = "type=...,target=...")]
    mounts: Vec<String>,
    /// A tmpfs at this path (`/run[:size=64m]`).
    #[arg(long = "tmpfs", value_name = "DST[:size=BYTES]")]
    tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    read_only: bool,
}

impl MountFlags {
    /// The mounts, in docker's order (`-v`, then `--mount`, then `--tmpfs`), and `--read-only`.
    pub fn mounts(&self) -> anyhow::Result<(Vec<MountSpec>, bool)> {
        let mut out = Vec::new();
        for v in &self.volumes {
            out.push(volume_flag(v).with_context(|| format!("invalid -v {v:?}"))?);
        }
        for m in &self.mounts {
            out.push(mount_flag(m).with_context(|| format!("invalid --mount {m:?}"))?);
        }
        for t in &self.tmpfs {
            out.push(tmpfs_flag(t).with_context(|| format!("invalid --tmpfs {t:?}"))?);
        }
        Ok((out, self.read_only))
    }
}

/// A bind source as docker's CLI takes it: absolute, or relative to the current directory
/// (`./data`).
fn bind_source(src: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(src);
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().context("finding the current directory")?.join(path) })
}

/// `-v SRC:DST[:OPTS]`, a relative bind source (`./data`) taken from the current directory.
fn volume_flag(spec: &str) -> anyhow::Result<MountSpec> {
    let spec = match spec.split_once(':') {
        Some((src, rest)) if src.starts_with('.') => format!("{}:{rest}", bind_source(src)?.display()),
        _ => spec.to_string(),
    };
    Ok(MountSpec::from_volume_flag(&spec)?)
}

/// `--mount type=...,source=...,target=...[,readonly][,volume-nocopy][,tmpfs-size=...]`.
fn mount_flag(spec: &str) -> anyhow::Result<MountSpec> {
    let (mut kind, mut source, mut target, mut read_only, mut nocopy, mut size) = ("volume".to_string(), None, None, false, false, None);
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        let flag = |v: Option<&str>| -> anyhow::Result<bool> {
            match v {
                None | Some("true" | "1") => Ok(true),
                Some("false" | "0") => Ok(false),
                Some(other) => bail!("{key}={other}: expected true or false"),
            }
        };
        match key {
            "type" => kind = value.unwrap_or_default().to_string(),
            "source" | "src" => source = value.map(str::to_string),
            "target" | "destination" | "dst" => target = value.map(str::to_string),
            "readonly" | "ro" => read_only = flag(value)?,
            "volume-nocopy" => nocopy = flag(value)?,
            "tmpfs-size" => size = Some(value.unwrap_or_default().parse::<ByteSize>()?.0),
            other => bail!("unknown field {other:?}"),
        }
    }
    let target = target.context("target= is missing")?;
    let source = match (kind.as_str(), source) {
        ("bind", Some(src)) => {
            let path = bind_source(&src)?;
            if !path.exists() {
                bail!("the bind source path {} does not exist", path.display());
            }
            MountSource::Bind(path)
        }
        ("bind", None) => bail!("a bind mount needs source="),
        ("volume", Some(name)) => MountSource::Volume { name, nocopy },
        ("volume", None) => MountSource::Volume { name: String::new(), nocopy },
        ("tmpfs", None) => MountSource::Tmpfs(size),
        ("tmpfs", Some(_)) => bail!("a tmpfs mount takes no source"),
        (other, _) => bail!("unknown type {other:?}: forge knows bind, volume and tmpfs"),
    };
    if size.is_some() && !matches!(source, MountSource::Tmpfs(_)) {
        bail!("tmpfs-size is for type=tmpfs");
    }
    Ok(MountSpec { source, target, read_only })
}

/// `--tmpfs DST[:size=BYTES]`.
fn tmpfs_flag(spec: &str) -> anyhow::Result<MountSpec> {
    let (target, opts) = spec.split_once(':').unwrap_or((spec, ""));
    let mut size = None;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("size", v)) => size = Some(v.parse::<ByteSize>()?.0),
            _ => bail!("unknown option {o:?}: forge supports size= only"),
        }
    }
    Ok(MountSpec { source: MountSource::Tmpfs(size), target: target.to_string(), read_only: false })
}

/// `forge volume ...`.
#[derive(Subcommand)]
pub enum VolumeCommand {
    /// Make a volume (a random name when none is given); prints its name.
    Create {
        /// Its name.
        name: Option<String>,
    },
    /// List volumes.
    Ls {
        /// Only the names.
        #[arg(short, long)]
        quiet: bool,
        /// `table` or `json` (one object a line).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Show volumes as JSON.
    Inspect {
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container names one).
    Rm {
        /// Accepted for docker's scripts; an in-use volume is refused all the same.
        #[arg(short, long)]
        force: bool,
        /// The volumes.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container names.
    Prune {
        /// Do not ask (forge never asks).
        #[arg(short, long)]
        force: bool,
        /// Every unused volume (forge's prune always removes them all, named or not).
        #[arg(short, long)]
        all: bool,
    },
}

/// Opens the store's volumes.
pub fn volumes(global: &crate::Global) -> anyhow::Result<Volumes> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    Ok(Volumes::open(&store)?)
}

/// Runs `forge volume ...`.
pub fn run(global: &crate::Global, cmd: VolumeCommand) -> anyhow::Result<()> {
    let vs = volumes(global)?;
    match cmd {
        VolumeCommand::Create { name } => outln!("{}", vs.create(name.as_deref(), Default::default())?.name),
        VolumeCommand::Ls { quiet, format } => {
            let list = vs.list()?;
            match (quiet, format.as_str()) {
                (true, _) => list.iter().try_for_each(|v| outln!("{}", v.name)),
                (false, "json") => list.iter().try_for_each(|v| outln!("{}", serde_json::json!({"Driver": v.driver, "Name": v.name, "Mountpoint": v.mountpoint, "Scope": v.scope}))),
                (false, "table") => {
                    outln!("DRIVER    VOLUME NAME")?;
                    list.iter().try_for_each(|v| outln!("{:<10}{}", v.driver, v.name))
                }
                (false, other) => bail!("unknown --format {other:?}: use table or json"),
            }
        }
        VolumeCommand::Inspect { names } => {
            let found = names.iter().map(|n| vs.get(n)).collect::<Result<Vec<_>, _>>()?;
            outln!("{}", serde_json::to_string_pretty(&found)?)
        }
        VolumeCommand::Rm { force: _, names } => {
            // Each in turn, as docker: the names removed are printed, the failures after.
            let mut failed = false;
            for n in &names {
                match vs.remove(n) {
                    Ok(()) => outln!("{n}")?,
                    Err(e) => {
                        let _ = std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("forge: {e}\n"));
                        failed = true;
                    }
                }
            }
            if failed {
                return Err(Exit(1).into());
            }
            Ok(())
        }
        VolumeCommand::Prune { force: _, all: _ } => {
            let removed = vs.prune()?;
            if !removed.is_empty() {
                outln!("Deleted Volumes:")?;
                removed.iter().try_for_each(|n| outln!("{n}"))?;
                outln!("")?;
            }
            outln!("Total reclaimed volumes: {}", removed.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_read_as_dockers() {
        let v = volume_flag("data:/srv:ro,nocopy").unwrap();
        assert_eq!(v, MountSpec { source: MountSource::Volume { name: "data".into(), nocopy: true }, target: "/srv".into(), read_only: true });
        assert!(matches!(volume_flag("/tmp:/x").unwrap().source, MountSource::Bind(p) if p == Path::new("/tmp")));
        assert_eq!(volume_flag("/data").unwrap().source, MountSource::Volume { name: String::new(), nocopy: false });
        assert!(volume_flag("a:b:c:d").is_err());
        assert!(volume_flag("data:/x:shared").is_err());
        let m = mount_flag("type=tmpfs,dst=/run,tmpfs-size=64m").unwrap();
        assert_eq!(m, MountSpec { source: MountSource::Tmpfs(Some(64 << 20)), target: "/run".into(), read_only: false });
        let m = mount_flag("source=data,target=/d,readonly").unwrap();
        assert_eq!(m, MountSpec { source: MountSource::Volume { name: "data".into(), nocopy: false }, target: "/d".into(), read_only: true });
        assert!(mount_flag("type=bind,source=/no/such/dir,target=/x").is_err());
        assert!(mount_flag("type=nfs,target=/x").is_err());
        assert!(mount_flag("type=volume,source=v").is_err());
        assert_eq!(mount_flag("type=volume,target=/v").unwrap().source, MountSource::Volume { name: String::new(), nocopy: false });
        assert_eq!(tmpfs_flag("/run:size=1m").unwrap().source, MountSource::Tmpfs(Some(1 << 20)));
        assert!(tmpfs_flag("/run:mode=1777").is_err());
    }
}
