//! `-H` addresses and the sockets behind them. A unix socket is made mode 0660, owned by root
//! and `--group` (docker's `docker` group rule): only root and that group's members may drive
//! the server, since whoever can is root on the host. Plain TCP is refused except on loopback
//! ([`ListenSpec::check`]): elsewhere only mutual TLS keeps the network out.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::error::Error;

/// An address to serve, as `-H` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// `unix:///run/forge.sock`.
    Unix(PathBuf),
    /// `tcp://127.0.0.1:2375`.
    Tcp(SocketAddr),
}

impl std::str::FromStr for ListenSpec {
    type Err = Error;

    fn from_str(addr: &str) -> Result<ListenSpec, Error> {
        let bad = |reason: &str| Error::Address { addr: addr.to_string(), reason: reason.to_string() };
        if let Some(path) = addr.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad("a unix socket needs an absolute path (unix:///run/forge.sock)"));
            }
            return Ok(ListenSpec::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = addr.strip_prefix("tcp://") {
            let sock: SocketAddr = hostport.parse().map_err(|_| bad("expected tcp://IP:PORT"))?;
            return Ok(ListenSpec::Tcp(sock));
        }
        Err(bad("expected unix:///PATH or tcp://IP:PORT"))
    }
}

impl ListenSpec {
    /// Refuses plain TCP on an address other hosts can reach: whoever connects would be root
    /// here.
    pub fn check(&self, tls: bool) -> Result<(), Error> {
        match self {
            ListenSpec::Tcp(addr) if !tls && !addr.ip().is_loopback() => Err(Error::Address {
                addr: self.to_string(),
                reason: "plain TCP is refused on a non-loopback address: anyone reaching it would be root here; use --tlsverify with --tlscacert, --tlscert and --tlskey".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenSpec::Unix(p) => write!(f, "unix://{}", p.display()),
            ListenSpec::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A bound socket, ready to accept.
#[derive(Debug)]
pub enum Listener {
    /// A unix socket; its file is removed when the listener is dropped.
    Unix(tokio::net::UnixListener, PathBuf),
    /// A loopback TCP socket.
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    /// Binds `spec` (on the current tokio runtime). A unix socket gets mode 0660 and the group
    /// `group` (root's otherwise) before the first connection can be accepted; a stale socket
    /// file from a server that died is replaced, any other file at the path is an error.
    pub fn bind(spec: &ListenSpec, group: Option<&str>) -> Result<Listener, Error> {
        let sock_err = |what: &'static str| move |source: std::io::Error| Error::Socket { what, addr: spec.to_string(), source };
        match spec {
            ListenSpec::Tcp(addr) => {
                let std = std::net::TcpListener::bind(addr).map_err(sock_err("binding"))?;
                std.set_nonblocking(true).map_err(sock_err("binding"))?;
                Ok(Listener::Tcp(tokio::net::TcpListener::from_std(std).map_err(sock_err("binding"))?))
            }
            ListenSpec::Unix(path) => {
                let gid = match group {
                    Some(name) => Some(nix::unistd::Group::from_name(name).ok().flatten().ok_or_else(|| Error::NoSuchGroup(name.to_string()))?.gid.as_raw()),
                    None => None,
                };
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(sock_err("creating the directory of"))?;
                }
                match std::fs::symlink_metadata(path) {
                    Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
                        if std::os::unix::net::UnixStream::connect(path).is_ok() {
                            return Err(Error::Socket {
                                what: "binding",
                                addr: spec.to_string(),
                                source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "another server answers on this socket"),
                            });
                        }
                        std::fs::remove_file(path).map_err(sock_err("removing the stale socket"))?;
                    }
                    Ok(_) => {
                        return Err(Error::Socket {
                            what: "binding",
                            addr: spec.to_string(),
                            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file that is not a socket is in the way"),
                        })
                    }
                    Err(_) => {}
                }
                // Bound under a umask that leaves nobody else any access, so there is no
                // moment in which the socket is open to all before the chmod below.
                let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
                let bound = tokio::net::UnixListener::bind(path);
                nix::sys::stat::umask(old);
                let listener = bound.map_err(sock_err("binding"))?;
                std::os::unix::fs::chown(path, Some(0), Some(gid.unwrap_or(0))).map_err(sock_err("setting the owner of"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(sock_err("setting the mode of"))?;
                Ok(Listener::Unix(listener, path.clone()))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ListenSpec;

    #[test]
    fn addresses() {
        assert_eq!("unix:///run/f.sock".parse::<ListenSpec>().unwrap(), ListenSpec::Unix("/run/f.sock".into()));
        assert_eq!("tcp://127.0.0.1:2375".parse::<ListenSpec>().unwrap().to_string(), "tcp://127.0.0.1:2375");
        let open = "tcp://0.0.0.0:2375".parse::<ListenSpec>().unwrap();
        assert!(open.check(false).unwrap_err().to_string().contains("non-loopback"));
        assert!(open.check(true).is_ok());
        assert!("tcp://127.0.0.1:2375".parse::<ListenSpec>().unwrap().check(false).is_ok());
        assert!("unix://rel.sock".parse::<ListenSpec>().is_err());
        assert!("http://x".parse::<ListenSpec>().is_err());
    }
}
