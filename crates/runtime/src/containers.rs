//! The containers of a store: create, find, run in the foreground, remove, prune, and
//! reconcile what a dead forge left.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use forge_layerstore::snapshot::Error as SnapshotError;
use forge_layerstore::Store;
use forge_sandbox::{Event, ExitStatus, RunSpec, Stream};

use crate::config::{resolve, Config, CreateOptions};
use crate::error::{io, Error};
use crate::state::{now, read_json, write_json, State, Status};
use crate::sys::{kill_if_same, parse_signal, start_time, SignalProxy};

/// How long [`Containers::lock_stopped`] waits for a holder of a container's lock that is not
/// its supervisor (a `cp` into it, say) before it says the container is busy.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// How a run goes, as [`Containers::run_once`] tells its caller.
pub(crate) enum Progress {
    /// Its init runs, with this PID (recorded in the state already).
    Started(u32),
    /// Its command was executed.
    Executed,
    /// Its standard input, with `-i` (its terminal's with `-t`).
    Stdin(std::fs::File),
    /// Its terminal's master side, with `-t` (a copy: the supervisor keeps its own).
    Terminal(std::fs::File),
}

/// A container as recorded: its configuration and its state.
#[derive(Debug, Clone)]
pub struct Container {
    /// What was asked (fixed at create).
    pub config: Config,
    /// What it is doing.
    pub state: State,
}

impl Container {
    /// The full ID.
    pub fn id(&self) -> &str {
        &self.config.id
    }

    /// The 12-character ID docker shows.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }
}

/// The containers of one store (`<store>/forge/containers/`).
#[derive(Debug)]
pub struct Containers {
    store: Store,
    dir: PathBuf,
    names: PathBuf,
}

/// An exclusive `flock` on a container's `lock` file: held by whoever changes its state, and
/// by the forge process supervising it for as long as it runs.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

impl Containers {
    /// The containers of `store`.
    pub fn open(store: &Store) -> Result<Containers, Error> {
        let root = store.root().join("forge");
        let (dir, names) = (root.join("containers"), root.join("container-names"));
        for d in [&dir, &names] {
            fs::create_dir_all(d).map_err(io("creating", d))?;
        }
        // What a killed forge left of a container's network (at any point of its set-up) goes
        // with the next container command.
        crate::network::reconcile(store.root());
        Ok(Containers { store: store.clone(), dir, names })
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The directory of every container's records.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Creates a container of `opts.image`: its records, then its writable layer, a snapshot
    /// on the image's layers that gc keeps until the container is removed.
    pub fn create(&self, opts: &CreateOptions) -> Result<Container, Error> {
        let image = self.store.image(&opts.image).map_err(|source| Error::Image { reference: opts.image.clone(), source })?;
        // The image's VOLUMEs that no mount covers become anonymous volumes, as docker makes
        // them; an anonymous volume (`-v /path`) gets its name now, a random one as docker's.
        let mut opts = opts.clone();
        let same = |a: &str, b: &str| a.trim_end_matches('/') == b.trim_end_matches('/');
        for path in image.config.config.volumes.iter().flatten().map(|(p, _)| p) {
            if !opts.mounts.iter().any(|m| same(&m.target, path)) {
                opts.mounts.push(crate::MountSpec { source: crate::MountSource::Volume { name: String::new(), nocopy: false }, target: path.clone(), read_only: false });
            }
        }
        let mut anonymous = Vec::new();
        for m in &mut opts.mounts {
            if let crate::MountSource::Volume { name, .. } = &mut m.source {
                if name.is_empty() {
                    *name = new_id()?;
                    anonymous.push(name.clone());
                }
            }
        }
        let opts = &opts;
        let layers = image.layers().map_err(|source| Error::Image { reference: opts.image.clone(), source })?;
        let process = resolve(&image.config.config, opts)?;
        crate::resources::check_limits(&opts.limits)?;
        forge_sandbox::check_limits_possible(&opts.limits).map_err(Error::LimitsUnavailable)?;
        crate::volumes::check_mounts(&opts.mounts)?;
        if opts.auto_remove && opts.restart != crate::config::RestartPolicy::No {
            return Err(Error::Invalid { what: "restart policy", value: opts.restart.name().into(), reason: "--rm and a restart policy conflict, as in docker".into() });
        }
        if let Some(sig) = &opts.stop_signal {
            parse_signal(sig)?;
        }
        if let Some(name) = &opts.name {
            validate_name(name)?;
        }
        let id = new_id()?;
        // Volumes are taken under their lock, held until the records name them, so a
        // `volume rm` either sees this container or removes the volume before it is taken.
        let volumes = crate::volumes::Volumes::open(&self.store)?;
        let _volumes_lock = if opts.mounts.iter().any(|m| matches!(m.source, crate::MountSource::Volume { .. })) { Some(volumes.lock()?) } else { None };
        let mut new_volumes = Vec::new();
        let mut made_volumes = Vec::new();
        for m in &opts.mounts {
            if let crate::MountSource::Volume { name, nocopy } = &m.source {
                let v = match volumes.get(name) {
                    Ok(v) => v,
                    Err(Error::NoSuchVolume(_)) => {
                        let v = volumes.create_locked(Some(name), anonymous.contains(name), Default::default())?;
                        made_volumes.push(v.mountpoint.clone());
                        v
                    }
                    Err(e) => return Err(e),
                };
                if !nocopy {
                    new_volumes.push((m.target.clone(), v.mountpoint));
                }
            }
        }
        // Records first, then the name: a name whose holder has no records is then surely free.
        let config = self.create_records(opts, &image, &id, process)?;
        let created = match &opts.name {
            Some(name) => self.reserve_name(name, &id),
            None => Ok(()),
        };
        let created = created.and_then(|()| {
            // The lease keeps gc off the layers between their unpacking and the snapshot's
            // record, which then holds them.
            let _lease = self.store.lease("create", &[]).map_err(|source| Error::Store { what: "taking a lease", source })?;
            let chain = self.store.unpack(&layers).map_err(|source| Error::Store { what: "unpacking the image's layers", source })?;
            self.store
                .snapshots()
                .prepare_held(&config.snapshot, chain.as_ref(), &format!("container {id}"))
                .map_err(|source| Error::Snapshot { what: "preparing the container's writable layer", source })?;
            if !new_volumes.is_empty() {
                let dirs = self.store.snapshots().dirs(&config.snapshot).map_err(|source| Error::Snapshot { what: "finding the container's layers", source })?;
                let scratch = self.store.tmp_dir().map_err(|source| Error::Store { what: "making scratch space", source })?;
                for (target, data) in &new_volumes {
                    crate::volumes::copy_up(&dirs.lowerdirs, target, data, &scratch)?;
                }
            }
            // A remapped container's new volumes belong to its root, as docker's do.
            if let Some(map) = &config.userns {
                for data in &made_volumes {
                    crate::userns::shift_owners(data, map)?;
                }
            }
            Ok(())
        });
        match created {
            Ok(()) => Ok(Container { config, state: State::created() }),
            Err(e) => {
                let _ = self.remove_records(&id, opts.name.as_deref());
                Err(e)
            }
        }
    }

    fn create_records(&self, opts: &CreateOptions, image: &forge_layerstore::Image, id: &str, process: crate::config::Process) -> Result<Config, Error> {
        let layers = image.layers().map_err(|source| Error::Image { reference: opts.image.clone(), source })?;
        let chain = forge_layerstore::chain_id(layers.iter().map(|l| &l.diff_id));
        let userns = crate::userns::resolve(opts.userns, self.store.root(), &opts.network, opts.security.privileged)?;
        let config = Config {
            id: id.to_string(),
            name: opts.name.clone(),
            image: opts.image.clone(),
            image_digest: image.descriptor.digest().to_string(),
            chain_id: chain.map(|c| c.to_string()),
            snapshot: format!("container-{id}"),
            created: now(),
            args: process.args,
            env: process.env,
            working_dir: process.working_dir,
            user: process.user,
            hostname: opts.hostname.clone().unwrap_or_else(|| id[..12].to_string()),
            network: opts.network.clone(),
            auto_remove: opts.auto_remove,
            ip: opts.ip,
            dns: opts.dns.clone(),
            add_hosts: opts.add_hosts.clone(),
            ports: crate::config::ports(&image.config.config, opts)?,
            aliases: opts.aliases.clone(),
            limits: opts.limits.clone(),
            security: opts.security.clone(),
            seccomp: opts.seccomp,
            mounts: opts.mounts.clone(),
            read_only: opts.read_only,
            restart: opts.restart,
            stop_signal: opts.stop_signal.clone().or_else(|| image.config.config.stop_signal.clone()).unwrap_or_else(|| "SIGTERM".into()),
            stop_timeout: opts.stop_timeout,
            labels: image
                .config
                .config
                .labels
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(opts.labels.iter().map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (l.clone(), String::new()),
                }))
                .collect(),
            open_stdin: opts.interactive,
            stdin_once: opts.interactive && opts.stdin_once,
            tty: opts.tty,
            userns,
        };
        // Made whole under a temporary name, then renamed: a listing never sees half a container.
        let new = self.dir.join(format!(".new-{id}"));
        fs::create_dir(&new).map_err(io("creating", &new))?;
        let made = write_json(&new.join("config.json"), &config)
            .and_then(|()| write_json(&new.join("state.json"), &State::created()))
            .and_then(|()| File::create(new.join("lock")).map(drop).map_err(io("creating", new.join("lock"))))
            .and_then(|()| fs::rename(&new, self.path(id)).map_err(io("renaming into place", &new)));
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&new);
            return Err(e);
        }
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("syncing", &self.dir))?;
        self.event(id, "create", &[]);
        Ok(config)
    }

    /// Takes `name` for `id`. The name's file holds its container's ID and is rewritten only
    /// under its own `flock`, so two creates cannot both take it; a holder without records
    /// (removed, or its create failed) no longer holds it.
    fn reserve_name(&self, name: &str, id: &str) -> Result<(), Error> {
        use std::io::{Read, Seek, Write};
        let mut file = self.lock_name(name)?;
        let path = self.names.join(name);
        let mut holder = String::new();
        file.read_to_string(&mut holder).map_err(io("reading", &path))?;
        if !holder.is_empty() && holder != id && self.path(&holder).join("config.json").exists() {
            return Err(Error::NameInUse { name: name.into(), id: holder });
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(id.as_bytes()))
            .and_then(|()| file.sync_all())
            .map_err(io("reserving the name", &path))
    }

    /// docker's `rename`: `container` is known by `new` from now on (which must be free), and
    /// its old name is freed. The hosts files its networks wrote when it attached are not
    /// rewritten.
    pub fn rename(&self, container: &Container, new: &str) -> Result<(), Error> {
        validate_name(new)?;
        let id = container.id();
        self.reserve_name(new, id)?;
        let path = self.path(id).join("config.json");
        let renamed = read_json::<Config>(&path).and_then(|mut config| {
            let old = config.name.replace(new.to_string());
            write_json(&path, &config).map(|()| old)
        });
        match renamed {
            Ok(Some(old)) if old != new => self.free_name(&old, id),
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.free_name(new, id);
                Err(e)
            }
        }
    }

    /// Frees `name` if `id` holds it.
    fn free_name(&self, name: &str, id: &str) -> Result<(), Error> {
        let path = self.names.join(name);
        if !path.exists() {
            return Ok(());
        }
        let _locked = self.lock_name(name)?;
        // Removed while locked: a waiter finds the file it locked gone and opens a new one.
        if fs::read_to_string(&path).is_ok_and(|holder| holder == id) {
            fs::remove_file(&path).map_err(io("freeing the name", &path))?;
        }
        Ok(())
    }

    /// The name's file, created if missing and locked; retried when it was removed between
    /// opening and locking.
    fn lock_name(&self, name: &str) -> Result<File, Error> {
        use std::os::unix::fs::MetadataExt;
        let path = self.names.join(name);
        loop {
            let file = File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io("opening", &path))?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|e| io("locking", &path)(e.into()))?;
            let ours = file.metadata().map_err(io("reading", &path))?;
            match fs::metadata(&path) {
                Ok(there) if (there.dev(), there.ino()) == (ours.dev(), ours.ino()) => return Ok(file),
                _ => continue,
            }
        }
    }

    /// The container with this full ID, name or unique ID prefix, reconciled.
    pub fn get(&self, id_or_name: &str) -> Result<Container, Error> {
        let id = self.lookup(id_or_name)?;
        self.load(&id)?.ok_or_else(|| Error::NotFound(id_or_name.into()))
    }

    fn lookup(&self, key: &str) -> Result<String, Error> {
        if is_id(key) && self.path(key).is_dir() {
            return Ok(key.to_string());
        }
        if validate_name(key).is_ok() {
            if let Ok(id) = fs::read_to_string(self.names.join(key)) {
                if is_id(&id) && self.path(&id).is_dir() {
                    return Ok(id);
                }
            }
        }
        let key = key.to_ascii_lowercase();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::NotFound(key));
        }
        let matching: Vec<String> = self.ids()?.into_iter().filter(|id| id.starts_with(&key)).collect();
        match matching.len() {
            0 => Err(Error::NotFound(key)),
            1 => Ok(matching.into_iter().next().expect("one")),
            _ => Err(Error::Ambiguous(key)),
        }
    }

    fn ids(&self) -> Result<Vec<String>, Error> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("listing", &self.dir))? {
            let name = entry.map_err(io("listing", &self.dir))?.file_name().to_string_lossy().into_owned();
            if is_id(&name) {
                ids.push(name);
            }
        }
        Ok(ids)
    }

    /// Every container, oldest first, reconciled.
    pub fn list(&self) -> Result<Vec<Container>, Error> {
        let mut out = Vec::new();
        for id in self.ids()? {
            // Removed since the listing.
            if let Some(c) = self.load(&id)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.config.created.cmp(&b.config.created));
        Ok(out)
    }

    /// Reads a container; one recorded as running whose supervisor is gone is recorded as
    /// exited first, and removed if it was made with `--rm` (its supervisor would have).
    /// `None` when it was removed.
    pub(crate) fn load(&self, id: &str) -> Result<Option<Container>, Error> {
        let dir = self.path(id);
        let config: Config = match read_json(&dir.join("config.json")) {
            Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        let mut state: State = read_json(&dir.join("state.json"))?;
        if state.status == Status::Running {
            // A live supervisor holds the lock for as long as the container runs.
            if let Some(lock) = self.try_lock(id)? {
                state = read_json(&dir.join("state.json"))?;
                if state.status == Status::Running {
                    self.record_lost(id, &mut state)?;
                    if config.auto_remove {
                        self.remove_auto(&config, lock)?;
                        return Ok(None);
                    }
                }
            }
        }
        if state.status == Status::Running {
            state.paused = crate::resources::is_paused(&state);
        }
        Ok(Some(Container { config, state }))
    }

    /// Records a running container whose supervisor died as exited (the caller holds its lock).
    pub(crate) fn record_lost(&self, id: &str, state: &mut State) -> Result<(), Error> {
        // Its init dies with the supervisor; this is for an init that somehow outlived it.
        kill_if_same(state.pid, state.pid_start, nix::sys::signal::Signal::SIGKILL);
        // The cgroup the dead supervisor's sandbox made, and its network namespace, veth
        // pair and lease.
        let _ = forge_sandbox::remove_leftovers();
        crate::network::reconcile(self.store.root());
        state.status = Status::Exited;
        state.exit_code = 255;
        state.finished_at = now();
        state.error = format!("the forge process {} that ran it is gone; its exit code is unknown", state.supervisor);
        state.pid = 0;
        write_json(&self.path(id).join("state.json"), state)?;
        self.event(id, "die", &[("exitCode", state.exit_code.to_string())]);
        Ok(())
    }

    pub(crate) fn try_lock(&self, id: &str) -> Result<Option<Lock>, Error> {
        self.lock_with(id, rustix::fs::FlockOperation::NonBlockingLockExclusive)
    }

    /// The lock of container `id`, which must not be running: `what` says why in the error
    /// when it runs (its supervisor holds the lock for as long as it does).
    ///
    /// Anyone else holds it for a while at most, and is waited for: a forge command at work on
    /// the container (a `cp`), or a child that another thread of this process (`forge serve`)
    /// spawned meanwhile, whose copy of the descriptor lives until it executes its program.
    /// Taken for a supervisor, such a holder made `docker-compose up` fail now and then with
    /// "it is already running". A holder still there after [`BUSY_WAIT`] is reported as busy.
    pub(crate) fn lock_stopped(&self, id: &str, what: &'static str) -> Result<Lock, Error> {
        let deadline = Instant::now() + BUSY_WAIT;
        loop {
            if let Some(lock) = self.try_lock(id)? {
                return Ok(lock);
            }
            let state: State = match read_json(&self.path(id).join("state.json")) {
                Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => return Err(Error::NotFound(id.into())),
                other => other?,
            };
            if state.status == Status::Running {
                return Err(Error::WrongStatus { id: id.into(), status: Status::Running, what });
            }
            if Instant::now() >= deadline {
                return Err(Error::WrongStatus { id: id.into(), status: state.status, what: "another forge command is using it; try again" });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub(crate) fn lock(&self, id: &str) -> Result<Option<Lock>, Error> {
        self.lock_with(id, rustix::fs::FlockOperation::LockExclusive)
    }

    /// `Ok(None)`: held by another process (non-blocking) or the container is gone.
    fn lock_with(&self, id: &str, op: rustix::fs::FlockOperation) -> Result<Option<Lock>, Error> {
        let path = self.path(id).join("lock");
        let file = match File::open(&path) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            other => other.map_err(io("opening", &path))?,
        };
        match rustix::fs::flock(&file, op) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(io("locking", &path)(e.into())),
        }
        // Removed while we waited: the lock was on the removed container's file.
        if !self.path(id).join("config.json").exists() {
            return Ok(None);
        }
        Ok(Some(Lock { _file: file }))
    }

    /// Starts `container` and waits for it in the foreground: its output goes to `output` as
    /// it comes, the signals `proxy` receives go to it, and its state is recorded as it starts
    /// and ends (and it is removed afterwards when it was created with `--rm`). Returns its
    /// final state.
    /// With `-i` (its config's `open_stdin`), `input` is copied to the container's standard
    /// input until it ends.
    pub fn run_foreground(
        &self,
        container: &Container,
        input: Option<Box<dyn std::io::Read + Send>>,
        output: &mut dyn FnMut(Stream, &[u8]),
        proxy: Option<&SignalProxy>,
    ) -> Result<State, Error> {
        let id = container.id().to_string();
        let lock = self.lock_stopped(&id, "it can be started again once it exits")?;
        let config = container.config.clone();
        // Logged as a detached container's output is, for `logs`. The caller gets every byte
        // either way: a log that cannot be written costs only the log.
        let mut log = crate::logs::LogWriter::open(&self.log_path(&id)).ok();
        let mut tee = |stream, bytes: &[u8]| {
            output(stream, bytes);
            if let Some(l) = &mut log {
                let _ = l.write(stream, bytes);
            }
        };
        let mut input = input;
        let mut progress = |p: Progress| match p {
            Progress::Started(pid) => {
                if let Some(p) = proxy {
                    p.set_target(pid);
                }
            }
            Progress::Stdin(mut stdin) => {
                if let Some(mut from) = input.take() {
                    // Not joined: it may block reading forge's input long after the container
                    // ended, and ends with this process.
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut stdin);
                    });
                }
            }
            Progress::Terminal(master) => {
                if let Some(p) = proxy {
                    p.set_terminal(master);
                }
            }
            Progress::Executed => {}
        };
        let (state, result) = self.run_once(&config, forge_sandbox::Output::Raw, &mut tee, &mut progress);
        if let Some(l) = &mut log {
            let _ = l.flush();
        }
        if let Some(p) = proxy {
            p.finished();
        }
        let state = state?;
        if config.auto_remove {
            self.remove_auto(&config, lock)?;
        } else {
            drop(lock);
        }
        result.map(|()| state)
    }

    /// Runs the container once, its lock held by the caller: records it running (telling
    /// `started` its init's PID), passes its output on, records how it ended. The first
    /// result is whether the records could be written (with the final state), the second
    /// whether it could run.
    pub(crate) fn run_once(
        &self,
        config: &Config,
        mode: forge_sandbox::Output,
        output: &mut dyn FnMut(Stream, &[u8]),
        progress: &mut dyn FnMut(Progress),
    ) -> (Result<State, Error>, Result<(), Error>) {
        let id = config.id.clone();
        let state_path = self.path(&id).join("state.json");
        let mut state: State = match read_json(&state_path) {
            Ok(s) => s,
            Err(e) => return (Err(e), Ok(())),
        };
        if state.status == Status::Running {
            if let Err(e) = self.record_lost(&id, &mut state) {
                return (Err(e), Ok(()));
            }
        }
        // Set up for each run (a restarted container gets it again), taken down after it.
        let network = match crate::network::start(self, self.store.root(), &self.path(&id), config) {
            Ok(n) => n,
            Err(e) => return (Ok(state), Err(e)),
        };
        let mut spec = match self.spec(config, mode) {
            Ok(spec) => spec,
            Err(e) => return (Ok(state), Err(e)),
        };
        spec.network = network.network.clone();
        // Before the container's own mounts: a volume or bind over /etc covers these files.
        spec.mounts.splice(0..0, network.mounts.iter().cloned());
        let restart_count = state.restart_count;
        let mut recorded = Ok(());
        // Held open while it runs: its number is in the state, for `resize`.
        let mut terminal: Option<std::fs::File> = None;
        let mut not_connected = Vec::new();
        let ran = forge_sandbox::run_observed(&spec, &forge_sandbox::Cancel::new(), &mut |event| match event {
            Event::Terminal(master) => {
                if let Ok(copy) = master.try_clone() {
                    progress(Progress::Terminal(copy));
                }
                terminal = Some(master);
            }
            // Before its command starts (which waits meanwhile), as docker attaches networks.
            // Best effort: a network removed since it was connected costs that network, not
            // the run (the error is in the state, for inspect).
            Event::Namespaces { pid } => not_connected = self.connect_recorded(config, pid, start_time(pid).unwrap_or(0)),
            Event::Started { pid } => {
                state = State {
                    status: Status::Running,
                    pid,
                    pid_start: start_time(pid).unwrap_or(0),
                    supervisor: std::process::id(),
                    started_at: now(),
                    cgroup: forge_sandbox::ControlGroup::of_process(pid).map(|c| c.paths().to_vec()).unwrap_or_default(),
                    restart_count,
                    terminal_fd: terminal.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
                    ..State::created()
                };
                if !not_connected.is_empty() {
                    state.error = not_connected.iter().map(Error::to_string).collect::<Vec<_>>().join("; ");
                }
                recorded = write_json(&state_path, &state);
                self.event(&id, "start", &[]);
                progress(Progress::Started(pid));
            }
            Event::Executed => progress(Progress::Executed),
            Event::Output(stream, bytes) => output(stream, bytes),
            Event::Stdin(stdin) => progress(Progress::Stdin(stdin)),
            _ => {}
        });
        drop(network);
        drop(terminal);
        state.terminal_fd = None;
        if state.started_at.is_empty() {
            state.started_at = now();
        }
        state.status = Status::Exited;
        state.pid = 0;
        state.finished_at = now();
        let result = match ran {
            Ok(outcome) => {
                (state.exit_code, state.oom_killed) = match outcome.status {
                    ExitStatus::Exited(c) => (c, false),
                    ExitStatus::Signaled(s) => (128 + s, false),
                    ExitStatus::OomKilled { .. } => (137, true),
                };
                Ok(())
            }
            Err(forge_sandbox::Error::Exec { message, not_found }) => {
                state.exit_code = if not_found { 127 } else { 126 };
                state.error = message.clone();
                Err(Error::Exec { message, not_found })
            }
            Err(source) => {
                state.exit_code = 125;
                state.error = source.to_string();
                Err(Error::Sandbox { what: "starting container", id: id.clone(), source })
            }
        };
        let written = write_json(&state_path, &state).and(recorded).map(|()| state);
        self.event(&id, "die", &[("exitCode", written.as_ref().map_or(255, |s| s.exit_code).to_string())]);
        (written, result)
    }

    /// The sandbox's spec for the container, but for its network (set up per run, see
    /// [`crate::network::start`]).
    pub(crate) fn spec(&self, config: &Config, mode: forge_sandbox::Output) -> Result<RunSpec, Error> {
        let dirs = self.store.snapshots().dirs(&config.snapshot).map_err(|source| Error::Snapshot { what: "finding the container's writable layer", source })?;
        let (upper, work) = dirs.upper.ok_or_else(|| Error::Snapshot {
            what: "finding the container's writable layer",
            source: SnapshotError::NotFound(config.snapshot.clone()),
        })?;
        let mut spec = RunSpec::new(dirs.lowerdirs, upper, work, config.args.clone());
        spec.env = config.env.clone();
        // Docker gives a container HOSTNAME (and the image or -e may set it otherwise).
        if !spec.env.iter().any(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == "HOSTNAME") {
            spec.env.insert(0, format!("HOSTNAME={}", config.hostname));
        }
        spec.user = config.user.clone();
        spec.cwd = config.working_dir.clone();
        spec.hostname = config.hostname.clone();
        spec.limits = config.limits.clone();
        spec.security = config.security.clone();
        spec.seccomp = config.seccomp;
        spec.readonly_rootfs = config.read_only;
        spec.userns = config.userns;
        let volumes = crate::volumes::Volumes::open(&self.store)?;
        for m in &config.mounts {
            let kind = match &m.source {
                crate::MountSource::Bind(source) => forge_sandbox::MountKind::Bind { source: source.clone(), readonly: m.read_only },
                crate::MountSource::Volume { name, .. } => forge_sandbox::MountKind::Bind { source: volumes.get(name)?.mountpoint, readonly: m.read_only },
                crate::MountSource::Tmpfs(size) => forge_sandbox::MountKind::Tmpfs { size: *size },
            };
            spec.mounts.push(forge_sandbox::Mount { target: m.target.clone(), kind });
        }
        spec.output = mode;
        spec.stdin = config.open_stdin;
        spec.tty = config.tty.then(crate::sys::terminal_size);
        spec.etc = forge_sandbox::Etc::Container;
        spec.scratch_in = Some(self.store.tmp_dir().map_err(|source| Error::Store { what: "making scratch space", source })?);
        Ok(spec)
    }

    /// Removes a container: its writable layer, its name and its records. A running one only
    /// with `force`, which kills it first.
    pub fn remove(&self, container: &Container, force: bool) -> Result<(), Error> {
        let id = container.id();
        let lock = match self.lock_stopped(id, "stop it first, or remove it with -f") {
            Ok(lock) => lock,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) if !force => return Err(e),
            Err(_) => {
                // Its monitor must not restart it.
                self.mark_stopped(id)?;
                let state: State = read_json(&self.path(id).join("state.json"))?;
                kill_if_same(state.pid, state.pid_start, nix::sys::signal::Signal::SIGKILL);
                // A paused container's processes cannot die until they are thawed.
                crate::resources::thaw(&state);
                // Its supervisor records the exit and lets go.
                match self.lock(id)? {
                    Some(lock) => lock,
                    None => return Ok(()),
                }
            }
        };
        self.remove_locked(id, container.config.name.as_deref(), lock)
    }

    /// Removes a container made with `--rm` once it ended: it and its anonymous volumes.
    pub(crate) fn remove_auto(&self, config: &Config, lock: Lock) -> Result<(), Error> {
        self.remove_locked(&config.id, config.name.as_deref(), lock)?;
        crate::volumes::Volumes::open(&self.store)?.remove_anonymous(&config.mounts)
    }

    pub(crate) fn remove_locked(&self, id: &str, name: Option<&str>, lock: Lock) -> Result<(), Error> {
        let mut state: State = read_json(&self.path(id).join("state.json"))?;
        if state.status == Status::Running {
            self.record_lost(id, &mut state)?;
        }
        self.fill_exit_slots(id, &state);
        let attributes = self.event_attributes(id);
        self.remove_records_and_layer(id, name)?;
        self.event_with(id, "destroy", attributes, &[]);
        drop(lock);
        Ok(())
    }

    /// The layer first: a crash after it leaves records that a second `rm` finishes, never a
    /// held snapshot nobody knows.
    fn remove_records_and_layer(&self, id: &str, name: Option<&str>) -> Result<(), Error> {
        match self.store.snapshots().remove(&format!("container-{id}")) {
            Ok(()) | Err(SnapshotError::NotFound(_)) => {}
            Err(source) => return Err(Error::Snapshot { what: "removing the container's writable layer", source }),
        }
        self.remove_records(id, name)
    }

    fn remove_records(&self, id: &str, name: Option<&str>) -> Result<(), Error> {
        let dir = self.path(id);
        let aside = self.dir.join(format!(".rm-{id}"));
        match fs::rename(&dir, &aside) {
            Ok(()) => fs::remove_dir_all(&aside).map_err(io("removing", &aside))?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &dir)(e)),
        }
        match name {
            Some(name) => self.free_name(name, id),
            None => Ok(()),
        }
    }

    /// Removes every container that is not running (docker's `container prune`); returns
    /// their IDs.
    pub fn prune(&self) -> Result<Vec<String>, Error> {
        let mut removed = Vec::new();
        for c in self.list()? {
            if c.state.status == Status::Running {
                continue;
            }
            // Started by another process since the listing: it stays.
            let Some(lock) = self.try_lock(c.id())? else { continue };
            let state: State = read_json(&self.path(c.id()).join("state.json"))?;
            if state.status == Status::Running {
                continue;
            }
            self.remove_locked(c.id(), c.config.name.as_deref(), lock)?;
            removed.push(c.config.id);
        }
        Ok(removed)
    }

    /// Where a container's records live (for people and tests).
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.path(id)
    }
}

/// A fresh container (or exec) ID: 32 random bytes in hex, as docker's.
pub fn new_id() -> Result<String, Error> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).map_err(io("reading", "/dev/urandom"))?;
    Ok(hex::encode(bytes))
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// docker's rule for container names.
fn validate_name(name: &str) -> Result<(), Error> {
    check_name("container name", name)
}

/// docker's rule for container and volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (so never a path).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    let mut bytes = name.bytes();
    let ok = name.len() >= 2 && bytes.next().is_some_and(|b| b.is_ascii_alphanumeric()) && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid { what, value: name.into(), reason: "only [a-zA-Z0-9][a-zA-Z0-9_.-]+ are allowed".into() })
    }
}

