//! The two whiteout encodings a layer passes between.
//!
//! In a layer tar (OCI image spec, "Whiteouts"), a deleted `x` is an empty file `.wh.x` next
//! to it and a directory whose lower content is hidden holds `.wh..wh..opq`. In an overlayfs
//! upperdir the kernel writes a deleted `x` as a character device 0:0 named `x`, and an opaque
//! directory as a directory with the xattr `trusted.overlay.opaque=y`. The diff turns the
//! second form into the first; applying into a snapshot turns the first into the second.

use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Prefix of a whiteout entry's base name in a layer tar.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Base name of the opaque-directory marker in a layer tar.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Xattr overlayfs sets on an opaque directory in an upperdir.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// True for the char 0:0 device overlayfs leaves in an upperdir for a deleted file.
pub fn is_overlay_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// True for xattrs overlayfs keeps for itself (opaque, redirect, origin, metacopy, impure,
/// nlink, ...) in either namespace: they describe the upperdir, not the image, and must not
/// reach a layer.
pub fn is_overlay_internal_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}
