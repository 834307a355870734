//! Bringing up loopback in a new network namespace (it starts down).

use std::io;

/// Sets `IFF_UP` on `lo`.
pub(crate) fn loopback_up() -> io::Result<()> {
    crate::sys::interface_up(c"lo")
}
