//! A tokio runtime started the first time something blocks on it.
//!
//! `forge build` needs a registry only for a base image the store lacks, a registry cache or
//! `--push`. A rebuild that needs none of them takes a few milliseconds, and starting the
//! runtime's worker threads (and stopping them at exit) was a tenth of that.

use std::future::Future;
use std::sync::OnceLock;

/// A multi-threaded runtime made on first use; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct OnDemandRuntime(OnceLock<tokio::runtime::Runtime>);

impl OnDemandRuntime {
    /// Runs `future` to its end on the runtime, starting the runtime first if need be.
    pub fn block_on<F: Future>(&self, future: F) -> std::io::Result<F::Output> {
        if let Some(rt) = self.0.get() {
            return Ok(rt.block_on(future));
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        // Two stages starting it at once: the runtime that lost the race is dropped unused.
        Ok(self.0.get_or_init(|| rt).block_on(future))
    }
}

impl Drop for OnDemandRuntime {
    /// Without waiting for the workers to wind down (an idle connection's task, say): nothing
    /// is left to do once its last user is gone, and the wait was a tenth of a build that only
    /// hit a registry's cache.
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}
