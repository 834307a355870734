//! Mountpoint stubs. Mounting `/proc`, `/etc/hosts` or a `--mount` target needs the path to
//! exist; when the image lacks it, the sandbox creates it, which writes into the upperdir and so
//! into the step's layer. BuildKit removes such stubs after the step; so does this module: it
//! notes before the run which paths exist in no layer, and afterwards removes from the upperdir
//! those it created that are still empty, plus directories that were copied up only to hold them.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::spec::RunSpec;

/// The paths (relative to the rootfs) the sandbox may create as mountpoints.
fn candidates(spec: &RunSpec) -> Vec<String> {
    let mut out: Vec<String> = ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf"].map(String::from).to_vec();
    if spec.etc == crate::spec::Etc::Container {
        out.push("etc/hostname".into());
    }
    out.extend(spec.mounts.iter().map(|m| m.target.trim_matches('/').to_string()).filter(|t| !t.is_empty()));
    out
}

/// What existed before the run.
#[derive(Debug)]
pub(crate) struct Stubs {
    upper: PathBuf,
    lowers: Vec<PathBuf>,
    /// Candidate paths and all their ancestors that existed in the upperdir before the run.
    in_upper: BTreeSet<String>,
    /// Candidate paths (with ancestors) to check afterwards, deepest first.
    paths: Vec<String>,
}

impl Stubs {
    /// Notes the state before the run.
    pub(crate) fn before(spec: &RunSpec) -> Stubs {
        let mut paths = BTreeSet::new();
        for c in candidates(spec) {
            let mut p = Path::new(&c);
            loop {
                paths.insert(p.to_string_lossy().into_owned());
                match p.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => p = parent,
                    _ => break,
                }
            }
        }
        let upper = spec.upperdir.clone();
        let in_upper = paths.iter().filter(|p| upper.join(p).symlink_metadata().is_ok()).cloned().collect();
        let mut paths: Vec<String> = paths.into_iter().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        Stubs { upper, lowers: spec.lowerdirs.clone(), in_upper, paths }
    }

    fn in_lowers(&self, rel: &str) -> Option<std::fs::Metadata> {
        self.lowers.iter().find_map(|l| l.join(rel).symlink_metadata().ok())
    }

    /// Removes the stubs the run left in the upperdir.
    pub(crate) fn clean(&self) {
        for rel in &self.paths {
            if self.in_upper.contains(rel) {
                continue;
            }
            let path = self.upper.join(rel);
            let Ok(meta) = path.symlink_metadata() else { continue };
            let empty = if meta.is_dir() {
                std::fs::read_dir(&path).is_ok_and(|mut d| d.next().is_none()) && !is_opaque(&path)
            } else {
                meta.is_file() && meta.len() == 0
            };
            if !empty {
                continue;
            }
            match self.in_lowers(rel) {
                // Created by us: nothing of it was in the image.
                None => remove(&path, meta.is_dir()),
                // Copied up to hold a stub; unchanged apart from times, so the lower says it all.
                Some(lower) if meta.is_dir() && lower.is_dir() && same_owner_and_mode(&meta, &lower) => remove(&path, true),
                Some(_) => {}
            }
        }
    }
}

fn remove(path: &Path, dir: bool) {
    let _ = if dir { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
}

fn same_owner_and_mode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.mode(), a.uid(), a.gid()) == (b.mode(), b.uid(), b.gid())
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}
