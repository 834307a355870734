//! A container's network while it runs: the namespace its `--network` asks for, its `/etc`
//! files (`hosts`, `resolv.conf`, `hostname`, with `--add-host` and `--dns`), and its
//! published ports.
//!
//! Published ports (`-p`) are served by a userland proxy in the forge process that supervises
//! the container, which is what docker's `docker-proxy` does for loopback: a listening socket
//! on the host's address and port, and for each connection (or UDP client) one to the
//! container's address over the bridge. forge has no daemon to own DNAT rules, and the proxy
//! needs none: it works for 127.0.0.1 and every other host address alike, the kernel refuses a
//! second listener on a port (so two containers cannot publish one port), and everything goes
//! away with the supervising process, however it ends. A TCP connection's bytes go from one
//! socket to the other with splice(2) through a pipe, in the kernel, as docker-proxy's do
//! (Go's io.Copy between two TCP connections splices).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use forge_network::{Attachment, Mode, Networks, Protocol, Publish};
use forge_sandbox::{Mount, MountKind, Network};

use crate::config::Config;
use crate::containers::Containers;
use crate::error::Error;
use crate::state::Status;

/// The file in a container's directory that lists its published ports while it runs.
const PORTS_FILE: &str = "ports.json";

/// What a running container holds of its network; dropping it takes it all down.
pub(crate) struct Running {
    /// The namespace the sandbox joins (or makes).
    pub(crate) network: Network,
    /// Its `/etc` files, bound over the sandbox's.
    pub(crate) mounts: Vec<Mount>,
    proxies: Vec<Proxy>,
    ports_file: Option<PathBuf>,
    /// The store, network and container whose `disconnect` is recorded when this goes.
    connected: Option<(PathBuf, String, String)>,
    // Last: the namespace goes after the proxies that reach into it.
    _attachment: Option<Attachment>,
}

/// Sets up the network `config` asks for; `dir` is the container's directory.
pub(crate) fn start(containers: &Containers, store_root: &Path, dir: &Path, config: &Config) -> Result<Running, Error> {
    let fail = |source| Error::Network { id: config.id.clone(), source };
    // Rootless forge cannot make a bridge (netlink and iptables in the host's namespace need the
    // host's root): its default network is the user's own, as for its builds; a user network
    // fails with the reason.
    let rootless = forge_sandbox::in_user_namespace();
    let network_name = match &config.network {
        Mode::Bridge if rootless => None,
        Mode::Bridge => Some(forge_network::DEFAULT_NETWORK.to_string()),
        Mode::Named(n) => Some(n.clone()),
        _ => None,
    };
    let mut connected = None;
    let (network, attachment) = match (&config.network, network_name) {
        (_, Some(name)) => {
            let networks = Networks::open(&store_root.join("forge").join("network")).map_err(fail)?;
            let a = networks.attach(&name, config.ip).map_err(fail)?;
            connected = Some((store_root.to_path_buf(), name, config.id.clone()));
            (Network::Namespace(a.netns().to_path_buf()), Some(a))
        }
        (Mode::Host, _) => (Network::Host, None),
        (Mode::Bridge, _) if rootless => (Network::Host, None),
        (Mode::Container(other), _) => (Network::Namespace(namespace_of(containers, other)?), None),
        _ => (Network::None, None),
    };
    let address = attachment.as_ref().map(Attachment::address);
    if !config.ports.is_empty() && address.is_none() {
        return Err(Error::Invalid {
            what: "port publication",
            value: config.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
            reason: format!("ports are published only on a bridge network, not with --network {}", config.network),
        });
    }

    let mut mounts = Vec::new();
    if address.is_some() || !config.dns.is_empty() || !config.add_hosts.is_empty() {
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = [
            ("hosts", forge_network::hosts(address, &config.hostname, &config.add_hosts)),
            ("resolv.conf", forge_network::resolv_conf(&host_resolv, &config.dns)),
            ("hostname", format!("{}\n", config.hostname)),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).map_err(crate::error::io("writing", &path))?;
            mounts.push(Mount { target: format!("/etc/{name}"), kind: MountKind::Bind { source: path, readonly: false } });
        }
    }

    // On a user network, peers find it by name, aliases and short ID (docker's embedded DNS
    // answers the same names; forge keeps hosts files current instead, see
    // `Attachment::announce`). The default network has no names, as docker's.
    let mut attachment = attachment;
    if let (Some(a), Mode::Named(_)) = (attachment.as_mut(), &config.network) {
        let names: Vec<String> = config.name.iter().chain(&config.aliases).cloned().chain([config.id[..12].to_string()]).collect();
        let own = forge_network::hosts(address, &config.hostname, &config.add_hosts);
        a.announce(&names, &dir.join("hosts"), &own).map_err(fail)?;
    }
    let mut running = Running { network, mounts, proxies: Vec::new(), ports_file: None, connected, _attachment: attachment };
    // From here on its drop records the disconnect.
    if let Some((_, name, id)) = &running.connected {
        crate::events::network(store_root, "connect", name, id);
    }
    if let Some(address) = address {
        let mut published = Vec::new();
        for p in &config.ports {
            let (proxy, port) = Proxy::start(p, address).map_err(|source| Error::Publish { publish: p.to_string(), source })?;
            running.proxies.push(proxy);
            published.push(Publish { host_port: port, ..*p });
        }
        if !published.is_empty() {
            let path = dir.join(PORTS_FILE);
            crate::state::write_json(&path, &published)?;
            running.ports_file = Some(path);
        }
    }
    Ok(running)
}

/// The network namespace of the running container `other`, by its init's PID.
fn namespace_of(containers: &Containers, other: &str) -> Result<PathBuf, Error> {
    let c = containers.get(other)?;
    if c.state.status != Status::Running || c.state.pid == 0 || crate::sys::start_time(c.state.pid) != Some(c.state.pid_start) {
        return Err(Error::WrongStatus { id: c.config.id.clone(), status: c.state.status, what: "a container can join only a running container's network" });
    }
    Ok(PathBuf::from(format!("/proc/{}/ns/net", c.state.pid)))
}

/// The file in a container's directory that lists the networks it is connected to at each
/// start beside its `--network`.
const EXTRA_NETWORKS_FILE: &str = "networks.json";

/// A network a container is connected to at each start, with its aliases there.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct ExtraNetwork {
    network: String,
    aliases: Vec<String>,
}

/// The networks recorded in `path` (none when it does not exist).
fn extra_networks(path: &Path) -> Result<Vec<ExtraNetwork>, Error> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    crate::state::read_json(path)
}

/// Takes the lock that keeps two changes of one container's network records (`path`) from
/// losing each other's (its own lock is its supervisor's while it runs).
fn lock_records(path: &Path) -> Result<std::fs::File, Error> {
    crate::sys::lock_exclusive(&path.with_extension("lock"))
}

/// The network `config`'s mode attaches it to, by name.
fn configured_network(config: &Config) -> Option<String> {
    match &config.network {
        Mode::Bridge => Some(forge_network::DEFAULT_NETWORK.to_string()),
        Mode::Named(n) => Some(n.clone()),
        _ => None,
    }
}

/// The store's networks (`<store>/forge/network`).
pub fn networks(store_root: &Path) -> Result<Networks, forge_network::Error> {
    Networks::open(&store_root.join("forge").join("network"))
}

/// A running container's place on a network, as `network inspect` and the container's
/// `NetworkSettings` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The container's full ID.
    pub container: String,
    /// The container's name.
    pub name: Option<String>,
    /// The network's name.
    pub network: String,
    /// Its address there.
    pub address: Ipv4Addr,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The names peers find it by there (none on the default network).
    pub names: Vec<String>,
}

impl Containers {
    /// Gives the running container `c` an interface on `network` (docker's `network
    /// connect`); peers there find it by its name, `aliases` and short ID. Returns its address.
    /// The connection is recorded: the container is connected again at each start from now on
    /// (see [`connect_recorded`]), until [`disconnect`](Containers::disconnect). A container
    /// that is not running is only recorded; it has no address yet, so `None` is returned.
    pub fn connect(&self, c: &crate::Container, network: &str, aliases: &[String]) -> Result<Option<Ipv4Addr>, Error> {
        // As docker: a container without a namespace of its own (the host's, or another
        // container's) has no interfaces of its own to add, and `none` means no network.
        if matches!(c.config.network, Mode::Host | Mode::None | Mode::Container(_)) {
            return Err(Error::Invalid {
                what: "network mode",
                value: c.config.network.to_string(),
                reason: "a container in the host's or another container's network namespace, or with none, cannot be connected to other networks".into(),
            });
        }
        let path = self.dir_of(c.id()).join(EXTRA_NETWORKS_FILE);
        let _records = lock_records(&path)?;
        let mut extra = extra_networks(&path)?;
        if extra.iter().any(|e| e.network == network) || configured_network(&c.config).as_deref() == Some(network) {
            return Err(Error::Network { id: c.id().into(), source: forge_network::Error::InUse { name: network.into(), reason: format!("container {} is already connected to it", c.id()) } });
        }
        extra.push(ExtraNetwork { network: network.into(), aliases: aliases.to_vec() });
        if c.state.status != Status::Running {
            // Its lock is free while it does not run; held, the record cannot be lost to a
            // start that read it before.
            let _lock = self.lock_stopped(c.id(), "it started meanwhile: connect it again")?;
            networks(self.store().root()).and_then(|n| n.inspect(network)).map_err(|source| Error::Network { id: c.id().into(), source })?;
            crate::state::write_json(&path, &extra)?;
            return Ok(None);
        }
        // Recorded first, so that a restart from now on connects it; taken back when the
        // connect fails (the network is gone, or so is the run that was asked for).
        crate::state::write_json(&path, &extra)?;
        match self.connect_running(c.id(), &c.config, c.state.pid, c.state.pid_start, network, aliases) {
            Ok(address) => Ok(Some(address)),
            Err(e) => {
                extra.pop();
                crate::state::write_json(&path, &extra)?;
                Err(e)
            }
        }
    }

    fn connect_running(&self, id: &str, config: &Config, pid: u32, pid_start: u64, network: &str, aliases: &[String]) -> Result<Ipv4Addr, Error> {
        let fail = |source| Error::Network { id: id.into(), source };
        let names: Vec<String> = config.name.iter().chain(aliases).cloned().chain([id[..12].to_string()]).collect();
        // Its /etc/hosts (bind-mounted from its directory) lists its new peers too.
        let hosts = self.dir_of(id).join("hosts");
        let address = networks(self.store().root()).and_then(|n| n.connect_with_hosts(network, id, pid, pid_start, &names, &hosts)).map_err(fail)?;
        crate::events::network(self.store().root(), "connect", network, id);
        Ok(address)
    }

    /// Connects the container whose init just started (`pid`, in its namespaces already, its
    /// command not yet started: see [`forge_sandbox::Event::Namespaces`]) to the networks recorded
    /// for it by [`connect`](Containers::connect), so its command finds their interfaces from
    /// its start, as docker's does. Its lock is held by the caller. Each network is tried, and
    /// what failed is returned: a network removed since costs only itself.
    pub(crate) fn connect_recorded(&self, config: &Config, pid: u32, pid_start: u64) -> Vec<Error> {
        match extra_networks(&self.dir_of(&config.id).join(EXTRA_NETWORKS_FILE)) {
            Ok(extra) => extra.iter().filter_map(|e| self.connect_running(&config.id, config, pid, pid_start, &e.network, &e.aliases).err()).collect(),
            Err(e) => vec![e],
        }
    }

    /// The networks `c` is connected to at each start beside its `--network` (by
    /// [`connect`](Containers::connect)), each with the aliases given there, whether it runs
    /// or not (as docker's inspect lists them).
    pub fn connected(&self, c: &crate::Container) -> Result<Vec<(String, Vec<String>)>, Error> {
        Ok(extra_networks(&self.dir_of(c.id()).join(EXTRA_NETWORKS_FILE))?.into_iter().map(|e| (e.network, e.aliases)).collect())
    }

    /// Takes `c` off `network` (one [`connect`](Containers::connect) added): its record, and
    /// while it runs its interface there.
    pub fn disconnect(&self, c: &crate::Container, network: &str) -> Result<(), Error> {
        let path = self.dir_of(c.id()).join(EXTRA_NETWORKS_FILE);
        let _records = lock_records(&path)?;
        let mut extra = extra_networks(&path)?;
        let before = extra.len();
        extra.retain(|e| e.network != network);
        let recorded = extra.len() != before;
        if c.state.status != Status::Running {
            let _lock = self.lock_stopped(c.id(), "it started meanwhile: disconnect it again")?;
            if !recorded {
                return Err(Error::Network { id: c.id().into(), source: forge_network::Error::NotFound(format!("container {} on network {network}", c.id())) });
            }
            return crate::state::write_json(&path, &extra);
        }
        if recorded {
            crate::state::write_json(&path, &extra)?;
        }
        match networks(self.store().root()).and_then(|n| n.disconnect(network, c.id())) {
            Ok(()) => {}
            // Recorded but not attached in this run (its connect at start failed): the record
            // was all there was to take back.
            Err(forge_network::Error::NotFound(_)) if recorded => return Ok(()),
            Err(source) => return Err(Error::Network { id: c.id().into(), source }),
        }
        crate::events::network(self.store().root(), "disconnect", network, c.id());
        Ok(())
    }

    /// Where the running containers are attached. forge's leases name namespaces, not
    /// containers (a build step's has none): an attachment is a container's when its namespace
    /// is the one the container's init is in (same nsfs inode).
    pub fn endpoints(&self) -> Result<Vec<Endpoint>, Error> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.store().root().join("forge").join("network");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut namespaces = HashMap::new();
        for c in self.list()? {
            if c.state.status != Status::Running || crate::sys::start_time(c.state.pid) != Some(c.state.pid_start) {
                continue;
            }
            if let Ok(m) = std::fs::metadata(format!("/proc/{}/ns/net", c.state.pid)) {
                namespaces.insert((m.dev(), m.ino()), (c.id().to_string(), c.config.name.clone()));
            }
        }
        let networks = Networks::open(&dir)?;
        let mut out = Vec::new();
        for n in networks.list()? {
            let (_, attached) = match networks.inspect(&n.name) {
                Ok(found) => found,
                // Removed meanwhile.
                Err(forge_network::Error::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            for a in attached {
                let Ok(m) = std::fs::metadata(&a.netns) else { continue };
                if let Some((id, name)) = namespaces.get(&(m.dev(), m.ino())) {
                    out.push(Endpoint { container: id.clone(), name: name.clone(), network: n.name.clone(), address: a.address, gateway: n.gateway, prefix_len: n.subnet.prefix_len(), names: a.names });
                }
            }
        }
        Ok(out)
    }
}

/// Removes what dead supervisors left of their containers' networks (see
/// [`Networks::reconcile`]). Best effort: a store without networks has nothing to reconcile,
/// and what fails now is found again by the next command.
pub(crate) fn reconcile(store_root: &Path) {
    let dir = store_root.join("forge").join("network");
    if dir.exists() {
        if let Ok(networks) = Networks::open(&dir) {
            let _ = networks.reconcile();
        }
    }
}

/// The ports a running container publishes (none when it is not running).
pub fn published(dir: &Path) -> Vec<Publish> {
    std::fs::read(dir.join(PORTS_FILE)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(p) = &self.ports_file {
            let _ = std::fs::remove_file(p);
        }
        self.proxies.clear();
        if let Some((store_root, network, id)) = &self.connected {
            crate::events::network(store_root, "disconnect", network, id);
        }
    }
}

/// One published port's proxy: a thread serving the host socket until dropped.
struct Proxy {
    stop: Arc<AtomicBool>,
    /// Where a packet or connection wakes the serving thread up to see `stop`.
    wake: (Protocol, SocketAddr),
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Binds the host side of `p` and serves it; returns the proxy and the bound port.
    fn start(p: &Publish, container: Ipv4Addr) -> io::Result<(Proxy, u16)> {
        let stop = Arc::new(AtomicBool::new(false));
        let target = SocketAddr::from((container, p.container_port));
        let (bound, thread) = match p.protocol {
            Protocol::Tcp => {
                let listener = TcpListener::bind((p.host_ip, p.host_port))?;
                let bound = listener.local_addr()?;
                let s = stop.clone();
                (bound, std::thread::spawn(move || serve_tcp(listener, target, &s)))
            }
            Protocol::Udp => {
                let socket = UdpSocket::bind((p.host_ip, p.host_port))?;
                let bound = socket.local_addr()?;
                let s = stop.clone();
                (bound, std::thread::spawn(move || serve_udp(socket, target, &s)))
            }
        };
        let wake_ip = if p.host_ip.is_unspecified() { Ipv4Addr::LOCALHOST } else { p.host_ip };
        let wake = (p.protocol, SocketAddr::from((wake_ip, bound.port())));
        Ok((Proxy { stop, wake, thread: Some(thread) }, bound.port()))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = match self.wake {
            (Protocol::Tcp, addr) => TcpStream::connect(addr).map(drop),
            (Protocol::Udp, addr) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|s| s.send_to(&[], addr)).map(drop),
        };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_tcp(listener: TcpListener, target: SocketAddr, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        std::thread::spawn(move || {
            let Ok(upstream) = TcpStream::connect(target) else { return };
            let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), upstream.try_clone()) else { return };
            let (mut c, mut u) = (client, upstream);
            let up = std::thread::spawn(move || {
                let _ = copy(&mut c2, &mut u2);
                let _ = u2.shutdown(std::net::Shutdown::Write);
            });
            let _ = copy(&mut u, &mut c);
            let _ = c.shutdown(std::net::Shutdown::Write);
            let _ = up.join();
        });
    }
}

/// UDP: one socket towards the container per client, whose replies a thread sends back. The
/// reply threads hold the host socket too, so they end (and are joined) with the proxy: the
/// port is free again when the container is gone.
fn serve_udp(socket: UdpSocket, target: SocketAddr, stop: &Arc<AtomicBool>) {
    let mut clients: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut repliers = Vec::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf) else { continue };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let upstream = match clients.entry(from) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => match udp_upstream(&socket, target, from, stop) {
                Some((u, replier)) => {
                    repliers.push(replier);
                    v.insert(u)
                }
                None => continue,
            },
        };
        let _ = upstream.send(&buf[..n]);
    }
    for r in repliers {
        let _ = r.join();
    }
}

/// A socket towards the container for the client `from`, and a thread that sends what comes
/// back on it to the client through the host socket until `stop`.
fn udp_upstream(socket: &UdpSocket, target: SocketAddr, from: SocketAddr, stop: &Arc<AtomicBool>) -> Option<(UdpSocket, JoinHandle<()>)> {
    let upstream = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).and_then(|u| u.connect(target).map(|()| u)).ok()?;
    let (replies, back) = (upstream.try_clone().ok()?, socket.try_clone().ok()?);
    // Wakes up every half second to see whether the proxy stopped.
    replies.set_read_timeout(Some(std::time::Duration::from_millis(500))).ok()?;
    let stop = stop.clone();
    let replier = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::SeqCst) {
            match replies.recv(&mut buf) {
                Ok(n) => {
                    let _ = back.send_to(&buf[..n], from);
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) => {}
                // ECONNREFUSED from an ICMP "port unreachable" the container sent: keep going.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(_) => return,
            }
        }
    });
    Some((upstream, replier))
}

/// Copies `from` to `to` until `from` ends: with splice(2), or where the kernel refuses it,
/// through a 256 KiB buffer (`io::copy`'s 8 KiB one halves a bulk transfer's throughput).
fn copy<F: Read + AsFd, T: Write + AsFd>(from: &mut F, to: &mut T) -> io::Result<()> {
    if crate::sys::splice_all(from.as_fd(), to.as_fd())? == crate::sys::Spliced::All {
        return Ok(());
    }
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => to.write_all(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(protocol: Protocol, container_port: u16) -> Publish {
        Publish { host_ip: Ipv4Addr::LOCALHOST, host_port: 0, container_port, protocol }
    }

    /// A connected pair of TCP sockets on loopback, and a thread that writes `payload` into
    /// the first and then ends it.
    fn sending(payload: Vec<u8>) -> (TcpStream, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (receiver, _) = listener.accept().unwrap();
        let writer = std::thread::spawn(move || {
            sender.write_all(&payload).unwrap();
            sender.shutdown(std::net::Shutdown::Write).unwrap();
        });
        (receiver, writer)
    }

    /// Bytes that differ from one offset to the next, so a lost or repeated chunk shows.
    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ (i >> 16) as u8).collect()
    }

    #[test]
    fn sockets_are_spliced_into_each_other() {
        let sent = payload(5 << 20);
        let (mut from, writer) = sending(sent.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut out, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            out.read_to_end(&mut got).unwrap();
            got
        });
        assert_eq!(crate::sys::splice_all(from.as_fd(), to.as_fd()).unwrap(), crate::sys::Spliced::All);
        to.shutdown(std::net::Shutdown::Write).unwrap();
        writer.join().unwrap();
        assert!(reader.join().unwrap() == sent);
        let mut rest = Vec::new();
        assert_eq!(from.read_to_end(&mut rest).unwrap(), 0);
    }

    #[test]
    fn where_splice_is_refused_the_copy_loses_nothing() {
        // A file opened for append refuses splice (EINVAL) once a first chunk is in the pipe.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut file = std::fs::File::options().create(true).append(true).open(&path).unwrap();
        let sent = payload(3 << 20);
        let (mut from, writer) = sending(sent.clone());
        assert_eq!(crate::sys::splice_all(from.as_fd(), file.as_fd()).unwrap(), crate::sys::Spliced::Refused);
        // The rest through the buffer, as the proxy's copy goes on.
        copy(&mut from, &mut file).unwrap();
        writer.join().unwrap();
        assert!(std::fs::read(&path).unwrap() == sent);
    }

    // The proxies against servers on the host's loopback standing in for a container's (the
    // cli tests run them against real containers over the bridge; busybox has no UDP tool).
    #[test]
    fn the_udp_proxy_passes_datagrams_both_ways_per_client() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let echo = std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                let (n, from) = server.recv_from(&mut buf).unwrap();
                server.send_to(&[&b"echo:"[..], &buf[..n]].concat(), from).unwrap();
            }
        });
        let (proxy, host_port) = Proxy::start(&publish(Protocol::Udp, port), Ipv4Addr::LOCALHOST).unwrap();
        for word in [&b"one"[..], b"two"] {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
            client.send_to(word, ("127.0.0.1", host_port)).unwrap();
            let mut buf = [0u8; 64];
            let n = client.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], [&b"echo:"[..], word].concat().as_slice());
        }
        echo.join().unwrap();
        drop(proxy);
        // Dropped: the port is free again.
        UdpSocket::bind(("127.0.0.1", host_port)).unwrap();
    }

    #[test]
    fn the_tcp_proxy_passes_a_stream_and_its_end_and_refuses_a_taken_port() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let upper = std::thread::spawn(move || {
            let (mut c, _) = server.accept().unwrap();
            let mut text = String::new();
            c.read_to_string(&mut text).unwrap();
            c.write_all(text.to_uppercase().as_bytes()).unwrap();
        });
        let (proxy, host_port) = Proxy::start(&publish(Protocol::Tcp, port), Ipv4Addr::LOCALHOST).unwrap();
        let taken = Proxy::start(&Publish { host_port, ..publish(Protocol::Tcp, port) }, Ipv4Addr::LOCALHOST);
        assert_eq!(taken.err().map(|e| e.kind()), Some(io::ErrorKind::AddrInUse));
        let mut c = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
        c.write_all(&vec![b'x'; 1 << 20]).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, vec![b'X'; 1 << 20]);
        upper.join().unwrap();
        drop(proxy);
    }
}
