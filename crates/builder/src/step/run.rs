//! RUN: the command, its environment and `--mount`s (`run/mounts.rs`) become a sandbox spec;
//! the sandbox runs it on the step's snapshot and the upperdir becomes the layer.

mod mounts;

use std::collections::VecDeque;
use std::time::Duration;

use forge_parser::dag::Source;
use forge_parser::flags::{NetworkMode, Security};
use forge_parser::{Command, Run};
use forge_sandbox::{ExitStatus, RunSpec, Stream};

use crate::cache_key::{InputKind, KeyBuilder};
use crate::error::StepErrorKind;
use crate::layers::Snapshot;
use crate::progress::Event;
use crate::step::{Made, StepCtx};
use crate::Error;
use mounts::Mounts;

/// Lines of output kept to show with a failure.
const TAIL_LINES: usize = 20;

/// What a RUN step measured: its CPU time and peak memory.
pub(crate) type Usage = (Option<Duration>, Option<u64>);

/// The process a RUN step starts.
struct Process {
    argv: Vec<String>,
    env: Vec<String>,
    user: String,
    cwd: String,
    network: NetworkMode,
}

/// Runs one RUN instruction.
pub(crate) fn run(step: &StepCtx<'_>, r: &Run, sources: &[Source]) -> Result<(Made, Usage), Error> {
    if r.security == Some(Security::Insecure) {
        return Err(step.at.fail(StepErrorKind::Unsupported, "--security=insecure is not allowed: forge never gives a build step full privileges"));
    }
    let (argv, script) = argv(step, r);
    let process = process(step, r, argv);
    let mut key = process_key(step, &process);
    let mut mounts = Mounts::default();
    if let Some((name, body)) = &script {
        // The file runs from a read-only mount at /dev/pipes, as in BuildKit; its text is
        // part of the key since the argv names only its path.
        key.part(body);
        key.note(InputKind::Instruction, &format!("<<{name}"), body);
        mounts.script(step, name, body)?;
    }
    let mut from_sources = sources.iter();
    for (i, m) in r.mounts.iter().enumerate() {
        let source = if m.from.is_some() { from_sources.next() } else { None };
        key.part(&format!("{m:?}"));
        key.note(InputKind::Instruction, &format!("--mount #{}", i + 1), &format!("{m:?}"));
        mounts.add(step, m, source, &mut key)?;
    }
    let (key, inputs) = key.finish_with_inputs();
    let created_by = format!("RUN {} # buildkit", step.image.vars.history_args(&step.image.config, &process.argv).join(" "));
    let mut usage = (None, None);
    let (layer, created) = step.layer(&key, inputs, |snap| {
        usage = execute(step, &process, &mounts, snap)?;
        Ok(None)
    })?;
    Ok((Made { key, layer, created, created_by }, usage))
}

fn process(step: &StepCtx<'_>, r: &Run, argv: Vec<String>) -> Process {
    let (image, opts) = (step.image, step.build.opts);
    Process {
        argv,
        env: image.vars.run_env(&image.config, &image.vars.run_args(&opts.build_args)),
        user: image.config.config.user.clone().unwrap_or_default(),
        cwd: image.cwd(),
        network: match r.network {
            Some(NetworkMode::Default) | None => opts.network,
            Some(mode) => mode,
        },
    }
}

/// The key's start: the process and the sandbox options that change what it makes.
fn process_key(step: &StepCtx<'_>, p: &Process) -> KeyBuilder {
    let mut key = KeyBuilder::new(step.parent_key, "RUN");
    key.list(&p.argv).list(&p.env).part(&p.user).part(&p.cwd).part(&format!("{:?}", p.network));
    note_process(step, p, &mut key);
    // A layer made without the seccomp filter is not reused by a confined build (nor the other
    // way round); default keys stay what they were.
    let seccomp = step.build.opts.seccomp;
    if seccomp != forge_sandbox::Seccomp::Default {
        key.part(&format!("seccomp={seccomp}"));
    }
    key.note(InputKind::Option, "seccomp", &seccomp.to_string());
    key
}

/// The process's inputs, labelled: each variable is an ARG when a build argument in scope gave
/// its value, else an ENV.
fn note_process(step: &StepCtx<'_>, p: &Process, key: &mut KeyBuilder) {
    key.note(InputKind::Instruction, "command", &p.argv.join(" "));
    let args = step.image.vars.run_args(&step.build.opts.build_args);
    for var in &p.env {
        let (name, value) = var.split_once('=').unwrap_or((var, ""));
        let is_arg = args.iter().any(|(k, v)| k == name && v == value);
        let kind = if is_arg { InputKind::Arg } else { InputKind::Env };
        key.note(kind, name, &crate::explain::short_digest(value));
    }
    key.note(InputKind::Config, "USER", &p.user).note(InputKind::Config, "WORKDIR", &p.cwd).note(InputKind::Option, "network", &format!("{:?}", p.network));
}

/// Runs the process in the sandbox on `snap`, streaming its output as progress.
fn execute(step: &StepCtx<'_>, p: &Process, mounts: &Mounts, snap: &Snapshot<'_>) -> Result<Usage, Error> {
    let opts = step.build.opts;
    let mut spec = RunSpec::new(snap.lowerdirs.to_vec(), snap.upperdir.to_path_buf(), snap.workdir.to_path_buf(), p.argv.clone());
    spec.env = p.env.iter().chain(&mounts.secret_env).cloned().collect();
    spec.user = p.user.clone();
    spec.cwd = p.cwd.clone();
    spec.hostname = "buildkitsandbox".into();
    // The step's snapshot is committed after the step or removed: no copy-up needs a sync.
    spec.volatile_upper = true;
    // Docker's builder gives a step on the default network a namespace of its own behind a
    // bridge with NAT: it reaches what the host reaches, but not the host's loopback services.
    // Rootless forge cannot make a bridge (netlink and iptables in the host's namespace need the
    // host's root): its default-network steps share the user's own network, which the user
    // reaches anyway, as podman's rootless `--network host` does.
    let rootless = forge_sandbox::in_user_namespace();
    let attachment = match p.network {
        NetworkMode::Default if rootless => None,
        NetworkMode::Default => {
            let fail = |e: forge_network::Error| step.at.fail(StepErrorKind::Sandbox, format!("setting up the step's network: {e}"));
            let networks = forge_network::Networks::open(&step.build.store.root().join("forge").join("network")).map_err(fail)?;
            Some(networks.attach(forge_network::DEFAULT_NETWORK, None).map_err(fail)?)
        }
        NetworkMode::None | NetworkMode::Host => None,
    };
    spec.network = match (&attachment, p.network) {
        (Some(a), _) => forge_sandbox::Network::Namespace(a.netns().to_path_buf()),
        (None, NetworkMode::Host) => forge_sandbox::Network::Host,
        (None, NetworkMode::Default) if rootless => forge_sandbox::Network::Host,
        (None, _) => forge_sandbox::Network::None,
    };
    spec.mounts = mounts.mounts.clone();
    spec.limits = opts.limits.clone();
    spec.seccomp = opts.seccomp;
    spec.init = opts.sandbox_init.clone();
    spec.scratch_in = Some(step.build.store.tmp_dir()?);
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut output = |stream: Stream, bytes: &[u8]| {
        let line = String::from_utf8_lossy(bytes).trim_end_matches('\n').to_string();
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        step.build.progress.event(Event::Output { id: step.at.id.clone(), stream, line });
    };
    let outcome = forge_sandbox::run(&spec, &opts.cancel, &mut output).map_err(|e| match e {
        forge_sandbox::Error::Cancelled => Error::Cancelled,
        e => step.at.fail(StepErrorKind::Sandbox, format!("sandbox: {e}")),
    });
    if let Some(a) = attachment {
        a.release().map_err(|e| step.at.fail(StepErrorKind::Sandbox, format!("taking the step's network down: {e}")))?;
    }
    let outcome = outcome?;
    if !matches!(outcome.status, ExitStatus::Exited(0)) {
        return Err(Error::RunFailed {
            file: step.at.file.clone(),
            line: step.at.line,
            instruction: step.at.instruction.clone(),
            status: outcome.status.to_string(),
            output: tail.into_iter().collect(),
        });
    }
    Ok((Some(outcome.cpu_time), outcome.peak_memory))
}

/// The argv of the step, and a script file it runs (name, text). A shell-form command with
/// heredocs hands the shell the command and the bodies, which it reads as here-documents; a
/// command that is only `<<EOF` runs the body as the script, or, when the body starts with
/// `#!`, runs it as a file at `/dev/pipes/EOF`, as BuildKit does.
fn argv(step: &StepCtx<'_>, r: &Run) -> (Vec<String>, Option<(String, String)>) {
    let argv = match &r.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) if r.heredocs.is_empty() => step.image.command_argv(&Command::Shell(s.clone())),
        Command::Shell(s) => {
            let first = &r.heredocs[0];
            let only_heredoc = r.heredocs.len() == 1
                && forge_parser::heredoc::parse_heredoc_word(s.trim()).ok().flatten().is_some_and(|h| h.name == first.name);
            let script = if only_heredoc {
                let body = if first.chomp { forge_parser::heredoc::chomp(&first.content) } else { first.content.clone() };
                if body.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", first.name);
                    return (step.image.command_argv(&Command::Shell(path)), Some((first.name.clone(), body)));
                }
                body
            } else {
                // As BuildKit puts it together: each body on the lines after the command, the
                // last terminator without a newline.
                let mut script = s.clone();
                for h in &r.heredocs {
                    script.push('\n');
                    script.push_str(&h.content);
                    script.push_str(&h.name);
                }
                script
            };
            step.image.command_argv(&Command::Shell(script))
        }
    };
    (argv, None)
}
