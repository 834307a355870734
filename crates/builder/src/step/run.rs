//! RUN: the command, its environment and `--mount`s become a sandbox spec; the sandbox runs it
//! on the step's snapshot and the upperdir becomes the layer.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use forge_parser::dag::Source;
use forge_parser::dockerignore::Dockerignore;
use forge_parser::flags::{Mount, MountKind, NetworkMode, Security, Sharing};
use forge_parser::{Command, Run};
use forge_sandbox::{ExitStatus, Mount as SandboxMount, MountKind as SandboxMountKind, RunSpec, Stream};
use rustix::fs::{flock, FlockOperation};
use sha2::Digest as _;

use crate::cache_key::KeyBuilder;
use crate::layers;
use crate::mount::{OverlayMount, TmpfsFile};
use crate::progress::Event;
use crate::source::hash_matches;
use crate::step::{Made, StepCtx};
use crate::error::StepErrorKind;
use crate::{Error, Network, Secret};

/// Lines of output kept to show with a failure.
const TAIL_LINES: usize = 20;

/// Mounts and files that must live as long as the step runs.
#[derive(Default)]
struct Held {
    // Mounts before the directories they use: fields drop in order.
    mounts: Vec<OverlayMount>,
    secrets: Vec<TmpfsFile>,
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<File>,
}

/// What a RUN step measured: its CPU time and peak memory.
pub(crate) type Usage = (Option<Duration>, Option<u64>);

/// Runs one RUN instruction.
pub(crate) fn run(step: &StepCtx<'_>, r: &Run, sources: &[Source]) -> Result<(Made, Usage), Error> {
    let run = step;
    if r.security == Some(Security::Insecure) {
        return Err(run.at.fail(StepErrorKind::Unsupported, "--security=insecure is not allowed: forge never gives a build step full privileges"));
    }
    let (argv, script) = argv(run, r);
    let config = &run.image.config;
    let env = run.image.vars.run_env(config, &run.image.vars.run_args(&run.build.opts.build_args));
    let user = config.config.user.clone().unwrap_or_default();
    let cwd = run.image.cwd();
    let network = match r.network {
        Some(NetworkMode::None) => Network::None,
        Some(NetworkMode::Host) => Network::Host,
        Some(NetworkMode::Default) | None => run.build.opts.network,
    };

    let mut key = KeyBuilder::new(run.parent_key, "RUN");
    key.list(&argv).list(&env).part(&user).part(&cwd).part(&format!("{network:?}"));
    // A layer made without the seccomp filter is not reused by a confined build (nor the other
    // way round); default keys stay what they were.
    if run.build.opts.seccomp != forge_sandbox::Seccomp::Default {
        key.part(&format!("seccomp={}", run.build.opts.seccomp));
    }
    let mut held = Held::default();
    let mut mounts = Vec::new();
    let mut from_sources = sources.iter();
    let mut secret_env = Vec::new();
    if let Some((name, body)) = &script {
        // The file runs from a read-only mount at /dev/pipes, as in BuildKit; its text is
        // part of the key since the argv names only its path.
        key.part(body);
        let dir = run.build.scratch_dir("heredoc-")?;
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, body)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        };
        write().map_err(|e| run.at.fail(StepErrorKind::Io, format!("writing the heredoc script: {e}")))?;
        mounts.push(SandboxMount { target: "/dev/pipes".into(), kind: SandboxMountKind::Bind { source: dir.path().to_path_buf(), readonly: true } });
        held.dirs.push(dir);
    }
    for m in &r.mounts {
        let source = if m.from.is_some() { from_sources.next() } else { None };
        key.part(&format!("{m:?}"));
        if let Some(mount) = sandbox_mount(run, m, source, &mut held, &mut key, &mut secret_env)? {
            mounts.push(mount);
        }
    }
    let key = key.finish();

    let created_by = format!("RUN {} # buildkit", run.image.vars.history_args(config, &argv).join(" "));

    let mut stats = (None, None);
    let layer = {
        let this = run;
        let stats = &mut stats;
        this.layer(&key, |snap| {
            let mut spec = RunSpec::new(snap.lowerdirs.to_vec(), snap.upperdir.to_path_buf(), snap.workdir.to_path_buf(), argv.clone());
            spec.env = env.iter().cloned().chain(secret_env.iter().cloned()).collect();
            spec.user = user.clone();
            spec.cwd = cwd.clone();
            spec.hostname = "buildkitsandbox".into();
            spec.network = match network {
                Network::None => forge_sandbox::Network::None,
                Network::Host | Network::Default => forge_sandbox::Network::Host,
            };
            spec.mounts = mounts.clone();
            spec.limits = this.build.opts.limits.clone();
            spec.seccomp = this.build.opts.seccomp;
            spec.init = this.build.opts.sandbox_init.clone();
            spec.scratch_in = Some(this.build.store.tmp_dir()?);
            let mut tail: VecDeque<String> = VecDeque::new();
            let id = this.at.id.clone();
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
                this.build.progress.event(Event::Output { id: id.clone(), stream, line });
            };
            let outcome = forge_sandbox::run(&spec, &this.build.opts.cancel, &mut output).map_err(|e| match e {
                forge_sandbox::Error::Cancelled => Error::Cancelled,
                e => this.at.fail(StepErrorKind::Sandbox, format!("sandbox: {e}")),
            })?;
            *stats = (Some(outcome.cpu_time), outcome.peak_memory);
            if !matches!(outcome.status, ExitStatus::Exited(0)) {
                return Err(Error::RunFailed {
                    file: this.at.file.clone(),
                    line: this.at.line,
                    instruction: this.at.instruction.clone(),
                    status: outcome.status.to_string(),
                    output: tail.into_iter().collect(),
                });
            }
            Ok(())
        })?
    };
    drop(held);
    Ok((Made { key, layer, created_by }, stats))
}

/// The argv of the step, and a script file it runs (name, text). A shell-form command with
/// heredocs hands the shell the command and the bodies, which it reads as here-documents; a
/// command that is only `<<EOF` runs the body as the script, or, when the body starts with
/// `#!`, runs it as a file at `/dev/pipes/EOF`, as BuildKit does.
fn argv(run: &StepCtx<'_>, r: &Run) -> (Vec<String>, Option<(String, String)>) {
    let argv = match &r.command {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) if r.heredocs.is_empty() => run.image.command_argv(&Command::Shell(s.clone())),
        Command::Shell(s) => {
            let first = &r.heredocs[0];
            let only_heredoc = r.heredocs.len() == 1
                && forge_parser::heredoc::parse_heredoc_word(s.trim()).ok().flatten().is_some_and(|h| h.name == first.name);
            let script = if only_heredoc {
                let body = if first.chomp { forge_parser::heredoc::chomp(&first.content) } else { first.content.clone() };
                if body.starts_with("#!") {
                    let path = format!("/dev/pipes/{}", first.name);
                    return (run.image.command_argv(&Command::Shell(path)), Some((first.name.clone(), body)));
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
            run.image.command_argv(&Command::Shell(script))
        }
    };
    (argv, None)
}

/// The sandbox mount for one `--mount`, preparing what it needs on the host.
fn sandbox_mount(
    run: &StepCtx<'_>,
    m: &Mount,
    source: Option<&Source>,
    held: &mut Held,
    key: &mut KeyBuilder,
    secret_env: &mut Vec<String>,
) -> Result<Option<SandboxMount>, Error> {
    let expand_opt = |v: &Option<String>| v.as_deref().map(|s| run.expand(s)).transpose();
    let target = expand_opt(&m.target)?;
    let src = expand_opt(&m.source)?;
    let abs = |t: &str| run.image.absolute(t);
    match m.kind {
        MountKind::Ssh => Err(run.at.fail(StepErrorKind::Unsupported, "RUN --mount=type=ssh is not supported")),
        MountKind::Tmpfs => {
            let target = target.ok_or_else(|| run.at.fail(StepErrorKind::InvalidInstruction, "tmpfs mount needs a target"))?;
            Ok(Some(SandboxMount { target: abs(&target), kind: SandboxMountKind::Tmpfs { size: m.size } }))
        }
        MountKind::Secret => {
            let id = match (expand_opt(&m.id)?, &target) {
                (Some(id), _) => id,
                (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
                (None, None) => return Err(run.at.fail(StepErrorKind::InvalidInstruction, "secret mount needs an id or a target")),
            };
            let Some(secret) = run.build.opts.secrets.get(&id) else {
                return if m.required { Err(run.at.fail(StepErrorKind::Secret, format!("secret {id:?} is required but was not given (--secret id={id},src=FILE)"))) } else { Ok(None) };
            };
            if let Some(var) = &m.env {
                let value = match secret {
                    Secret::File(file) => std::fs::read(file).map_err(|e| run.at.fail(StepErrorKind::Secret, format!("reading secret {id:?}: {e}")))?,
                    Secret::Value(v) => v.clone(),
                };
                let value = String::from_utf8(value).map_err(|_| run.at.fail(StepErrorKind::Secret, format!("secret {id:?} is not UTF-8 text and cannot be an environment variable")))?;
                secret_env.push(format!("{var}={value}"));
                if m.target.is_none() {
                    return Ok(None);
                }
            }
            let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
            // The step sees a copy on a tmpfs of its own, with the mount's mode and owner
            // (BuildKit's defaults: 0400, root), whatever the source file's are.
            let value = match secret {
                Secret::File(file) => std::fs::read(file).map_err(|e| run.at.fail(StepErrorKind::Secret, format!("reading secret {id:?}: {e}")))?,
                Secret::Value(v) => v.clone(),
            };
            let tmpfs = TmpfsFile::new(&run.build.store.tmp_dir()?, &value, m.mode.unwrap_or(0o400), (m.uid.unwrap_or(0), m.gid.unwrap_or(0)))
                .map_err(|e| run.at.fail(StepErrorKind::Io, format!("putting secret {id:?} on a tmpfs: {e}")))?;
            let source = tmpfs.path().to_path_buf();
            held.secrets.push(tmpfs);
            Ok(Some(SandboxMount { target: abs(&target), kind: SandboxMountKind::Bind { source, readonly: true } }))
        }
        MountKind::Cache => {
            let target = target.ok_or_else(|| run.at.fail(StepErrorKind::InvalidInstruction, "cache mount needs a target"))?;
            let target = abs(&target);
            let id = expand_opt(&m.id)?.unwrap_or_else(|| target.clone());
            let dir = run.build.store.root().join("forge").join("cache-mounts").join(hex::encode(sha2::Sha256::digest(id.as_bytes())));
            let fresh = !dir.exists();
            std::fs::create_dir_all(&dir).map_err(|e| run.at.fail(StepErrorKind::Io, format!("creating cache mount {id:?}: {e}")))?;
            if fresh {
                use std::os::unix::fs::PermissionsExt;
                // BuildKit creates it under umask 022: `mode=0770` gives 0750.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755) & !0o022)).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?;
                std::os::unix::fs::chown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0))).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?;
            }
            if m.sharing == Sharing::Locked {
                // One writer at a time: held until the step ends.
                let lock = File::create(dir.with_extension("lock")).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?;
                flock(&lock, FlockOperation::LockExclusive).map_err(|e| run.at.fail(StepErrorKind::Io, format!("locking cache mount {id:?}: {e}")))?;
                held.locks.push(lock);
            }
            Ok(Some(SandboxMount { target, kind: SandboxMountKind::Bind { source: dir, readonly: m.readonly } }))
        }
        MountKind::Bind => {
            let src_rel = src.unwrap_or_else(|| ".".into());
            let target = abs(&target.unwrap_or_else(|| format!("/{}", src_rel.trim_start_matches('/'))));
            let host: PathBuf = match source {
                None => {
                    // The step's result depends on what it reads from the context.
                    let matches = run.build.context.matches(&src_rel, &Dockerignore::default()).map_err(|e| run.at.fail(e.kind(), format!("bind source {e}")))?;
                    hash_matches(&run.build.context, &matches, &run.build.stat_cache, key.hasher()).map_err(|e| run.at.fail(e.kind(), e.to_string()))?;
                    matches[0].entries[0].path.clone()
                }
                Some(src) => {
                    let layers = match src {
                        Source::Stage(j) => {
                            let r = run.finished.get(*j);
                            key.part(r.key.as_str());
                            r.layers.clone()
                        }
                        Source::Image(reference) => {
                            let image = run.build.store.image(reference).map_err(|e| run.at.fail(StepErrorKind::BaseImage, e.to_string()))?;
                            key.part(image.descriptor.digest().as_ref());
                            image.layers().map_err(|e| run.at.fail(StepErrorKind::Store, e.to_string()))?
                        }
                    };
                    let view = layers::view(run.build.store, run.at, &layers, &mut held.mounts)?;
                    let tree = crate::rootfs::Root::open(&view).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?;
                    tree.resolve(&src_rel).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?.ok_or_else(|| run.at.fail(StepErrorKind::SourceNotFound, format!("bind source {src_rel:?} not found")))?
                }
            };
            if m.readonly || !host.is_dir() {
                return Ok(Some(SandboxMount { target, kind: SandboxMountKind::Bind { source: host, readonly: m.readonly } }));
            }
            // A writable bind must not change its source: writes go to a throwaway upperdir.
            let scratch = run.build.scratch_dir("rwbind-")?;
            let (up, work) = (scratch.path().join("up"), scratch.path().join("work"));
            for d in [&up, &work] {
                std::fs::create_dir(d).map_err(|e| run.at.fail(StepErrorKind::Io, e.to_string()))?;
            }
            let mount = OverlayMount::mount_scratch(&run.build.store.tmp_dir()?, &[host], Some((&up, &work)))
                .map_err(|e| run.at.fail(StepErrorKind::Io, format!("mounting writable bind: {e}")))?;
            let mnt = mount.path().to_path_buf();
            held.mounts.push(mount);
            held.dirs.push(scratch);
            Ok(Some(SandboxMount { target, kind: SandboxMountKind::Bind { source: mnt, readonly: false } }))
        }
    }
}
