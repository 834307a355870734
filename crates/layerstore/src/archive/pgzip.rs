//! gzip on every core, with output that does not depend on how many cores there are.
//!
//! The input is cut into fixed 1 MiB blocks; each block is deflated on its own (as `pigz -i`
//! does) by a pool of worker threads, ending in a sync flush so the pieces concatenate into one
//! valid deflate stream, and the pieces are written in order behind one gzip header and trailer.
//! Because block boundaries and levels are fixed, the same input always gives the same bytes.
//! gzp, the crate for this, gave different bytes from run to run with 2+ threads here (see
//! ../shared/anchors/README.md), which layer digests cannot afford; hence this module.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Input bytes per independently compressed block.
const BLOCK: usize = 1 << 20;

/// A gzip member header with mtime 0, no name, OS "unknown": fixed bytes.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

struct Job {
    seq: u64,
    data: Vec<u8>,
    last: bool,
}

/// A gzip writer that compresses blocks in parallel.
pub(crate) struct ParallelGzip<W: Write> {
    /// Taken by `finish`.
    out: Option<W>,
    block: Vec<u8>,
    crc: Crc,
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
    /// A writer at gzip `level` using `workers` threads.
    pub(crate) fn new(mut out: W, level: u32, workers: usize) -> io::Result<ParallelGzip<W>> {
        out.write_all(&HEADER)?;
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel();
        let workers = (0..workers.max(1))
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), res_tx.clone());
                std::thread::spawn(move || loop {
                    let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
                        Ok(j) => j,
                        Err(_) => return,
                    };
                    let out = deflate_block(&job.data, level, job.last);
                    if tx.send((job.seq, out)).is_err() {
                        return;
                    }
                })
            })
            .collect::<Vec<_>>();
        let max_in_flight = 2 * workers.len();
        Ok(ParallelGzip {
            out: Some(out),
            block: Vec::with_capacity(BLOCK),
            crc: Crc::new(),
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

    fn submit(&mut self, last: bool) -> io::Result<()> {
        while self.in_flight >= self.max_in_flight {
            self.collect_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let job = Job { seq: self.next_seq, data, last };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs.as_ref().expect("open until finish").send(job).map_err(|_| io::Error::other("gzip worker died"))
    }

    /// Waits for one finished block and writes every block that is now next in order.
    fn collect_one(&mut self) -> io::Result<()> {
        let (seq, result) = self.results.recv().map_err(|_| io::Error::other("gzip worker died"))?;
        self.in_flight -= 1;
        self.pending.insert(seq, result?);
        while let Some(bytes) = self.pending.remove(&self.next_write) {
            self.out.as_mut().expect("open until finish").write_all(&bytes)?;
            self.next_write += 1;
        }
        Ok(())
    }

    /// Ends the stream: the last block, then CRC-32 and length. Returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.submit(true)?;
        while self.in_flight > 0 {
            self.collect_one()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let mut out = self.out.take().expect("finish runs once");
        out.write_all(&crc.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        // Closing the job channel ends the workers.
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        Ok(out)
    }
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        if self.block.len() == BLOCK {
            self.submit(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Block boundaries are fixed by the input alone; flushing never cuts a block short.
        Ok(())
    }
}

/// Deflates one block on its own: ending in a sync flush (byte-aligned, more to come), or
/// finishing the stream for the last block.
fn deflate_block(data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 64 * 1024 {
            out.reserve(256 * 1024);
        }
        let status = c.compress_vec(&data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let done_input = c.total_in() as usize == data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is in and the output had room to spare.
            _ if !last && done_input && out.capacity() > out.len() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gz(data: &[u8], workers: usize) -> Vec<u8> {
        let mut w = ParallelGzip::new(Vec::new(), 6, workers).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn any_worker_count_gives_the_same_valid_gzip() {
        let data: Vec<u8> = (0..3_500_000u32).map(|i| ((i * 7) % 251) as u8 ^ (i >> 12) as u8).collect();
        let one = gz(&data, 1);
        assert_eq!(one, gz(&data, 2));
        assert_eq!(one, gz(&data, 5));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        assert!(one.len() < data.len() / 2);
    }

    #[test]
    fn empty_and_exact_block_inputs() {
        for len in [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK] {
            let data = vec![b'x'; len];
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz(&data, 2)[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back.len(), len);
        }
    }
}
