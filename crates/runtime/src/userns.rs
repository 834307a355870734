//! `--userns`: whether a container's root is host root (`host`, the default) or an
//! unprivileged host range (`remap`), docker's `--userns-remap` per container.
//!
//! The range comes from `/etc/subuid` and `/etc/subgid`, the entries of the user `forge`; when
//! it has none, forge adds a 65536-id range past every range already given out, as docker
//! adds one for `dockremap`. The mapping is recorded in the container's config at create, so
//! a later edit of those files never changes who owns a container's files.
//!
//! A store's default is `"userns-remap": "default"` (or `"forge"`) in `<store>/config.json`,
//! docker's daemon.json key.

use std::io::{Read, Seek, Write};
use std::path::Path;

use forge_sandbox::IdMapping;

use crate::error::Error;

/// The user whose subordinate ranges remapped containers get.
pub const REMAP_USER: &str = "forge";

/// How many ids a remapped container gets (docker's and shadow's default range).
const RANGE: u32 = 65536;

/// The lowest id forge starts a new range at (shadow's `SUB_UID_MIN`).
const FIRST_ID: u64 = 100_000;

/// A `--userns` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Userns {
    /// The host's user namespace.
    Host,
    /// A user namespace mapping root to the `forge` range.
    Remap,
}

impl std::str::FromStr for Userns {
    type Err = Error;

    fn from_str(s: &str) -> Result<Userns, Error> {
        match s {
            "host" => Ok(Userns::Host),
            "remap" => Ok(Userns::Remap),
            other => Err(Error::Invalid { what: "--userns", value: other.to_string(), reason: "expected \"host\" or \"remap\"".into() }),
        }
    }
}

/// The store's default: `userns-remap` in `<store>/config.json` (absent file or key: host).
pub fn store_default(store_root: &Path) -> Result<Userns, Error> {
    let path = store_root.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Userns::Host),
        Err(source) => return Err(Error::StoreConfig { path, reason: source.to_string() }),
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::StoreConfig { path: path.clone(), reason: e.to_string() })?;
    match value.get("userns-remap") {
        None => Ok(Userns::Host),
        Some(serde_json::Value::String(s)) if s.is_empty() => Ok(Userns::Host),
        Some(serde_json::Value::String(s)) if s == "default" || s == REMAP_USER => Ok(Userns::Remap),
        Some(other) => Err(Error::StoreConfig { path, reason: format!("userns-remap is {other}: forge supports \"default\" (the {REMAP_USER:?} range) or \"\"") }),
    }
}

/// A new container's mapping: `--userns` or else the store's default; `None` for the host's.
/// Docker refuses the remap with the host's network and with `--privileged` (its root would
/// hold no capability over the host's namespaces and devices); so does forge.
pub(crate) fn resolve(mode: Option<Userns>, store_root: &Path, network: &crate::Network, privileged: bool) -> Result<Option<IdMapping>, Error> {
    let mode = match mode {
        Some(m) => m,
        None => store_default(store_root)?,
    };
    match mode {
        Userns::Host => Ok(None),
        Userns::Remap if *network == crate::Network::Host => Err(Error::UsernsConflict("--network host")),
        Userns::Remap if privileged => Err(Error::UsernsConflict("--privileged")),
        // Only host root may map the forge range; rootless forge's containers are remapped
        // already (their root is the user).
        Userns::Remap if forge_sandbox::in_user_namespace() => Err(Error::UsernsConflict("rootless forge (its containers' root is already the unprivileged user)")),
        Userns::Remap => remap_mapping().map(Some),
    }
}

/// Gives every file under `dir` (and `dir`) the host ids its ids map to under `map`: a volume
/// made for a remapped container, whose root must own what the image put there. A few lines
/// over `read_dir`, where a walking crate would be a new dependency for one loop.
pub(crate) fn shift_owners(dir: &Path, map: &IdMapping) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt;
    let fail = |p: &Path| {
        let path = p.to_path_buf();
        move |source: std::io::Error| Error::SubordinateIds { path, reason: format!("giving the volume to the remapped root: {source}") }
    };
    let meta = std::fs::symlink_metadata(dir).map_err(fail(dir))?;
    let (uid, gid) = (meta.uid().checked_add(map.host_uid), meta.gid().checked_add(map.host_gid));
    std::os::unix::fs::lchown(dir, uid, gid).map_err(fail(dir))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(dir).map_err(fail(dir))? {
            shift_owners(&entry.map_err(fail(dir))?.path(), map)?;
        }
    }
    Ok(())
}

/// The mapping of a remapped container: the `forge` ranges, made when missing.
pub fn remap_mapping() -> Result<IdMapping, Error> {
    remap_mapping_in(Path::new("/etc/subuid"), Path::new("/etc/subgid"))
}

fn remap_mapping_in(subuid: &Path, subgid: &Path) -> Result<IdMapping, Error> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| Error::SubordinateIds { path, reason: source.to_string() }
    };
    let open = |p: &Path| std::fs::OpenOptions::new().read(true).append(true).create(true).open(p).map_err(io(p));
    let (mut uids, mut gids) = (open(subuid)?, open(subgid)?);
    // Both files under the lock of the first, so two creates never add two ranges.
    rustix::fs::flock(&uids, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io(subuid)(e.into()))?;
    let read = |f: &mut std::fs::File, p: &Path| -> Result<Vec<(String, u64, u64)>, Error> {
        let mut text = String::new();
        f.rewind().and_then(|()| f.read_to_string(&mut text)).map_err(io(p))?;
        parse(&text, p)
    };
    let (uid_ranges, gid_ranges) = (read(&mut uids, subuid)?, read(&mut gids, subgid)?);
    let find = |ranges: &[(String, u64, u64)]| ranges.iter().find(|(name, _, count)| name == REMAP_USER && *count >= RANGE as u64).map(|(_, start, _)| *start);
    let (uid, gid) = match (find(&uid_ranges), find(&gid_ranges)) {
        (Some(u), Some(g)) => (u, g),
        (u, g) => {
            // Past every range in either file, so the new one overlaps no other user's.
            let free = uid_ranges.iter().chain(&gid_ranges).map(|(_, start, count)| start + count).max().unwrap_or(0).max(FIRST_ID);
            let add = |f: &mut std::fs::File, p: &Path, have: Option<u64>| -> Result<u64, Error> {
                if let Some(start) = have {
                    return Ok(start);
                }
                f.write_all(format!("{REMAP_USER}:{free}:{RANGE}\n").as_bytes()).map_err(io(p))?;
                f.sync_all().map_err(io(p))?;
                Ok(free)
            };
            (add(&mut uids, subuid, u)?, add(&mut gids, subgid, g)?)
        }
    };
    let id = |v: u64, p: &Path| u32::try_from(v).ok().filter(|v| v.checked_add(RANGE).is_some()).ok_or_else(|| Error::SubordinateIds { path: p.to_path_buf(), reason: format!("the {REMAP_USER} range at {v} is past the last id") });
    Ok(IdMapping { host_uid: id(uid, subuid)?, host_gid: id(gid, subgid)?, size: RANGE })
}

fn parse(text: &str, path: &Path) -> Result<Vec<(String, u64, u64)>, Error> {
    let ranges = forge_sandbox::subordinate_ranges(text).map_err(|reason| Error::SubordinateIds { path: path.to_path_buf(), reason })?;
    Ok(ranges.into_iter().map(|r| (r.name, r.start, r.count)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_range_is_added_past_every_other_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&u, "alice:100000:65536\n").unwrap();
        std::fs::write(&g, "alice:100000:65536\nbob:300000:1000\n").unwrap();
        let m = remap_mapping_in(&u, &g).unwrap();
        assert_eq!(m, IdMapping { host_uid: 301000, host_gid: 301000, size: 65536 });
        assert_eq!(std::fs::read_to_string(&u).unwrap(), "alice:100000:65536\nforge:301000:65536\n");
        assert_eq!(remap_mapping_in(&u, &g).unwrap(), m);
        assert_eq!(std::fs::read_to_string(&g).unwrap().matches("forge:").count(), 1);
    }

    #[test]
    fn a_malformed_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (u, g) = (dir.path().join("subuid"), dir.path().join("subgid"));
        std::fs::write(&u, "alice:lots\n").unwrap();
        let err = remap_mapping_in(&u, &g).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("subuid"), "{err}");
        assert_eq!(std::fs::read_to_string(&u).unwrap(), "alice:lots\n");
    }

    #[test]
    fn store_default_reads_dockers_key() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(store_default(dir.path()).unwrap(), Userns::Host);
        std::fs::write(dir.path().join("config.json"), r#"{"userns-remap": "default"}"#).unwrap();
        assert_eq!(store_default(dir.path()).unwrap(), Userns::Remap);
        std::fs::write(dir.path().join("config.json"), r#"{"userns-remap": "someone"}"#).unwrap();
        assert!(store_default(dir.path()).unwrap_err().to_string().contains("userns-remap"));
    }
}
