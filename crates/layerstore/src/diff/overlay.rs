//! Upperdir scan: the overlayfs upperdir of a RUN step is its change set.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::tar_writer::{EntryMeta, Kind, TarWriter};
use super::whiteout::{
    is_overlay_internal_xattr, is_overlay_whiteout, OPAQUE_MARKER, WHITEOUT_PREFIX,
};
use super::{append_entry, child_path, read_entry, read_err, sorted_names, Error, HardLinks};

/// Writes every entry of `upper` as a layer entry, translating overlay whiteouts and opaque
/// directories into their `.wh.` forms.
pub(crate) fn scan<W: Write>(
    upper: &Path,
    tar: &mut TarWriter<W>,
    links: &mut HardLinks,
) -> Result<(), Error> {
    walk(upper, &[], tar, links)
}

/// Checks `entry`'s overlay xattrs (refusing redirects and metacopy, which a layer cannot
/// express), drops the overlay's internal ones and returns whether it is an opaque directory.
pub(crate) fn overlay_xattrs(abs: &Path, entry: &mut EntryMeta) -> Result<bool, Error> {
    let mut opaque = false;
    for (key, value) in &entry.xattrs {
        match key.as_slice() {
            b"trusted.overlay.opaque" | b"user.overlay.opaque" => opaque = value == b"y",
            b"trusted.overlay.redirect" | b"user.overlay.redirect" => {
                return Err(Error::OverlayFeature {
                    path: abs.to_path_buf(),
                    feature: "redirect_dir",
                })
            }
            b"trusted.overlay.metacopy" | b"user.overlay.metacopy" => {
                return Err(Error::OverlayFeature {
                    path: abs.to_path_buf(),
                    feature: "metacopy",
                })
            }
            _ => {}
        }
    }
    entry.xattrs.retain(|(k, _)| !is_overlay_internal_xattr(k));
    Ok(opaque && entry.kind == Kind::Dir)
}

/// The `.wh..wh..opq` entry that follows an opaque directory's own.
pub(crate) fn opaque_marker<W: Write>(
    tar: &mut TarWriter<W>,
    dir: &EntryMeta,
) -> Result<(), Error> {
    let marker = EntryMeta::whiteout(child_path(&dir.path, OPAQUE_MARKER), dir.mtime);
    tar.append(&marker, std::io::empty()).map_err(Error::Write)
}

fn walk<W: Write>(
    dir: &Path,
    rel: &[u8],
    tar: &mut TarWriter<W>,
    links: &mut HardLinks,
) -> Result<(), Error> {
    for name in sorted_names(dir)? {
        let abs = dir.join(&name);
        let path = child_path(rel, name.as_bytes());
        let st = std::fs::symlink_metadata(&abs).map_err(read_err(&abs))?;
        if is_overlay_whiteout(&st) {
            let mut wh = WHITEOUT_PREFIX.to_vec();
            wh.extend_from_slice(name.as_bytes());
            tar.append(
                &EntryMeta::whiteout(child_path(rel, &wh), st.mtime()),
                std::io::empty(),
            )
            .map_err(Error::Write)?;
            continue;
        }
        let Some(mut entry) = read_entry(&abs, path, &st)? else {
            continue;
        };
        let opaque = overlay_xattrs(&abs, &mut entry)?;
        links.link_or_record(&mut entry, &st);
        append_entry(tar, &abs, &entry)?;
        if opaque {
            opaque_marker(tar, &entry)?;
        }
        if entry.kind == Kind::Dir {
            walk(&abs, &entry.path, tar, links)?;
        }
    }
    Ok(())
}
