//! `exec`: a second command in a running container, in its namespaces, root and cgroups, with
//! its environment, user and working directory unless told otherwise, and the same
//! capabilities and seccomp filter as its command.

use forge_sandbox::{Event, ExitStatus, Stream};

use crate::containers::{Container, Containers};
use crate::error::Error;
use crate::state::{read_json, State, Status};
use crate::sys::{start_time, SignalProxy};

/// What `exec` runs; unset fields come from the container.
#[derive(Default)]
pub struct ExecOptions {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// `-e` entries, `KEY=VALUE`: override the container's by key.
    pub env: Vec<String>,
    /// `-u`.
    pub user: Option<String>,
    /// `-w`.
    pub working_dir: Option<String>,
    /// `-i`: `input` is copied to its standard input until it ends.
    pub input: Option<Box<dyn std::io::Read + Send>>,
    /// `-t`: a terminal.
    pub tty: bool,
    /// The terminal's rows and columns (default: those of this process's own terminal).
    pub tty_size: Option<[u16; 2]>,
    /// With `tty`: given the terminal's master side once the command starts, to resize it
    /// ([`resize_terminal`](crate::resize_terminal)) while it runs.
    pub on_terminal: Option<Box<dyn FnOnce(std::fs::File) + Send>>,
}

impl std::fmt::Debug for ExecOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecOptions")
            .field("cmd", &self.cmd)
            .field("env", &self.env)
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .field("input", &self.input.is_some())
            .field("tty", &self.tty)
            .field("tty_size", &self.tty_size)
            .field("on_terminal", &self.on_terminal.is_some())
            .finish()
    }
}

impl Containers {
    /// Runs `opts.cmd` in the running `container` and waits for it, its output to `output`
    /// and the signals `proxy` receives to it. Returns its exit code (128 + signal when killed);
    /// 126/127 come back as [`Error::Exec`], as from `run`.
    pub fn exec(&self, container: &Container, opts: ExecOptions, output: &mut dyn FnMut(Stream, &[u8]), proxy: Option<&SignalProxy>) -> Result<i32, Error> {
        let id = container.id();
        let state: State = read_json(&self.path(id).join("state.json"))?;
        if state.status != Status::Running || state.pid == 0 || start_time(state.pid) != Some(state.pid_start) {
            return Err(Error::WrongStatus { id: id.into(), status: Status::Exited, what: "exec needs a running container" });
        }
        if opts.cmd.is_empty() {
            return Err(Error::NoCommand);
        }
        let config = &container.config;
        // Joining would need its user namespace too; without it the command would run as the
        // host's root, so it is refused rather than run so.
        if config.userns.is_some() {
            return Err(Error::Invalid { what: "exec", value: id.into(), reason: "exec into a container with --userns=remap is not supported yet".into() });
        }
        let mut spec = self.spec(config, forge_sandbox::Output::Raw)?;
        spec.argv = opts.cmd.clone();
        for kv in &opts.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            spec.env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            spec.env.push(kv.clone());
        }
        if let Some(user) = &opts.user {
            spec.user = user.clone();
        }
        match opts.working_dir.as_deref() {
            Some(w) if !w.starts_with('/') => {
                return Err(Error::Invalid { what: "working directory", value: w.into(), reason: "it must be an absolute path".into() });
            }
            Some(w) => spec.cwd = w.into(),
            None => {}
        }
        spec.enter = Some(state.pid);
        spec.stdin = opts.input.is_some();
        spec.tty = opts.tty.then(|| opts.tty_size.unwrap_or_else(crate::sys::terminal_size));
        let (mut input, mut on_terminal) = (opts.input, opts.on_terminal);
        let ran = forge_sandbox::run_observed(&spec, &forge_sandbox::Cancel::new(), &mut |event| match event {
            Event::Terminal(master) => {
                if let (Some(p), Ok(copy)) = (proxy, master.try_clone()) {
                    p.set_terminal(copy);
                }
                if let Some(give) = on_terminal.take() {
                    give(master);
                }
            }
            Event::Started { pid } => {
                if let Some(p) = proxy {
                    p.set_target(pid);
                }
            }
            Event::Output(stream, bytes) => output(stream, bytes),
            Event::Stdin(mut stdin) => {
                if let Some(mut from) = input.take() {
                    // Not joined: it may block reading forge's input after the command ended,
                    // and ends with this process.
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut stdin);
                    });
                }
            }
            _ => {}
        });
        if let Some(p) = proxy {
            p.finished();
        }
        match ran {
            Ok(outcome) => Ok(match outcome.status {
                ExitStatus::Exited(c) => c,
                ExitStatus::Signaled(s) => 128 + s,
                ExitStatus::OomKilled { .. } => 137,
            }),
            Err(forge_sandbox::Error::Exec { message, not_found }) => Err(Error::Exec { message, not_found }),
            Err(source) => Err(Error::Sandbox { what: "exec in container", id: id.into(), source }),
        }
    }
}
