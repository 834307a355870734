//! What a container was asked to be (`config.json`): the options of `forge create`/`run`, and
//! the process they resolve to on the image's config, by docker's rules.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::volumes::MountSpec;

/// The network a container gets (docker's `--network`), parsed once from the flag.
pub use forge_network::Mode as Network;
pub use forge_network::Publish;

/// A container's resource limits (docker's resource flags): the sandbox's own type, checked by
/// [`crate::check_limits`].
pub use forge_sandbox::Limits;

/// A container's capabilities and privileges (docker's `--cap-add`, `--cap-drop`,
/// `--privileged`), and its seccomp profile: the sandbox's own types.
pub use forge_sandbox::{Seccomp, Security};

/// What the user asked for; unset fields come from the image.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The image reference, as given.
    pub image: String,
    /// `--name`.
    pub name: Option<String>,
    /// The arguments after the image (replace the image's `Cmd`).
    pub cmd: Vec<String>,
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// `-e`/`--env-file` entries, in order, already `KEY=VALUE` (see [`env_entry`]).
    pub env: Vec<String>,
    /// `-w`.
    pub working_dir: Option<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// `--rm`: removed when it exits.
    pub auto_remove: bool,
    /// `--ip`: the address on the container's network.
    pub ip: Option<std::net::Ipv4Addr>,
    /// `--dns`: nameservers instead of the host's.
    pub dns: Vec<String>,
    /// `--add-host NAME:IP` entries for `/etc/hosts`.
    pub add_hosts: Vec<(String, std::net::Ipv4Addr)>,
    /// `-p`.
    pub publish: Vec<Publish>,
    /// `-P`: every port the image exposes, on free host ports.
    pub publish_all: bool,
    /// `--network-alias`: more names peers on a user network find it by.
    pub aliases: Vec<String>,
    /// The resource flags (`-m`, `--cpus`, `--pids-limit`...), checked at create by docker's
    /// rules.
    pub limits: Limits,
    /// `--cap-add`, `--cap-drop`, `--privileged`.
    pub security: Security,
    /// `--security-opt seccomp=`.
    pub seccomp: Seccomp,
    /// `-v`, `--mount`, `--tmpfs`.
    pub mounts: Vec<MountSpec>,
    /// `--read-only`: the root filesystem is read-only.
    pub read_only: bool,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--stop-signal` (a name like `SIGTERM` or a number); the image's `StopSignal` otherwise.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`, in seconds.
    pub stop_timeout: Option<u32>,
    /// `-l`/`--label` entries, `KEY=VALUE` (a bare `KEY` has an empty value).
    pub labels: Vec<String>,
    /// `-i`: keep its standard input open.
    pub interactive: bool,
    /// docker's `StdinOnce`: the end of the first attached client's input is the end of the
    /// command's (`create -i`, `run -i`); else clients come and go and it stays open (`run -di`).
    pub stdin_once: bool,
    /// `-t`: a terminal.
    pub tty: bool,
    /// `--userns`; `None`: the store's default (see [`crate::userns_store_default`]).
    pub userns: Option<crate::Userns>,
}

/// A container's fixed configuration, written once at create.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Config {
    /// The full ID (64 hex).
    pub id: String,
    /// The unique name, if any.
    pub name: Option<String>,
    /// The image reference as given.
    pub image: String,
    /// The image's manifest digest.
    pub image_digest: String,
    /// The layer chain the writable layer is prepared on (`None` for an image with no layers).
    pub chain_id: Option<String>,
    /// The snapshot key of the writable layer.
    pub snapshot: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// The process: entrypoint and command joined, as executed.
    pub args: Vec<String>,
    /// The environment, `KEY=VALUE`.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// The user (`name`, `uid`, `uid:gid`...; empty for root).
    pub user: String,
    /// The hostname.
    pub hostname: String,
    /// The network.
    pub network: Network,
    /// Removed when it exits.
    pub auto_remove: bool,
    /// The address asked for on its network.
    #[serde(default, rename = "IPAddress")]
    pub ip: Option<std::net::Ipv4Addr>,
    /// Nameservers instead of the host's.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Extra `/etc/hosts` entries.
    #[serde(default)]
    pub add_hosts: Vec<(String, std::net::Ipv4Addr)>,
    /// The ports to publish (`-p`, and `-P` resolved on the image's exposed ports); host port
    /// 0 means a free one, picked at each start.
    #[serde(default)]
    pub ports: Vec<Publish>,
    /// More names peers on a user network find it by.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its cgroup's limits.
    #[serde(default)]
    pub limits: Limits,
    /// Its capabilities' changes and privileges.
    #[serde(default)]
    pub security: Security,
    /// Its seccomp profile.
    #[serde(default)]
    pub seccomp: Seccomp,
    /// Its mounts (bind, volume, tmpfs).
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// Its root filesystem is read-only.
    #[serde(default)]
    pub read_only: bool,
    /// What its monitor does when it exits (records of older forges have none: `no`).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// The signal `stop` sends first (the image's or `--stop-signal`; SIGTERM when neither).
    #[serde(default = "default_stop_signal")]
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL, when `--stop-timeout` gave it.
    #[serde(default)]
    pub stop_timeout: Option<u32>,
    /// The image's labels, then `-l` ones.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its standard input stays open (`-i`): the foreground caller's input is copied to it,
    /// a monitor holds it open.
    #[serde(default)]
    pub open_stdin: bool,
    /// With `open_stdin`: the first attached client's end of input ends it (docker's
    /// `StdinOnce`); else every client's input goes to it, in turn or together, and their ends
    /// are not its end.
    #[serde(default)]
    pub stdin_once: bool,
    /// It gets a terminal (`-t`): its output is the terminal's, all on stdout.
    #[serde(default)]
    pub tty: bool,
    /// Its user namespace's mapping (`--userns=remap`); `None`: the host's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<forge_sandbox::IdMapping>,
}

/// The ports `opts` publishes: `-p`, plus with `-P` every port the image exposes (`80/tcp`)
/// on a free host port.
pub(crate) fn ports(image: &forge_layerstore::image::ContainerConfig, opts: &CreateOptions) -> Result<Vec<Publish>, Error> {
    let mut out = opts.publish.clone();
    if opts.publish_all {
        for key in image.exposed_ports.iter().flat_map(|m| m.keys()) {
            let p: Publish = key.parse().map_err(|e: forge_network::InvalidPublish| Error::Invalid { what: "exposed port", value: key.clone(), reason: e.reason.into() })?;
            if !out.iter().any(|o| o.container_port == p.container_port && o.protocol == p.protocol) {
                out.push(p);
            }
        }
    }
    Ok(out)
}

fn default_stop_signal() -> String {
    "SIGTERM".into()
}

/// docker's `--restart` policies, applied by a detached container's monitor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "Name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    #[default]
    No,
    /// Restart after a non-zero exit, at most `MaximumRetryCount` times (0: no limit).
    OnFailure {
        /// The most restarts, 0 for no limit.
        #[serde(rename = "MaximumRetryCount")]
        max: u32,
    },
    /// Always restart, unless stopped by `stop`/`kill`.
    Always,
    /// As `always`; docker differs only at daemon start, which forge has none of.
    UnlessStopped,
}

impl RestartPolicy {
    /// docker's name (`on-failure` and friends).
    pub fn name(&self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether an exit with `code` after `restarts` restarts leads to another, when nobody
    /// stopped the container by hand.
    pub fn restarts(&self, code: i32, restarts: u32) -> bool {
        match *self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => code != 0 && (max == 0 || restarts < max),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<RestartPolicy, Error> {
        let bad = |reason: &str| Error::Invalid { what: "restart policy", value: s.into(), reason: reason.into() };
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "" | "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => {
                let max = count.map(|c| c.parse::<u32>().map_err(|_| bad("the maximum retry count must be a number"))).transpose()?;
                return Ok(RestartPolicy::OnFailure { max: max.unwrap_or(0) });
            }
            _ => return Err(bad("use no, always, unless-stopped or on-failure[:max-retries]")),
        };
        if count.is_some() {
            return Err(bad("only on-failure takes a maximum retry count"));
        }
        Ok(policy)
    }
}

/// The process part of a config, from the image's config and the options.
pub(crate) struct Process {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) working_dir: String,
    pub(crate) user: String,
}

/// Docker's rules: `--entrypoint` replaces the image's entrypoint *and* drops its `Cmd`;
/// arguments after the image replace `Cmd`; `-e` overrides the image's variables by key.
pub(crate) fn resolve(image: &forge_layerstore::image::ContainerConfig, opts: &CreateOptions) -> Result<Process, Error> {
    let (entrypoint, image_cmd) = match &opts.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image.entrypoint.clone().unwrap_or_default(), image.cmd.clone().unwrap_or_default()),
    };
    let cmd = if opts.cmd.is_empty() { image_cmd } else { opts.cmd.clone() };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::NoCommand);
    }
    let mut env: Vec<String> = image.env.clone().unwrap_or_default();
    for kv in &opts.env {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        env.push(kv.clone());
    }
    let working_dir = match opts.working_dir.as_deref().or(image.working_dir.as_deref()) {
        None | Some("") => "/".to_string(),
        Some(w) if w.starts_with('/') => w.to_string(),
        Some(w) => return Err(Error::Invalid { what: "working directory", value: w.into(), reason: "it must be an absolute path".into() }),
    };
    let user = opts.user.clone().or_else(|| image.user.clone()).unwrap_or_default();
    Ok(Process { args, env, working_dir, user })
}

/// One `-e` value as docker reads it: `KEY=VALUE` as is; a bare `KEY` takes the value from
/// `lookup` (the caller's environment), and is dropped (`None`) when it has none.
pub fn env_entry(entry: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>, Error> {
    let key = entry.split_once('=').map_or(entry, |(k, _)| k);
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(Error::Invalid { what: "environment variable", value: entry.into(), reason: "the name is empty or has white space".into() });
    }
    if entry.contains('=') {
        return Ok(Some(entry.to_string()));
    }
    Ok(lookup(key).map(|v| format!("{key}={v}")))
}

/// An `--env-file` as docker reads it: one `-e` value per line; blank lines and lines starting
/// with `#` are skipped.
pub fn env_file(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.extend(env_entry(line, &lookup)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forge_layerstore::image::ContainerConfig;

    fn image(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> ContainerConfig {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ContainerConfig { entrypoint: entrypoint.map(v), cmd: cmd.map(v), ..ContainerConfig::default() }
    }

    fn args(img: &ContainerConfig, entrypoint: Option<&str>, cmd: &[&str]) -> Result<Vec<String>, Error> {
        let opts = CreateOptions { entrypoint: entrypoint.map(str::to_string), cmd: cmd.iter().map(|s| s.to_string()).collect(), ..CreateOptions::default() };
        resolve(img, &opts).map(|p| p.args)
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let img = image(Some(&["/ep", "-x"]), Some(&["default"]));
        assert_eq!(args(&img, None, &[]).unwrap(), ["/ep", "-x", "default"]);
        assert_eq!(args(&img, None, &["mine"]).unwrap(), ["/ep", "-x", "mine"]);
        // --entrypoint drops the image's Cmd too.
        assert_eq!(args(&img, Some("/other"), &[]).unwrap(), ["/other"]);
        assert_eq!(args(&img, Some(""), &["sh"]).unwrap(), ["sh"]);
        assert!(matches!(args(&img, Some(""), &[]), Err(Error::NoCommand)));
        assert!(matches!(args(&image(None, None), None, &[]), Err(Error::NoCommand)));
    }

    #[test]
    fn env_overrides_by_key_and_reads_the_callers() {
        let mut img = image(None, Some(&["sh"]));
        img.env = Some(vec!["PATH=/bin".into(), "A=1".into()]);
        let lookup = |k: &str| (k == "HOSTVAR").then(|| "h".to_string());
        let mut env = vec![env_entry("A=2", lookup).unwrap().unwrap()];
        env.extend(env_entry("HOSTVAR", lookup).unwrap());
        assert_eq!(env_entry("UNSET", lookup).unwrap(), None);
        env.extend(env_file("# comment\n\nB=x y\n", lookup).unwrap());
        let p = resolve(&img, &CreateOptions { env, ..CreateOptions::default() }).unwrap();
        assert_eq!(p.env, ["PATH=/bin", "A=2", "HOSTVAR=h", "B=x y"]);
        assert!(env_entry("=x", lookup).is_err());
    }
}
