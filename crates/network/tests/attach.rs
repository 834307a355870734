//! Attachments on a real bridge (root only): addresses, traffic between the host and the
//! namespaces the test made, and that release and prune leave nothing behind.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use forge_network::{Networks, DEFAULT_NETWORK};

/// A network store in a temporary directory, pruned (bridge and rules gone) when dropped.
struct Store {
    dir: tempfile::TempDir,
    networks: Networks,
}

impl Store {
    fn new(config: Option<&str>) -> Option<Store> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        if let Some(c) = config {
            std::fs::write(dir.path().join("config.json"), c).unwrap();
        }
        let networks = Networks::open(dir.path()).unwrap();
        Some(Store { dir, networks })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.networks.prune();
    }
}

fn link_exists(name: &str) -> bool {
    Command::new("ip").args(["link", "show", name]).output().unwrap().status.success()
}

/// A TCP listener inside the namespace at `netns` on `port` (bound by a thread that entered
/// it; the socket stays in that namespace).
fn listen_in(netns: &Path, port: u16) -> TcpListener {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        let f = std::fs::File::open(netns).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        TcpListener::bind(("0.0.0.0", port)).unwrap()
    })
    .join()
    .unwrap()
}

/// Connects from the namespace at `netns` (the host's when `None`) to `to`, sends a line and
/// reads the echo.
fn exchange(netns: Option<&Path>, to: SocketAddr) -> std::io::Result<String> {
    let netns = netns.map(Path::to_path_buf);
    std::thread::spawn(move || {
        if let Some(n) = netns {
            let f = std::fs::File::open(n).unwrap();
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        let mut s = TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5))?;
        s.write_all(b"ping\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

fn echo_once(listener: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).unwrap();
        c.write_all(b"pong\n").unwrap();
    })
}

#[test]
fn attachments_get_distinct_addresses_and_reach_each_other_and_the_host() {
    let Some(store) = Store::new(None) else { return };
    let a = store.networks.attach(DEFAULT_NETWORK, None).unwrap();
    let b = store.networks.attach(DEFAULT_NETWORK, None).unwrap();
    let net = a.network().clone();
    assert_ne!(a.address(), b.address());
    assert!(net.subnet.contains(&a.address()) && net.subnet.contains(&b.address()));
    assert!(link_exists(&net.bridge));

    // Host -> a, and b -> a through the bridge.
    let server = echo_once(listen_in(a.netns(), 8080));
    assert_eq!(exchange(None, (a.address(), 8080).into()).unwrap(), "pong\n");
    server.join().unwrap();
    let server = echo_once(listen_in(a.netns(), 8081));
    assert_eq!(exchange(Some(b.netns()), (a.address(), 8081).into()).unwrap(), "pong\n");
    server.join().unwrap();

    // A namespace reaches the host through its gateway, never the host's loopback.
    let host = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = host.local_addr().unwrap().port();
    assert!(exchange(Some(a.netns()), (Ipv4Addr::LOCALHOST, port).into()).is_err());

    let (netns, lease_files) = (a.netns().to_path_buf(), std::fs::read_dir(store.dir.path().join("leases")).unwrap().count());
    assert_eq!(lease_files, 4, "a lease and a lock file per attachment");
    a.release().unwrap();
    drop(b);
    assert!(!netns.exists());
    assert_eq!(std::fs::read_dir(store.dir.path().join("leases")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(store.dir.path().join("netns")).unwrap().count(), 0);

    let pruned = store.networks.prune().unwrap();
    assert_eq!(pruned.bridges, vec![net.bridge.clone()]);
    let tag = format!("forge:{}", net.bridge);
    assert!(!link_exists(&net.bridge), "{} outlived the prune", net.bridge);
    assert!(!forge_network::tagged_rules().unwrap().iter().any(|r| r.split_whitespace().any(|w| w.trim_matches('"') == tag)), "{}'s rules outlived the prune", net.bridge);
    // The store keeps the name for its next bridge: no other store takes it meanwhile.
    assert_eq!(claim_of(&net.bridge), format!("{}\n{DEFAULT_NETWORK}", store.dir.path().display()));
    let again = store.networks.attach(DEFAULT_NETWORK, None).unwrap();
    assert_eq!(again.network().bridge, net.bridge);
}

/// Who holds the bridge name `name`: a store's directory and its network's name, a line each.
fn claim_of(name: &str) -> String {
    std::fs::read_to_string(Path::new(CLAIMS).join(name)).unwrap_or_default()
}

const CLAIMS: &str = "/run/forge/network/bridges";

#[test]
fn concurrent_attaches_never_share_an_address_and_the_configured_subnet_is_used() {
    let Some(store) = Store::new(Some(r#"{"default_subnet": "10.215.7.0/24"}"#)) else { return };
    let attachments: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(|| store.networks.attach(DEFAULT_NETWORK, None).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut addresses: Vec<Ipv4Addr> = attachments.iter().map(|a| a.address()).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), 6);
    let net = attachments[0].network().clone();
    assert_eq!(net.subnet.to_string(), "10.215.7.0/24");
    assert_eq!(net.gateway, Ipv4Addr::new(10, 215, 7, 1));
    assert!(addresses.iter().all(|a| net.subnet.contains(a) && *a != net.gateway));
    // --ip: the address asked for, once; never the gateway or outside the subnet.
    let fixed = store.networks.attach(DEFAULT_NETWORK, Some(Ipv4Addr::new(10, 215, 7, 200))).unwrap();
    assert_eq!(fixed.address(), Ipv4Addr::new(10, 215, 7, 200));
    for (ip, what) in [((10, 215, 7, 200), "already in use"), ((10, 215, 7, 1), "not a usable"), ((10, 215, 8, 2), "not a usable")] {
        let e = store.networks.attach(DEFAULT_NETWORK, Some(Ipv4Addr::new(ip.0, ip.1, ip.2, ip.3))).unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
    }
    drop(fixed);
    // A used bridge is not pruned.
    assert!(store.networks.prune().unwrap().bridges.is_empty());
    assert!(link_exists(&net.bridge));
}

/// Claims live in /run, so after a reboot a store's recorded bridge name may go to another
/// store's network; pruning must leave that other bridge (and the containers on it) alone,
/// and the first store's next bridge gets a name of its own.
#[test]
fn a_prune_never_removes_another_stores_bridge_that_took_the_name() {
    let (Some(a), Some(b)) = (Store::new(None), Store::new(None)) else { return };
    let first = a.networks.attach(DEFAULT_NETWORK, None).unwrap();
    let bridge = first.network().bridge.clone();
    drop(first);
    a.networks.prune().unwrap();
    assert!(!link_exists(&bridge));

    // What a reboot does to the claim, and then b's network taking the name a's record holds.
    std::fs::remove_file(Path::new(CLAIMS).join(&bridge)).unwrap();
    std::fs::write(Path::new(CLAIMS).join(&bridge), format!("{}\n{DEFAULT_NETWORK}", b.dir.path().display())).unwrap();
    let record = b.dir.path().join("networks").join(format!("{DEFAULT_NETWORK}.json"));
    std::fs::copy(a.dir.path().join("networks").join(format!("{DEFAULT_NETWORK}.json")), &record).unwrap();
    let other = b.networks.attach(DEFAULT_NETWORK, None).unwrap();
    assert_eq!(other.network().bridge, bridge, "b did not take the name its record holds");

    a.networks.prune().unwrap();
    assert!(link_exists(&bridge), "a's prune removed {bridge}, which b's network holds");
    let again = a.networks.attach(DEFAULT_NETWORK, None).unwrap();
    assert_ne!(again.network().bridge, bridge, "a's network made its bridge under b's name");
    drop((again, other));
}

#[test]
fn a_store_named_two_ways_prunes_its_own_bridge() {
    let Some(store) = Store::new(None) else { return };
    // The same store through a path that is spelled differently (as `--root store` and
    // `--root /abs/store` are).
    std::fs::create_dir_all(store.dir.path().join("x")).unwrap();
    let other_spelling = Networks::open(&store.dir.path().join("x/..")).unwrap();
    other_spelling.create("twoways", Some("10.147.13.0/24".parse().unwrap()), None, false, Default::default()).unwrap();
    let attached = other_spelling.attach("twoways", None).unwrap();
    let bridge = attached.network().bridge.clone();
    attached.release().unwrap();
    assert!(link_exists(&bridge));
    let pruned = store.networks.prune().unwrap();
    assert_eq!(pruned.networks, ["twoways"]);
    assert!(pruned.bridges.contains(&bridge) && !link_exists(&bridge), "the bridge {bridge} of a pruned network was left behind");
}

#[test]
fn a_lease_half_written_by_a_killed_forge_goes_with_the_next_reconcile() {
    let Some(s) = Store::new(None) else { return };
    // What a forge killed between writing a lease's temporary file and renaming it leaves.
    let half = s.dir.path().join("leases").join("1044f594b24e0e13.tmp");
    std::fs::write(&half, b"{\"veth\": ").unwrap();
    s.networks.reconcile().unwrap();
    assert!(!half.exists(), "the half-written lease survived");
}

#[test]
fn a_process_in_the_hosts_namespace_is_never_connected() {
    let Some(s) = Store::new(None) else { return };
    s.networks.create("joinme", None, None, false, Default::default()).unwrap();
    // This test's own process stands for a container run with `--network host`.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let start: u64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    let err = s.networks.connect("joinme", "hostnet", std::process::id(), start, &["hostnet".into()]).unwrap_err();
    assert!(matches!(err, forge_network::Error::Invalid { what: "container", .. }), "{err}");
    assert!(s.networks.inspect("joinme").unwrap().1.is_empty());
}

#[test]
fn a_network_whose_bridge_is_not_up_yet_keeps_its_subnet_from_other_stores() {
    let (Some(a), Some(b)) = (Store::new(None), Store::new(None)) else { return };
    // No attachment yet: no bridge, so no route of the host shows a's subnet.
    let waiting = a.networks.create("waiting", None, None, false, Default::default()).unwrap();
    let other = b.networks.create("other", None, None, false, Default::default()).unwrap();
    let overlap = |x: &forge_network::Network, y: &forge_network::Network| x.subnet.contains(&y.subnet.network()) || y.subnet.contains(&x.subnet.network());
    assert!(!overlap(&waiting, &other), "two stores' networks share {} and {}", waiting.subnet, other.subnet);
    let attached = b.networks.attach(DEFAULT_NETWORK, None).unwrap();
    let default = attached.network().clone();
    attached.release().unwrap();
    assert!(!overlap(&waiting, &default), "b's default network took {}, which a's network {} holds", default.subnet, waiting.subnet);
}

/// A store deleted without a prune (`rm -rf`) leaves its bridge up, holding a subnet; the
/// next network to claim a bridge name takes it down, so such leftovers never use up the
/// subnets.
#[test]
fn a_bridge_left_by_a_deleted_store_is_taken_down_by_the_next_claim() {
    let (Some(gone), Some(next)) = (Store::new(None), Store::new(None)) else { return };
    let attached = gone.networks.attach(DEFAULT_NETWORK, None).unwrap();
    let bridge = attached.network().bridge.clone();
    attached.release().unwrap();
    assert!(link_exists(&bridge));
    std::fs::remove_dir_all(gone.dir.path()).unwrap();

    next.networks.create("afterrm", None, None, false, Default::default()).unwrap();
    // Taken down, unless another store's network took the name since (tests run side by side).
    let owner = claim_of(&bridge);
    assert!(!link_exists(&bridge) || (!owner.is_empty() && !owner.starts_with(&format!("{}\n", gone.dir.path().display()))), "{bridge} of a deleted store is still up");
}

/// Bridge names are handed out as PIDs are: the name a removed network gave up is not the next
/// network's, so a bridge seen a moment ago is not suddenly another network's.
#[test]
fn a_removed_networks_bridge_name_is_not_handed_out_again_at_once() {
    let Some(s) = Store::new(None) else { return };
    s.networks.create("first", None, None, false, Default::default()).unwrap();
    let attached = s.networks.attach("first", None).unwrap();
    let bridge = attached.network().bridge.clone();
    attached.release().unwrap();
    s.networks.remove("first").unwrap();
    assert!(!link_exists(&bridge) && claim_of(&bridge).is_empty(), "{bridge} or its claim outlived the network");
    let next = s.networks.create("second", None, None, false, Default::default()).unwrap();
    assert_ne!(next.bridge, bridge, "the name the removed network gave up went to the next one");
}
