//! Detached containers: the monitor process that supervises one (forge re-executed, as conmon
//! or containerd-shim), and what other commands do to it (`stop`, `kill`, `wait`).
//!
//! The monitor holds the container's lock for its whole life, runs the sandbox, writes the log
//! and the state, and applies the restart policy. Its starter reads one line from the
//! monitor's standard output (a pipe): the container started, or why not; the monitor then
//! points its standard streams at `/dev/null` and carries on in a session of its own.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::containers::{Container, Containers, Progress};
use crate::error::{io, Error};
use crate::logs::LogWriter;
use crate::state::{read_json, write_json, State, Status};
use crate::sys::{detach_stdio, kill_if_same, new_session, parse_signal};

/// The monitor's first and only word to its starter.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ready {
    Started { pid: u32 },
    Failed { message: String, code: u8 },
}

/// The FIFO through which an attached client's input reaches a detached container made with
/// `-i`: its monitor reads it, a client's writer opens it (`Containers::open_stdin`).
const STDIN_FIFO: &str = "stdin";

/// Makes the FIFO at `path` afresh (one left by an earlier run may have no reader).
fn make_fifo(path: &std::path::Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", path)(e)),
        _ => {}
    }
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, rustix::fs::Mode::from_raw_mode(0o600), 0).map_err(|e| io("making the input FIFO", path)(e.into()))
}

/// Present while the container was stopped by hand (`stop`, `kill`): no restart policy applies
/// (docker's `HasBeenManuallyStopped`). `start` removes it.
const STOPPED: &str = "stopped";

/// docker's restart back-off: 100 ms, doubled at each restart, reset after 10 s of running.
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
const RAN_LONG: Duration = Duration::from_secs(10);

/// How a program re-executes itself into [`Containers::monitor`]: `program args... ID` (forge's
/// hidden `forge --root STORE container monitor ID`). Made once by the CLI, and handed to
/// `forge serve`, so every starter of a container starts the same monitor.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    /// The executable (absolute: the monitor outlives its starter's working directory).
    pub program: PathBuf,
    /// The arguments before the container's ID.
    pub args: Vec<OsString>,
}

impl MonitorCommand {
    fn command(&self, id: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).arg(id);
        c
    }
}

impl Containers {
    /// Starts `container` under a monitor and returns its init's PID once it runs. `monitor`
    /// re-executes this program into [`Containers::monitor`] for the container's ID (with the
    /// same store); the monitor outlives the caller.
    pub fn start_detached(&self, container: &Container, monitor: &MonitorCommand) -> Result<u32, Error> {
        let id = container.id();
        let mut monitor = monitor.command(id);
        drop(self.lock_stopped(id, "it is already running")?);
        let program = monitor.get_program().to_owned();
        monitor.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = monitor.spawn().map_err(io("starting the container's monitor", program))?;
        let mut line = String::new();
        let _ = BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
        match serde_json::from_str::<Ready>(&line) {
            // Not waited for: it runs on, and init adopts it when this process ends.
            Ok(Ready::Started { pid }) => Ok(pid),
            Ok(Ready::Failed { message, code }) => {
                let _ = child.wait();
                Err(match code {
                    126 | 127 => Error::Exec { message, not_found: code == 127 },
                    _ => Error::Monitor(message),
                })
            }
            Err(_) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(Error::Monitor(format!("the container's monitor ended before starting it ({status})")))
            }
        }
    }

    /// The monitor's work, in a process whose standard output is the pipe
    /// [`Containers::start_detached`] reads: runs the container, restarting it as its policy
    /// says, and removes it at the end if it was made with `--rm`.
    pub fn monitor(&self, id: &str) -> Result<(), Error> {
        new_session();
        // Nor does it keep its starter's working directory (a mount someone may unmount) busy.
        let _ = std::env::set_current_dir("/");
        let mut starter = Some(std::io::stdout());
        let result = self.supervise(id, &mut starter);
        if let (Some(out), Err(e)) = (starter.take(), &result) {
            tell(out, &Ready::Failed { message: e.to_string(), code: e.exit_code() });
        }
        result
    }

    fn supervise(&self, id: &str, starter: &mut Option<std::io::Stdout>) -> Result<(), Error> {
        let lock = self.lock_stopped(id, "it is already running")?;
        let config: Config = read_json(&self.path(id).join("config.json"))?;
        let stopped = self.path(id).join(STOPPED);
        match fs::remove_file(&stopped) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io("removing", &stopped)(e)),
            _ => {}
        }
        let mut log = LogWriter::open(&self.log_path(id))?;
        let mut log_failed = None;
        let mut delay = FIRST_DELAY;
        let fifo = self.path(id).join(STDIN_FIFO);
        // `-i`: each run's input, held open so that it stays open until the command exits
        // (`run -di IMAGE sh` keeps running), goes to the thread that feeds it from the FIFO.
        let runs = match config.open_stdin {
            true => {
                make_fifo(&fifo)?;
                let (tx, rx) = mpsc::channel();
                let (fifo, once) = (fifo.clone(), config.stdin_once);
                // Not joined: it waits for clients for as long as the container may run, and
                // ends with this process.
                std::thread::spawn(move || feed_stdin(&fifo, once, &rx));
                Some(tx)
            }
            false => None,
        };
        loop {
            let began = Instant::now();
            let mut init = 0;
            let mut progress = |p: Progress| match p {
                Progress::Started(pid) => init = pid,
                // Only now: a command that cannot be executed fails `run -d` itself (126/127).
                Progress::Executed => {
                    if let Some(out) = starter.take() {
                        tell(out, &Ready::Started { pid: init });
                        // Nobody reads them any more; errors from now on go to the state.
                        let _ = detach_stdio();
                    }
                }
                Progress::Stdin(s) => {
                    if let Some(runs) = &runs {
                        let _ = runs.send(s);
                    }
                }
                // The monitor's own copy is recorded in the state, for `resize`.
                Progress::Terminal(_) => {}
            };
            let mut output = |stream, bytes: &[u8]| {
                if let Err(e) = log.write(stream, bytes) {
                    log_failed.get_or_insert(e);
                }
            };
            let (state, ran) = self.run_once(&config, forge_sandbox::Output::Lines, &mut output, &mut progress);
            if let Err(e) = log.flush() {
                log_failed.get_or_insert(e);
            }
            let mut state = state?;
            match ran {
                // Before it ever ran: `run -d` fails with it (an exec failure too, 126/127).
                Err(e) if starter.is_some() => return Err(e),
                // Later, an exec failure is an exit (126/127) the policy judges, as docker's.
                Ok(()) | Err(Error::Exec { .. }) => {}
                Err(_) => break,
            }
            // It ran and ended before its executed command was seen to: it did run.
            if let Some(out) = starter.take() {
                tell(out, &Ready::Started { pid: init });
                let _ = detach_stdio();
            }
            if stopped.exists() || !config.restart.restarts(state.exit_code, state.restart_count) {
                break;
            }
            if began.elapsed() >= RAN_LONG {
                delay = FIRST_DELAY;
            }
            // In slices, so a `stop` during a long back-off ends it at once.
            let until = Instant::now() + delay;
            while !stopped.exists() && Instant::now() < until {
                std::thread::sleep(FIRST_DELAY.min(until.saturating_duration_since(Instant::now())));
            }
            delay = (delay * 2).min(MAX_DELAY);
            if stopped.exists() {
                break;
            }
            state.restart_count += 1;
            write_json(&self.path(id).join("state.json"), &state)?;
        }
        if config.auto_remove {
            self.remove_auto(&config, lock)?;
        }
        match log_failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops a running container as `docker stop` does: `signal` (else its stop signal), then
    /// SIGKILL after `timeout` seconds (else its `--stop-timeout`, else 10); returns once its
    /// monitor let go. Its restart policy no longer applies until it is started again. A
    /// container that is not running is left as it is.
    pub fn stop(&self, container: &Container, signal: Option<&str>, timeout: Option<u32>) -> Result<(), Error> {
        let id = container.id();
        let sig = parse_signal(signal.unwrap_or(&container.config.stop_signal))?;
        if let Some(lock) = self.try_lock(id)? {
            drop(lock);
            return Ok(());
        }
        if !self.path(id).exists() {
            return Ok(());
        }
        self.mark_stopped(id)?;
        self.signal_init(id, sig)?;
        let wait = Duration::from_secs(timeout.or(container.config.stop_timeout).unwrap_or(10).into());
        self.event(id, "kill", &[("signal", (sig as i32).to_string())]);
        std::thread::scope(|s| -> Result<(), Error> {
            let (tx, rx) = mpsc::channel();
            s.spawn(move || {
                let _ = tx.send(self.lock(id).map(drop));
            });
            match rx.recv_timeout(wait) {
                Ok(r) => r,
                Err(_) => {
                    self.signal_init(id, Signal::SIGKILL)?;
                    self.event(id, "kill", &[("signal", (Signal::SIGKILL as i32).to_string())]);
                    rx.recv().unwrap_or(Ok(()))
                }
            }
        })?;
        self.event(id, "stop", &[]);
        Ok(())
    }

    /// Sends `signal` to a running container (`docker kill`); SIGKILL or its stop signal also
    /// keep its restart policy from restarting it.
    pub fn kill(&self, container: &Container, signal: &str) -> Result<(), Error> {
        let id = container.id();
        let sig = parse_signal(signal)?;
        let state: State = read_json(&self.path(id).join("state.json"))?;
        if state.status != Status::Running {
            return Err(Error::WrongStatus { id: id.into(), status: state.status, what: "only a running container can be killed" });
        }
        if sig == Signal::SIGKILL || parse_signal(&container.config.stop_signal).is_ok_and(|s| s == sig) {
            self.mark_stopped(id)?;
        }
        self.signal_init(id, sig)?;
        self.event(id, "kill", &[("signal", (sig as i32).to_string())]);
        Ok(())
    }

    /// Waits until nobody supervises the container any more (`docker wait`) and returns its
    /// state; at once for one that does not run.
    pub fn wait(&self, container: &Container) -> Result<State, Error> {
        let id = container.id();
        // Removed (`--rm`) once it ended: its records are gone.
        let _lock = self.lock(id)?.ok_or_else(|| Error::NotFound(id.into()))?;
        read_json(&self.path(id).join("state.json"))
    }

    /// The writing end of a running container's standard input (made with `-i`), for an
    /// attached client, once its command runs; waits for its start (a client attaches before it
    /// starts, as `docker run -i`). `None` when it ended, or `cancelled` said so, first. Made
    /// with `stdin_once` (docker's `StdinOnce`), the first writer's end of input is the
    /// command's; else any number of writers feed it, in turn or together.
    pub fn open_stdin(&self, container: &Container, cancelled: &dyn Fn() -> bool) -> Result<Option<fs::File>, Error> {
        let id = container.id();
        if !container.config.open_stdin {
            return Err(Error::Invalid { what: "attach", value: id.into(), reason: "its standard input is closed: it was not made with -i".into() });
        }
        let fifo = self.path(id).join(STDIN_FIFO);
        let first = container.state.started_at.clone();
        loop {
            // Non-blocking: with no reader (not started yet, or ended) the open fails at once.
            match fs::File::options().write(true).custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32).open(&fifo) {
                Ok(file) => {
                    let fd = std::os::fd::AsFd::as_fd(&file);
                    let flags = rustix::fs::fcntl_getfl(fd).map_err(|e| io("opening", &fifo)(e.into()))?;
                    rustix::fs::fcntl_setfl(fd, flags - rustix::fs::OFlags::NONBLOCK).map_err(|e| io("opening", &fifo)(e.into()))?;
                    return Ok(Some(file));
                }
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) || e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("opening", &fifo)(e)),
            }
            let state: Option<State> = read_json(&self.path(id).join("state.json")).ok();
            let ended = state.as_ref().is_none_or(|s| s.status != Status::Running && s.started_at != first);
            if ended || cancelled() {
                return Ok(None);
            }
            std::thread::sleep(crate::logs::POLL);
        }
    }

    pub(crate) fn mark_stopped(&self, id: &str) -> Result<(), Error> {
        let path = self.path(id).join(STOPPED);
        fs::write(&path, b"").map_err(io("marking the container stopped", &path))
    }

    /// Signals the container's init (which passes SIGTERM and friends on to the command; a
    /// SIGKILL ends every process of the container).
    fn signal_init(&self, id: &str, sig: Signal) -> Result<(), Error> {
        let state: State = read_json(&self.path(id).join("state.json"))?;
        if state.status == Status::Running {
            kill_if_same(state.pid, state.pid_start, sig);
        }
        Ok(())
    }
}

/// Copies what attached clients write into the FIFO at `fifo` to the input of the container's
/// current run, the latest of `runs` (one thread for the monitor's life, so no thread of a run
/// that ended reads input meant for the next). Input that comes before a run takes it waits
/// for one; what a run that ended could not take goes to the next.
///
/// `once` (docker's `StdinOnce`): the FIFO is opened for reading only, so it ends when every
/// client that had it open closed it, and that ends the command's input. Else it is opened for
/// writing too (Linux allows it on a FIFO): it never ends, clients come and go, and each one's
/// input goes on to the command, as docker's attach gives when `StdinOnce` is off.
fn feed_stdin(fifo: &std::path::Path, once: bool, runs: &mpsc::Receiver<fs::File>) {
    use std::io::Read;
    let mut current: Option<fs::File> = None;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok(mut from) = fs::File::options().read(true).write(!once).open(fifo) else { return };
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            loop {
                let Some(to) = current.as_mut() else {
                    match runs.recv() {
                        Ok(next) => current = Some(next),
                        Err(_) => return,
                    }
                    continue;
                };
                match to.write_all(&buf[..n]) {
                    Ok(()) => break,
                    // Its run ended.
                    Err(_) => current = None,
                }
            }
        }
        // Every client is gone (`once`): the end of the input of the run that has it, or else
        // of the next one.
        let mut ended = current.take().is_some();
        while runs.try_recv().is_ok() {
            ended = true;
        }
        if !ended && runs.recv().is_err() {
            return;
        }
    }
}

fn tell(mut out: std::io::Stdout, ready: &Ready) {
    let line = serde_json::to_string(ready).expect("plain data serializes");
    // The starter may have gone (killed): the container runs on regardless.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
