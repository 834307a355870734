//! NAT and forwarding rules, through the `iptables` command.
//!
//! Why iptables and not nftables: the `iptables` command is on every host that runs docker or
//! podman, it drives whichever backend the host uses (legacy or nf_tables), and rules made by
//! it sit beside docker's and firewalld's in the chains those tools expect. Native nftables
//! rules in a table of our own would not be ordered against rules in the iptables-nft tables,
//! and an `ACCEPT` there does not override a `DROP` policy in iptables' `FORWARD`. There is no
//! Rust crate that speaks the iptables protocol itself (the `iptables` crate runs the same
//! command), so this runs the command with `-w` (wait for the xtables lock).
//!
//! forge only adds to the host's chains one jump into a chain of its own per table
//! (`FORGE-POSTROUTING` in `nat`, `FORGE-FORWARD` in `filter`), and every rule it adds carries
//! the comment `forge:<bridge>`. It never flushes or replaces a chain it did not make; when
//! its own chains are empty it removes them and their jumps.

use std::process::Command;

use ipnet::Ipv4Net;

use crate::Error;

const NAT_CHAIN: &str = "FORGE-POSTROUTING";
const FORWARD_CHAIN: &str = "FORGE-FORWARD";

/// The comment that tags every rule forge makes for `bridge`.
pub(crate) fn tag(bridge: &str) -> String {
    format!("forge:{bridge}")
}

fn iptables(args: &[&str]) -> Result<std::process::Output, Error> {
    Command::new("iptables").arg("-w").args(args).output().map_err(|source| Error::Io { what: "running iptables", source })
}

/// Runs an iptables command that must succeed.
fn must(args: &[&str]) -> Result<(), Error> {
    let out = iptables(args)?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Firewall { command: format!("iptables {}", args.join(" ")), message: String::from_utf8_lossy(&out.stderr).trim().to_string() })
}

/// Whether a rule (`-C` form) exists.
fn exists(table: &str, chain: &str, rule: &[&str]) -> Result<bool, Error> {
    let mut args = vec!["-t", table, "-C", chain];
    args.extend_from_slice(rule);
    Ok(iptables(&args)?.status.success())
}

fn ensure_rule(table: &str, chain: &str, rule: &[&str]) -> Result<(), Error> {
    if exists(table, chain, rule)? {
        return Ok(());
    }
    let mut args = vec!["-t", table, "-A", chain];
    args.extend_from_slice(rule);
    must(&args)
}

fn delete_rule(table: &str, chain: &str, rule: &[&str]) -> Result<(), Error> {
    while exists(table, chain, rule)? {
        let mut args = vec!["-t", table, "-D", chain];
        args.extend_from_slice(rule);
        must(&args)?;
    }
    Ok(())
}

/// Makes forge's chain in `table` and the jump to it from `builtin`.
fn ensure_chain(table: &str, chain: &str, builtin: &str) -> Result<(), Error> {
    if !iptables(&["-t", table, "-S", chain])?.status.success() {
        must(&["-t", table, "-N", chain])?;
    }
    // Callers hold the host-wide lock (see `crate::host_lock`), so nobody makes or removes
    // the chain in between.
    let jump = ["-m", "comment", "--comment", "forge", "-j", chain];
    if !exists(table, builtin, &jump)? {
        let mut args = vec!["-t", table, "-I", builtin, "1"];
        args.extend_from_slice(&jump);
        must(&args)?;
    }
    Ok(())
}

/// Removes forge's chain in `table` and its jump, if the chain holds no rule.
fn remove_chain_if_empty(table: &str, chain: &str, builtin: &str) -> Result<(), Error> {
    let out = iptables(&["-t", table, "-S", chain])?;
    if !out.status.success() {
        return Ok(());
    }
    // `-S CHAIN` prints `-N CHAIN` and then one line per rule.
    if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("-A ")) {
        return Ok(());
    }
    delete_rule(table, builtin, &["-m", "comment", "--comment", "forge", "-j", chain])?;
    must(&["-t", table, "-X", chain])
}

/// The rules of one bridge, in order. Traffic between its attachments passes; traffic from
/// it to another forge bridge (any `forge+` link: another network, or another store's) is
/// dropped, so networks are isolated from each other. A normal network's traffic to the
/// outside is forwarded and masqueraded, with the replies; an internal network's is dropped
/// both ways.
fn rules(bridge: &str, subnet: &Ipv4Net, internal: bool) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let tag = tag(bridge);
    let rule = |words: &[&str]| -> Vec<String> {
        let mut w: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        let at = w.len() - 2;
        w.splice(at..at, ["-m", "comment", "--comment", &tag].map(String::from));
        w
    };
    let mut out = vec![
        ("filter", FORWARD_CHAIN, rule(&["-i", bridge, "-o", bridge, "-j", "ACCEPT"])),
        ("filter", FORWARD_CHAIN, rule(&["-i", bridge, "-o", "forge+", "-j", "DROP"])),
    ];
    if internal {
        out.push(("filter", FORWARD_CHAIN, rule(&["-i", bridge, "-j", "DROP"])));
        out.push(("filter", FORWARD_CHAIN, rule(&["-o", bridge, "-j", "DROP"])));
    } else {
        out.push(("nat", NAT_CHAIN, rule(&["-s", &subnet.to_string(), "!", "-o", bridge, "-j", "MASQUERADE"])));
        out.push(("filter", FORWARD_CHAIN, rule(&["-i", bridge, "-j", "ACCEPT"])));
        out.push(("filter", FORWARD_CHAIN, rule(&["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"])));
    }
    out
}

/// Adds the rules of a bridge (idempotent).
pub(crate) fn add(bridge: &str, subnet: &Ipv4Net, internal: bool) -> Result<(), Error> {
    ensure_chain("nat", NAT_CHAIN, "POSTROUTING")?;
    ensure_chain("filter", FORWARD_CHAIN, "FORWARD")?;
    for (table, chain, rule) in rules(bridge, subnet, internal) {
        ensure_rule(table, chain, &rule.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

/// Removes every rule tagged for `bridge` from forge's chains, then the chains if empty.
pub(crate) fn remove(bridge: &str) -> Result<(), Error> {
    let tag = tag(bridge);
    for (table, chain, builtin) in [("nat", NAT_CHAIN, "POSTROUTING"), ("filter", FORWARD_CHAIN, "FORWARD")] {
        let out = iptables(&["-t", table, "-S", chain])?;
        if !out.status.success() {
            continue;
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // `-A CHAIN <rule>`: the rule as `-D` takes it, once the quotes iptables puts
            // around a comment with a `:` are gone (none of our words has a space in it).
            let Some(rule) = line.strip_prefix(&format!("-A {chain} ")) else { continue };
            let words: Vec<&str> = rule.split_whitespace().map(|w| w.trim_matches('"')).collect();
            if words.windows(2).any(|w| w == ["--comment", tag.as_str()]) {
                let mut args = vec!["-t", table, "-D", chain];
                args.extend_from_slice(&words);
                must(&args)?;
            }
        }
        remove_chain_if_empty(table, chain, builtin)?;
    }
    Ok(())
}

/// Every rule forge has in its chains, as `iptables -S` prints them (for tests and `inspect`).
pub fn tagged_rules() -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for (table, chain) in [("nat", NAT_CHAIN), ("filter", FORWARD_CHAIN)] {
        let o = iptables(&["-t", table, "-S", chain])?;
        if o.status.success() {
            out.extend(String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("-A ")).map(|l| format!("{table} {l}")));
        }
    }
    Ok(out)
}
