//! gzip on every core, with output that does not depend on how many cores there are.
//!
//! The input is cut into fixed 1 MiB blocks. Each block becomes a gzip member of its own (RFC
//! 1952 2.2: a gzip file is a series of members), compressed by a pool of worker threads, and the
//! members are written in order. Because block boundaries and the level are fixed, the same input
//! always gives the same bytes. gzp, the crate for this, gave different bytes from run to run
//! with 2+ threads here (see ../shared/anchors/README.md), which layer digests cannot afford;
//! hence this module.
//!
//! Members rather than one deflate stream cut by sync flushes (as `pigz -i` writes): libdeflate
//! compresses a whole buffer at a time and always ends it with a final block, and it is much
//! faster than zlib-rs for the same size. Measured on 1 MiB blocks, one core of the Xeon host of
//! 2026-12-01: W2's data 144 MiB/s at level 1 against zlib-rs' 104 at level 2, both 0.367 of the
//! input; a Debian rootfs tar 128 against 67 MiB/s, 0.427 against 0.434. Every reader of image
//! layers reads all members: Go's compress/gzip (docker, containerd, podman, skopeo, umoci),
//! zlib's gzip, pigz, and flate2's `MultiGzDecoder` here. eStargz layers, which every runtime
//! pulls, are multi-member gzip too, and bgzip writes blocked members the same way.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use libdeflater::{CompressionLvl, Compressor};

/// Input bytes per gzip member.
const BLOCK: usize = 1 << 20;

struct Job {
    seq: u64,
    data: Vec<u8>,
}

/// A gzip writer that compresses blocks in parallel.
pub(crate) struct ParallelGzip<W: Write> {
    out: W,
    block: Vec<u8>,
    next_seq: u64,
    next_write: u64,
    pending: BTreeMap<u64, Vec<u8>>,
    in_flight: usize,
    max_in_flight: usize,
    jobs: Option<Sender<Job>>,
    results: Receiver<(u64, io::Result<Vec<u8>>)>,
    workers: Vec<JoinHandle<()>>,
}

impl<W: Write> ParallelGzip<W> {
    /// A writer at libdeflate `level` (0-12) using `workers` threads.
    pub(crate) fn new(out: W, level: i32, workers: usize) -> io::Result<ParallelGzip<W>> {
        let level = CompressionLvl::new(level)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("gzip level {level}: {e:?}")))?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel();
        let workers = (0..workers.max(1))
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), res_tx.clone());
                std::thread::spawn(move || {
                    let mut compressor = Compressor::new(level);
                    loop {
                        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                            Ok(j) => j,
                            Err(_) => return,
                        };
                        let member = gzip_member(&mut compressor, &job.data);
                        if tx.send((job.seq, member)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect::<Vec<_>>();
        let max_in_flight = 2 * workers.len();
        Ok(ParallelGzip {
            out,
            block: Vec::with_capacity(BLOCK),
            next_seq: 0,
            next_write: 0,
            pending: BTreeMap::new(),
            in_flight: 0,
            max_in_flight,
            jobs: Some(job_tx),
            results: res_rx,
            workers,
        })
    }

    fn submit(&mut self) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let job = Job { seq: self.next_seq, data };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs.as_ref().expect("open until finish").send(job).map_err(|_| io::Error::other("gzip worker died"))
    }

    /// Waits for one finished member and writes every member that is now next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, result) = self.results.recv().map_err(|_| io::Error::other("gzip worker died"))?;
        self.in_flight -= 1;
        self.pending.insert(seq, result?);
        while let Some(bytes) = self.pending.remove(&self.next_write) {
            self.out.write_all(&bytes)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Ends the stream with the last, partial block (or one empty member for empty input: a
    /// gzip file has at least one). Returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        if !self.block.is_empty() || self.next_seq == 0 {
            self.submit()?;
        }
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        // Closing the job channel ends the workers.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Block boundaries are fixed by the input alone; flushing never cuts a block short.
        Ok(())
    }
}

/// One block as a whole gzip member. libdeflate's header is fixed (mtime 0, no name, OS
/// "unknown"), so equal blocks give equal members.
fn gzip_member(compressor: &mut Compressor, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = vec![0; compressor.gzip_compress_bound(data.len())];
    let len = compressor
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("gzip of a {} byte block: {e:?}", data.len())))?;
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};

    use super::*;

    fn gz(data: &[u8], workers: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 1, workers).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn gunzip(blob: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        flate2::read::MultiGzDecoder::new(blob).read_to_end(&mut back).unwrap();
        back
    }

    #[test]
    fn any_worker_count_gives_the_same_valid_gzip() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| ((i * 7) % 251) as u8 ^ (i >> 12) as u8).collect();
        let one = gz(&data, 1);
        assert_eq!(one, gz(&data, 2));
        assert_eq!(one, gz(&data, 5));
        assert_eq!(gunzip(&one), data);
        assert!(one.len() < data.len() / 2);
    }

    #[test]
    fn one_member_per_block_and_one_for_empty_input() {
        for (len, members) in [(0, 1), (1, 1), (BLOCK - 1, 1), (BLOCK, 1), (BLOCK + 1, 2), (2 * BLOCK, 2)] {
            let data = vec![b'x'; len];
            let blob = gz(&data, 2);
            assert_eq!(gunzip(&blob), data, "{len} bytes");
            // A single-member reader stops after the first member.
            let mut first = Vec::new();
            flate2::read::GzDecoder::new(&blob[..]).read_to_end(&mut first).unwrap();
            assert_eq!(first.len(), len.min(BLOCK), "{len} bytes");
            let starts = blob.windows(4).filter(|w| *w == [0x1f, 0x8b, 8, 0]).count();
            assert_eq!(starts, members, "{len} bytes");
        }
    }

    #[test]
    fn system_gzip_reads_every_member() {
        let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 97) as u8).collect();
        let blob = gz(&data, 2);
        let mut child = Command::new("gzip").arg("-dc").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&blob).unwrap());
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn a_level_libdeflate_lacks_is_an_error() {
        let err = ParallelGzip::new(Vec::new(), 13, 1).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
