//! Capabilities: a step keeps Docker's default set and nothing more.

use caps::{CapSet, Capability, CapsHashSet};

use crate::spec::Network;

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

/// Limits the calling process (about to `execve`) to `keep`: the bounding set decides what a
/// root process gets at exec, the inheritable set must not add back what the bounding set
/// dropped, and no ambient capabilities survive.
pub(crate) fn restrict(keep: &[Capability]) -> Result<(), String> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| format!("dropping {cap} from the bounding set: {e}"))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("clearing ambient capabilities: {e}"))?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    let inheritable: CapsHashSet = keep.intersection(&permitted).copied().collect();
    caps::set(None, CapSet::Inheritable, &inheritable).map_err(|e| format!("setting inheritable capabilities: {e}"))?;
    Ok(())
}
