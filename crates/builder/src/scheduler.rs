//! Runs the stages a build needs, level by level: the stages of a level in parallel threads,
//! after all the stages of the levels before it (its dependencies) have finished. A failure
//! stops the other stages at their next step.

use std::panic::{self, AssertUnwindSafe};
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
        let Some((&last, others)) = level.split_last() else { continue };
        let run_one = |i: usize| match run_stage(i, &finished) {
            Ok(r) => {
                finished.done.lock().unwrap()[i] = Some(Arc::new(r));
                Ok(())
            }
            Err(e) => {
                finished.failed.store(true, Ordering::SeqCst);
                Err(e)
            }
        };
        let results: Vec<Result<(), Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = others.iter().map(|&i| s.spawn(move || run_one(i))).collect();
            // The last stage of a level runs on this thread, which would only wait: a level of
            // one stage (most levels) starts no thread, and a no-op rebuild of three parallel
            // stages and a final one (W3) starts two instead of four.
            let here = panic::catch_unwind(AssertUnwindSafe(|| run_one(last))).unwrap_or(Err(Error::Panicked));
            handles.into_iter().map(|h| h.join().unwrap_or(Err(Error::Panicked))).chain(std::iter::once(here)).collect()
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn result() -> StageResult {
        StageResult { config: ImageConfig::default(), layers: Vec::new(), key: Digest::of(b""), vars: Vars::default() }
    }

    #[test]
    fn every_stage_runs_after_its_level_and_one_per_level_on_the_calling_thread() {
        let levels = vec![vec![0, 1, 2], vec![3]];
        let caller = std::thread::current().id();
        let (on_caller, ran) = (AtomicUsize::new(0), Mutex::new(Vec::new()));
        let finished = run(&levels, 4, |i, finished| {
            if i == 3 {
                for dep in 0..3 {
                    finished.get(dep);
                }
            }
            if std::thread::current().id() == caller {
                on_caller.fetch_add(1, Ordering::SeqCst);
            }
            ran.lock().unwrap().push(i);
            Ok(result())
        })
        .unwrap();
        assert_eq!(on_caller.load(Ordering::SeqCst), 2);
        let mut ran = ran.into_inner().unwrap();
        assert_eq!(ran.pop(), Some(3));
        ran.sort();
        assert_eq!(ran, [0, 1, 2]);
        finished.get(3);
    }

    #[test]
    fn a_panicking_stage_is_an_error_on_either_thread() {
        for panicking in [0, 1] {
            let err = run(&[vec![0, 1]], 2, |i, _| if i == panicking { panic!("stage {i}") } else { Ok(result()) }).err();
            assert!(matches!(err, Some(Error::Panicked)), "stage {panicking}: {err:?}");
        }
    }

    #[test]
    fn the_first_real_failure_wins_over_cancelled_stages() {
        let err = run(&[vec![0, 1]], 2, |i, _| Err(if i == 0 { Error::Cancelled } else { Error::Panicked })).err();
        assert!(matches!(err, Some(Error::Panicked)), "{err:?}");
    }
}
