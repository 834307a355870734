//! A layer written while its change is being made, so that a step that writes files (COPY)
//! hands each file's bytes to the tar as it writes them instead of reading the upperdir back
//! afterwards.
//!
//! The caller keeps the order a scan of the finished upperdir would have (parents first,
//! siblings sorted by name bytes) and gives each entry's final metadata, so the bytes are
//! exactly those [`write_layer`](super::write_layer) writes for the same upperdir: the usual
//! shape is [`LayerStream::scan_upper`] over what exists before the step writes (the
//! destination's parents, the still empty destination), then one `append_*` per new entry
//! below the destination, in order.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::overlay::{self, opaque_marker, overlay_xattrs};
use super::tar_writer::{EntryMeta, Kind, TarWriter};
use super::{read_entry, read_err, read_xattrs_fd, Error, HardLinks, LayerInfo, LayerOptions, LayerSource, WRITE_BUFFER};
use crate::archive::compression::{Compression, LayerWriter};

/// A layer tar being written into `W` (compressed as [`LayerOptions::compression`] says),
/// with the hard-link table of the entries written so far.
pub struct LayerStream<W: Write> {
    tar: TarWriter<BufWriter<LayerWriter<W>>>,
    links: HardLinks,
    compression: Compression,
}

impl<W: Write> LayerStream<W> {
    /// Starts a layer into `out`.
    pub fn new(opts: &LayerOptions, out: W) -> Result<Self, Error> {
        let blob = LayerWriter::new(out, opts.compression).map_err(Error::Write)?;
        Ok(LayerStream {
            tar: TarWriter::new(BufWriter::with_capacity(WRITE_BUFFER, blob), opts.source_date_epoch),
            links: HardLinks::default(),
            compression: opts.compression,
        })
    }

    /// Writes the whole change set of `source`.
    pub fn write_source(&mut self, source: &LayerSource<'_>) -> Result<(), Error> {
        match *source {
            LayerSource::OverlayUpper(upper) => self.scan_upper(upper),
            LayerSource::Dirs { lower, upper } => super::dirs::compare(lower, upper, &mut self.tar),
        }
    }

    /// Writes every entry of the overlayfs upperdir `upper` as it is now (whiteouts and
    /// opaque directories translated), as [`LayerSource::OverlayUpper`].
    pub fn scan_upper(&mut self, upper: &Path) -> Result<(), Error> {
        overlay::scan(upper, &mut self.tar, &mut self.links)
    }

    /// Appends the regular file or directory open as `file` under the layer path `path`
    /// (relative to the layer root, `/`-separated). Its metadata is read from the fd, except
    /// the mtime when `mtime` is given (a directory whose time is set after its children are
    /// written). A file's content is `data`, which must yield exactly the file's size: the
    /// bytes the caller just wrote to it. `abs` names the entry in errors.
    pub fn append_open(
        &mut self,
        path: &[u8],
        abs: &Path,
        file: &File,
        mtime: Option<i64>,
        data: impl Read,
    ) -> Result<(), Error> {
        let st = file.metadata().map_err(read_err(abs))?;
        let kind = if st.is_dir() {
            Kind::Dir
        } else if st.is_file() {
            Kind::File(st.len())
        } else {
            return Err(read_err(abs)(io::Error::other("not a regular file or directory")));
        };
        let mut entry = EntryMeta {
            path: path.to_vec(),
            kind,
            mode: std::os::unix::fs::MetadataExt::mode(&st) & 0o7777,
            uid: std::os::unix::fs::MetadataExt::uid(&st).into(),
            gid: std::os::unix::fs::MetadataExt::gid(&st).into(),
            mtime: mtime.unwrap_or_else(|| std::os::unix::fs::MetadataExt::mtime(&st)),
            xattrs: read_xattrs_fd(file, abs)?,
        };
        self.append(abs, &mut entry, &st, data)
    }

    /// Appends the entry at `abs` (lstat'ed, a symlink not followed) under the layer path
    /// `path`: for symlinks, devices and FIFOs, which have no content to hand over.
    pub fn append_path(&mut self, path: &[u8], abs: &Path) -> Result<(), Error> {
        let st = std::fs::symlink_metadata(abs).map_err(read_err(abs))?;
        if st.is_file() {
            return Err(read_err(abs)(io::Error::other("a regular file is appended with its content")));
        }
        let Some(mut entry) = read_entry(abs, path.to_vec(), &st)? else { return Ok(()) };
        self.append(abs, &mut entry, &st, io::empty())
    }

    fn append(&mut self, abs: &Path, entry: &mut EntryMeta, st: &std::fs::Metadata, data: impl Read) -> Result<(), Error> {
        let opaque = overlay_xattrs(abs, entry)?;
        self.links.link_or_record(entry, st);
        match entry.kind {
            Kind::File(_) => self.tar.append(entry, data),
            _ => self.tar.append(entry, io::empty()),
        }
        .map_err(Error::Write)?;
        if opaque {
            opaque_marker(&mut self.tar, entry)?;
        }
        Ok(())
    }

    /// Ends the tar and the blob; returns what was written and the output.
    pub fn finish(self) -> Result<(LayerInfo, W), Error> {
        let buffered = self.tar.finish().map_err(Error::Write)?;
        let blob = buffered.into_inner().map_err(|e| Error::Write(e.into_error()))?;
        let (out, d) = blob.finish().map_err(Error::Write)?;
        let info = LayerInfo {
            diff_id: d.diff_id,
            digest: d.digest,
            size: d.size,
            uncompressed_size: d.uncompressed_size,
            media_type: self.compression.media_type(),
        };
        Ok((info, out))
    }
}
