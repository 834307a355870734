//! Steps that change only the image config: ENV, LABEL, ARG, CMD, ENTRYPOINT, SHELL, EXPOSE,
//! VOLUME, USER, STOPSIGNAL, MAINTAINER, ONBUILD, HEALTHCHECK, and WORKDIR's path. Each is a pure
//! function of the stage's image and variables, returning the history text BuildKit writes
//! (see `history.rs`), so they are tested here without root, mounts or a store.

use std::collections::BTreeMap;
use std::time::Duration;

use forge_layerstore::image::Healthcheck as ConfigHealthcheck;
use forge_layerstore::ImageConfig;
use forge_parser::dag::predefined_args;
use forge_parser::{ArgDecl, Command, Healthcheck, Instruction};

use crate::error::{Fault, StepErrorKind};
use crate::history;
use crate::vars::Vars;

/// The image a stage is making, as steps see and change it.
#[derive(Debug, Clone)]
pub(crate) struct StageImage {
    pub(crate) config: ImageConfig,
    pub(crate) vars: Vars,
    /// Whether CMD was set in this stage (an ENTRYPOINT then keeps it).
    pub(crate) cmd_set: bool,
}

/// What config steps read from the build as a whole.
pub(crate) struct Scope<'a> {
    /// The Dockerfile's escape character.
    pub(crate) escape: char,
    /// `--build-arg`.
    pub(crate) build_args: &'a BTreeMap<String, String>,
    /// ARGs declared before the first FROM.
    pub(crate) global_args: &'a [(String, Option<String>)],
}

impl StageImage {
    pub(crate) fn new(config: ImageConfig, vars: Vars) -> StageImage {
        StageImage { config, vars, cmd_set: false }
    }

    pub(crate) fn expand(&self, scope: &Scope<'_>, word: &str) -> Result<String, Fault> {
        self.vars.expand(&self.config, scope.escape, word)
    }

    pub(crate) fn expand_all(&self, scope: &Scope<'_>, words: &[String]) -> Result<Vec<String>, Fault> {
        self.vars.expand_all(&self.config, scope.escape, words)
    }

    /// argv of a CMD/ENTRYPOINT/RUN: exec form as written, shell form through SHELL.
    pub(crate) fn command_argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut argv = self.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
                argv.push(s.clone());
                argv
            }
        }
    }

    /// The working directory, absolute.
    pub(crate) fn cwd(&self) -> String {
        self.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }

    /// `path` (expanded) made absolute against the working directory.
    pub(crate) fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("{}/{}", self.cwd().trim_end_matches('/'), path)
        }
    }

    /// The bytes of the config's environment and labels, which ENV and LABEL grow.
    fn config_bytes(&self) -> usize {
        let env: usize = self.config.config.env.iter().flatten().map(String::len).sum();
        let labels: usize = self.config.config.labels.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
        env + labels
    }
}

/// Adds `more` bytes to `used`, failing once they could not fit in an image config the store
/// can read back (each expanded word is bounded, but not how many there are). Half the
/// config's limit: the history repeats every ENV and LABEL.
fn check_config_room(used: &mut usize, more: usize) -> Result<(), Fault> {
    *used += more;
    let limit = forge_layerstore::store::MAX_JSON_BYTES / 2;
    if *used as u64 > limit {
        return Err(Fault::new(StepErrorKind::TooLarge, format!("the image's environment and labels would exceed {limit} bytes, the most an image config may hold")));
    }
    Ok(())
}

/// Applies a config-only instruction to `image`; returns its history text, `None` when it
/// writes none (ONBUILD, as in BuildKit). RUN, COPY/ADD, WORKDIR and FROM are not config-only.
pub(crate) fn apply(image: &mut StageImage, ins: &Instruction, scope: &Scope<'_>) -> Result<Option<String>, Fault> {
    let created_by = match ins {
        Instruction::From(_) | Instruction::Run(_) | Instruction::Copy(_) | Instruction::Workdir(_) => {
            unreachable!("the stage runs FROM and the layer steps itself")
        }
        Instruction::Cmd(c) => {
            let argv = image.command_argv(c);
            let text = format!("CMD {}", history::go_quoted_list(&argv));
            image.config.config.cmd = Some(argv);
            // BuildKit marks every CMD so (Docker's Windows-era flag, kept for compatibility).
            image.config.config.args_escaped = Some(true);
            image.cmd_set = true;
            text
        }
        Instruction::Entrypoint(c) => {
            let argv = image.command_argv(c);
            let text = format!("ENTRYPOINT {}", history::go_quoted_list(&argv));
            image.config.config.entrypoint = Some(argv);
            if !image.cmd_set {
                image.config.config.cmd = None;
            }
            text
        }
        Instruction::Shell(sh) => {
            image.config.config.shell = Some(sh.clone());
            format!("SHELL {}", history::go_list(sh))
        }
        Instruction::Env(pairs) => env(image, pairs, scope)?,
        Instruction::Label(pairs) => label(image, pairs, scope)?,
        Instruction::Arg(decls) => arg(image, decls, scope)?,
        Instruction::Expose(ports) => expose(image, ports, scope)?,
        Instruction::Volume(paths) => {
            let paths = image.expand_all(scope, paths)?;
            for p in &paths {
                image.config.config.volumes.get_or_insert_with(BTreeMap::new).insert(p.clone(), serde_json::json!({}));
            }
            format!("VOLUME {}", history::go_list(&paths))
        }
        Instruction::User(u) => {
            let u = image.expand(scope, u)?;
            let text = format!("USER {u}");
            image.config.config.user = Some(u);
            text
        }
        Instruction::StopSignal(s) => {
            let s = image.expand(scope, s)?;
            let text = format!("STOPSIGNAL {s}");
            image.config.config.stop_signal = Some(s);
            text
        }
        Instruction::Maintainer(m) => {
            let m = image.expand(scope, m)?;
            let text = format!("MAINTAINER {m}");
            image.config.author = Some(m);
            text
        }
        Instruction::Onbuild { text, .. } => {
            image.config.config.on_build.get_or_insert_with(Vec::new).push(text.clone());
            return Ok(None);
        }
        Instruction::Healthcheck(h) => {
            let check = healthcheck(h);
            let text = history::healthcheck(&check);
            image.config.config.healthcheck = Some(check);
            text
        }
    };
    Ok(Some(created_by))
}

fn env(image: &mut StageImage, pairs: &[(String, String)], scope: &Scope<'_>) -> Result<String, Fault> {
    // Every value sees the environment from before this instruction, as in Docker.
    let mut expanded = Vec::new();
    let mut used = image.config_bytes();
    for (k, v) in pairs {
        let (k, v) = (image.expand(scope, k)?, image.expand(scope, v)?);
        check_config_room(&mut used, k.len() + v.len())?;
        expanded.push((k, v));
    }
    let text: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for (k, v) in &expanded {
        image.config.set_env(k, v);
        image.vars.arg_over_env.retain(|(a, _)| a != k);
    }
    Ok(format!("ENV {}", text.join(" ")))
}

fn label(image: &mut StageImage, pairs: &[(String, String)], scope: &Scope<'_>) -> Result<String, Fault> {
    let mut text = Vec::new();
    let mut used = image.config_bytes();
    for (k, v) in pairs {
        let (k, v) = (image.expand(scope, k)?, image.expand(scope, v)?);
        check_config_room(&mut used, k.len() + v.len())?;
        text.push(format!("{k}={v}"));
        image.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
    }
    Ok(format!("LABEL {}", text.join(" ")))
}

fn arg(image: &mut StageImage, decls: &[ArgDecl], scope: &Scope<'_>) -> Result<String, Fault> {
    let mut text = Vec::new();
    for d in decls {
        let value = match scope.build_args.get(&d.name) {
            Some(v) => Some(v.clone()),
            None => match &d.default {
                Some(def) => Some(image.expand(scope, def)?),
                None => global_arg(scope, &d.name),
            },
        };
        text.push(match &value {
            Some(v) => format!("{}={v}", d.name),
            None => d.name.clone(),
        });
        image.vars.declare(&image.config, &d.name, value);
    }
    Ok(format!("ARG {}", text.join(" ")))
}

fn expose(image: &mut StageImage, ports: &[String], scope: &Scope<'_>) -> Result<String, Fault> {
    // BuildKit sorts the words as written, before expanding them.
    let mut words = ports.to_vec();
    words.sort();
    let mut specs = Vec::new();
    for p in image.expand_all(scope, &words)? {
        specs.extend(port_specs(&p).map_err(|e| Fault::new(StepErrorKind::InvalidInstruction, e))?);
    }
    for key in &specs {
        image.config.config.exposed_ports.get_or_insert_with(BTreeMap::new).insert(key.clone(), serde_json::json!({}));
    }
    Ok(history::expose(&specs))
}

/// The config's health check. Zero is "not set" in Docker's config (Go's omitempty).
fn healthcheck(h: &Healthcheck) -> ConfigHealthcheck {
    let ns = |d: &Option<Duration>| d.map(|d| d.as_nanos() as i64).filter(|&n| n != 0);
    match h {
        Healthcheck::None => ConfigHealthcheck { test: Some(vec!["NONE".into()]), ..Default::default() },
        Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries } => ConfigHealthcheck {
            test: Some(match test {
                Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                Command::Exec(v) => std::iter::once("CMD".to_string()).chain(v.iter().cloned()).collect(),
            }),
            interval: ns(interval),
            timeout: ns(timeout),
            start_period: ns(start_period),
            start_interval: ns(start_interval),
            retries: retries.map(i64::from).filter(|&r| r != 0),
        },
    }
}

/// WORKDIR's config part: sets the working directory to `expanded` and returns it. As BuildKit
/// (moby's NormalizeWorkdir): an absolute path is taken as written, trailing slash and all; a
/// relative one is joined to the current directory and cleaned.
pub(crate) fn workdir(image: &mut StageImage, expanded: String) -> String {
    let path = if expanded.starts_with('/') {
        expanded
    } else {
        forge_parser::dockerignore::clean(&format!("{}/{}", image.cwd().trim_end_matches('/'), expanded))
    };
    image.config.config.working_dir = Some(path.clone());
    path
}

/// The value of a global ARG (declared before the first FROM) or a predefined one.
fn global_arg(scope: &Scope<'_>, name: &str) -> Option<String> {
    if let Some((_, v)) = scope.global_args.iter().rev().find(|(k, _)| k == name) {
        return v.clone();
    }
    predefined_args().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// The `port/proto` keys of one EXPOSE word: `80`, `53/udp`, `8000-8002/tcp` (a range gives
/// every port), as BuildKit parses them.
fn port_specs(word: &str) -> Result<Vec<String>, String> {
    let (port, proto) = word.split_once('/').unwrap_or((word, "tcp"));
    let proto = proto.to_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid port {word:?}: invalid proto {proto:?}"));
    }
    // `ip:hostport:port` and `hostport:port` expose the container port.
    let port = port.rsplit(':').next().unwrap_or(port);
    let number = |p: &str| p.parse::<u16>().map_err(|_| format!("invalid port {word:?}: invalid containerPort {port:?}"));
    let (start, end) = match port.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(port)?, number(port)?),
    };
    if end < start {
        return Err(format!("invalid port {word:?}: invalid port range {port}"));
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(dockerfile: &str) -> Vec<Instruction> {
        forge_parser::parse(dockerfile, "Dockerfile").unwrap().instructions().unwrap().into_iter().map(|i| i.value).collect()
    }

    /// Applies every instruction of `dockerfile` (FROM lines left out) to a scratch image.
    fn build(dockerfile: &str, build_args: &[(&str, &str)]) -> (StageImage, Vec<Option<String>>) {
        let build_args: BTreeMap<String, String> = build_args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let global_args = vec![("GLOBAL".to_string(), Some("g".to_string()))];
        let scope = Scope { escape: '\\', build_args: &build_args, global_args: &global_args };
        let mut image = StageImage::new(ImageConfig::scratch(), Vars::default());
        let history = parse(dockerfile).iter().map(|ins| apply(&mut image, ins, &scope).unwrap()).collect();
        (image, history)
    }

    #[test]
    fn exposed_port_forms() {
        assert_eq!(port_specs("80").unwrap(), ["80/tcp"]);
        assert_eq!(port_specs("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(port_specs("5000-5002").unwrap(), ["5000/tcp", "5001/tcp", "5002/tcp"]);
        assert_eq!(port_specs("127.0.0.1:8080:80/tcp").unwrap(), ["80/tcp"]);
        assert!(port_specs("http").is_err());
        assert!(port_specs("80/icmp").is_err());
        assert!(port_specs("90-80").is_err());
    }

    #[test]
    fn metadata_and_history_as_buildkit() {
        let (image, history) = build(
            "ARG V=1 GLOBAL\nENV A=$V B=\"x y\"\nLABEL l=$A\nSHELL [\"/bin/sh\", \"-ec\"]\nCMD echo $A\nENTRYPOINT [\"tini\"]\n\
             EXPOSE 80 53/udp\nVOLUME /data $A\nUSER app:$V\nSTOPSIGNAL SIGTERM\nONBUILD RUN true\nHEALTHCHECK --interval=5s CMD true\n",
            &[],
        );
        let c = &image.config.config;
        assert_eq!(c.env.as_deref().unwrap(), ["A=1", "B=x y"]);
        assert_eq!(c.labels.as_ref().unwrap()["l"], "1");
        // ENTRYPOINT after CMD in the same stage keeps the CMD.
        assert_eq!(c.cmd.as_deref().unwrap(), ["/bin/sh", "-ec", "echo $A"]);
        assert_eq!(c.entrypoint.as_deref().unwrap(), ["tini"]);
        assert_eq!(c.exposed_ports.as_ref().unwrap().keys().collect::<Vec<_>>(), ["53/udp", "80/tcp"]);
        assert_eq!(c.volumes.as_ref().unwrap().keys().collect::<Vec<_>>(), ["/data", "1"]);
        assert_eq!(c.user.as_deref(), Some("app:1"));
        assert_eq!(c.on_build.as_deref().unwrap(), ["RUN true"]);
        assert_eq!(c.healthcheck.as_ref().unwrap().interval, Some(5_000_000_000));
        let history: Vec<&str> = history.iter().map(|h| h.as_deref().unwrap_or("(none)")).collect();
        assert_eq!(
            history,
            [
                "ARG V=1 GLOBAL=g",
                "ENV A=1 B=x y",
                "LABEL l=1",
                "SHELL [/bin/sh -ec]",
                r#"CMD ["/bin/sh" "-ec" "echo $A"]"#,
                r#"ENTRYPOINT ["tini"]"#,
                "EXPOSE [53/udp 80/tcp]",
                "VOLUME [/data 1]",
                "USER app:1",
                "STOPSIGNAL SIGTERM",
                "(none)",
                r#"HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" '\x00'}"#,
            ]
        );
    }

    #[test]
    fn entrypoint_clears_an_inherited_cmd_and_build_args_win() {
        let (image, history) = build("ARG V=default\nENTRYPOINT [\"x\"]\n", &[("V", "given")]);
        assert_eq!(history[0].as_deref(), Some("ARG V=given"));
        assert_eq!(image.config.config.cmd, None);
        assert_eq!(image.vars.args, [("V".to_string(), Some("given".to_string()))]);
    }

    #[test]
    fn workdir_paths_and_bad_input() {
        let mut image = StageImage::new(ImageConfig::scratch(), Vars::default());
        assert_eq!(workdir(&mut image, "/app/".into()), "/app/");
        assert_eq!(workdir(&mut image, "src/../lib".into()), "/app/lib");
        assert_eq!(image.cwd(), "/app/lib");
        let scope = Scope { escape: '\\', build_args: &BTreeMap::new(), global_args: &[] };
        for (bad, kind) in [("EXPOSE 80/icmp\n", StepErrorKind::InvalidInstruction), ("ENV A=${B:?unset}\n", StepErrorKind::Expansion)] {
            assert_eq!(apply(&mut image, &parse(bad)[0], &scope).unwrap_err().kind, kind, "{bad}");
        }
        // Each word is bounded, but not how many there are.
        let count = forge_layerstore::store::MAX_JSON_BYTES as usize / 2 / 50_000 + 1;
        let huge = Instruction::Label((0..count).map(|i| (format!("l{i}"), "x".repeat(50_000))).collect());
        assert_eq!(apply(&mut image, &huge, &scope).unwrap_err().kind, StepErrorKind::TooLarge);
    }
}
