//! forge's registry client: push and pull images between a [`forge_layerstore::Store`] and any
//! OCI distribution registry (Docker schema2 read as well), with docker's credentials.
//!
//! Blobs stream between the network and the store: nothing holds a layer in memory. Every
//! blob read from the network is verified by digest and size before it is stored, interrupted
//! downloads resume with `Range`, transient failures (connection errors, 429, 5xx) are retried
//! with backoff, and a push writes the manifest only after every blob is in place.
//!
//! # Example
//!
//! ```no_run
//! use forge_registry::{Client, ClientConfig, NoProgress, Reference};
//! use forge_layerstore::Store;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open("/var/lib/forge".as_ref())?;
//! let client = Client::new(ClientConfig::default());
//! let dest = Reference::parse("127.0.0.1:5000/hello:1")?;
//! client.push(&store, "hello:1", &dest, &NoProgress).await?;
//! let pulled = client.pull(&dest, &store, &NoProgress).await?;
//! println!("pulled {} as {}", pulled.manifest.digest(), pulled.name);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod artifact;
pub mod auth;
mod error;
mod lazy;
mod progress;
mod pull;
mod push;
mod reference;
mod transport;

use std::path::PathBuf;

use forge_layerstore::Store;
use oci_spec::image::Descriptor;

pub use auth::Credentials;
pub use error::Error;
pub use lazy::RemoteFetcher;
pub use progress::{LineProgress, NoProgress, Progress};
pub use pull::Pulled;
pub use reference::Reference;

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Plain HTTP to every registry (loopback registries always get it).
    pub insecure: bool,
    /// docker's config file (default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`).
    pub docker_config: Option<PathBuf>,
    /// Extra CA certificates per registry: `<certs_dir>/<host:port>/*.crt`, as docker reads
    /// `/etc/docker/certs.d`.
    pub certs_dir: PathBuf,
    /// Retries of one request after a connection error, 429 or 5xx.
    pub max_retries: u32,
    /// A file remembering which scheme each insecure registry answered, so a later process
    /// skips the HTTPS probe; an entry is dropped when a request to its host fails to connect.
    pub schemes: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig { insecure: false, docker_config: None, certs_dir: PathBuf::from("/etc/docker/certs.d"), max_retries: 5, schemes: None }
    }
}

/// A registry client; cheap to share between tasks.
#[derive(Debug)]
pub struct Client {
    transport: transport::Transport,
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Client {
        Client { transport: transport::Transport::new(config) }
    }

    /// Pulls `reference` into `store` and tags it there under its full name.
    pub async fn pull(&self, reference: &Reference, store: &Store, progress: &dyn Progress) -> Result<Pulled, Error> {
        let pulled = pull::pull(&self.transport, reference, store, progress).await?;
        image_event(store, "pull", &pulled.name);
        Ok(pulled)
    }

    /// Pushes the store's image `local` (a tag or ID) to `reference`.
    pub async fn push(&self, store: &Store, local: &str, reference: &Reference, progress: &dyn Progress) -> Result<Descriptor, Error> {
        let pushed = push::push(&self.transport, store, local, reference, progress).await?;
        image_event(store, "push", &reference.to_string());
        Ok(pushed)
    }

    /// The manifest `reference` names (its bytes and media type), read as any artifact's, not
    /// only an image's; `None` when the registry does not have it.
    pub async fn manifest(&self, reference: &Reference) -> Result<Option<(Vec<u8>, String)>, Error> {
        artifact::manifest(&self.transport, reference).await
    }

    /// Streams the blob `digest` (of `size` bytes) of `reference`'s repository into `store`,
    /// verified by digest and size, resuming and retrying as pulls do.
    pub async fn pull_blob(&self, reference: &Reference, store: &Store, digest: &forge_layerstore::Digest, size: u64) -> Result<(), Error> {
        artifact::pull_blob(&self.transport, reference, store, digest, size).await
    }

    /// Blob `digest` (of `size` bytes, at most `max`) of `reference`'s repository, read into
    /// memory and verified by digest and size, without storing it: a document that is read
    /// once (a build cache's config).
    pub async fn blob_bytes(&self, reference: &Reference, digest: &forge_layerstore::Digest, size: u64, max: u64) -> Result<Vec<u8>, Error> {
        artifact::blob_bytes(&self.transport, reference, digest, size, max).await
    }

    /// Makes the store's blob `digest` present in `reference`'s repository: skipped when there,
    /// mounted from another repository of the registry that forge knows holds it, else uploaded.
    pub async fn push_blob(&self, reference: &Reference, store: &Store, digest: &forge_layerstore::Digest, size: u64) -> Result<(), Error> {
        artifact::push_store_blob(&self.transport, reference, store, digest, size).await
    }

    /// Writes a manifest of any media type at `reference`; the blobs it names must be there.
    pub async fn put_manifest(&self, reference: &Reference, media_type: &str, bytes: Vec<u8>) -> Result<(), Error> {
        artifact::put_manifest(&self.transport, reference, media_type, bytes).await
    }

    /// Checks `credentials` against `registry` (a `GET /v2/` that must succeed with them),
    /// then stores them in docker's config file as `docker login` does.
    pub async fn login(&self, registry: &str, credentials: &Credentials) -> Result<(), Error> {
        let path = self.transport.config.docker_config.clone().unwrap_or_else(auth::docker_config::default_path);
        // Checked with a scratch config holding only these credentials, so a wrong password is
        // reported before anything is written.
        let scratch = tempfile::tempdir().map_err(|e| Error::File { path: "temporary directory".into(), message: e.to_string() })?;
        let scratch_config = scratch.path().join("config.json");
        auth::docker_config::store(&scratch_config, registry, credentials)?;
        let checker = transport::Transport::new(ClientConfig { docker_config: Some(scratch_config), ..self.transport.config.clone() });
        let host = if registry == "docker.io" { "index.docker.io" } else { registry };
        let target = transport::Target { host, registry, repository: "", push: false };
        let url = format!("{}/v2/", checker.base_url(host).await?);
        let resp = checker.send(target, reqwest::Method::GET, &url, |r| r).await?;
        if resp.status().as_u16() == 401 {
            return Err(Error::Auth { registry: registry.to_string(), message: "unauthorized: wrong user name or password".into() });
        }
        transport::Transport::expect(resp, "GET", &[200]).await?;
        auth::docker_config::store(&path, registry, credentials)
    }

    /// Removes stored credentials for `registry`; returns whether there were any.
    pub fn logout(&self, registry: &str) -> Result<bool, Error> {
        let path = self.transport.config.docker_config.clone().unwrap_or_else(auth::docker_config::default_path);
        auth::docker_config::remove(&path, registry)
    }
}

/// Records a finished pull or push of `name` in the store's event journal, as docker's image
/// events (`docker events --filter type=image`): the actor is the reference, as docker's is.
/// Every pull and push goes through [`Client`], so this is the one place they are recorded.
fn image_event(store: &Store, action: &str, name: &str) {
    let attributes = [("name".to_string(), name.to_string())].into();
    forge_layerstore::events::record_quietly(store.root(), forge_layerstore::events::Event::now("image", action, name, attributes));
}
