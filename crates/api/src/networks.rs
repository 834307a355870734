//! `/networks/...` on forge-network (the store's networks) and the runtime (connect,
//! disconnect, which containers are where); and the network part of a container: what a create
//! request asks for (`create_options`) and what inspect shows (`settings_of`).
//!
//! docker's predefined networks are listed as docker lists them: `bridge` is the store's default
//! network (shown before its first use too, without a subnet then), `host` and `none` are the
//! network modes of the same names and have no record.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;

use bollard_stubs::models::{
    ContainerCreateBody, EndpointResource, EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkCreateResponse,
    NetworkDisconnectRequest, NetworkInspect, NetworkPruneResponse,
};
use forge_network::{Mode, DEFAULT_NETWORK};
use forge_runtime::{Container, Containers, CreateOptions, Endpoint};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use crate::error::ApiError;
use crate::http::{self, Response};
use crate::query::Query;
use crate::server::Api;

/// docker's predefined networks.
const PREDEFINED: [&str; 3] = [DEFAULT_NETWORK, "host", "none"];

/// A network's ID. forge's networks are known by name; clients want docker's 64 hex digits,
/// so the ID is derived from the store and the name: the same on every request, different
/// for a same-named network of another store.
pub(crate) fn network_id(store_root: &Path, name: &str) -> String {
    forge_layerstore::Digest::of(format!("forge network\n{}\n{name}", store_root.display()).as_bytes()).hex().to_string()
}

/// A network as the API shows it: a store's record, or a predefined one without one.
struct Entry {
    name: String,
    id: String,
    record: Option<forge_network::Network>,
}

impl Entry {
    fn driver(&self) -> &'static str {
        match self.name.as_str() {
            "host" => "host",
            "none" => "null",
            _ => "bridge",
        }
    }

    fn predefined(&self) -> bool {
        PREDEFINED.contains(&self.name.as_str())
    }
}

/// Every network, by name (blocking).
fn entries(store_root: &Path) -> Result<Vec<Entry>, ApiError> {
    let mut records = forge_runtime::networks(store_root)?.list()?;
    let mut out: Vec<Entry> = PREDEFINED
        .iter()
        .map(|name| Entry {
            name: name.to_string(),
            id: network_id(store_root, name),
            record: records.iter().position(|r| r.name == *name).map(|i| records.remove(i)),
        })
        .collect();
    out.extend(records.into_iter().map(|r| Entry { name: r.name.clone(), id: network_id(store_root, &r.name), record: Some(r) }));
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The network `key` names, as docker looks one up: its name, its ID, a unique ID prefix.
fn find(store_root: &Path, key: &str) -> Result<Entry, ApiError> {
    let mut all = entries(store_root)?;
    if let Some(i) = all.iter().position(|e| e.name == key || e.id == key) {
        return Ok(all.swap_remove(i));
    }
    let mut prefixed: Vec<Entry> = all.into_iter().filter(|e| !key.is_empty() && e.id.starts_with(key)).collect();
    match prefixed.len() {
        1 => Ok(prefixed.remove(0)),
        0 => Err(ApiError::not_found(format!("network {key} not found"))),
        n => Err(ApiError::bad_request(format!("network {key} is ambiguous ({n} matches found based on ID prefix)"))),
    }
}

fn inspect_of(e: &Entry, endpoints: Option<&[Endpoint]>) -> NetworkInspect {
    let config = e
        .record
        .iter()
        .map(|r| IpamConfig { subnet: Some(r.subnet.to_string()), gateway: Some(r.gateway.to_string()), ..Default::default() })
        .collect();
    // A user network's options are those it was created with (none: forge takes none), which
    // compose compares with its file; the default network shows its bridge, as docker's.
    let options = e.record.iter().filter(|r| r.name == DEFAULT_NETWORK).map(|r| ("com.docker.network.bridge.name".to_string(), r.bridge.clone())).collect();
    let containers = endpoints.map(|eps| {
        eps.iter()
            .filter(|ep| ep.network == e.name)
            .map(|ep| {
                let resource = EndpointResource {
                    name: ep.name.clone(),
                    endpoint_id: Some(String::new()),
                    mac_address: Some(String::new()),
                    ipv4_address: Some(format!("{}/{}", ep.address, ep.prefix_len)),
                    ipv6_address: Some(String::new()),
                };
                (ep.container.clone(), resource)
            })
            .collect()
    });
    NetworkInspect {
        name: Some(e.name.clone()),
        id: Some(e.id.clone()),
        scope: Some("local".into()),
        driver: Some(e.driver().into()),
        enable_ipv4: Some(e.driver() == "bridge"),
        enable_ipv6: Some(false),
        ipam: Some(Ipam { driver: Some("default".into()), config: Some(config), options: Some(HashMap::new()) }),
        internal: Some(e.record.as_ref().is_some_and(|r| r.internal)),
        attachable: Some(false),
        ingress: Some(false),
        config_only: Some(false),
        options: Some(options),
        labels: Some(e.record.iter().flat_map(|r| r.labels.clone()).collect()),
        containers,
        ..Default::default()
    }
}

/// The running containers' endpoints (blocking).
fn endpoints(store: &forge_layerstore::Store) -> Result<Vec<Endpoint>, ApiError> {
    Ok(Containers::open(store)?.endpoints()?)
}

/// `GET /networks`.
pub(crate) async fn list(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["dangling", "driver", "id", "label", "name", "scope", "type"])?;
    let dangling = filters.boolean("dangling")?;
    for t in filters.values("type") {
        if t != "builtin" && t != "custom" {
            return Err(ApiError::bad_request(format!("invalid filter: 'type'='{t}'")));
        }
    }
    let store = api.store.clone();
    let (entries, endpoints) = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let entries = entries(store.root())?;
        let endpoints = if dangling.is_some() { endpoints(&store)? } else { Vec::new() };
        Ok((entries, endpoints))
    })
    .await??;
    let any = |name: &str, f: &dyn Fn(&str) -> bool| filters.values(name).is_empty() || filters.values(name).iter().any(|v| f(v));
    let out: Vec<NetworkInspect> = entries
        .iter()
        .filter(|e| {
            any("name", &|v| e.name.contains(v))
                && any("id", &|v| e.id.starts_with(v))
                && any("driver", &|v| v == e.driver())
                && any("scope", &|v| v == "local")
                && any("type", &|v| (v == "builtin") == e.predefined())
                // Every label filter must match, as docker's.
                && filters.values("label").iter().all(|l| e.record.as_ref().is_some_and(|r| crate::query::label_matches(&r.labels, l)))
                && dangling.is_none_or(|d| d == (!e.predefined() && !endpoints.iter().any(|ep| ep.network == e.name)))
        })
        .map(|e| inspect_of(e, None))
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

/// The subnet and gateway of a create request's `IPAM`: one IPv4 pool at most, as forge's
/// networks have one subnet.
fn ipam(ipam: Option<&Ipam>) -> Result<(Option<ipnet::Ipv4Net>, Option<Ipv4Addr>), ApiError> {
    let Some(ipam) = ipam else { return Ok((None, None)) };
    if !matches!(ipam.driver.as_deref(), None | Some("" | "default")) {
        return Err(ApiError::bad_request(format!("IPAM driver {:?} is not supported: forge has the default one", ipam.driver.as_deref().unwrap_or(""))));
    }
    if ipam.options.as_ref().is_some_and(|o| !o.is_empty()) {
        return Err(ApiError::bad_request("IPAM options are not supported by forge"));
    }
    let pools = ipam.config.as_deref().unwrap_or_default();
    let pool = match pools {
        [] => return Ok((None, None)),
        [pool] => pool,
        _ => return Err(ApiError::bad_request("a forge network has one subnet: IPAM.Config takes one entry")),
    };
    if pool.ip_range.as_deref().is_some_and(|r| !r.is_empty()) || pool.auxiliary_addresses.as_ref().is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::bad_request("IPAM IPRange and AuxiliaryAddresses are not supported by forge"));
    }
    let subnet = match pool.subnet.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse::<ipnet::Ipv4Net>().map_err(|_| ApiError::bad_request(format!("invalid subnet {s:?}: forge takes an IPv4 CIDR like 10.10.0.0/24")))?),
    };
    let gateway = match pool.gateway.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(g) => Some(g.parse::<Ipv4Addr>().map_err(|_| ApiError::bad_request(format!("invalid gateway {g:?}: not an IPv4 address")))?),
    };
    if gateway.is_some() && subnet.is_none() {
        return Err(ApiError::bad_request("a gateway needs its subnet: set IPAM.Config's Subnet too"));
    }
    Ok((subnet, gateway))
}

/// `POST /networks/create`. A name that is taken is a 409 whether or not `CheckDuplicate` is
/// set, as the daemon answers since API 1.44 (forge's networks are found by name).
pub(crate) async fn create(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    Query::parse(req.uri().query(), &[])?;
    let body: NetworkCreateRequest = http::read_json(req.into_body(), "network config").await?;
    if !matches!(body.driver.as_deref(), None | Some("" | "bridge")) {
        return Err(ApiError::bad_request(format!("network driver {:?} is not supported: forge has the bridge driver", body.driver.as_deref().unwrap_or(""))));
    }
    if !matches!(body.scope.as_deref(), None | Some("" | "local")) {
        return Err(ApiError::bad_request("forge's networks are local: Scope must be local"));
    }
    let refused = [
        ("EnableIPv6", body.enable_ipv6 == Some(true)),
        ("EnableIPv4=false", body.enable_ipv4 == Some(false)),
        ("Ingress", body.ingress == Some(true)),
        ("ConfigOnly", body.config_only == Some(true)),
        ("ConfigFrom", body.config_from.is_some()),
        ("Options", body.options.as_ref().is_some_and(|o| !o.is_empty())),
    ];
    if let Some((name, _)) = refused.iter().find(|(_, on)| *on) {
        return Err(ApiError::bad_request(format!("{name} is not supported by forge's networks")));
    }
    let (subnet, gateway) = ipam(body.ipam.as_ref())?;
    let labels: BTreeMap<String, String> = body.labels.clone().unwrap_or_default().into_iter().collect();
    let internal = body.internal == Some(true);
    let store = api.store.clone();
    let name = body.name.clone();
    let id = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        if PREDEFINED.contains(&name.as_str()) {
            return Err(ApiError::new(StatusCode::FORBIDDEN, format!("operation is not permitted on predefined {name} network")));
        }
        forge_runtime::networks(store.root())?.create(&name, subnet, gateway, internal, labels)?;
        Ok(network_id(store.root(), &name))
    })
    .await??;
    Ok(http::json(StatusCode::CREATED, &NetworkCreateResponse { id, warning: String::new() }))
}

/// `POST /networks/prune`: the user networks nothing is attached to.
pub(crate) async fn prune(api: &Api, req: Request<Incoming>) -> Result<Response, ApiError> {
    let q = Query::parse(req.uri().query(), &["filters"])?;
    let filters = q.filters(&["until", "label", "label!"])?;
    if ["until", "label", "label!"].iter().any(|f| !filters.values(f).is_empty()) {
        return Err(ApiError::bad_request("the until and label prune filters are not supported by forge yet"));
    }
    let store = api.store.clone();
    let pruned = tokio::task::spawn_blocking(move || forge_runtime::networks(store.root())?.prune()).await??;
    Ok(http::json(StatusCode::OK, &NetworkPruneResponse { networks_deleted: Some(pruned.networks) }))
}

/// `GET` and `DELETE /networks/{id}`, `POST /networks/{id}/connect` and `.../disconnect`.
pub(crate) async fn by_id(api: &Api, req: Request<Incoming>, method: Method, key: &str, verb: &str) -> Result<Response, ApiError> {
    let store = api.store.clone();
    let key = key.to_string();
    match (method, verb) {
        (Method::GET, "") => {
            Query::parse(req.uri().query(), &["verbose", "scope"])?;
            let body = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
                let e = find(store.root(), &key)?;
                Ok(inspect_of(&e, Some(&endpoints(&store)?)))
            })
            .await??;
            Ok(http::json(StatusCode::OK, &body))
        }
        (Method::DELETE, "") => {
            Query::parse(req.uri().query(), &[])?;
            tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
                let e = find(store.root(), &key)?;
                if e.predefined() {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, format!("{} is a pre-defined network and cannot be removed", e.name)));
                }
                Ok(forge_runtime::networks(store.root())?.remove(&e.name)?)
            })
            .await??;
            Ok(http::empty(StatusCode::NO_CONTENT))
        }
        (Method::POST, "connect") => {
            Query::parse(req.uri().query(), &[])?;
            let body: NetworkConnectRequest = http::read_json(req.into_body(), "network connect request").await?;
            let endpoint = body.endpoint_config.unwrap_or_default();
            if endpoint.ipam_config.as_ref().is_some_and(|c| c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty()) || c.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())) {
                return Err(ApiError::bad_request("a chosen address (IPAMConfig) is not supported by forge's network connect: it takes the lowest free one"));
            }
            if endpoint.links.as_ref().is_some_and(|l| !l.is_empty()) {
                return Err(ApiError::bad_request("links do not exist in forge: containers on a network find each other by name"));
            }
            let aliases = aliases(&endpoint)?;
            tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
                let e = find(store.root(), &key)?;
                if e.record.is_none() && e.name != DEFAULT_NETWORK {
                    return Err(ApiError::new(StatusCode::FORBIDDEN, format!("a container cannot be connected to the {} network", e.name)));
                }
                let containers = Containers::open(&store)?;
                let c = containers.get(&body.container)?;
                containers.connect(&c, &e.name, &aliases)?;
                Ok(())
            })
            .await??;
            Ok(http::empty(StatusCode::OK))
        }
        (Method::POST, "disconnect") => {
            Query::parse(req.uri().query(), &[])?;
            let body: NetworkDisconnectRequest = http::read_json(req.into_body(), "network disconnect request").await?;
            tokio::task::spawn_blocking(move || -> Result<(), ApiError> {
                let e = find(store.root(), &key)?;
                let containers = Containers::open(&store)?;
                let c = containers.get(&body.container)?;
                match containers.disconnect(&c, &e.name) {
                    // Force: what is not connected needs no disconnecting.
                    Err(forge_runtime::Error::Network { source: forge_network::Error::NotFound(_), .. }) if body.force == Some(true) => Ok(()),
                    r => Ok(r?),
                }
            })
            .await??;
            Ok(http::empty(StatusCode::OK))
        }
        (m, v) => Err(ApiError::not_found(format!("page not found: {m} /networks/{{id}}/{v}"))),
    }
}

/// An endpoint's `Aliases`, each a valid host name.
fn aliases(endpoint: &EndpointSettings) -> Result<Vec<String>, ApiError> {
    endpoint
        .aliases
        .iter()
        .flatten()
        .map(|a| forge_network::alias(a).map_err(|e| ApiError::bad_request(format!("invalid alias {a:?}: {e}"))))
        .collect()
}

/// Sets the network part of a container's `opts` from a create request: `NetworkMode`,
/// `PortBindings`, `PublishAllPorts`, `Dns`, `ExtraHosts` and the endpoint's `Aliases` and
/// address. What forge cannot honour is refused, not dropped. Returns the other networks
/// the request names (newer clients' `--network a --network b`), with their aliases: the
/// caller connects the created container to them, and it is attached at each start.
pub(crate) fn create_options(body: &ContainerCreateBody, opts: &mut CreateOptions) -> Result<Vec<(String, Vec<String>)>, ApiError> {
    let host = body.host_config.as_ref();
    opts.network = match host.and_then(|h| h.network_mode.as_deref()) {
        // docker's default: the bridge network.
        None | Some("") => Mode::Bridge,
        Some(m) => m.parse().map_err(|e| ApiError::bad_request(format!("NetworkMode: {e}")))?,
    };
    if let Some(h) = host {
        // Sorted, so the ports are published in the same order every time.
        let bindings: BTreeMap<_, _> = h.port_bindings.iter().flatten().collect();
        for (key, list) in bindings {
            let (port, proto) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let list = list.as_deref().unwrap_or_default();
            let specs: Vec<String> = if list.is_empty() {
                vec![format!("{port}/{proto}")]
            } else {
                list.iter()
                    .map(|b| match (b.host_ip.as_deref().unwrap_or(""), b.host_port.as_deref().unwrap_or("")) {
                        ("", hp) => format!("{hp}:{port}/{proto}"),
                        (ip, hp) => format!("{ip}:{hp}:{port}/{proto}"),
                    })
                    .collect()
            };
            for spec in specs {
                opts.publish.push(spec.parse().map_err(|e| ApiError::bad_request(format!("HostConfig.PortBindings: {e}")))?);
            }
        }
        opts.publish_all = h.publish_all_ports == Some(true);
        opts.dns = h.dns.clone().unwrap_or_default();
        if h.dns_search.as_ref().is_some_and(|d| !d.is_empty()) || h.dns_options.as_ref().is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::bad_request("HostConfig.DnsSearch and DnsOptions are not supported by forge yet (Dns is)"));
        }
        for entry in h.extra_hosts.iter().flatten() {
            opts.add_hosts.push(forge_network::extra_host(entry).map_err(|e| ApiError::bad_request(format!("HostConfig.ExtraHosts {entry:?}: {e}")))?);
        }
    }
    let endpoints = body.networking_config.as_ref().and_then(|n| n.endpoints_config.as_ref());
    let endpoints: Vec<(&String, &EndpointSettings)> = endpoints.iter().flat_map(|m| m.iter()).collect();
    if endpoints.is_empty() {
        return Ok(Vec::new());
    }
    let same = |net: &String| match &opts.network {
        Mode::Bridge => net == DEFAULT_NETWORK,
        Mode::Named(n) => n == net,
        _ => false,
    };
    let mut others = Vec::new();
    for (net, endpoint) in endpoints.iter().filter(|(net, _)| !same(net)) {
        if endpoints.len() == 1 {
            return Err(ApiError::bad_request(format!("NetworkingConfig names network {net:?}, which is not the container's NetworkMode ({})", opts.network)));
        }
        if endpoint.ipam_config.as_ref().is_some_and(|c| c.ipv4_address.as_deref().is_some_and(|a| !a.is_empty()) || c.ipv6_address.as_deref().is_some_and(|a| !a.is_empty())) {
            return Err(ApiError::bad_request(format!("a chosen address (IPAMConfig) is supported by forge only on the container's NetworkMode network, not on {net:?}")));
        }
        if endpoint.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return Err(ApiError::bad_request("links do not exist in forge: containers on a network find each other by name"));
        }
        others.push(((*net).clone(), aliases(endpoint)?));
    }
    let Some((_, endpoint)) = endpoints.iter().find(|(net, _)| same(net)) else {
        return Err(ApiError::bad_request(format!("NetworkingConfig names none of its networks as the container's NetworkMode ({})", opts.network)));
    };
    if endpoint.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(ApiError::bad_request("links do not exist in forge: containers on a network find each other by name"));
    }
    opts.aliases = aliases(endpoint)?;
    if let Some(a) = endpoint.ipam_config.as_ref().and_then(|c| c.ipv4_address.as_deref()).filter(|a| !a.is_empty()) {
        opts.ip = Some(a.parse().map_err(|_| ApiError::bad_request(format!("IPAMConfig.IPv4Address {a:?}: not an IPv4 address")))?);
    }
    if endpoint.ipam_config.as_ref().and_then(|c| c.ipv6_address.as_deref()).is_some_and(|a| !a.is_empty()) {
        return Err(ApiError::bad_request("IPv6 addresses are not supported by forge's networks"));
    }
    Ok(others)
}

/// A container's `NetworkSettings` for inspect (blocking): its network as configured, its
/// address on each network while it runs, and its published ports. Written as JSON by hand
/// because the top-level `IPAddress`, `Gateway` and `IPPrefixLen` (the default network's,
/// which the docker CLI's templates and scripts read) are gone from bollard-stubs' model.
pub(crate) fn settings_of(containers: &Containers, store_root: &Path, c: &Container) -> Result<serde_json::Value, ApiError> {
    let endpoints: Vec<Endpoint> = containers.endpoints()?.into_iter().filter(|e| e.container == c.id()).collect();
    let mut networks = BTreeMap::new();
    let configured = match &c.config.network {
        Mode::Bridge => Some(DEFAULT_NETWORK.to_string()),
        Mode::Named(n) => Some(n.clone()),
        Mode::Host => Some("host".into()),
        Mode::None => Some("none".into()),
        Mode::Container(_) => None,
    };
    // And the networks connected to it, attached at each start: listed while it does not run
    // too, with no address, as docker's.
    let connected = containers.connected(c)?;
    for name in configured.iter().chain(endpoints.iter().map(|e| &e.network)).chain(connected.iter().map(|(n, _)| n)) {
        if networks.contains_key(name) {
            continue;
        }
        let ep = endpoints.iter().find(|e| &e.network == name);
        let recorded = connected.iter().find(|(n, _)| n == name);
        // On a user network docker lists the short ID among the aliases (compose checks it).
        let aliases: Option<Vec<String>> = match (&c.config.network, ep, recorded) {
            (_, Some(ep), _) if name != DEFAULT_NETWORK => Some(ep.names.iter().filter(|n| Some(*n) != c.config.name.as_ref()).cloned().collect()),
            (_, None, Some((_, aliases))) => Some(aliases.iter().cloned().chain([c.short_id().to_string()]).collect()),
            (Mode::Named(_), None, _) => Some(c.config.aliases.iter().cloned().chain([c.short_id().to_string()]).collect()),
            _ => None,
        };
        let settings = EndpointSettings {
            aliases,
            network_id: Some(network_id(store_root, name)),
            endpoint_id: Some(String::new()),
            gateway: Some(ep.map(|e| e.gateway.to_string()).unwrap_or_default()),
            ip_address: Some(ep.map(|e| e.address.to_string()).unwrap_or_default()),
            ip_prefix_len: Some(ep.map_or(0, |e| i64::from(e.prefix_len))),
            mac_address: Some(String::new()),
            ipv6_gateway: Some(String::new()),
            global_ipv6_address: Some(String::new()),
            global_ipv6_prefix_len: Some(0),
            ..Default::default()
        };
        networks.insert(name.clone(), settings);
    }
    let mut ports: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    if c.state.status == forge_runtime::Status::Running {
        for p in forge_runtime::published(&containers.dir_of(c.id())) {
            ports.entry(format!("{}/{}", p.container_port, p.protocol)).or_default().push(serde_json::json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
        }
    }
    let default = endpoints.iter().find(|e| e.network == DEFAULT_NETWORK);
    Ok(serde_json::json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": "",
        "Ports": ports,
        "IPAddress": default.map(|e| e.address.to_string()).unwrap_or_default(),
        "IPPrefixLen": default.map_or(0, |e| e.prefix_len),
        "Gateway": default.map(|e| e.gateway.to_string()).unwrap_or_default(),
        "MacAddress": "",
        "Networks": networks,
    }))
}
