//! Runs the stages a build needs, level by level: every stage of a level in its own thread,
//! after all the stages of the levels before it (its dependencies) have finished. A failure
//! stops the other stages at their next step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use forge_layerstore::{Digest, ImageConfig, Layer};

use crate::vars::Vars;
use crate::Error;

/// What a finished stage hands to the stages that use it.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub(crate) config: ImageConfig,
    pub(crate) layers: Vec<Layer>,
    /// The cache key of its last step: a stage built FROM it starts here.
    pub(crate) key: Digest,
    /// Its ARGs: a stage built FROM it inherits them, as in BuildKit.
    pub(crate) vars: Vars,
}

/// The stages finished so far, and whether any failed.
pub(crate) struct Finished {
    done: Mutex<Vec<Option<Arc<StageResult>>>>,
    failed: AtomicBool,
}

impl Finished {
    /// Stage `index`'s result; it ran in an earlier level than any stage that asks.
    pub(crate) fn get(&self, index: usize) -> Arc<StageResult> {
        self.done.lock().unwrap()[index].clone().expect("levels run dependencies first")
    }

    /// Whether another stage failed, so this one should stop.
    pub(crate) fn stopped(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Runs `levels` (stage indexes below `stages`) with `run_stage`; returns every result.
pub(crate) fn run(
    levels: &[Vec<usize>],
    stages: usize,
    run_stage: impl Fn(usize, &Finished) -> Result<StageResult, Error> + Sync,
) -> Result<Finished, Error> {
    let finished = Finished { done: Mutex::new(vec![None; stages]), failed: AtomicBool::new(false) };
    for level in levels {
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = level
                .iter()
                .map(|&i| {
                    let (finished, run_stage) = (&finished, &run_stage);
                    s.spawn(move || match run_stage(i, finished) {
                        Ok(r) => {
                            finished.done.lock().unwrap()[i] = Some(Arc::new(r));
                            Ok(())
                        }
                        Err(e) => {
                            finished.failed.store(true, Ordering::SeqCst);
                            Err(e)
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Panicked))).collect()
        });
        // The first real failure wins over the "cancelled" of stages stopped because of it.
        let mut errors: Vec<Error> = results.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            let pos = errors.iter().position(|e| !matches!(e, Error::Cancelled)).unwrap_or(0);
            return Err(errors.swap_remove(pos));
        }
    }
    Ok(finished)
}
