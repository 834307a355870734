//! What `--network` and `-p` ask for, parsed once at the edge.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A container's network (docker's `--network`), stored as docker spells it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Mode {
    /// Its own namespace with only loopback. (The library's default; the CLI's is `bridge`.)
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A namespace of its own on the store's default network ([`crate::DEFAULT_NETWORK`]).
    Bridge,
    /// The namespace of another container (`container:NAME|ID`): the same interfaces,
    /// addresses and ports.
    Container(String),
    /// A namespace of its own on a network made with `forge network create`.
    Named(String),
}

/// A `--network` value that names nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid network {0:?}: use bridge, host, none, container:NAME or a network's name")]
pub struct InvalidMode(pub String);

impl FromStr for Mode {
    type Err = InvalidMode;

    fn from_str(s: &str) -> Result<Mode, InvalidMode> {
        Ok(match s {
            "none" => Mode::None,
            "host" => Mode::Host,
            "bridge" | "default" => Mode::Bridge,
            _ => match s.strip_prefix("container:") {
                Some("") => return Err(InvalidMode(s.into())),
                Some(c) => Mode::Container(c.into()),
                None if valid_name(s) => Mode::Named(s.into()),
                None => return Err(InvalidMode(s.into())),
            },
        })
    }
}

/// Docker's rule for names: a letter or digit, then letters, digits, `_`, `.` or `-`.
pub(crate) fn valid_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric()) && c.all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch)) && s.len() <= 64
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::None => f.write_str("none"),
            Mode::Host => f.write_str("host"),
            Mode::Bridge => f.write_str("bridge"),
            Mode::Container(c) => write!(f, "container:{c}"),
            Mode::Named(n) => f.write_str(n),
        }
    }
}

impl TryFrom<String> for Mode {
    type Error = InvalidMode;

    fn try_from(s: String) -> Result<Mode, InvalidMode> {
        s.parse()
    }
}

impl From<Mode> for String {
    fn from(m: Mode) -> String {
        m.to_string()
    }
}

/// An extra hosts entry (`--add-host`, the API's `ExtraHosts`): `NAME:IP`.
pub fn extra_host(v: &str) -> Result<(String, std::net::Ipv4Addr), String> {
    let (name, ip) = v.rsplit_once(':').ok_or("use NAME:IP")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err("the name is empty or has white space".into());
    }
    Ok((name.to_string(), ip.parse().map_err(|_| format!("{ip:?} is not an IPv4 address"))?))
}

/// A network alias (`--network-alias`, the API's `Aliases`): a host name, since it goes into
/// other containers' `/etc/hosts`.
pub fn alias(v: &str) -> Result<String, String> {
    let ok = v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric()) && v.len() <= 253 && v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err("use letters, digits, '_', '.' and '-', starting with a letter or digit".into())
    }
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One `-p [IP:][HOST:]CONTAINER[/tcp|udp]`; a host port of 0 means any free one (`-P`, or
/// `-p CONTAINER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The host address listened on (`0.0.0.0`: all).
    pub host_ip: Ipv4Addr,
    /// The host port (0: any free one).
    pub host_port: u16,
    /// The container's port.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

/// A `-p` value forge cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port publication {value:?}: {reason} (use [IP:][HOST:]CONTAINER[/tcp|udp])")]
pub struct InvalidPublish {
    /// The value.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl FromStr for Publish {
    type Err = InvalidPublish;

    fn from_str(s: &str) -> Result<Publish, InvalidPublish> {
        let bad = |reason| InvalidPublish { value: s.into(), reason };
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((spec, "tcp")) => (spec, Protocol::Tcp),
            Some((spec, "udp")) => (spec, Protocol::Udp),
            Some(_) => return Err(bad("the protocol must be tcp or udp")),
            None => (s, Protocol::Tcp),
        };
        let port = |p: &str, zero_ok: bool| -> Result<u16, InvalidPublish> {
            match p.parse::<u16>() {
                Ok(0) if !zero_ok => Err(bad("a container port must be 1-65535")),
                Ok(n) => Ok(n),
                Err(_) => Err(bad("a port must be a number up to 65535")),
            }
        };
        let parts: Vec<&str> = spec.split(':').collect();
        let (ip, host, container) = match parts.as_slice() {
            [c] => (None, "", *c),
            [h, c] => (None, *h, *c),
            [ip, h, c] => (Some(*ip), *h, *c),
            _ => return Err(bad("too many colons (IPv6 host addresses are not supported)")),
        };
        let host_ip = match ip {
            None | Some("") => Ipv4Addr::UNSPECIFIED,
            Some(ip) => ip.parse().map_err(|_| bad("the host address must be an IPv4 address"))?,
        };
        Ok(Publish { host_ip, host_port: if host.is_empty() { 0 } else { port(host, true)? }, container_port: port(container, false)?, protocol })
    }
}

impl fmt::Display for Publish {
    /// Docker's `forge port` form: `80/tcp -> 0.0.0.0:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} -> {}:{}", self.container_port, self.protocol, self.host_ip, self.host_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse_once_and_print_back() {
        for s in ["none", "host", "bridge", "container:web", "mynet"] {
            assert_eq!(s.parse::<Mode>().unwrap().to_string(), s);
        }
        assert_eq!("default".parse::<Mode>().unwrap(), Mode::Bridge);
        assert!("container:".parse::<Mode>().is_err());
        assert!("-x".parse::<Mode>().is_err());
        assert_eq!(serde_json::to_string(&Mode::Container("a".into())).unwrap(), "\"container:a\"");
        assert_eq!(serde_json::from_str::<Mode>("\"none\"").unwrap(), Mode::None);
    }

    #[test]
    fn publications_parse_as_docker_reads_them() {
        let p: Publish = "127.0.0.1:8080:80/udp".parse().unwrap();
        assert_eq!(p, Publish { host_ip: Ipv4Addr::LOCALHOST, host_port: 8080, container_port: 80, protocol: Protocol::Udp });
        assert_eq!("8080:80".parse::<Publish>().unwrap().host_port, 8080);
        assert_eq!("80".parse::<Publish>().unwrap().host_port, 0);
        assert_eq!("::80".parse::<Publish>().unwrap().host_ip, Ipv4Addr::UNSPECIFIED);
        assert_eq!("8080:80".parse::<Publish>().unwrap().to_string(), "80/tcp -> 0.0.0.0:8080");
        for bad in ["80/sctp", "x:80", "8080:0", "1:2:3:4", "99999:80", "300.1.1.1:1:2"] {
            assert!(bad.parse::<Publish>().is_err(), "{bad}");
        }
    }
}
