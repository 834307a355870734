//! forge's container networking: the bridged network namespaces that RUN steps (and
//! containers) get, made with netlink and iptables, with IP leases kept in the store.
//!
//! A store's default network, `bridge`, is a Linux bridge on the host (`forge0` on a fresh
//! host, then the next free `forgeN`, kept for as long as the store exists) with a private
//! subnet that clashes with no route the host has (or the one `default_subnet` in
//! `<dir>/config.json` names). Each [`Attachment`] is a network namespace, bind-mounted at a
//! path a sandbox joins, with loopback, an `eth0` that is one end of a veth pair whose other end
//! sits on the bridge, an address leased from the subnet, and a default route via the bridge's
//! address. What leaves the subnet is masqueraded (see `nat.rs` for the rules and why iptables).
//!
//! User networks ([`Networks::create`]) are the same on bridges of their own, isolated from
//! each other by forwarding rules; `internal` ones have no NAT and no default route. Their
//! attachments find each other by name through hosts files forge keeps current
//! ([`Attachment::announce`]). The namespace of a `container:` or `host` network is not made
//! here: the caller joins an existing one.
//!
//! # Leases and crashes
//!
//! A lease is `<dir>/leases/<id>.json`, and its owner holds an `flock` on `<id>.lock` for as
//! long as the attachment lives; the kernel drops the lock when the owner dies, however it dies.
//! Leases are written, and reconciled, under one host-wide lock, so two forge processes never
//! hand out one address, and a lease whose lock can be taken belongs to a dead owner: the next
//! attach, [`Networks::reconcile`] or [`Networks::prune`] removes its veth pair, its namespace
//! mount and the lease. The lease is written before anything it names exists, so a `kill -9`
//! at any point of the set-up leaves only things a lease names.
//!
//! # Example
//!
//! ```no_run
//! let networks = forge_network::Networks::open("/var/lib/forge/forge/network".as_ref())?;
//! let attachment = networks.attach(forge_network::DEFAULT_NETWORK, None)?;
//! println!("join {} for {}", attachment.netns().display(), attachment.address());
//! attachment.release()?; // or drop it
//! # Ok::<(), forge_network::Error>(())
//! ```

#![deny(missing_docs)]

mod etc;
mod mode;
mod nat;
mod netlink;
mod sys;

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub use etc::{hosts, resolv_conf};
pub use mode::{alias, extra_host, InvalidMode, InvalidPublish, Mode, Protocol, Publish};
pub use nat::tagged_rules;
use sys::FileLock;

/// The name of a store's default network (docker's name for its default one).
pub const DEFAULT_NETWORK: &str = "bridge";

/// Where the host-wide state lives: the lock that serializes set-up and reconciling, and the
/// claims that give each store its own bridge name. Bridges and iptables rules belong to the
/// host, not to a store, so this is not in a store.
const HOST_DIR: &str = "/run/forge/network";

/// Subnets tried in order for a default network, as docker picks from its pools.
const CANDIDATE_SUBNETS: [&str; 16] = [
    "172.29.0.0/16",
    "172.30.0.0/16",
    "172.31.0.0/16",
    "172.27.0.0/16",
    "172.26.0.0/16",
    "10.213.0.0/16",
    "10.214.0.0/16",
    "10.215.0.0/16",
    "10.216.0.0/16",
    "10.217.0.0/16",
    "10.218.0.0/16",
    "10.219.0.0/16",
    "10.220.0.0/16",
    "10.221.0.0/16",
    "10.222.0.0/16",
    "10.223.0.0/16",
];

/// Why a network could not be set up or taken down.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A netlink request failed.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: &'static str,
        /// rtnetlink's error.
        source: rtnetlink::Error,
    },
    /// An iptables command failed.
    #[error("{command}: {message}")]
    Firewall {
        /// The command line.
        command: String,
        /// What iptables said.
        message: String,
    },
    /// A file in the network store could not be read.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// No such network.
    #[error("network {0} not found")]
    NotFound(String),
    /// Every address of the subnet is leased.
    #[error("no free address left in network {network} ({subnet})")]
    Exhausted {
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// `--ip` names an address the network cannot give.
    #[error("address {address} is not a usable host address of network {network} ({subnet})")]
    BadAddress {
        /// The address.
        address: Ipv4Addr,
        /// The network.
        network: String,
        /// Its subnet.
        subnet: Ipv4Net,
    },
    /// `--ip` names an address another attachment holds.
    #[error("address {address} is already in use on network {network}")]
    AddressInUse {
        /// The address.
        address: Ipv4Addr,
        /// The network.
        network: String,
    },
    /// A network of that name exists.
    #[error("network with name {0} already exists")]
    Exists(String),
    /// The network cannot be removed.
    #[error("network {name} cannot be removed: {reason}")]
    InUse {
        /// The network.
        name: String,
        /// Why.
        reason: String,
    },
    /// A `create` option names something impossible.
    #[error("invalid {what} {value}: {reason}")]
    Invalid {
        /// What it is (`subnet`, `gateway`, `name`).
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Every candidate subnet clashes with a route of the host.
    #[error("no free subnet for network {0}: every candidate clashes with a route of the host; set default_subnet in the network config")]
    NoSubnet(String),
}

/// One network of a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Its name.
    pub name: String,
    /// The bridge on the host.
    pub bridge: String,
    /// The subnet addresses are leased from.
    pub subnet: Ipv4Net,
    /// The bridge's address, the attachments' default route.
    pub gateway: Ipv4Addr,
    /// No NAT and no default route: attachments reach only each other.
    pub internal: bool,
    /// The user's `KEY=VALUE` labels (docker's `network create --label`; compose finds its
    /// networks by them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
}

/// The user's settings, `<dir>/config.json` (every field optional).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Config {
    /// The subnet of the default network, instead of the first free candidate.
    #[serde(default)]
    default_subnet: Option<Ipv4Net>,
}

/// What a lease file records: everything its teardown must remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Lease {
    id: String,
    network: String,
    address: Ipv4Addr,
    /// The host end of the veth pair.
    veth: String,
    /// The namespace's bind mount.
    netns: PathBuf,
    /// The names peers on the network find it by (see [`Attachment::announce`]).
    #[serde(default)]
    names: Vec<String>,
    /// Its `/etc/hosts`, kept current with its peers' names.
    #[serde(default)]
    hosts: Option<HostsFile>,
    /// Set for an interface added to a running container's namespace (`network connect`):
    /// the container's init owns it, not a lock holder.
    #[serde(default)]
    joined: Option<Joined>,
}

/// The owner of a [`Networks::connect`]ed interface.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Joined {
    /// Whose interface it is (the container's ID).
    container: String,
    /// The container's init, and its start time (so a reused PID is not taken for it).
    pid: u32,
    start: u64,
    /// The interface's name inside (`eth1`, ...).
    interface: String,
}

/// A hosts file forge keeps current: its own part, then a line per peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostsFile {
    path: PathBuf,
    own: String,
}

/// A store's networks, kept in one directory (`<store>/forge/network`).
#[derive(Debug, Clone)]
pub struct Networks {
    dir: PathBuf,
}

/// A network namespace attached to a network, until [`Attachment::release`] or drop.
#[derive(Debug)]
pub struct Attachment {
    lease: Lease,
    network: Network,
    dir: PathBuf,
    owner: Option<FileLock>,
}

/// One attachment of a network, as [`Networks::inspect`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// Its address.
    pub address: Ipv4Addr,
    /// The names peers find it by (none for a build step, or on the default network).
    pub names: Vec<String>,
    /// Its network namespace: a bind mount, or a connected container's `/proc/<pid>/ns/net`
    /// (whose inode tells which container it is).
    pub netns: PathBuf,
}

/// What [`Networks::prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Leases of dead owners (with their veth pairs and namespaces).
    pub leases: usize,
    /// Bridges no attachment used (with their rules).
    pub bridges: Vec<String>,
    /// User networks removed.
    pub networks: Vec<String>,
}

/// Whether a bridge claim (a store's directory and a network's name, a line each) is of a
/// store whose directory is gone.
fn orphaned(claim: &str) -> bool {
    !claim.split_once('\n').is_some_and(|(dir, _)| Path::new(dir).is_dir())
}

fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { what, source }
}

/// Takes the host-wide lock.
fn host_lock() -> Result<FileLock, Error> {
    fs::create_dir_all(HOST_DIR).map_err(io("creating /run/forge/network"))?;
    FileLock::exclusive(&Path::new(HOST_DIR).join("lock")).map_err(io("locking /run/forge/network/lock"))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Corrupt { path: path.to_path_buf(), message: e.to_string() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { what: "reading the network store", source }),
    }
}

/// Writes `value` to `path` atomically (temp file, fsync, rename).
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt { path: path.to_path_buf(), message: e.to_string() })?;
    let mut f = fs::File::create(&tmp).map_err(io("writing the network store"))?;
    f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io("writing the network store"))?;
    fs::rename(&tmp, path).map_err(io("writing the network store"))
}

/// A fresh random ID (hex), from the standard library's randomly seeded hasher.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

impl Networks {
    /// Opens (creating if needed) the network store in `dir`.
    pub fn open(dir: &Path) -> Result<Networks, Error> {
        for sub in ["networks", "leases", "netns"] {
            fs::create_dir_all(dir.join(sub)).map_err(io("creating the network store"))?;
        }
        // The directory is the store's identity in the host-wide bridge claims: one spelling
        // for every process, however it named the store (`--root store`, `/abs/store`).
        let dir = fs::canonicalize(dir).map_err(io("finding the network store"))?;
        Ok(Networks { dir })
    }

    fn lease_path(&self, id: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{id}.json"))
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.dir.join("leases").join(format!("{id}.lock"))
    }

    fn leases(&self) -> Result<Vec<Lease>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join("leases")).map_err(io("listing leases"))? {
            let path = entry.map_err(io("listing leases"))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                out.extend(read_json::<Lease>(&path)?);
            }
        }
        Ok(out)
    }

    /// The network `name`; the default network is made on first use.
    fn network(&self, name: &str) -> Result<Network, Error> {
        let path = self.dir.join("networks").join(format!("{name}.json"));
        let recorded = read_json::<Network>(&path)?;
        if name != DEFAULT_NETWORK {
            let mut n = recorded.ok_or_else(|| Error::NotFound(name.to_string()))?;
            if !self.claim(&n.bridge, name)? {
                n.bridge = self.claim_bridge(name)?;
                write_json(&path, &n)?;
            }
            return Ok(n);
        }
        // The default network's bridge and subnet are re-checked whenever its bridge is to be
        // made: since it was last up, another store may have claimed the name (claims live in
        // /run, so a reboot forgets them) or put its bridge on the subnet.
        if let Some(n) = &recorded {
            if netlink::link_exists(&n.bridge)? && self.claim(&n.bridge, name)? {
                return Ok(n.clone());
            }
        }
        let config: Config = read_json(&self.dir.join("config.json"))?.unwrap_or_default();
        let bridge = match &recorded {
            Some(n) if self.claim(&n.bridge, name)? => n.bridge.clone(),
            _ => self.claim_bridge(name)?,
        };
        let mut taken: Vec<Ipv4Net> = self.list_locked()?.into_iter().filter(|n| n.name != name).map(|n| n.subnet).collect();
        taken.extend(self.other_stores_subnets());
        let subnet = match (config.default_subnet, &recorded) {
            (Some(s), _) => s.trunc(),
            (None, Some(n)) if subnet_is_free(&n.subnet, &bridge, &taken)? => n.subnet,
            (None, _) => free_subnet(&bridge, &taken)?.ok_or_else(|| Error::NoSubnet(name.to_string()))?,
        };
        let gateway = subnet.hosts().next().ok_or_else(|| Error::NoSubnet(name.to_string()))?;
        let network = Network { name: name.to_string(), bridge, subnet, gateway, internal: false, labels: Default::default() };
        if recorded.as_ref() != Some(&network) {
            write_json(&path, &network)?;
        }
        Ok(network)
    }

    /// Claims the bridge name `name` for this store's `network` in the host-wide directory
    /// (the claim holds the store's directory and the network's name, a line each), so two
    /// networks never share a bridge (their leases would clash): true if `network` holds it
    /// now. A claim of a store whose directory is gone is taken over; an unclaimed name only
    /// if no link has it (docker's, podman's or anyone's).
    fn claim(&self, name: &str, network: &str) -> Result<bool, Error> {
        let claims = Path::new(HOST_DIR).join("bridges");
        fs::create_dir_all(&claims).map_err(io("creating the bridge claims"))?;
        let me = format!("{}\n{network}", self.dir.display());
        let claim = claims.join(name);
        let take = match fs::read_to_string(&claim) {
            Ok(owner) if owner == me => return Ok(true),
            Ok(owner) => orphaned(&owner),
            Err(_) => !netlink::link_exists(name)?,
        };
        if take {
            fs::write(&claim, &me).map_err(io("claiming a bridge name"))?;
        }
        Ok(take)
    }

    /// The subnets of other stores' networks, found through their bridge claims: a user
    /// network's bridge (and so its route) appears only at its first attachment, and until
    /// then the host's routes do not show that its subnet is taken. Called under the host lock.
    fn other_stores_subnets(&self) -> Vec<Ipv4Net> {
        let Ok(claims) = fs::read_dir(Path::new(HOST_DIR).join("bridges")) else { return Vec::new() };
        let mut out = Vec::new();
        for claim in claims.flatten() {
            let Ok(owner) = fs::read_to_string(claim.path()) else { continue };
            let Some((dir, network)) = owner.split_once('\n') else { continue };
            if Path::new(dir) == self.dir {
                continue;
            }
            // A claim of a store that is gone, or a network record that cannot be read, takes nothing.
            if let Ok(Some(n)) = read_json::<Network>(&Path::new(dir).join("networks").join(format!("{network}.json"))) {
                out.push(n.subnet);
            }
        }
        out
    }

    /// A `forgeN` for this store's `network`. First a name whose claim outlived its store
    /// (deleted without a prune) or is this network's own (a store made again at the same
    /// path); every such bridge still up is taken down, as it holds a subnet. Else
    /// the next free name from the one claimed last, as PIDs are handed out: a name a removed
    /// network just gave up is not handed out again at once, so a `forge3` seen a moment ago
    /// is not suddenly another network's bridge. Called under the host lock, which keeps the
    /// cursor.
    fn claim_bridge(&self, network: &str) -> Result<String, Error> {
        const NAMES: u32 = 1000;
        let claims = Path::new(HOST_DIR).join("bridges");
        let me = format!("{}\n{network}", self.dir.display());
        fs::create_dir_all(&claims).map_err(io("creating the bridge claims"))?;
        let mut left: Vec<u32> = fs::read_dir(&claims)
            .map_err(io("listing the bridge claims"))?
            .flatten()
            .filter_map(|c| {
                let n = c.file_name().to_str()?.strip_prefix("forge")?.parse::<u32>().ok()?;
                let owner = fs::read_to_string(c.path()).ok()?;
                (n < NAMES && (orphaned(&owner) || owner == me)).then_some(n)
            })
            .collect();
        left.sort_unstable();
        // What is left under those names is nobody's (its store, or this network's record of
        // it, is gone): taken down, so their subnets are free again.
        for n in &left {
            let name = format!("forge{n}");
            if netlink::link_exists(&name)? {
                netlink::delete_link(&name)?;
                nat::remove(&name)?;
            }
            let _ = fs::remove_file(claims.join(&name));
        }
        for n in left {
            let name = format!("forge{n}");
            if self.claim(&name, network)? {
                return Ok(name);
            }
        }
        let cursor = Path::new(HOST_DIR).join("next-bridge");
        let start = fs::read_to_string(&cursor).ok().and_then(|c| c.trim().parse::<u32>().ok()).unwrap_or(0) % NAMES;
        for n in (start..NAMES).chain(0..start) {
            let name = format!("forge{n}");
            if self.claim(&name, network)? {
                fs::write(&cursor, format!("{}\n", (n + 1) % NAMES)).map_err(io("recording the next bridge name"))?;
                return Ok(name);
            }
        }
        Err(Error::NoSubnet(DEFAULT_NETWORK.into()))
    }

    /// Attaches a new network namespace to `network`, with `address` (`--ip`) or the lowest
    /// free one.
    pub fn attach(&self, network: &str, address: Option<Ipv4Addr>) -> Result<Attachment, Error> {
        let _host = host_lock()?;
        self.reconcile_locked()?;
        let network = self.network(network)?;
        netlink::ensure_bridge(&network.bridge, network.gateway, network.subnet.prefix_len())?;
        nat::add(&network.bridge, &network.subnet, network.internal)?;
        let leased: Vec<Ipv4Addr> = self.leases()?.into_iter().filter(|l| l.network == network.name).map(|l| l.address).collect();
        let address = match address {
            Some(a) if !network.subnet.contains(&a) || a == network.gateway || a == network.subnet.network() || a == network.subnet.broadcast() => {
                return Err(Error::BadAddress { address: a, network: network.name.clone(), subnet: network.subnet });
            }
            Some(a) if leased.contains(&a) => return Err(Error::AddressInUse { address: a, network: network.name.clone() }),
            Some(a) => a,
            None => network
                .subnet
                .hosts()
                .find(|a| *a != network.gateway && !leased.contains(a))
                .ok_or_else(|| Error::Exhausted { network: network.name.clone(), subnet: network.subnet })?,
        };
        let id = new_id();
        let lease = Lease {
            veth: format!("fv{}", &id[..12]),
            netns: self.dir.join("netns").join(&id),
            address,
            network: network.name.clone(),
            id: id.clone(),
            names: Vec::new(),
            hosts: None,
            joined: None,
        };
        // A fresh ID's lock is free; held means another process made the same ID, so it is
        // not ours to take.
        let owner = FileLock::try_exclusive(&self.lock_path(&id))
            .map_err(io("locking a lease"))?
            .ok_or_else(|| io("locking a lease")(io::Error::from(io::ErrorKind::AlreadyExists)))?;
        write_json(&self.lease_path(&id), &lease)?;
        let attachment = Attachment { lease, network, dir: self.dir.clone(), owner: Some(owner) };
        // The lease names everything from here on, so a failure (or a kill) leaves nothing
        // that a teardown or the next reconcile does not find.
        sys::create_netns(&attachment.lease.netns).map_err(io("making the network namespace"))?;
        let (n, l) = (&attachment.network, &attachment.lease);
        netlink::add_veth(&l.veth, &n.bridge, &l.netns, netlink::CONTAINER_IF)?;
        netlink::configure_inside(&l.netns, netlink::CONTAINER_IF, l.address, n.subnet.prefix_len(), (!n.internal).then_some(n.gateway))?;
        sys::open_ports_and_ping(&l.netns).map_err(io("setting the namespace's port and ping sysctls"))?;
        Ok(attachment)
    }

    /// Makes the user network `name` (docker's `network create`): a bridge of its own, made
    /// at its first attachment, on `subnet` (default: the first free candidate) with `gateway`
    /// (default: the subnet's first address). An `internal` network gets no NAT and its
    /// attachments no default route. `labels` are kept with it.
    pub fn create(
        &self,
        name: &str,
        subnet: Option<Ipv4Net>,
        gateway: Option<Ipv4Addr>,
        internal: bool,
        labels: std::collections::BTreeMap<String, String>,
    ) -> Result<Network, Error> {
        if !mode::valid_name(name) || ["bridge", "host", "none", "default"].contains(&name) {
            return Err(Error::Invalid { what: "network name", value: name.into(), reason: "use [a-zA-Z0-9][a-zA-Z0-9_.-]*, not a predefined network's name".into() });
        }
        let _host = host_lock()?;
        let path = self.dir.join("networks").join(format!("{name}.json"));
        if path.exists() {
            return Err(Error::Exists(name.into()));
        }
        let mut taken: Vec<Ipv4Net> = self.list_locked()?.into_iter().map(|n| n.subnet).collect();
        taken.extend(self.other_stores_subnets());
        let bridge = self.claim_bridge(name)?;
        // A refused create leaves no claim behind.
        let addresses = pick_addresses(name, &bridge, subnet, gateway, &taken);
        let (subnet, gateway) = match addresses {
            Ok(picked) => picked,
            Err(e) => {
                let _ = fs::remove_file(Path::new(HOST_DIR).join("bridges").join(&bridge));
                return Err(e);
            }
        };
        let network = Network { name: name.into(), bridge, subnet, gateway, internal, labels };
        write_json(&path, &network)?;
        self.event("create", name);
        Ok(network)
    }

    /// The store's networks (the default one once it was used), by name.
    pub fn list(&self) -> Result<Vec<Network>, Error> {
        let _host = host_lock()?;
        self.list_locked()
    }

    fn list_locked(&self) -> Result<Vec<Network>, Error> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.dir.join("networks")).map_err(io("listing networks"))? {
            let path = entry.map_err(io("listing networks"))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                out.extend(read_json::<Network>(&path)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network and what is attached to it.
    pub fn inspect(&self, name: &str) -> Result<(Network, Vec<Attached>), Error> {
        let _host = host_lock()?;
        self.reconcile_locked()?;
        let network = self.list_locked()?.into_iter().find(|n| n.name == name).ok_or_else(|| Error::NotFound(name.into()))?;
        let attached = self.leases()?.into_iter().filter(|l| l.network == name).map(|l| Attached { address: l.address, names: l.names, netns: l.netns }).collect();
        Ok((network, attached))
    }

    /// Removes a user network: its bridge, rules and record. Not the default network, nor one
    /// something is attached to.
    pub fn remove(&self, name: &str) -> Result<(), Error> {
        let _host = host_lock()?;
        self.reconcile_locked()?;
        if name == DEFAULT_NETWORK {
            return Err(Error::InUse { name: name.into(), reason: "it is a pre-defined network".into() });
        }
        let network = self.list_locked()?.into_iter().find(|n| n.name == name).ok_or_else(|| Error::NotFound(name.into()))?;
        let users = self.leases()?.iter().filter(|l| l.network == name).count();
        if users > 0 {
            return Err(Error::InUse { name: name.into(), reason: format!("{users} container(s) or build step(s) are attached to it") });
        }
        self.remove_bridge(&network)?;
        match fs::remove_file(self.dir.join("networks").join(format!("{name}.json"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("removing a network")(e)),
            _ => {}
        }
        self.event("destroy", name);
        Ok(())
    }

    /// Records `action` on network `name` in the store's event journal: a network store at
    /// `<store>/forge/network` is a store's (one elsewhere, as in tests, records nothing).
    fn event(&self, action: &str, name: &str) {
        let store_root = self.dir.parent().filter(|forge| forge.ends_with("forge") && self.dir.ends_with("network")).and_then(Path::parent);
        if let Some(root) = store_root {
            let attributes = [("name".to_string(), name.to_string()), ("type".to_string(), "bridge".to_string())].into();
            forge_layerstore::events::record_quietly(root, forge_layerstore::events::Event::now("network", action, name, attributes));
        }
    }

    /// Deletes a network's bridge (if up), its rules and, for a user network, its claim on the
    /// bridge name; returns whether there was a bridge.
    fn remove_bridge(&self, network: &Network) -> Result<bool, Error> {
        // Only a bridge this network still claims: once its bridge was removed, another store's
        // network may have claimed the same name and made a bridge of its own there, whose link
        // and rules are not ours to take down.
        let claim = Path::new(HOST_DIR).join("bridges").join(&network.bridge);
        if !fs::read_to_string(&claim).is_ok_and(|owner| owner == format!("{}\n{}", self.dir.display(), network.name)) {
            return Ok(false);
        }
        let existed = netlink::link_exists(&network.bridge)?;
        if existed {
            netlink::delete_link(&network.bridge)?;
        }
        nat::remove(&network.bridge)?;
        // The default network outlives its bridge (pruned when unused, made again on its next
        // use), so it keeps its name, as docker0 stays docker0. Released, the name went to
        // whichever store made a bridge next, and a `forge0` seen a moment ago was suddenly
        // another store's. A removed user network's name is free again (its record is gone).
        if network.name != DEFAULT_NETWORK {
            let _ = fs::remove_file(claim);
        }
        Ok(existed)
    }

    /// Adds an interface on `network` (`eth1`, `eth2`, ...) to the running container
    /// `container`, whose init is `pid` (started at `start`, `/proc/<pid>/stat`'s field 22):
    /// docker's `network connect`. The interface lives as long as the container's namespace;
    /// its lease is reconciled once that process is gone. Peers on `network` find it by
    /// `names`. Returns the interface's address.
    ///
    /// The container's own `/etc/hosts` is not kept current with its peers there: use
    /// [`connect_with_hosts`](Networks::connect_with_hosts) for that.
    pub fn connect(&self, network: &str, container: &str, pid: u32, start: u64, names: &[String]) -> Result<Ipv4Addr, Error> {
        self.connect_inner(network, container, pid, start, names, None)
    }

    /// [`connect`](Networks::connect), and `hosts` (the container's `/etc/hosts`, bind-mounted
    /// into it) lists its peers on `network` from now on, beside those of every other network
    /// it is on, until it is disconnected or gone (see [`Attachment::announce`]).
    pub fn connect_with_hosts(&self, network: &str, container: &str, pid: u32, start: u64, names: &[String], hosts: &Path) -> Result<Ipv4Addr, Error> {
        self.connect_inner(network, container, pid, start, names, Some(hosts))
    }

    fn connect_inner(&self, network: &str, container: &str, pid: u32, start: u64, names: &[String], hosts: Option<&Path>) -> Result<Ipv4Addr, Error> {
        let _host = host_lock()?;
        self.reconcile_locked()?;
        let leases = self.leases()?;
        // Its own lease or an earlier connect on that network: the same container, or a name
        // (its short ID among them) another attachment has.
        if leases.iter().any(|l| l.network == network && (l.joined.as_ref().is_some_and(|j| j.container == container) || l.names.iter().any(|n| names.contains(n)))) {
            return Err(Error::InUse { name: network.into(), reason: format!("container {container} is already connected to it") });
        }
        let network = self.network(network)?;
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        if sys::start_time(pid) != Some(start) {
            return Err(Error::NotFound(format!("a running process {pid} for container {container}")));
        }
        // Whatever the caller checked: an interface added there would be the host's own.
        if sys::same_file(&netns, Path::new("/proc/self/ns/net")).map_err(io("reading the container's network namespace"))? {
            return Err(Error::Invalid { what: "container", value: container.into(), reason: "it is in forge's own (the host's) network namespace, so it cannot be connected to a network".into() });
        }
        netlink::ensure_bridge(&network.bridge, network.gateway, network.subnet.prefix_len())?;
        nat::add(&network.bridge, &network.subnet, network.internal)?;
        let leased: Vec<Ipv4Addr> = leases.iter().filter(|l| l.network == network.name).map(|l| l.address).collect();
        let address = network
            .subnet
            .hosts()
            .find(|a| *a != network.gateway && !leased.contains(a))
            .ok_or_else(|| Error::Exhausted { network: network.name.clone(), subnet: network.subnet })?;
        let mut interface = String::new();
        for n in 1..64 {
            let name = format!("eth{n}");
            if !netlink::link_exists_in(Some(&netns), &name)? {
                interface = name;
                break;
            }
        }
        // The file's own part: what another of its leases recorded, else what it holds now
        // (a container on the default network, whose file lists no peers).
        let hosts = match hosts {
            None => None,
            Some(path) => match leases.iter().filter_map(|l| l.hosts.as_ref()).find(|h| h.path == path) {
                Some(h) => Some(h.clone()),
                None => Some(HostsFile { path: path.to_path_buf(), own: fs::read_to_string(path).map_err(io("reading the container's hosts file"))? }),
            },
        };
        let id = new_id();
        let lease = Lease {
            veth: format!("fv{}", &id[..12]),
            netns,
            address,
            network: network.name.clone(),
            id: id.clone(),
            names: names.to_vec(),
            hosts,
            joined: Some(Joined { container: container.into(), pid, start, interface }),
        };
        write_json(&self.lease_path(&id), &lease)?;
        let interface = &lease.joined.as_ref().expect("set above").interface;
        let made = netlink::add_veth(&lease.veth, &network.bridge, &lease.netns, interface)
            .and_then(|()| netlink::configure_inside(&lease.netns, interface, address, network.subnet.prefix_len(), None));
        if let Err(e) = made {
            teardown(&self.dir, &lease)?;
            return Err(e);
        }
        refresh_hosts(&self.dir, None)?;
        Ok(address)
    }

    /// Takes the interface [`connect`](Networks::connect) added for `container` off `network`.
    pub fn disconnect(&self, network: &str, container: &str) -> Result<(), Error> {
        let _host = host_lock()?;
        let lease = self
            .leases()?
            .into_iter()
            .find(|l| l.network == network && l.joined.as_ref().is_some_and(|j| j.container == container))
            .ok_or_else(|| Error::NotFound(format!("a connection of container {container} to network {network} (only what `network connect` added can be disconnected)")))?;
        teardown(&self.dir, &lease)?;
        refresh_hosts(&self.dir, lease.hosts.as_ref())
    }

    /// Removes what leases of dead owners name; returns how many it removed.
    pub fn reconcile(&self) -> Result<usize, Error> {
        let _host = host_lock()?;
        self.reconcile_locked()
    }

    fn reconcile_locked(&self) -> Result<usize, Error> {
        let mut removed = 0;
        for lease in self.leases()? {
            let lock = match &lease.joined {
                Some(j) if sys::start_time(j.pid) == Some(j.start) => continue,
                Some(_) => None,
                None => match FileLock::try_exclusive(&self.lock_path(&lease.id)).map_err(io("locking a lease"))? {
                    Some(lock) => Some(lock),
                    None => continue,
                },
            };
            teardown(&self.dir, &lease)?;
            drop(lock);
            removed += 1;
            if !lease.names.is_empty() || lease.hosts.is_some() {
                refresh_hosts(&self.dir, lease.hosts.as_ref())?;
            }
        }
        // Lock files and namespace mounts without a lease: a kill between their making and
        // the lease's (or during a teardown).
        for entry in fs::read_dir(self.dir.join("leases")).map_err(io("listing leases"))? {
            let path = entry.map_err(io("listing leases"))?.path();
            // A lease half written by a writer killed before its rename: leases are written
            // under the host lock, which this holds, so no live writer has one.
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if path.extension().is_some_and(|e| e == "lock") && !path.with_extension("json").exists() {
                if let Some(_lock) = FileLock::try_exclusive(&path).map_err(io("locking a lease"))? {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        for entry in fs::read_dir(self.dir.join("netns")).map_err(io("listing namespaces"))? {
            let entry = entry.map_err(io("listing namespaces"))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if !self.lease_path(&id).exists() {
                sys::remove_netns(&entry.path()).map_err(io("removing a network namespace"))?;
            }
        }
        Ok(removed)
    }

    /// [`reconcile`](Networks::reconcile), then removes the user networks nothing is attached
    /// to (as docker's `network prune`), and the default network's bridge and rules when
    /// nothing uses it (they are made again on its next use).
    pub fn prune(&self) -> Result<Pruned, Error> {
        let _host = host_lock()?;
        let leases = self.reconcile_locked()?;
        let used: Vec<String> = self.leases()?.into_iter().map(|l| l.network).collect();
        let mut pruned = Pruned { leases, ..Pruned::default() };
        for network in self.list_locked()? {
            if used.contains(&network.name) {
                continue;
            }
            if self.remove_bridge(&network)? {
                pruned.bridges.push(network.bridge.clone());
            }
            if network.name != DEFAULT_NETWORK {
                fs::remove_file(self.dir.join("networks").join(format!("{}.json", network.name))).map_err(io("removing a network"))?;
                self.event("destroy", &network.name);
                pruned.networks.push(network.name.clone());
            }
        }
        Ok(pruned)
    }
}

/// Rewrites every hosts file the store's leases keep (and `gone`, the file of a lease just
/// removed): its own text, then the address and names of every named attachment on a network
/// the file's container is on, but its own. A container on several networks (`network
/// connect`) has one file fed by several leases, so a file is rebuilt from all of them at
/// once; one network at a time would leave only that network's peers. A file whose text is
/// already right is not touched, so readers inside seldom see one being rewritten.
fn refresh_hosts(dir: &Path, gone: Option<&HostsFile>) -> Result<(), Error> {
    use std::io::Write;
    let networks = Networks { dir: dir.to_path_buf() };
    let leases = networks.leases()?;
    let mut files: Vec<&HostsFile> = Vec::new();
    for file in leases.iter().filter_map(|l| l.hosts.as_ref()).chain(gone) {
        if !files.iter().any(|f| f.path == file.path) {
            files.push(file);
        }
    }
    for file in files {
        let keeps = |l: &Lease| l.hosts.as_ref().is_some_and(|h| h.path == file.path);
        let on: Vec<&str> = leases.iter().filter(|l| keeps(l)).map(|l| l.network.as_str()).collect();
        let mut text = file.own.clone();
        for peer in leases.iter().filter(|p| on.contains(&p.network.as_str()) && !keeps(p) && !p.names.is_empty()) {
            text.push_str(&format!("{}\t{}\n", peer.address, peer.names.join(" ")));
        }
        // A container that is gone took its file along; nothing to keep current there.
        let Ok(now) = fs::read_to_string(&file.path) else { continue };
        if now == text {
            continue;
        }
        let Ok(mut f) = fs::OpenOptions::new().write(true).truncate(true).open(&file.path) else { continue };
        f.write_all(text.as_bytes()).map_err(io("writing a hosts file"))?;
    }
    Ok(())
}

/// Undoes a lease: the veth pair (deleting the host end deletes its peer), the namespace
/// mount, then the lease itself, last, so an interrupted teardown is found again.
fn teardown(dir: &Path, lease: &Lease) -> Result<(), Error> {
    netlink::delete_link(&lease.veth)?;
    // A joined namespace is its container's, not ours to unmount.
    if lease.joined.is_none() {
        sys::remove_netns(&lease.netns).map_err(io("removing a network namespace"))?;
    }
    let leases = dir.join("leases");
    match fs::remove_file(leases.join(format!("{}.json", lease.id))) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io("removing a lease")(e)),
        _ => {}
    }
    let _ = fs::remove_file(leases.join(format!("{}.lock", lease.id)));
    Ok(())
}

/// The subnet and gateway of a new network `name` on `bridge`: the ones asked for, checked, or
/// the first free subnet and its first address.
fn pick_addresses(name: &str, bridge: &str, subnet: Option<Ipv4Net>, gateway: Option<Ipv4Addr>, taken: &[Ipv4Net]) -> Result<(Ipv4Net, Ipv4Addr), Error> {
    let subnet = match subnet {
        Some(s) if s.prefix_len() > 30 => return Err(Error::Invalid { what: "subnet", value: s.to_string(), reason: "it has no room for a gateway and a container".into() }),
        Some(s) if taken.iter().any(|t| t.contains(&s.network()) || s.contains(&t.network())) => {
            return Err(Error::Invalid { what: "subnet", value: s.to_string(), reason: "it overlaps another network of the store".into() });
        }
        Some(s) => s.trunc(),
        None => free_subnet(bridge, taken)?.ok_or_else(|| Error::NoSubnet(name.to_string()))?,
    };
    let gateway = match gateway {
        Some(g) if !subnet.contains(&g) || g == subnet.network() || g == subnet.broadcast() => {
            return Err(Error::Invalid { what: "gateway", value: g.to_string(), reason: format!("it is not a host address of {subnet}") });
        }
        Some(g) => g,
        None => subnet.hosts().next().ok_or_else(|| Error::NoSubnet(name.to_string()))?,
    };
    Ok((subnet, gateway))
}

/// Whether `subnet` overlaps none of `taken` (the store's other networks, whose bridges may
/// be down) and no route of the host but those through `own_bridge` (the network's own).
fn subnet_is_free(subnet: &Ipv4Net, own_bridge: &str, taken: &[Ipv4Net]) -> Result<bool, Error> {
    let clashes = |r: &Ipv4Net| subnet.contains(&r.network()) || r.contains(&subnet.network());
    Ok(!taken.iter().any(clashes) && !netlink::host_routes()?.iter().any(|(r, dev)| dev.as_deref() != Some(own_bridge) && clashes(r)))
}

/// The first candidate subnet that is free (see [`subnet_is_free`]).
fn free_subnet(own_bridge: &str, taken: &[Ipv4Net]) -> Result<Option<Ipv4Net>, Error> {
    for s in CANDIDATE_SUBNETS.iter().filter_map(|s| s.parse::<Ipv4Net>().ok()) {
        if subnet_is_free(&s, own_bridge, taken)? {
            return Ok(Some(s));
        }
    }
    Ok(None)
}

impl Attachment {
    /// The namespace's bind mount, for a sandbox to join.
    pub fn netns(&self) -> &Path {
        &self.lease.netns
    }

    /// The address of its `eth0`.
    pub fn address(&self) -> Ipv4Addr {
        self.lease.address
    }

    /// The network it is attached to.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Makes it known on its network by `names` (a container's name, aliases and short ID):
    /// every attachment's hosts file on the network lists it, and `hosts` (the container's
    /// `/etc/hosts`, `own` being its text without peers) lists every other one, from now on.
    ///
    /// This is how containers on a user network find each other without a daemon: no DNS
    /// server runs, but each attach, release and reconcile rewrites the hosts files of the
    /// network's attachments (in place: each is bind-mounted into its container, and a rename
    /// would leave the container with the old file).
    pub fn announce(&mut self, names: &[String], hosts: &Path, own: &str) -> Result<(), Error> {
        let _host = host_lock()?;
        self.lease.names = names.to_vec();
        self.lease.hosts = Some(HostsFile { path: hosts.to_path_buf(), own: own.to_string() });
        write_json(&self.dir.join("leases").join(format!("{}.json", self.lease.id)), &self.lease)?;
        refresh_hosts(&self.dir, None)
    }

    /// Takes it down: the veth pair, the namespace and the lease.
    pub fn release(mut self) -> Result<(), Error> {
        self.release_ref()
    }

    fn release_ref(&mut self) -> Result<(), Error> {
        let Some(owner) = self.owner.take() else { return Ok(()) };
        let _host = host_lock()?;
        teardown(&self.dir, &self.lease)?;
        drop(owner);
        if !self.lease.names.is_empty() || self.lease.hosts.is_some() {
            refresh_hosts(&self.dir, self.lease.hosts.as_ref())?;
        }
        Ok(())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // What fails here stays leased to a dead owner, and the next reconcile removes it.
        let _ = self.release_ref();
    }
}
