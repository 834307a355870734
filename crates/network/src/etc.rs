//! The `/etc` files of a container on a network, as docker writes them.

use std::net::Ipv4Addr;

/// `/etc/hosts`: loopback names, then the container's address with its hostname, then
/// `extra` (`--add-host` entries and, on user networks, the other containers).
pub fn hosts(address: Option<Ipv4Addr>, hostname: &str, extra: &[(String, Ipv4Addr)]) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::\tip6-localnet\nff00::\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    if let Some(ip) = address {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// Docker's fallback when the host has only loopback resolvers, which mean nothing inside
/// another network namespace.
const FALLBACK: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// `/etc/resolv.conf` from the host's: its lines less loopback nameservers (and with docker's
/// public resolvers when none is left), or `dns` as the only nameservers when given.
pub fn resolv_conf(host: &str, dns: &[String]) -> String {
    let loopback = |l: &str| {
        l.split_whitespace().nth(1).and_then(|a| a.parse::<std::net::IpAddr>().ok()).is_some_and(|a| a.is_loopback())
    };
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let is_server = line.trim_start().starts_with("nameserver");
        if is_server && (loopback(line) || !dns.is_empty()) {
            continue;
        }
        servers += usize::from(is_server);
        out.push_str(line);
        out.push('\n');
    }
    let added: Vec<&str> = if !dns.is_empty() {
        dns.iter().map(String::as_str).collect()
    } else if servers == 0 {
        FALLBACK.to_vec()
    } else {
        Vec::new()
    };
    for s in added {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_drops_loopback_servers_and_falls_back_like_docker() {
        let host = "search lan\nnameserver 127.0.0.53\noptions edns0\n";
        assert_eq!(resolv_conf(host, &[]), "search lan\noptions edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n");
        let host = "nameserver ::1\nnameserver 10.0.0.2\n";
        assert_eq!(resolv_conf(host, &[]), "nameserver 10.0.0.2\n");
        assert_eq!(resolv_conf(host, &["1.1.1.1".into()]), "nameserver 1.1.1.1\n");
    }

    #[test]
    fn hosts_names_the_container_last() {
        let text = hosts(Some(Ipv4Addr::new(172, 29, 0, 2)), "abc", &[("db".into(), Ipv4Addr::new(10, 0, 0, 9))]);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.ends_with("10.0.0.9\tdb\n172.29.0.2\tabc\n"), "{text}");
    }
}
