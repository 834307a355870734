//! Why a step missed the cache (`forge build --explain-cache`). Every cache entry keeps the
//! labelled inputs of its key (`cache_key.rs`); on a miss the step's inputs are compared with
//! those of the nearest cached step of the same kind: one on the same parent if there is any
//! (the user changed something in this step), else any (an earlier step changed), the one with
//! the fewest differing inputs. The inputs that differ are the explanation.

use std::collections::BTreeMap;

use forge_layerstore::cache::{Cache, KeyInput};
use sha2::{Digest as _, Sha256};

use crate::cache_key::{InputKind, STEP_KIND};
use crate::progress::CacheChange;

/// Why one step missed.
pub(crate) struct Miss {
    pub(crate) reason: String,
    pub(crate) changes: Vec<CacheChange>,
}

/// A value that may be long or private (a variable's), kept as 64 bits of its sha256: enough to
/// see that it changed, without storing it in the cache entry.
pub(crate) fn short_digest(value: impl AsRef<[u8]>) -> String {
    hex::encode(&Sha256::digest(value)[..8])
}

/// Explains a miss of the step with `inputs`. `no_cache` says the user asked for it;
/// `blob_missing` that the step's entry exists but its layer is gone from the store.
pub(crate) fn explain(cache: &Cache, inputs: &[KeyInput], no_cache: bool, blob_missing: bool) -> Miss {
    let reason = |r: &str| Miss { reason: r.to_string(), changes: Vec::new() };
    if no_cache {
        return reason("--no-cache");
    }
    if blob_missing {
        return reason("the cached step's layer is no longer in the store");
    }
    let step = value(inputs, InputKind::Instruction, STEP_KIND).unwrap_or_default();
    let parent = value(inputs, InputKind::Parent, "parent");
    // An unreadable cache directory leaves nothing to compare with, which is what is said.
    let entries = cache.entries().unwrap_or_default();
    let mut best: Option<((bool, usize), Vec<CacheChange>)> = None;
    for (_, entry) in entries {
        if entry.inputs.is_empty() || value(&entry.inputs, InputKind::Instruction, STEP_KIND) != Some(step) {
            continue;
        }
        let changes = diff(&entry.inputs, inputs);
        let rank = (value(&entry.inputs, InputKind::Parent, "parent") != parent, changes.len());
        if best.as_ref().is_none_or(|(r, _)| rank < *r) {
            best = Some((rank, changes));
        }
    }
    match best {
        None => reason(&format!("no cached {step} step to compare with")),
        Some((_, changes)) if changes.is_empty() => reason("the cached step's inputs were not recorded (made by an older forge)"),
        Some((_, changes)) => {
            let mut reason = describe(&changes[0]);
            if changes.len() > 1 {
                reason.push_str(&format!(" (and {} more input{})", changes.len() - 1, if changes.len() == 2 { "" } else { "s" }));
            }
            Miss { reason, changes }
        }
    }
}

fn value<'a>(inputs: &'a [KeyInput], kind: InputKind, name: &str) -> Option<&'a str> {
    inputs.iter().find(|i| i.kind == kind.as_str() && i.name == name).map(|i| i.value.as_str())
}

/// The inputs that differ, in the order of the step's own (its parent first), then those only
/// the cached step had.
fn diff(cached: &[KeyInput], now: &[KeyInput]) -> Vec<CacheChange> {
    let by_name = |inputs: &[KeyInput]| -> BTreeMap<(String, String), String> {
        inputs.iter().map(|i| ((i.kind.clone(), i.name.clone()), i.value.clone())).collect()
    };
    let (old, new) = (by_name(cached), by_name(now));
    let change = |kind: &str, name: &str, change| CacheChange { kind: kind.to_string(), name: name.to_string(), change };
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in now {
        if !seen.insert((&i.kind, &i.name)) {
            continue;
        }
        match old.get(&(i.kind.clone(), i.name.clone())) {
            Some(v) if *v == new[&(i.kind.clone(), i.name.clone())] => {}
            Some(_) => out.push(change(&i.kind, &i.name, "changed")),
            None => out.push(change(&i.kind, &i.name, "added")),
        }
    }
    for i in cached {
        if !new.contains_key(&(i.kind.clone(), i.name.clone())) && seen.insert((&i.kind, &i.name)) {
            out.push(change(&i.kind, &i.name, "removed"));
        }
    }
    out
}

/// One change in words.
fn describe(c: &CacheChange) -> String {
    let what = match InputKind::parse(&c.kind) {
        Some(InputKind::Parent) => return "the parent layer changed (an earlier step or the base image changed)".into(),
        Some(InputKind::Instruction) if c.name == STEP_KIND => "the instruction".to_string(),
        Some(InputKind::Instruction) => format!("the instruction's {}", c.name),
        Some(InputKind::Arg) => format!("ARG {}", c.name),
        Some(InputKind::Env) => format!("ENV {}", c.name),
        Some(InputKind::Config) => c.name.clone(),
        Some(InputKind::Option) => format!("build option {}", c.name),
        Some(InputKind::ContextFile) => format!("context file {:?}", c.name),
        Some(InputKind::FromFile) => format!("file {:?} of the --from source", c.name),
        Some(InputKind::MountFile) => format!("bind mount source file {:?}", c.name),
        None => format!("{} {}", c.kind, c.name),
    };
    let verb = match (c.change, InputKind::parse(&c.kind)) {
        ("added", Some(InputKind::Arg | InputKind::Env)) => "was set",
        ("removed", Some(InputKind::Arg | InputKind::Env)) => "was unset",
        (c, _) => c,
    };
    format!("{what} {verb}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_key::input;

    #[test]
    fn diff_names_changed_added_and_removed_inputs() {
        let old = [input(InputKind::Parent, "parent", "p"), input(InputKind::ContextFile, "a", "1"), input(InputKind::ContextFile, "gone", "1")];
        let new = [input(InputKind::Parent, "parent", "p"), input(InputKind::ContextFile, "a", "2"), input(InputKind::ContextFile, "b", "1")];
        let d = diff(&old, &new);
        let got: Vec<_> = d.iter().map(|c| (c.name.as_str(), c.change)).collect();
        assert_eq!(got, [("a", "changed"), ("b", "added"), ("gone", "removed")]);
        assert_eq!(describe(&d[0]), "context file \"a\" changed");
        assert_eq!(describe(&CacheChange { kind: "arg".into(), name: "V".into(), change: "added" }), "ARG V was set");
    }
}
