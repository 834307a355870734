//! Push: every blob is checked with HEAD first, mounted from another repository of the same
//! registry when forge knows one holds it, else uploaded (one PUT for small blobs, PATCH chunks
//! for large ones, streamed from the store file by file range); layers go up in parallel; the
//! manifest goes last, only once every blob is there.
//!
//! A big plain layer, compressed for this push, goes up as it is compressed, as docker's push
//! does: one PATCH whose body is the compressor's output, then the PUT with the digest once the
//! blob is stored. Should that fail, the stored blob is sent as any other.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION};
use reqwest::Method;

use forge_layerstore::archive::Compression;
use forge_layerstore::distribute::LayerSink;
use forge_layerstore::{Digest, Layer, Store};
use oci_spec::image::Descriptor;

use crate::pull::{descriptor, known_sources, record_source};
use crate::transport::{Target, Transport};
use crate::{Error, Progress, Reference};

/// Blobs up to this size go up in one PUT; larger ones in PATCH chunks of this size.
const CHUNK: u64 = 32 << 20;

/// Parallel blob uploads.
const PARALLEL: usize = 3;

/// Plain layers at least this large go up while they are compressed.
const STREAM_FROM: u64 = 8 << 20;

/// Bytes of compressed output a streamed upload may hold in memory: chunks of this size, this
/// many at a time; the compressor waits for the upload beyond that.
const STREAM_CHUNK: usize = 1 << 20;
const STREAM_CHUNKS: usize = 4;

/// What the compressing thread tells the uploads.
enum Event {
    /// A blob is stored and can go up: the config, or a layer of diffID `diff_id`.
    Ready { digest: Digest, size: u64, diff_id: Option<Digest> },
    /// The compressed bytes of the plain layer `diff_id` follow on `bytes`.
    Streaming { diff_id: Digest, bytes: tokio::sync::mpsc::Receiver<Vec<u8>> },
}

/// The [`LayerSink`] of a push: each big layer's bytes to a channel the uploads read.
struct Streams(tokio::sync::mpsc::UnboundedSender<Event>);

impl LayerSink for Streams {
    fn start(&self, plain: &Layer) -> Option<Box<dyn std::io::Write + Send>> {
        if plain.size < STREAM_FROM {
            return None;
        }
        let (tx, bytes) = tokio::sync::mpsc::channel(STREAM_CHUNKS);
        self.0.send(Event::Streaming { diff_id: plain.diff_id.clone(), bytes }).ok()?;
        Some(Box::new(ChunkSender { tx, chunk: Vec::with_capacity(STREAM_CHUNK) }))
    }
}

/// A blocking writer onto a streamed upload's channel, in chunks; the rest goes when dropped.
struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
}

impl ChunkSender {
    fn send_chunk(&mut self) -> std::io::Result<()> {
        let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(STREAM_CHUNK));
        self.tx.blocking_send(full).map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the streamed upload stopped"))
    }
}

impl std::io::Write for ChunkSender {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len().min(STREAM_CHUNK - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        if self.chunk.len() == STREAM_CHUNK {
            self.send_chunk()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ChunkSender {
    fn drop(&mut self) {
        if !self.chunk.is_empty() {
            let _ = self.send_chunk();
        }
    }
}

pub(crate) async fn push(t: &Transport, store: &Store, local: &str, reference: &Reference, progress: &dyn Progress) -> Result<Descriptor, Error> {
    let local_image = store.image(local)?;
    let target = Target { host: reference.api_host(), registry: reference.registry(), repository: reference.repository(), push: true };
    // Plain layers leave the machine gzipped (remembered, so a second push reuses the blobs).
    // Each layer goes up as soon as its blob is ready, while the next one is still compressed;
    // the config is not changed by compression, so it goes first.
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    events_tx.send(Event::Ready { digest: local_image.id()?, size: local_image.manifest.config().size(), diff_id: None }).expect("the receiver is alive");
    let compressing = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            // A send fails only once the uploads have stopped on an error, which is reported instead.
            let ready = |l: &Layer| drop(events_tx.send(Event::Ready { digest: l.digest.clone(), size: l.size, diff_id: Some(l.diff_id.clone()) }));
            let streams = Streams(events_tx.clone());
            forge_layerstore::distribute::for_distribution_with(&store, &local_image, Compression::Gzip, &ready, Some(&streams))
        })
    };
    // A streamed layer's upload waits here for its digest, which comes with its `Ready`.
    let streamed: Mutex<HashMap<Digest, tokio::sync::oneshot::Sender<(Digest, u64)>>> = Mutex::default();
    let uploads = tokio_stream_of(events_rx)
        .map(|event| -> futures_util::future::BoxFuture<'_, Result<(), Error>> {
            match event {
                Event::Streaming { diff_id, bytes } => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    streamed.lock().unwrap().insert(diff_id, tx);
                    Box::pin(push_streamed(t, target, store, bytes, rx, progress))
                }
                Event::Ready { digest, size, diff_id } => match diff_id.and_then(|d| streamed.lock().unwrap().remove(&d)) {
                    Some(waiting) => {
                        let _ = waiting.send((digest, size));
                        Box::pin(async { Ok(()) })
                    }
                    None => Box::pin(push_blob(t, target, store, digest, size, progress)),
                },
            }
        })
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await;
    let image = compressing.await.map_err(|e| Error::Invalid { what: "local image".into(), registry: String::new(), message: format!("compressing its layers: {e}") })??;
    uploads?;
    let mut blobs: Vec<(Digest, u64)> = vec![(image.id()?, image.manifest.config().size())];
    for l in image.layers()? {
        blobs.push((l.digest, l.size));
    }

    // The manifest's exact stored bytes, so its digest is the one the store knows.
    let manifest_digest = Digest::from_str(image.descriptor.digest().as_ref()).map_err(|e| Error::Invalid { what: "manifest digest".into(), registry: String::new(), message: e.to_string() })?;
    let bytes = std::fs::read(store.content().path(&manifest_digest)).map_err(|e| Error::File { path: manifest_digest.to_string(), message: e.to_string() })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid { what: "local manifest".into(), registry: String::new(), message: e.to_string() })?;
    if value.get("manifests").is_some() {
        return Err(Error::Invalid { what: "local image".into(), registry: String::new(), message: format!("{local} is a multi-platform index; push one of its images by digest") });
    }
    let media_type = value.get("mediaType").and_then(|m| m.as_str()).unwrap_or("application/vnd.oci.image.manifest.v1+json").to_string();
    let url = format!("{}/v2/{}/manifests/{}", t.base_url(target.host).await?, target.repository, reference.manifest_ref());
    let resp = t.send(target, Method::PUT, &url, |r| r.header(CONTENT_TYPE, media_type.clone()).body(bytes.clone())).await?;
    Transport::expect(resp, "PUT", &[200, 201]).await?;
    record_source(store, reference, blobs.iter().map(|(d, _)| d));
    descriptor(&media_type, bytes.len() as u64, &manifest_digest)
}

/// Uploads a layer whose compressed bytes arrive on `bytes` as they are made: one PATCH
/// streaming them, then the PUT with the digest `stored` gives once the blob is stored. If
/// either fails, the stored blob is pushed as any other.
async fn push_streamed(t: &Transport, target: Target<'_>, store: &Store, bytes: tokio::sync::mpsc::Receiver<Vec<u8>>, stored: tokio::sync::oneshot::Receiver<(Digest, u64)>, progress: &dyn Progress) -> Result<(), Error> {
    let sent = stream_body(t, target, bytes).await;
    // Gone when the compression failed, which the push reports.
    let Ok((digest, size)) = stored.await else { return Ok(()) };
    if let Ok(location) = sent {
        let url = with_digest(&location, &digest);
        if let Ok(resp) = t.send(target, Method::PUT, &url, |r| r.header(CONTENT_LENGTH, 0)).await {
            if resp.status().as_u16() == 201 {
                progress.done(digest.as_str(), "pushed");
                return Ok(());
            }
            tracing::debug!(%digest, status = %resp.status(), "a streamed upload was refused; sending the stored blob");
        }
    }
    push_blob(t, target, store, digest, size, progress).await
}

/// Opens an upload and sends what arrives on `bytes` as the body of one PATCH, not retried (the
/// body is read once); the location to finish the upload at.
async fn stream_body(t: &Transport, target: Target<'_>, mut bytes: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Result<String, Error> {
    let base = t.base_url(target.host).await?;
    let url = format!("{base}/v2/{}/blobs/uploads/", target.repository);
    // On an error `bytes` is dropped, and the compressor stops copying into it.
    let resp = t.send(target, Method::POST, &url, |r| r.header(CONTENT_LENGTH, 0)).await?;
    let location = location_of(&base, &Transport::expect(resp, "POST", &[202]).await?)?;
    let stream = futures_util::stream::poll_fn(move |cx| bytes.poll_recv(cx).map(|c| c.map(Ok::<_, std::io::Error>)));
    let body = reqwest::Body::wrap_stream(stream);
    let resp = t.send_once(target, Method::PATCH, &location, |r| r.header(CONTENT_TYPE, "application/octet-stream").body(body)).await?;
    let resp = Transport::expect(resp, "PATCH", &[202]).await?;
    location_of(&base, &resp)
}

pub(crate) async fn push_blob(t: &Transport, target: Target<'_>, store: &Store, digest: Digest, size: u64, progress: &dyn Progress) -> Result<(), Error> {
    let base = t.base_url(target.host).await?;
    let head_url = format!("{base}/v2/{}/blobs/{digest}", target.repository);
    let resp = t.send(target, Method::HEAD, &head_url, |r| r).await?;
    if resp.status().is_success() {
        progress.done(digest.as_str(), "exists");
        return Ok(());
    }
    // Cross-repository mount: 201 means done; 202 means the registry declined and opened an
    // upload session instead, which is used as if POSTed plainly.
    // A blob the store knows only as remote in this registry is mounted from there, not fetched.
    let remote = store.remote().get(&digest).filter(|_| !store.content().exists(&digest)).map(|b| b.source);
    let mut sources = known_sources(store, target.registry, &digest);
    sources.extend(remote.filter(|s| s.registry == target.registry).map(|s| s.repository));
    let mut location = None;
    for from in sources.into_iter().filter(|r| r != target.repository) {
        let url = format!("{base}/v2/{}/blobs/uploads/?mount={digest}&from={from}", target.repository);
        let resp = t.send(target, Method::POST, &url, |r| r.header(CONTENT_LENGTH, 0)).await?;
        match resp.status().as_u16() {
            201 => {
                progress.done(digest.as_str(), "mounted");
                return Ok(());
            }
            202 => {
                location = Some(location_of(&base, &resp)?);
                break;
            }
            _ => {}
        }
    }
    let mut location = match location {
        Some(l) => l,
        None => {
            let url = format!("{base}/v2/{}/blobs/uploads/", target.repository);
            let resp = t.send(target, Method::POST, &url, |r| r.header(CONTENT_LENGTH, 0)).await?;
            let resp = Transport::expect(resp, "POST", &[202]).await?;
            location_of(&base, &resp)?
        }
    };
    if !store.content().exists(&digest) {
        // A remote blob no mount could bring: fetched into the store, then uploaded.
        let (s, d) = (store.clone(), digest.clone());
        tokio::task::spawn_blocking(move || s.blob(&d).map(drop))
            .await
            .map_err(|e| Error::Invalid { what: "local blob".into(), registry: String::new(), message: format!("fetching {digest}: {e}") })??;
    }
    progress.start(digest.as_str(), size, 0);
    let path = store.content().path(&digest);
    let body = |start: u64, len: u64| -> Result<reqwest::Body, Error> {
        use std::io::Seek;
        let mut f = std::fs::File::open(&path).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
        f.seek(std::io::SeekFrom::Start(start)).map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
        let reader = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(f), len);
        Ok(reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10)))
    };
    // Fail early and clearly if the blob is missing; the closures below re-open it per attempt.
    body(0, 0)?;
    if size > CHUNK {
        let mut start = 0;
        while start < size {
            let len = CHUNK.min(size - start);
            // Each attempt re-opens the file at the chunk, so a retried PATCH resends it whole.
            let resp = t
                .send(target, Method::PATCH, &location, |r| {
                    let r = r.header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, len).header(CONTENT_RANGE, format!("{start}-{}", start + len - 1));
                    match body(start, len) {
                        Ok(b) => r.body(b),
                        Err(_) => r,
                    }
                })
                .await?;
            let resp = Transport::expect(resp, "PATCH", &[202]).await?;
            location = location_of(&base, &resp)?;
            start += len;
            progress.advance(digest.as_str(), len);
        }
        let url = with_digest(&location, &digest);
        let resp = t.send(target, Method::PUT, &url, |r| r.header(CONTENT_LENGTH, 0)).await?;
        Transport::expect(resp, "PUT", &[201]).await?;
    } else {
        let url = with_digest(&location, &digest);
        let resp = t
            .send(target, Method::PUT, &url, |r| {
                let r = r.header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size);
                match body(0, size) {
                    Ok(b) => r.body(b),
                    Err(_) => r,
                }
            })
            .await?;
        Transport::expect(resp, "PUT", &[201]).await?;
        progress.advance(digest.as_str(), size);
    }
    progress.done(digest.as_str(), "pushed");
    Ok(())
}

/// The items sent to `rx` as a stream, ending when every sender is gone.
fn tokio_stream_of<T>(mut rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The upload URL a registry returned, made absolute.
fn location_of(base: &str, resp: &reqwest::Response) -> Result<String, Error> {
    let loc = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).ok_or_else(|| Error::Invalid { what: "upload".into(), registry: base.into(), message: "no Location header".into() })?;
    Ok(if loc.starts_with("http://") || loc.starts_with("https://") { loc.to_string() } else { format!("{base}{loc}") })
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}
