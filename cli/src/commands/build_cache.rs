//! The registry side of `forge build --cache-to/--cache-from type=registry`: the builder's
//! [`CacheRegistry`] on the registry crate's client (docker's credentials, retries, verified
//! and resumable transfers, cross-repository mounts).

use forge_builder::CacheRegistry;
use forge_layerstore::{Digest, Store};
use forge_registry::{Client, Reference};

use crate::commands::on_demand::OnDemandRuntime;

/// A registry client and the runtime its calls block on.
#[derive(Debug)]
pub struct RegistryCache {
    pub client: Client,
    pub runtime: std::sync::Arc<OnDemandRuntime>,
    /// For the one-off reads of a cache's manifest and config, which a fresh runner's build
    /// waits for: each runs on a runtime of the calling thread, with a client of its own (a
    /// client's pooled connections belong to the runtime that made them). The shared runtime
    /// would first start its workers, and every step of the exchange would hop between them
    /// and the waiting thread.
    pub config: forge_registry::ClientConfig,
}

/// `store`, fetching the layers it knows only as remote (a registry cache's, see
/// [`forge_layerstore::remote`]) with a client of `config` when something reads them.
pub fn fetching(store: Store, config: forge_registry::ClientConfig) -> Store {
    store.with_fetcher(std::sync::Arc::new(forge_registry::RemoteFetcher::new(config)))
}

fn parse(reference: &str) -> Result<Reference, String> {
    Reference::parse(reference).map_err(|e| e.to_string())
}

impl RegistryCache {
    fn client_for_one_off(&self) -> Client {
        Client::new(self.config.clone())
    }
}

/// Runs `future` on a single-threaded runtime of the calling thread.
fn one_off<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("starting the registry client's runtime: {e}"))?;
    Ok(rt.block_on(future))
}

impl CacheRegistry for RegistryCache {
    fn manifest(&self, reference: &str) -> Result<Option<Vec<u8>>, String> {
        let r = parse(reference)?;
        let found = one_off(self.client_for_one_off().manifest(&r))?.map_err(|e| e.to_string())?;
        Ok(found.map(|(bytes, _)| bytes))
    }

    fn blob(&self, reference: &str, digest: &Digest, size: u64, max: u64) -> Result<Vec<u8>, String> {
        let r = parse(reference)?;
        one_off(self.client_for_one_off().blob_bytes(&r, digest, size, max))?.map_err(|e| e.to_string())
    }

    fn pull_blob(&self, store: &Store, reference: &str, digest: &Digest, size: u64) -> Result<(), String> {
        let r = parse(reference)?;
        self.runtime.block_on(self.client.pull_blob(&r, store, digest, size)).map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }

    fn push_blob(&self, store: &Store, reference: &str, digest: &Digest, size: u64) -> Result<(), String> {
        let r = parse(reference)?;
        self.runtime.block_on(self.client.push_blob(&r, store, digest, size)).map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }

    fn put_manifest(&self, reference: &str, media_type: &str, bytes: Vec<u8>) -> Result<(), String> {
        let r = parse(reference)?;
        self.runtime.block_on(self.client.put_manifest(&r, media_type, bytes)).map_err(|e| e.to_string())?.map_err(|e| e.to_string())
    }
}
