//! The registry side of the store's remote-backed layers ([`forge_layerstore::remote`]): a
//! [`Fetcher`] that streams a blob from the repository its record names, verified and resumable
//! as any pulled blob.

use std::sync::OnceLock;

use forge_layerstore::remote::{Fetcher, RemoteSource};
use forge_layerstore::{Digest, Store};

use crate::{Client, ClientConfig, Reference};

/// Fetches remote blobs with a registry client (docker's credentials, retries, resumed
/// downloads). The store calls it from plain threads or from a blocking task of a push's
/// runtime, so it drives its requests on a runtime of its own, from a thread of its own.
#[derive(Debug)]
pub struct RemoteFetcher {
    config: ClientConfig,
    /// Made on the first fetch: most commands that may fetch never do.
    client: OnceLock<Client>,
}

impl RemoteFetcher {
    /// A fetcher with a client of `config`.
    pub fn new(config: ClientConfig) -> RemoteFetcher {
        RemoteFetcher { config, client: OnceLock::new() }
    }
}

/// The fetchers' runtime: one for the process, never dropped (dropping a runtime from a task
/// of another panics, and the client's pooled connections belong to the runtime that made them).
fn runtime() -> Result<&'static tokio::runtime::Runtime, std::io::Error> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("forge-fetch").enable_all().build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

impl Fetcher for RemoteFetcher {
    fn fetch(&self, store: &Store, source: &RemoteSource, digest: &Digest, size: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let reference = Reference::parse(&source.to_string())?;
        let rt = runtime()?;
        let client = self.client.get_or_init(|| Client::new(self.config.clone()));
        // A thread outside any runtime may block on this one.
        std::thread::scope(|s| s.spawn(|| rt.block_on(client.pull_blob(&reference, store, digest, size))).join())
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        Ok(())
    }
}
