//! Capabilities: a step keeps Docker's default set and nothing more; a container, that set
//! with the changes its `--cap-add`, `--cap-drop` and `--privileged` ask for.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

use crate::spec::{Network, Security};

/// Docker's default capabilities (CapEff `00000000a80425fb` for root).
pub(crate) const DEFAULT: [Capability; 14] = [
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// What a step keeps on `network`: the default set, less `CAP_NET_RAW` on the host's network,
/// where a raw or packet socket would see (and forge) the host's traffic.
pub(crate) fn for_network(network: &Network) -> Vec<Capability> {
    DEFAULT.into_iter().filter(|c| *network != Network::Host || *c != Capability::CAP_NET_RAW).collect()
}

/// What a process keeps on `network` with `security`'s changes, by docker's rules: privileged
/// gets every capability; `--cap-add ALL` every one but those dropped; `--cap-drop ALL` only
/// those added; otherwise the default set less the dropped plus the added (so an explicit
/// `--cap-add NET_RAW` gives it back on the host's network).
pub(crate) fn for_spec(network: &Network, security: &Security) -> Vec<Capability> {
    let parse = |names: &[String]| -> Vec<Capability> { names.iter().filter_map(|n| Capability::from_str(n).ok()).collect() };
    let (add, drop) = (parse(&security.cap_add), parse(&security.cap_drop));
    let all = |names: &[String]| names.iter().any(|n| n == "ALL");
    if security.privileged {
        return sorted(caps::all().into_iter().collect());
    }
    let keep: Vec<Capability> = if all(&security.cap_add) {
        caps::all().into_iter().filter(|c| !drop.contains(c)).collect()
    } else if all(&security.cap_drop) {
        add
    } else {
        for_network(network).into_iter().filter(|c| !drop.contains(c)).chain(add).collect()
    };
    sorted(keep)
}

fn sorted(mut caps: Vec<Capability>) -> Vec<Capability> {
    caps.sort_by_key(|c| c.index());
    caps.dedup();
    caps
}

/// A capability name that is none of the kernel's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown capability {0:?}: give a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL")]
pub struct UnknownCapability(pub String);

/// A capability as docker takes it (any case, with or without `CAP_`, or `ALL`), spelled
/// `CAP_NAME` or `ALL`.
pub fn normalize(name: &str) -> Result<String, UnknownCapability> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("all") {
        return Ok("ALL".into());
    }
    Capability::from_str(&caps::to_canonical(name)).map(|c| c.to_string()).map_err(|_| UnknownCapability(name.to_string()))
}

/// Limits the calling process (about to `execve`) to `keep`: the bounding set decides what a
/// root process gets at exec. No inheritable or ambient capabilities survive: an executable
/// with file capabilities would otherwise gain those in the inheritable set even as a non-root
/// user (CVE-2022-24769; Docker 23 and later leave the set empty too).
pub(crate) fn restrict(keep: &[Capability]) -> Result<(), String> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| format!("clearing inheritable capabilities: {e}"))?;
    Ok(())
}
