//! The security flags of `run` and `create` (docker's names): capabilities, `--privileged` and
//! `--security-opt`, parsed once into the runtime's [`Security`] and [`Seccomp`].

use anyhow::Context;
use clap::Args;
use forge_builder::SecurityOpt;
use forge_runtime::{Seccomp, Security};

/// docker's security flags; read by [`SecurityFlags::parse`] rather than by clap, so a bad value
/// fails like any other create failure (exit code 125, as docker's).
#[derive(Args, Debug)]
pub struct SecurityFlags {
    /// Add a capability to the default set (`NET_ADMIN`, `CAP_SYS_TIME`, `ALL`).
    #[arg(long = "cap-add", value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability from the default set (`CHOWN`, `ALL`).
    #[arg(long = "cap-drop", value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Every capability, no seccomp filter, no masked paths, every device allowed.
    #[arg(long)]
    privileged: bool,
    /// `seccomp=unconfined`, `seccomp=default`, `seccomp=PROFILE.json` (docker's format) or
    /// `no-new-privileges` (always on in forge).
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
}

impl SecurityFlags {
    /// The privileges and seccomp profile these flags ask for.
    pub fn parse(&self) -> anyhow::Result<(Security, Seccomp)> {
        let names = |flag: &str, list: &[String]| -> anyhow::Result<Vec<String>> {
            list.iter().map(|c| forge_sandbox::normalize_capability(c).with_context(|| format!("invalid {flag}"))).collect()
        };
        let mut security = Security {
            cap_add: names("--cap-add", &self.cap_add)?,
            cap_drop: names("--cap-drop", &self.cap_drop)?,
            privileged: self.privileged,
            seccomp_profile: None,
        };
        let mut seccomp = Seccomp::Default;
        for opt in &self.security_opt {
            // forge sets no_new_privs for every process it starts: the option asks for what is.
            if matches!(opt.as_str(), "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true") {
                continue;
            }
            // A profile file: read now, as docker's client does, and kept with the container.
            if let Some(("seccomp", path)) = opt.split_once(['=', ':']).filter(|(_, v)| !matches!(*v, "default" | "unconfined")) {
                let json = read_profile(std::path::Path::new(path))?;
                forge_sandbox::check_seccomp_profile(&json).with_context(|| format!("in {path}"))?;
                security.seccomp_profile = Some(json);
                continue;
            }
            match opt.parse::<SecurityOpt>().with_context(|| format!("invalid --security-opt {opt:?}"))? {
                SecurityOpt::Seccomp(s) => seccomp = s,
            }
        }
        Ok((security, seccomp))
    }
}

/// A profile file's text; docker's own default profile is 30 KiB, so 1 MiB is plenty.
fn read_profile(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening the seccomp profile {}", path.display()))?;
    let mut text = String::new();
    file.take(1 << 20).read_to_string(&mut text).with_context(|| format!("reading the seccomp profile {}", path.display()))?;
    if text.len() == 1 << 20 {
        anyhow::bail!("the seccomp profile {} is over 1 MiB", path.display());
    }
    Ok(text)
}
