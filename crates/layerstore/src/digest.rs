//! Content digests (`sha256:<hex>`) and the hashing writer that computes them while bytes stream.
//!
//! A [`Digest`] is validated once, when it is parsed or computed, so every other module can
//! trust that it names a well-formed sha256 (the only algorithm OCI registries require and the
//! only one forge writes).

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A validated `sha256:<64 lowercase hex>` content digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    // Kept as the full "sha256:..." string so Display and serde are free.
    text: String,
}

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestParseError {
    input: String,
    reason: &'static str,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest::from_sha256(Sha256::digest(bytes).into())
    }

    /// Wraps a raw 32-byte sha256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest { text: format!("sha256:{}", hex::encode(hash)) }
    }

    /// The algorithm part, always `sha256`.
    pub fn algorithm(&self) -> &str {
        "sha256"
    }

    /// The 64 hex characters after `sha256:`.
    pub fn hex(&self) -> &str {
        &self.text["sha256:".len()..]
    }

    /// The full `sha256:<hex>` text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(s: &str) -> Result<Digest, DigestParseError> {
        let err = |reason| DigestParseError { input: s.to_string(), reason };
        let (alg, hex) = s.split_once(':').ok_or_else(|| err("missing ':' between algorithm and hex"))?;
        if alg != "sha256" {
            return Err(err("only sha256 is supported"));
        }
        if hex.len() != 64 {
            return Err(err("sha256 hex must be 64 characters"));
        }
        if !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(err("hex must be lowercase 0-9a-f"));
        }
        Ok(Digest { text: s.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes and counts every byte on its way to `inner`.
///
/// Stacking two of these around a compressor gives the diffID (uncompressed) and the blob
/// digest (compressed) in one pass over the data.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer, for flushing or inspecting mid-stream.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha256(self.hasher.finalize().into()), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Bytes handed to the hashing thread of a [`ParallelHashingWriter`] at a time.
const HASH_BLOCK: usize = 1 << 20;
/// Blocks queued for that thread: bounds memory, and lets the writer run ahead of the hash.
const HASH_QUEUE: usize = 4;

/// A [`HashingWriter`] whose sha256 runs on a thread of its own.
///
/// sha256 of a layer's tar takes about as long as reading its files and writing the tar (on
/// this machine ~1.7 GB/s with SHA-NI); a second core does it while the writer's thread reads
/// and writes. Bytes are copied into 1 MiB blocks for the thread (a memcpy is far cheaper than
/// the hash), at most [`HASH_QUEUE`] of them in flight, their buffers recycled.
pub struct ParallelHashingWriter<W> {
    inner: W,
    block: Vec<u8>,
    written: u64,
    blocks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    spare: std::sync::mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl<W: Write> ParallelHashingWriter<W> {
    /// Wraps `inner`, starting the hashing thread.
    pub fn new(inner: W) -> Self {
        let (blocks, queue) = std::sync::mpsc::sync_channel::<Vec<u8>>(HASH_QUEUE);
        let (done, spare) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let mut hasher = Sha256::new();
            for mut block in queue {
                hasher.update(&block);
                block.clear();
                // The writer may be gone (finished or dropped); the buffer is then just freed.
                let _ = done.send(block);
            }
            hasher
        });
        ParallelHashingWriter { inner, block: Vec::with_capacity(HASH_BLOCK), written: 0, blocks: Some(blocks), spare, worker: Some(worker) }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    fn send_block(&mut self) {
        let next = self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(HASH_BLOCK));
        let full = std::mem::replace(&mut self.block, next);
        // A send fails only if the thread died (it cannot panic short of running out of
        // memory); `finish` then reports it.
        if let Some(blocks) = &self.blocks {
            let _ = blocks.send(full);
        }
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(W, Digest, u64)> {
        if !self.block.is_empty() {
            self.send_block();
        }
        // Closing the queue ends the thread's loop. (Dropped unfinished, the writer closes it
        // the same way and the thread ends on its own.)
        self.blocks = None;
        let hasher = self.worker.take().expect("joined only here").join().map_err(|_| io::Error::other("the hashing thread died"))?;
        Ok((self.inner, Digest::from_sha256(hasher.finalize().into()), self.written))
    }
}

impl<W: Write> Write for ParallelHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let take = rest.len().min(HASH_BLOCK - self.block.len());
            self.block.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.block.len() == HASH_BLOCK {
                self.send_block();
            }
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts every byte read from `inner`.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: io::Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), read: 0 }
    }

    /// Returns the inner reader, the digest of what was read and the byte count.
    pub fn finish(self) -> (R, Digest, u64) {
        (self.inner, Digest::from_sha256(self.hasher.finalize().into()), self.read)
    }
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The chain ID of a stack of layers, as the OCI image spec defines it:
/// `chain(L0) = diffid(L0)`, `chain(L0..n) = sha256(chain(L0..n-1) + " " + diffid(Ln))`.
/// Snapshots are keyed by it, so two images sharing a base share its snapshots.
pub fn chain_id<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Option<Digest> {
    diff_ids.into_iter().fold(None, |parent, diff_id| {
        Some(match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn the_parallel_hash_is_the_hash_of_the_bytes_written() {
        let data: Vec<u8> = (0..3 * HASH_BLOCK + 12345).map(|i| (i * 7 + i / 1000) as u8).collect();
        // Writes that straddle the thread's blocks, one write larger than a block, and none.
        for chunks in [vec![], vec![1, HASH_BLOCK - 1, 1, 2 * HASH_BLOCK + 1, 12342], vec![HASH_BLOCK], vec![4096; 800]] {
            let len = chunks.iter().sum::<usize>().min(data.len());
            let mut w = ParallelHashingWriter::new(Vec::new());
            let mut at = 0;
            for c in chunks {
                let end = (at + c).min(len);
                w.write_all(&data[at..end]).unwrap();
                at = end;
            }
            assert_eq!(w.written(), len as u64);
            let (out, digest, written) = w.finish().unwrap();
            assert_eq!((out.as_slice(), written), (&data[..len], len as u64));
            assert_eq!(digest, Digest::of(&data[..len]));
        }
    }

    #[test]
    fn parses_and_rejects() {
        let d: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".parse().unwrap();
        assert_eq!(d, Digest::of(b""));
        assert_eq!(d.hex().len(), 64);
        for bad in ["", "sha256", "md5:abc", "sha256:ABC", "sha256:e3b0", "sha256:zz"] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn hashing_writer_and_reader_agree() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello world").unwrap();
        let (buf, d, n) = w.finish();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(b"hello world"));
        let mut r = HashingReader::new(&buf[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(r.finish().1, d);
    }

    #[test]
    fn chain_id_follows_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id([&a]), Some(a.clone()));
        assert_eq!(chain_id([&a, &b]), Some(Digest::of(format!("{a} {b}").as_bytes())));
        assert_eq!(chain_id([]), None);
    }
}
