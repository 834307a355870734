//! Typed instructions: what each [`Node`] means, with flags parsed and arity checked.
//! Values are kept unexpanded (`${VAR}` stays): expansion needs the build's ARG/ENV scope,
//! which the build graph and the builder own.

use std::time::Duration;

use crate::flags::{
    bool_value, parse_duration, parse_mount, parse_security, split_flags, string_value, Mount,
    NetworkMode, Security,
};
use crate::heredoc::Heredoc;
use crate::node::{Arg, Node};
use crate::span::Span;

/// A command in shell form (run through the image's SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `RUN echo hi`: one string for the shell.
    Shell(String),
    /// `RUN ["echo", "hi"]`: argv as written.
    Exec(Vec<String>),
}

/// `FROM [--platform=p] image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    /// The base: `scratch`, an image reference or an earlier stage's name (unexpanded).
    pub image: String,
    /// The stage name after `AS`, lowercased as BuildKit compares it.
    pub name: Option<String>,
    /// `--platform`, unexpanded.
    pub platform: Option<String>,
}

/// `RUN [--mount ...] [--network] [--security] command`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// What to run.
    pub command: Command,
    /// `--mount` flags, in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<Security>,
    /// Here-documents: the first is fed to the shell as the script when the command is only
    /// `<<EOF`; others become files (as BuildKit does).
    pub heredocs: Vec<Heredoc>,
}

/// `COPY` and `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// True for ADD (archives are extracted, URLs fetched).
    pub add: bool,
    /// Source paths, globs or URLs, unexpanded; heredoc sources are in `inline`.
    pub sources: Vec<String>,
    /// Heredoc sources: file name (the delimiter) and content (tabs already chomped for `<<-`).
    pub inline: Vec<Heredoc>,
    /// Destination, unexpanded.
    pub dest: String,
    /// `--from`: a stage name, index or image.
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=0755`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `ADD --checksum=sha256:...`.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD command`.
    Cmd {
        /// The test command.
        test: Command,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

/// One `ARG name[=default]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default, unexpanded and still quoted as written.
    pub default: Option<String>,
}

/// A typed Dockerfile instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    /// `FROM`.
    From(From),
    /// `RUN`.
    Run(Run),
    /// `CMD`.
    Cmd(Command),
    /// `ENTRYPOINT`.
    Entrypoint(Command),
    /// `SHELL ["executable", "parameters"]`.
    Shell(Vec<String>),
    /// `ENV k=v ...` (values unexpanded, quotes kept).
    Env(Vec<(String, String)>),
    /// `LABEL k=v ...` (values unexpanded, quotes kept).
    Label(Vec<(String, String)>),
    /// `ARG`.
    Arg(Vec<ArgDecl>),
    /// `COPY` or `ADD`.
    Copy(Copy),
    /// `EXPOSE port[/proto] ...`.
    Expose(Vec<String>),
    /// `VOLUME path ...`.
    Volume(Vec<String>),
    /// `USER user[:group]`.
    User(String),
    /// `WORKDIR path`.
    Workdir(String),
    /// `STOPSIGNAL signal`.
    StopSignal(String),
    /// `MAINTAINER name` (deprecated; becomes the author field).
    Maintainer(String),
    /// `ONBUILD instruction`: the trigger's source text and its parsed form.
    Onbuild {
        /// The trigger as written (`COPY . /app`), what Docker stores in the image config.
        text: String,
        /// The trigger, typed.
        trigger: Box<Instruction>,
    },
    /// `HEALTHCHECK`.
    Healthcheck(Healthcheck),
}

/// An instruction with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Its place in the Dockerfile.
    pub span: Span,
}

/// Converts one node; errors are BuildKit's messages, without location.
pub(crate) fn instruction_from_node(node: &Node) -> Result<Instruction, String> {
    let cmd = node.command();
    let words: Vec<String> = node.words().map(str::to_string).collect();
    let upper = cmd.to_uppercase();
    let no_flags = |node: &Node| split_flags(&node.flags, &[], &[]).map(|_| ());
    let exactly_one = |words: &[String]| match words {
        [one] => Ok(one.clone()),
        _ => Err(format!("{upper} requires exactly one argument")),
    };
    let at_least_one = |words: &[String]| {
        if words.is_empty() {
            Err(format!("{upper} requires at least one argument"))
        } else {
            Ok(())
        }
    };
    Ok(match cmd.as_str() {
        "from" => {
            let flags = split_flags(&node.flags, &["platform"], &[])?;
            let platform = flags.first().map(string_value).transpose()?;
            match words.as_slice() {
                [image] => Instruction::From(From { image: image.clone(), name: None, platform }),
                [image, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
                    Instruction::From(From { image: image.clone(), name: Some(name.to_lowercase()), platform })
                }
                [_, _, _] => return Err("FROM requires argument \"AS\" when specifying stage name".into()),
                _ => return Err("FROM requires either one or three arguments".into()),
            }
        }
        "run" => {
            let flags = split_flags(&node.flags, &["mount", "network", "security"], &["mount"])?;
            let mut run = Run { command: command(node, &words), mounts: Vec::new(), network: None, security: None, heredocs: node.heredocs.clone() };
            for f in &flags {
                let v = string_value(f)?;
                match f.name.as_str() {
                    "mount" => run.mounts.push(parse_mount(&v)?),
                    "network" => run.network = Some(v.parse::<NetworkMode>().map_err(|e| e.to_string())?),
                    _ => run.security = Some(parse_security(&v)?),
                }
            }
            if node.args.is_empty() {
                return Err("RUN requires at least one argument".into());
            }
            Instruction::Run(run)
        }
        "cmd" | "entrypoint" => {
            no_flags(node)?;
            let c = command(node, &words);
            if cmd == "cmd" {
                Instruction::Cmd(c)
            } else {
                Instruction::Entrypoint(c)
            }
        }
        "shell" => {
            no_flags(node)?;
            if !node.json {
                return Err("SHELL requires the arguments to be in JSON form".into());
            }
            at_least_one(&words)?;
            Instruction::Shell(words)
        }
        "env" | "label" => {
            no_flags(node)?;
            at_least_one(&words)?;
            let pairs = words.chunks(3).map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default())).collect();
            if cmd == "env" {
                Instruction::Env(pairs)
            } else {
                Instruction::Label(pairs)
            }
        }
        "arg" => {
            no_flags(node)?;
            at_least_one(&words)?;
            Instruction::Arg(
                words
                    .iter()
                    .map(|w| match w.split_once('=') {
                        Some((n, d)) => ArgDecl { name: n.to_string(), default: Some(d.to_string()) },
                        None => ArgDecl { name: w.clone(), default: None },
                    })
                    .collect(),
            )
        }
        "add" | "copy" => Instruction::Copy(copy(node, &words, cmd == "add")?),
        "expose" => {
            no_flags(node)?;
            at_least_one(&words)?;
            Instruction::Expose(words)
        }
        "volume" => {
            no_flags(node)?;
            at_least_one(&words)?;
            if words.iter().any(|w| w.trim().is_empty()) {
                return Err("VOLUME specified can not be an empty string".into());
            }
            Instruction::Volume(words)
        }
        "user" | "workdir" | "stopsignal" | "maintainer" => {
            no_flags(node)?;
            let one = exactly_one(&words)?;
            match cmd.as_str() {
                "user" => Instruction::User(one),
                "workdir" => Instruction::Workdir(one),
                "stopsignal" => Instruction::StopSignal(one),
                _ => Instruction::Maintainer(one),
            }
        }
        "onbuild" => {
            no_flags(node)?;
            let Some(Arg::Nested(inner)) = node.args.first() else {
                return Err("ONBUILD requires at least one argument".into());
            };
            match inner.command().as_str() {
                "onbuild" => return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()),
                "from" | "maintainer" => return Err(format!("{} isn't allowed as an ONBUILD trigger", inner.keyword.to_uppercase())),
                _ => {}
            }
            let text = node.original.trim()[node.keyword.len()..].trim().to_string();
            Instruction::Onbuild { text, trigger: Box::new(instruction_from_node(inner)?) }
        }
        "healthcheck" => Instruction::Healthcheck(healthcheck(node, &words)?),
        _ => return Err(format!("unknown instruction: {}", node.keyword)),
    })
}

fn command(node: &Node, words: &[String]) -> Command {
    if node.json {
        Command::Exec(words.to_vec())
    } else {
        Command::Shell(words.first().cloned().unwrap_or_default())
    }
}

fn copy(node: &Node, words: &[String], add: bool) -> Result<Copy, String> {
    let name = if add { "ADD" } else { "COPY" };
    let allowed: &[&str] = if add {
        &["from", "chown", "chmod", "link", "parents", "exclude", "checksum", "keep-git-dir", "unpack"]
    } else {
        &["from", "chown", "chmod", "link", "parents", "exclude"]
    };
    let flags = split_flags(&node.flags, allowed, &["exclude"])?;
    if words.len() < 2 {
        return Err(format!("{name} requires at least two arguments, but only one was provided. Destination could not be determined"));
    }
    let (dest, sources) = words.split_last().expect("two or more words");
    let is_heredoc = |w: &str| node.heredocs.iter().any(|h| crate::heredoc::parse_heredoc_word(w).ok().flatten().is_some_and(|p| p.name == h.name));
    if !node.heredocs.is_empty() && is_heredoc(dest) {
        return Err(format!("{name} cannot accept a heredoc as a destination"));
    }
    let mut c = Copy {
        add,
        sources: sources.iter().filter(|w| !is_heredoc(w)).cloned().collect(),
        inline: node
            .heredocs
            .iter()
            .map(|h| Heredoc { content: if h.chomp { crate::heredoc::chomp(&h.content) } else { h.content.clone() }, ..h.clone() })
            .collect(),
        dest: dest.clone(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        parents: false,
        exclude: Vec::new(),
        checksum: None,
        keep_git_dir: false,
    };
    for f in &flags {
        match f.name.as_str() {
            "from" => c.from = Some(string_value(f)?),
            "chown" => c.chown = Some(string_value(f)?),
            "chmod" => {
                let v = string_value(f)?;
                if !v.contains('$') && u32::from_str_radix(&v, 8).is_err() {
                    return Err(format!("invalid chmod parameter {v:?}: must be an octal mode"));
                }
                c.chmod = Some(v)
            }
            "link" => c.link = bool_value(f)?,
            "parents" => c.parents = bool_value(f)?,
            "exclude" => c.exclude.push(string_value(f)?),
            "checksum" => c.checksum = Some(string_value(f)?),
            "keep-git-dir" => c.keep_git_dir = bool_value(f)?,
            // --unpack only changes how remote archives are treated; local ones always unpack.
            _ => {}
        }
    }
    if c.from.is_some() && add {
        return Err("ADD does not support the --from flag; use COPY --from".into());
    }
    Ok(c)
}

fn healthcheck(node: &Node, words: &[String]) -> Result<Healthcheck, String> {
    let flags = split_flags(&node.flags, &["interval", "timeout", "start-period", "start-interval", "retries"], &[])?;
    let Some(kind) = words.first() else { return Err("HEALTHCHECK requires at least one argument".into()) };
    match kind.to_uppercase().as_str() {
        "NONE" => {
            if words.len() > 1 {
                return Err("HEALTHCHECK NONE takes no arguments".into());
            }
            if !flags.is_empty() {
                return Err("HEALTHCHECK NONE takes no options".into());
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let rest = &words[1..];
            if rest.is_empty() {
                return Err("Missing command after HEALTHCHECK CMD".into());
            }
            let test = if node.json { Command::Exec(rest.to_vec()) } else { Command::Shell(rest[0].clone()) };
            let mut durations = [None; 4];
            let mut retries = None;
            for f in &flags {
                let v = string_value(f)?;
                let slot = match f.name.as_str() {
                    "interval" => 0,
                    "timeout" => 1,
                    "start-period" => 2,
                    "start-interval" => 3,
                    _ => {
                        let n: i64 = v.parse().map_err(|_| format!("invalid --retries value {v:?}"))?;
                        if n < 0 {
                            return Err(format!("--retries cannot be negative ({n})"));
                        }
                        retries = Some(u32::try_from(n).map_err(|_| format!("--retries is too large ({n})"))?);
                        continue;
                    }
                };
                let d = parse_duration(&v)?;
                if !d.is_zero() && d < Duration::from_millis(1) {
                    return Err(format!("--{} cannot be less than 1ms", f.name));
                }
                durations[slot] = Some(d);
            }
            let [interval, timeout, start_period, start_interval] = durations;
            Ok(Healthcheck::Cmd { test, interval, timeout, start_period, start_interval, retries })
        }
        other => Err(format!("Unknown type {other:?} in HEALTHCHECK (try CMD)")),
    }
}
