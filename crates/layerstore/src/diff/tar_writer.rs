//! Deterministic tar entries from explicit metadata.
//!
//! We never let `tar::Builder` look at the filesystem: its `append_path`/`append_dir_all` follow
//! symlinks by default, probe for sparse files, walk in readdir order, write no xattrs and detect
//! no hard links, and `HeaderMode::Deterministic` rewrites modes to 0644/0755. Instead the diff
//! code lstat()s each file itself and this module turns that metadata into a ustar header, adding
//! a PAX record only when ustar cannot hold a value (long names, xattrs, big ids or sizes), so
//! the same tree always gives the same bytes.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;

use std::ffi::OsStr;

/// Largest value an 8-byte octal ustar field (uid, gid) holds.
const USTAR_ID_MAX: u64 = 0o7777777;
/// Largest value the 12-byte octal ustar size field holds.
const USTAR_SIZE_MAX: u64 = 0o77777777777;
/// A tar block: entries and their data are padded to it.
const BLOCK: u64 = 512;
/// The largest read of a file's content: as big as the layer's write buffer, so that a read
/// goes to the hasher or compressor without another copy.
const COPY_BUFFER: usize = super::WRITE_BUFFER;

/// What kind of entry, with the data only that kind has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    /// A regular file of this many bytes; the caller streams exactly that many.
    File(u64),
    Symlink(Vec<u8>),
    /// A hard link to an earlier entry of the same layer (path relative to the layer root).
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// Everything written for one entry. `path` is relative to the layer root, without a leading
/// `/` or `./` and without a trailing `/`.
#[derive(Debug, Clone)]
pub(crate) struct EntryMeta {
    pub path: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds since the epoch; ustar has no sub-second field and PAX mtimes would defeat
    /// SOURCE_DATE_EPOCH style reproducibility, so nanoseconds are dropped on purpose.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    /// A whiteout (`.wh.` marker) entry: an empty regular file, as docker and containerd write them.
    pub(crate) fn whiteout(path: Vec<u8>, mtime: i64) -> EntryMeta {
        EntryMeta {
            path,
            kind: Kind::File(0),
            mode: 0,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
        }
    }
}

/// Writes entries into a tar stream.
pub(crate) struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    source_date_epoch: Option<i64>,
    /// File contents pass through here, grown to [`COPY_BUFFER`] by the first big file.
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    pub(crate) fn new(out: W, source_date_epoch: Option<i64>) -> Self {
        TarWriter {
            builder: tar::Builder::new(out),
            source_date_epoch,
            buf: Vec::new(),
        }
    }

    /// Appends one entry; for [`Kind::File`] `data` must yield exactly the declared size, else
    /// the layer would be corrupt and an error is returned.
    pub(crate) fn append(&mut self, meta: &EntryMeta, data: impl Read) -> io::Result<()> {
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();

        let (entry_type, size) = match &meta.kind {
            Kind::Dir => (tar::EntryType::Directory, 0),
            Kind::File(n) => (tar::EntryType::Regular, *n),
            Kind::Symlink(_) => (tar::EntryType::Symlink, 0),
            Kind::HardLink(_) => (tar::EntryType::Link, 0),
            Kind::Char(..) => (tar::EntryType::Char, 0),
            Kind::Block(..) => (tar::EntryType::Block, 0),
            Kind::Fifo => (tar::EntryType::Fifo, 0),
        };
        header.set_entry_type(entry_type);
        header.set_mode(meta.mode & 0o7777);

        let mut name = meta.path.clone();
        if meta.kind == Kind::Dir {
            name.push(b'/');
        }
        if header.set_path(OsStr::from_bytes(&name)).is_err() {
            pax.push((b"path".to_vec(), name.clone()));
            set_truncated(&mut header.as_old_mut().name, &name);
        }
        if let Kind::Symlink(target) | Kind::HardLink(target) = &meta.kind {
            if target.len() > 100 || header.set_link_name(OsStr::from_bytes(target)).is_err() {
                pax.push((b"linkpath".to_vec(), target.clone()));
                set_truncated(&mut header.as_old_mut().linkname, target);
            }
        }
        for (key, id, set) in [
            (
                "uid",
                meta.uid,
                tar::Header::set_uid as fn(&mut tar::Header, u64),
            ),
            ("gid", meta.gid, tar::Header::set_gid),
        ] {
            if id > USTAR_ID_MAX {
                pax.push((key.as_bytes().to_vec(), id.to_string().into_bytes()));
                set(&mut header, 0);
            } else {
                set(&mut header, id);
            }
        }
        if size > USTAR_SIZE_MAX {
            pax.push((b"size".to_vec(), size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
        let mtime = match self.source_date_epoch {
            Some(epoch) => meta.mtime.min(epoch),
            None => meta.mtime,
        };
        // Pre-1970 times cannot be written in ustar's unsigned field; 0 is the stable choice.
        header.set_mtime(mtime.max(0) as u64);
        if let Kind::Char(major, minor) | Kind::Block(major, minor) = meta.kind {
            header.set_device_major(major)?;
            header.set_device_minor(minor)?;
        }
        for (k, v) in &meta.xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(k);
            pax.push((key, v.clone()));
        }
        header.set_cksum();

        if !pax.is_empty() {
            self.append_pax(&meta.path, &pax)?;
        }
        if let Kind::File(n) = meta.kind {
            self.append_file(&header, &meta.path, n, data)?;
        } else {
            self.builder.append(&header, io::empty())?;
        }
        Ok(())
    }

    /// Writes a file's header and exactly `size` bytes of `data`, then the padding. This is
    /// `tar::Builder::append` with a buffer of our own: its `io::copy` through `dyn` traits
    /// reads 8 KiB at a time (65,536 reads for a 512 MiB file) and copies each piece again
    /// into the `BufWriter`; reads of [`COPY_BUFFER`] go to the writer whole.
    fn append_file(&mut self, header: &tar::Header, path: &[u8], size: u64, mut data: impl Read) -> io::Result<()> {
        let out = self.builder.get_mut();
        out.write_all(header.as_bytes())?;
        let want = usize::try_from(size).unwrap_or(usize::MAX).min(COPY_BUFFER);
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        let mut left = size;
        while left > 0 {
            let chunk = usize::try_from(left).unwrap_or(usize::MAX).min(self.buf.len());
            let n = match data.read(&mut self.buf[..chunk]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{} shrank while being archived ({left} bytes missing)", String::from_utf8_lossy(path)),
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        let pad = (BLOCK - size % BLOCK) % BLOCK;
        out.write_all(&[0; BLOCK as usize][..pad as usize])
    }

    /// Writes a PAX extended header (`x`) for the next entry. Its own name is fixed apart from
    /// the entry's base name so that it carries no pid or time (GNU tar's default does).
    fn append_pax(&mut self, path: &[u8], records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (k, v) in records {
            // A record is "<len> <key>=<value>\n" where <len> counts itself too.
            let rest = 1 + k.len() + 1 + v.len() + 1;
            let mut len = rest + 1;
            while len.to_string().len() + rest != len {
                len = len.to_string().len() + rest;
            }
            body.extend_from_slice(len.to_string().as_bytes());
            body.push(b' ');
            body.extend_from_slice(k);
            body.push(b'=');
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let base = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
        let mut name = b"PaxHeaders/".to_vec();
        name.extend_from_slice(&base[..base.len().min(80)]);
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::XHeader);
        set_truncated(&mut header.as_old_mut().name, &name);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(body.len() as u64);
        header.set_cksum();
        self.builder.append(&header, &body[..])
    }

    /// Writes the end-of-archive marker and returns the output.
    pub(crate) fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}

/// Copies up to the field's length, leaving the rest NUL; PAX readers take the full value
/// from the extended header.
fn set_truncated(field: &mut [u8], value: &[u8]) {
    field.fill(0);
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64) -> EntryMeta {
        EntryMeta { path: path.as_bytes().to_vec(), kind: Kind::File(size), mode: 0o644, uid: 0, gid: 0, mtime: 1, xattrs: Vec::new() }
    }

    #[test]
    fn files_across_several_buffers_read_back_whole_and_padded() {
        let big: Vec<u8> = (0..COPY_BUFFER * 2 + 777).map(|i| (i % 251) as u8).collect();
        let mut tar = TarWriter::new(Vec::new(), None);
        tar.append(&file("big", big.len() as u64), &big[..]).unwrap();
        tar.append(&file("small", 3), &b"abc"[..]).unwrap();
        let bytes = tar.finish().unwrap();
        assert_eq!(bytes.len() % 512, 0);
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), data)
            })
            .collect();
        assert_eq!(got, vec![("big".to_string(), big), ("small".to_string(), b"abc".to_vec())]);
    }

    #[test]
    fn a_file_that_gives_less_than_its_size_is_an_error_not_a_padded_entry() {
        let mut tar = TarWriter::new(Vec::new(), None);
        let err = tar.append(&file("short", 10), &b"four"[..]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("short shrank while being archived (6 bytes missing)"), "{err}");
    }
}
