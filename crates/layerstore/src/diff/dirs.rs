//! Two-directory diff (lower vs upper), for COPY layers and hosts without overlayfs.
//!
//! An entry of `upper` is written when it is new or differs from `lower` in type, mode,
//! owner, xattrs, symlink target, device number, or (for files) size, mtime or link count, as docker's
//! change detection does; directories are compared without their mtime, which changes with
//! every child. Names only in `lower` become `.wh.` whiteouts. A directory that did not change
//! itself is still written, just before its first changed descendant, so the layer carries its
//! ownership and mode; untouched subtrees produce nothing.

use std::fs::Metadata;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::tar_writer::{EntryMeta, Kind, TarWriter};
use super::whiteout::WHITEOUT_PREFIX;
use super::{append_entry, child_path, read_entry, read_err, sorted_names, Error, HardLinks};

/// Writes the changes from `lower` (absent: empty) to `upper`.
pub(crate) fn compare<W: Write>(
    lower: Option<&Path>,
    upper: &Path,
    tar: &mut TarWriter<W>,
) -> Result<(), Error> {
    let mut cx = Compare {
        tar,
        links: HardLinks::default(),
        pending: Vec::new(),
    };
    cx.walk(lower, upper, &[])
}

struct Compare<'t, W: Write> {
    tar: &'t mut TarWriter<W>,
    links: HardLinks,
    /// Unchanged ancestor directories not written yet: (entry, source path, written?).
    pending: Vec<(EntryMeta, std::path::PathBuf, bool)>,
}

impl<W: Write> Compare<'_, W> {
    fn walk(&mut self, lower: Option<&Path>, upper: &Path, rel: &[u8]) -> Result<(), Error> {
        let upper_names = sorted_names(upper)?;
        let lower_names = match lower {
            Some(l) => sorted_names(l)?,
            None => Vec::new(),
        };
        // Merge the two sorted lists so output order is by name across adds and removals.
        let (mut i, mut j) = (0, 0);
        while i < upper_names.len() || j < lower_names.len() {
            let order = match (upper_names.get(i), lower_names.get(j)) {
                (Some(u), Some(l)) => u.as_bytes().cmp(l.as_bytes()),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, _) => std::cmp::Ordering::Greater,
            };
            match order {
                std::cmp::Ordering::Greater => {
                    let name = lower_names[j].as_bytes();
                    let mut wh = WHITEOUT_PREFIX.to_vec();
                    wh.extend_from_slice(name);
                    let l = lower
                        .expect("lower names come from lower")
                        .join(&lower_names[j]);
                    let st = std::fs::symlink_metadata(&l).map_err(read_err(&l))?;
                    self.emit(&EntryMeta::whiteout(child_path(rel, &wh), st.mtime()), None)?;
                    j += 1;
                }
                std::cmp::Ordering::Less => {
                    self.entry(
                        None,
                        &upper.join(&upper_names[i]),
                        rel,
                        upper_names[i].as_bytes(),
                    )?;
                    i += 1;
                }
                std::cmp::Ordering::Equal => {
                    let l = lower.map(|l| l.join(&lower_names[j]));
                    self.entry(
                        l.as_deref(),
                        &upper.join(&upper_names[i]),
                        rel,
                        upper_names[i].as_bytes(),
                    )?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        lower: Option<&Path>,
        abs: &Path,
        rel: &[u8],
        name: &[u8],
    ) -> Result<(), Error> {
        let st = std::fs::symlink_metadata(abs).map_err(read_err(abs))?;
        let Some(mut entry) = read_entry(abs, child_path(rel, name), &st)? else {
            return Ok(());
        };
        let old = match lower {
            Some(l) => match std::fs::symlink_metadata(l) {
                Ok(lst) => read_entry(l, entry.path.clone(), &lst)?.map(|e| (e, lst)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(read_err(l)(e)),
            },
            None => None,
        };
        let unchanged = old
            .as_ref()
            .is_some_and(|(o, lst)| same(o, lst, &entry, &st));
        if entry.kind == Kind::Dir {
            let lower_dir = old
                .as_ref()
                .filter(|(o, _)| o.kind == Kind::Dir)
                .map(|_| lower.expect("old implies lower"));
            self.pending.push((entry.clone(), abs.to_path_buf(), false));
            if !unchanged {
                self.flush_pending()?;
            }
            self.walk(lower_dir, abs, &entry.path)?;
            self.pending.pop();
        } else if !unchanged {
            self.links.link_or_record(&mut entry, &st);
            self.emit(&entry, Some(abs))?;
        }
        Ok(())
    }

    /// Writes the pending ancestors, then `entry`.
    fn emit(&mut self, entry: &EntryMeta, abs: Option<&Path>) -> Result<(), Error> {
        self.flush_pending()?;
        match abs {
            Some(abs) => append_entry(self.tar, abs, entry),
            None => self
                .tar
                .append(entry, std::io::empty())
                .map_err(Error::Write),
        }
    }

    fn flush_pending(&mut self) -> Result<(), Error> {
        for (dir, abs, written) in self.pending.iter_mut() {
            if !*written {
                append_entry(self.tar, abs, dir)?;
                *written = true;
            }
        }
        Ok(())
    }
}

/// Whether `new` records no change from `old`.
fn same(old: &EntryMeta, old_st: &Metadata, new: &EntryMeta, new_st: &Metadata) -> bool {
    let meta_same = old.kind == new.kind
        && old.mode == new.mode
        && old.uid == new.uid
        && old.gid == new.gid
        && old.xattrs == new.xattrs;
    match new.kind {
        Kind::Dir => meta_same,
        _ => {
            meta_same
                && old_st.mtime() == new_st.mtime()
                && old_st.mtime_nsec() == new_st.mtime_nsec()
                // A new hard link to an unchanged file changes its link count: writing the
                // file again lets the new name be a link entry to it.
                && old_st.nlink() == new_st.nlink()
        }
    }
}
