//! Links, addresses and routes through rtnetlink. Each batch runs on a thread of its own with
//! a one-thread tokio runtime (rtnetlink is async; forge's callers are not always inside a
//! runtime, and one may not be nested in another), in the namespace the batch is about.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::Error;

/// The name a container's end of its veth pair gets inside its namespace.
pub(crate) const CONTAINER_IF: &str = "eth0";

/// Runs `f` with a netlink handle in the namespace at `netns` (the host's when `None`).
fn batch<T, F, Fut>(what: &'static str, netns: Option<&Path>, f: F) -> Result<T, Error>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T, rtnetlink::Error>>,
{
    let io = |source| Error::Io { what, source };
    crate::sys::in_netns(netns, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().map_err(io)?;
        runtime.block_on(async {
            let (connection, handle, _) = rtnetlink::new_connection().map_err(io)?;
            let task = tokio::spawn(connection);
            let out = f(handle).await.map_err(|source| Error::Netlink { what, source });
            task.abort();
            out
        })
    })
    .map_err(io)?
}

/// The errno a netlink request failed with, if it failed in the kernel.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    match handle.link().get().match_name(name.to_string()).execute().try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a link of that name exists in the namespace at `netns` (the host's when `None`).
pub(crate) fn link_exists_in(netns: Option<&Path>, name: &str) -> Result<bool, Error> {
    batch("looking up a link", netns, |h| async move { index_of(&h, name).await.map(|i| i.is_some()) })
}

/// Whether a link of that name exists in the host's namespace.
pub(crate) fn link_exists(name: &str) -> Result<bool, Error> {
    link_exists_in(None, name)
}

/// Makes the bridge `name` with `gateway` on it and brings it up; an existing one keeps its
/// settings and gets the address if it lacks it.
pub(crate) fn ensure_bridge(name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), Error> {
    batch("setting up the bridge", None, |h| async move {
        let index = match index_of(&h, name).await? {
            Some(i) => i,
            None => {
                match h.link().add(LinkBridge::new(name).build()).execute().await {
                    Err(e) if errno(&e) != Some(nix::libc::EEXIST) => return Err(e),
                    _ => {}
                }
                index_of(&h, name).await?.ok_or(rtnetlink::Error::RequestFailed)?
            }
        };
        match h.address().add(index, gateway.into(), prefix).execute().await {
            Err(e) if errno(&e) != Some(nix::libc::EEXIST) => return Err(e),
            _ => {}
        }
        h.link().set(LinkUnspec::new_with_index(index).up().build()).execute().await
    })
}

/// Deletes the host link `name` (a bridge, or a veth with its peer); gone already is fine.
pub(crate) fn delete_link(name: &str) -> Result<(), Error> {
    batch("deleting a link", None, |h| async move {
        match index_of(&h, name).await? {
            Some(index) => match h.link().del(index).execute().await {
                Err(e) if errno(&e) == Some(nix::libc::ENODEV) => Ok(()),
                r => r,
            },
            None => Ok(()),
        }
    })
}

/// Makes a veth pair: `host_end` in the host's namespace on `bridge`, up, and its peer
/// `inside` created straight in the namespace at `netns` (no rename, so no clash with another
/// container's `eth0`).
pub(crate) fn add_veth(host_end: &str, bridge: &str, netns: &Path, inside: &str) -> Result<(), Error> {
    let ns = std::fs::File::open(netns).map_err(|source| Error::Io { what: "opening the network namespace", source })?;
    let fd = ns.as_raw_fd();
    batch("making the veth pair", None, |h| async move {
        let bridge = index_of(&h, bridge).await?.ok_or(rtnetlink::Error::RequestFailed)?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new().name(inside).setns_by_fd(fd).build();
        let veth = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host_end)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge)
            .up()
            .build();
        h.link().add(veth).execute().await
    })
}

/// Inside the namespace: loopback up, `address` on `interface`, up, and a default route via
/// `gateway` when there is one (an internal network has none, nor a second interface).
pub(crate) fn configure_inside(netns: &Path, interface: &str, address: Ipv4Addr, prefix: u8, gateway: Option<Ipv4Addr>) -> Result<(), Error> {
    batch("configuring the container's interfaces", Some(netns), |h| async move {
        let lo = index_of(&h, "lo").await?.ok_or(rtnetlink::Error::RequestFailed)?;
        h.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await?;
        let eth = index_of(&h, interface).await?.ok_or(rtnetlink::Error::RequestFailed)?;
        h.address().add(eth, address.into(), prefix).execute().await?;
        h.link().set(LinkUnspec::new_with_index(eth).up().build()).execute().await?;
        if let Some(gw) = gateway {
            h.route().add(RouteMessageBuilder::<Ipv4Addr>::new().gateway(gw).build()).execute().await?;
        }
        Ok(())
    })
}

/// The host's IPv4 routes with a destination prefix (the default route excluded), with the
/// name of their output link, to pick subnets that clash with none of them.
pub(crate) fn host_routes() -> Result<Vec<(Ipv4Net, Option<String>)>, Error> {
    batch("listing the host's routes", None, |h| async move {
        let mut names = std::collections::HashMap::new();
        let mut links = h.link().get().execute();
        while let Some(l) = links.try_next().await? {
            if let Some(name) = l.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None }) {
                names.insert(l.header.index, name);
            }
        }
        let mut out = Vec::new();
        let mut routes = h.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(r) = routes.try_next().await? {
            let len = r.header.destination_prefix_length;
            let dest = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let oif = r.attributes.iter().find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None });
            if let (Some(dest), true) = (dest, len > 0) {
                if let Ok(net) = Ipv4Net::new(dest, len) {
                    out.push((net.trunc(), oif.and_then(|i| names.get(&i).cloned())));
                }
            }
        }
        Ok(out)
    })
}
