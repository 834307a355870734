//! Pull: resolve the reference to a manifest (picking linux/amd64 from an index), then stream
//! the config and layers into the content store in parallel, each verified by digest and size
//! as it is committed, resuming interrupted blobs with `Range`. The tag is written last, so a
//! failed pull never leaves a tag pointing at a missing blob.

use std::io::Write;
use std::str::FromStr;

use futures_util::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use reqwest::header::{ACCEPT, CONTENT_TYPE, RANGE};
use reqwest::Method;

use forge_layerstore::{Digest, Store};

use crate::transport::{backoff, error_chain, Target, Transport};
use crate::{Error, Progress, Reference};

/// The manifest media types forge reads.
pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests and configs bigger than this are refused before they are fetched (or as soon
/// as they grow past it): the store refuses to read larger ones, so the image could never be
/// used, and manifests are held in memory.
const MAX_JSON: u64 = forge_layerstore::store::MAX_JSON_BYTES;

/// Parallel layer downloads.
const PARALLEL: usize = 3;

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The descriptor tagged in the store (a manifest, or the index it was picked from).
    pub manifest: Descriptor,
    /// The name it is tagged under.
    pub name: String,
    /// The image's config digest (its ID).
    pub config: Digest,
    /// Layer digests, bottom first.
    pub layers: Vec<Digest>,
}

pub(crate) async fn pull(t: &Transport, reference: &Reference, store: &Store, progress: &dyn Progress) -> Result<Pulled, Error> {
    let target = Target { host: reference.api_host(), registry: reference.registry(), repository: reference.repository(), push: false };
    let (top_bytes, top_type) = fetch_manifest(t, target, reference.manifest_ref(), reference.digest()).await?;
    let top_digest = Digest::of(&top_bytes);
    store_bytes(store, &top_bytes, &top_digest)?;
    let top_desc = descriptor(&top_type, top_bytes.len() as u64, &top_digest)?;

    let value: serde_json::Value = serde_json::from_slice(&top_bytes).map_err(|e| invalid(reference, "manifest", e.to_string()))?;
    let manifest_bytes = if value.get("manifests").is_some() {
        let index: ImageIndex = serde_json::from_value(value).map_err(|e| invalid(reference, "image index", e.to_string()))?;
        let pick = index
            .manifests()
            .iter()
            .find(|m| m.platform().as_ref().is_some_and(|p| p.os().to_string() == "linux" && p.architecture().to_string() == "amd64"))
            .ok_or_else(|| invalid(reference, "image index", "no linux/amd64 image in it".into()))?;
        let (bytes, _) = fetch_manifest(t, target, pick.digest().as_ref(), Some(pick.digest().as_ref())).await?;
        let d = Digest::of(&bytes);
        store_bytes(store, &bytes, &d)?;
        bytes
    } else {
        top_bytes
    };
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| invalid(reference, "manifest", e.to_string()))?;

    if manifest.config().size() > MAX_JSON {
        let message = format!("{} bytes, more than the {MAX_JSON} bytes an image config may have", manifest.config().size());
        return Err(invalid(reference, "image config", message));
    }
    let mut blobs: Vec<(Digest, u64)> = vec![(parse_digest(reference, manifest.config().digest().as_ref())?, manifest.config().size())];
    for l in manifest.layers() {
        blobs.push((parse_digest(reference, l.digest().as_ref())?, l.size()));
    }
    futures_util::stream::iter(blobs.iter().cloned().map(|(d, size)| fetch_blob(t, target, store, d, size, progress)))
        .buffer_unordered(PARALLEL)
        .try_collect::<Vec<()>>()
        .await?;

    // Tag only an image the store can read back: its config must parse.
    store.get_json::<forge_layerstore::ImageConfig>(&blobs[0].0, "image config")?;
    let name = reference.to_string();
    store.tag(&name, &top_desc)?;
    record_source(store, reference, blobs.iter().map(|(d, _)| d));
    let mut layers = blobs.into_iter().map(|(d, _)| d);
    let config = layers.next().expect("config first");
    Ok(Pulled { manifest: top_desc, name, config, layers: layers.collect() })
}

fn invalid(reference: &Reference, what: &str, message: String) -> Error {
    Error::Invalid { what: what.to_string(), registry: reference.registry().to_string(), message }
}

fn parse_digest(reference: &Reference, s: &str) -> Result<Digest, Error> {
    Digest::from_str(s).map_err(|e| invalid(reference, "descriptor", e.to_string()))
}

pub(crate) fn descriptor(media_type: &str, size: u64, digest: &Digest) -> Result<Descriptor, Error> {
    let d = oci_spec::image::Digest::from_str(digest.as_str()).map_err(|e| Error::Invalid { what: "digest".into(), registry: String::new(), message: e.to_string() })?;
    Ok(Descriptor::new(oci_spec::image::MediaType::from(media_type), size, d))
}

/// GETs a manifest by tag or digest; returns its bytes and media type. With `want`, the
/// bytes must hash to it. A body cut off and bytes that do not match are fetched again, up
/// to the client's retries; the last error says how many attempts were made.
pub(crate) async fn fetch_manifest(t: &Transport, target: Target<'_>, reference: &str, want: Option<&str>) -> Result<(Vec<u8>, String), Error> {
    let url = format!("{}/v2/{}/manifests/{reference}", t.base_url(target.host).await?, target.repository);
    let mut attempt = 0;
    loop {
        let err = match fetch_manifest_once(t, target, &url).await {
            Ok((bytes, media_type)) => match want {
                Some(want) if Digest::of(&bytes).as_str() != want => {
                    let message = format!("asked for {want}, got content with digest {}", Digest::of(&bytes));
                    Error::Invalid { what: "manifest".into(), registry: target.registry.into(), message }
                }
                _ => return Ok((bytes, media_type)),
            },
            Err(e @ Error::Connection { .. }) => e,
            Err(e) => return Err(e),
        };
        attempt += 1;
        if attempt > t.config.max_retries {
            return Err(after_attempts(err, attempt));
        }
        tracing::debug!(url, attempt, %err, "fetching the manifest again");
        tokio::time::sleep(backoff(attempt - 1)).await;
    }
}

async fn fetch_manifest_once(t: &Transport, target: Target<'_>, url: &str) -> Result<(Vec<u8>, String), Error> {
    let too_big = || Error::Invalid { what: "manifest".into(), registry: target.registry.into(), message: format!("larger than {MAX_JSON} bytes") };
    let resp = t.send(target, Method::GET, url, |r| r.header(ACCEPT, MANIFEST_TYPES)).await?;
    let resp = Transport::expect(resp, "GET", &[200]).await?;
    let media_type = resp.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/vnd.oci.image.manifest.v1+json").split(';').next().unwrap_or("").trim().to_string();
    let bytes = read_body(resp, url, MAX_JSON).await?.ok_or_else(too_big)?;
    // A manifest's media type may also be inside it (OCI recommends it; Docker requires it).
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes).ok().and_then(|v| v.get("mediaType")?.as_str().map(str::to_string)).unwrap_or(media_type);
    Ok((bytes, media_type))
}

/// A response's whole body, or `None` when it is (or announces) more than `max` bytes: it is
/// not read further then.
pub(crate) async fn read_body(resp: reqwest::Response, url: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
    if resp.content_length().is_some_and(|l| l > max) {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Connection { url: url.to_string(), message: error_chain(&e) })?;
        if (bytes.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Some(bytes))
}

/// `err` as the final word after `attempts` tries.
pub(crate) fn after_attempts(err: Error, attempts: u32) -> Error {
    match err {
        Error::Connection { url, message } => Error::Connection { url, message: format!("{message} (gave up after {attempts} attempts)") },
        Error::Invalid { what, registry, message } => Error::Invalid { what, registry, message: format!("{message} (gave up after {attempts} attempts)") },
        other => other,
    }
}

fn store_bytes(store: &Store, bytes: &[u8], digest: &Digest) -> Result<(), Error> {
    // `reuse`, not `exists`: the pull's lease then holds the blob against a concurrent gc.
    if store.content().reuse(digest)? {
        return Ok(());
    }
    let mut w = store.content().writer(digest.as_str())?;
    w.write_all(bytes).map_err(|e| Error::File { path: "content store".into(), message: e.to_string() })?;
    w.commit(Some(bytes.len() as u64), Some(digest))?;
    Ok(())
}

/// Streams one blob into the store (see [`fetch_blob_once`]). Bytes that do not hash to the
/// digest are thrown away and fetched again from the start, up to the client's retries.
pub(crate) async fn fetch_blob(t: &Transport, target: Target<'_>, store: &Store, digest: Digest, size: u64, progress: &dyn Progress) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        match fetch_blob_once(t, target, store, digest.clone(), size, progress).await {
            Err(Error::Content(e @ forge_layerstore::content::Error::DigestMismatch { .. })) => {
                attempt += 1;
                let err = Error::Invalid { what: format!("blob {digest}"), registry: target.registry.into(), message: e.to_string() };
                if attempt > t.config.max_retries {
                    return Err(after_attempts(err, attempt));
                }
                tracing::debug!(%digest, attempt, %err, "fetching the blob again");
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            other => return other,
        }
    }
}

/// Streams one blob into the store, resuming from what an interrupted attempt left, and
/// verifies it as it is committed.
async fn fetch_blob_once(t: &Transport, target: Target<'_>, store: &Store, digest: Digest, size: u64, progress: &dyn Progress) -> Result<(), Error> {
    if store.content().reuse(&digest)? {
        progress.done(digest.as_str(), "exists");
        return Ok(());
    }
    let url = format!("{}/v2/{}/blobs/{digest}", t.base_url(target.host).await?, target.repository);
    // The ingest is named by the digest, so an earlier interrupted pull (of this or another
    // process) resumes; another process pulling it right now makes `writer` fail as locked.
    let mut writer = store.content().writer(digest.as_str())?;
    progress.start(digest.as_str(), size, writer.offset());
    let mut failures = 0;
    loop {
        let offset = writer.offset();
        if offset >= size {
            break;
        }
        let result: Result<(), Error> = async {
            let resp = t.send(target, Method::GET, &url, |r| if offset > 0 { r.header(RANGE, format!("bytes={offset}-")) } else { r }).await?;
            let resp = Transport::expect(resp, "GET", &[200, 206]).await?;
            // A registry that ignores Range sends the whole blob again: skip what we have.
            let mut skip = if resp.status().as_u16() == 200 { offset } else { 0 };
            let mut body = resp.bytes_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Error::Connection { url: url.clone(), message: error_chain(&e) })?;
                let mut data = &chunk[..];
                if skip > 0 {
                    let n = (skip as usize).min(data.len());
                    data = &data[n..];
                    skip -= n as u64;
                }
                if writer.offset() + data.len() as u64 > size {
                    return Err(Error::Invalid { what: format!("blob {digest}"), registry: target.registry.into(), message: format!("more than the {size} bytes the manifest announced") });
                }
                writer.write_all(data).map_err(|e| Error::File { path: "content store".into(), message: e.to_string() })?;
                progress.advance(digest.as_str(), data.len() as u64);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if writer.offset() < size {
                    failures += 1;
                }
            }
            Err(Error::Connection { .. }) if failures < t.config.max_retries => failures += 1,
            Err(e) => return Err(e),
        }
        if failures > t.config.max_retries {
            return Err(Error::Connection { url, message: format!("blob incomplete after {failures} attempts ({} of {size} bytes)", writer.offset()) });
        }
        if writer.offset() < size {
            tokio::time::sleep(backoff(failures)).await;
        }
    }
    // Verifies size and digest; a mismatch discards the bytes and stores nothing.
    writer.commit(Some(size), Some(&digest))?;
    progress.done(digest.as_str(), "pulled");
    Ok(())
}

/// Remembers that these blobs are in `reference`'s repository, so a later push to another
/// repository of the same registry can mount them instead of uploading.
pub(crate) fn record_source<'a>(store: &Store, reference: &Reference, digests: impl Iterator<Item = &'a Digest>) {
    let path = store.root().join("forge").join("blob-sources.json");
    let mut map: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let repo = format!("{}/{}", reference.registry(), reference.repository());
    for d in digests {
        map.entry(d.to_string()).or_default().insert(repo.clone());
    }
    // A lost update only costs a mount; the file is a hint, written atomically.
    if let Ok(bytes) = serde_json::to_vec(&map) {
        if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(path.parent().unwrap_or(store.root())) {
            if tmp.write_all(&bytes).is_ok() {
                let _ = tmp.persist(&path);
            }
        }
    }
}

/// Repositories of `registry` known to hold `digest`.
pub(crate) fn known_sources(store: &Store, registry: &str, digest: &Digest) -> Vec<String> {
    let path = store.root().join("forge").join("blob-sources.json");
    let map: std::collections::BTreeMap<String, Vec<String>> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    map.get(digest.as_str())
        .map(|repos| repos.iter().filter_map(|r| r.strip_prefix(&format!("{registry}/")).map(str::to_string)).collect())
        .unwrap_or_default()
}
