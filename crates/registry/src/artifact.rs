//! Blobs and manifests one at a time, for artifacts that are not images (forge's build cache):
//! the same transport (auth, retries, resumable verified downloads, cross-repository mounts)
//! as image push and pull, without their image rules.

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;

use forge_layerstore::{Digest, Store};

use crate::pull::{after_attempts, fetch_blob, fetch_manifest, read_body};
use crate::push::push_blob;
use crate::transport::{backoff, Target, Transport};
use crate::{Error, NoProgress, Reference};

fn target(reference: &Reference, push: bool) -> Target<'_> {
    Target { host: reference.api_host(), registry: reference.registry(), repository: reference.repository(), push }
}

/// The manifest `reference` names, its bytes (bounded as image manifests are) and media type;
/// `None` when the registry does not know it.
pub(crate) async fn manifest(t: &Transport, reference: &Reference) -> Result<Option<(Vec<u8>, String)>, Error> {
    match fetch_manifest(t, target(reference, false), reference.manifest_ref(), reference.digest()).await {
        Ok(found) => Ok(Some(found)),
        Err(Error::Status { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Streams blob `digest` of `size` bytes from `reference`'s repository into `store`, verified.
pub(crate) async fn pull_blob(t: &Transport, reference: &Reference, store: &Store, digest: &Digest, size: u64) -> Result<(), Error> {
    fetch_blob(t, target(reference, false), store, digest.clone(), size, &NoProgress).await?;
    crate::pull::record_source(store, reference, std::iter::once(digest));
    Ok(())
}

/// Blob `digest` of `size` bytes (at most `max`) from `reference`'s repository, in memory and
/// verified by size and digest; nothing is stored. Bytes that do not verify are fetched again,
/// up to the client's retries.
pub(crate) async fn blob_bytes(t: &Transport, reference: &Reference, digest: &Digest, size: u64, max: u64) -> Result<Vec<u8>, Error> {
    let target = target(reference, false);
    let invalid = |message: String| Error::Invalid { what: format!("blob {digest}"), registry: target.registry.into(), message };
    if size > max {
        return Err(invalid(format!("{size} bytes, more than the {max} allowed")));
    }
    let url = format!("{}/v2/{}/blobs/{digest}", t.base_url(target.host).await?, target.repository);
    let mut attempt = 0;
    loop {
        let err = async {
            let resp = Transport::expect(t.send(target, Method::GET, &url, |r| r).await?, "GET", &[200]).await?;
            match read_body(resp, &url, size).await? {
                Some(bytes) if bytes.len() as u64 == size && Digest::of(&bytes) == *digest => Ok(bytes),
                Some(bytes) => Err(invalid(format!("got {} bytes with digest {}", bytes.len(), Digest::of(&bytes)))),
                None => Err(invalid(format!("more than the {size} bytes announced"))),
            }
        }
        .await;
        let err = match err {
            Ok(bytes) => return Ok(bytes),
            Err(e @ (Error::Connection { .. } | Error::Invalid { .. })) => e,
            Err(e) => return Err(e),
        };
        attempt += 1;
        if attempt > t.config.max_retries {
            return Err(after_attempts(err, attempt));
        }
        tracing::debug!(url, attempt, %err, "fetching the blob again");
        tokio::time::sleep(backoff(attempt - 1)).await;
    }
}

/// Makes the store's blob `digest` present in `reference`'s repository: nothing when it is
/// there, a cross-repository mount when forge knows another repository of the registry holds
/// it, an upload otherwise.
pub(crate) async fn push_store_blob(t: &Transport, reference: &Reference, store: &Store, digest: &Digest, size: u64) -> Result<(), Error> {
    push_blob(t, target(reference, true), store, digest.clone(), size, &NoProgress).await?;
    crate::pull::record_source(store, reference, std::iter::once(digest));
    Ok(())
}

/// PUTs a manifest at `reference` (every blob it names must be there already).
pub(crate) async fn put_manifest(t: &Transport, reference: &Reference, media_type: &str, bytes: Vec<u8>) -> Result<(), Error> {
    let target = target(reference, true);
    let url = format!("{}/v2/{}/manifests/{}", t.base_url(target.host).await?, target.repository, reference.manifest_ref());
    let resp = t.send(target, Method::PUT, &url, |r| r.header(CONTENT_TYPE, media_type).body(bytes.clone())).await?;
    Transport::expect(resp, "PUT", &[200, 201]).await?;
    Ok(())
}
