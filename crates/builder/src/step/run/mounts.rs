//! RUN's `--mount`s: what each kind needs on the host (a tmpfs secret, a cache directory, a
//! bind of the context or another stage), turned into the sandbox's mounts. What they hold
//! lives until the step ends.

use std::fs::File;
use std::path::PathBuf;

use forge_parser::dag::Source;
use forge_parser::dockerignore::Dockerignore;
use forge_parser::flags::{Mount, MountKind, Sharing};
use forge_sandbox::{Mount as SandboxMount, MountKind as SandboxMountKind};
use rustix::fs::{flock, FlockOperation};
use sha2::Digest as _;

use crate::cache_key::{InputKind, KeyBuilder};
use crate::error::StepErrorKind;
use crate::layers;
use crate::mount::{OverlayMount, TmpfsFile};
use crate::source::hash_matches;
use crate::step::StepCtx;
use crate::{Error, Secret};

/// The sandbox mounts of a step, the environment of its secrets given as variables, and what
/// they hold on the host.
#[derive(Default)]
pub(super) struct Mounts {
    pub(super) mounts: Vec<SandboxMount>,
    pub(super) secret_env: Vec<String>,
    // Mounts before the directories they use: fields drop in order.
    held_mounts: Vec<OverlayMount>,
    secrets: Vec<TmpfsFile>,
    dirs: Vec<tempfile::TempDir>,
    locks: Vec<File>,
}

impl Mounts {
    /// A heredoc script the step runs as a file, read-only at `/dev/pipes/<name>`.
    pub(super) fn script(&mut self, step: &StepCtx<'_>, name: &str, body: &str) -> Result<(), Error> {
        let dir = step.build.scratch_dir("heredoc-")?;
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join(name);
            std::fs::write(&path, body)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        };
        write().map_err(|e| step.at.fail(StepErrorKind::Io, format!("writing the heredoc script: {e}")))?;
        self.mounts.push(SandboxMount { target: "/dev/pipes".into(), kind: SandboxMountKind::Bind { source: dir.path().to_path_buf(), readonly: true } });
        self.dirs.push(dir);
        Ok(())
    }

    /// One `--mount`; `source` is its `from=` stage or image. What the step reads through it
    /// goes into `key`.
    pub(super) fn add(&mut self, step: &StepCtx<'_>, m: &Mount, source: Option<&Source>, key: &mut KeyBuilder) -> Result<(), Error> {
        let target = expand_opt(step, &m.target)?;
        let src = expand_opt(step, &m.source)?;
        let mount = match m.kind {
            MountKind::Ssh => return Err(step.at.fail(StepErrorKind::Unsupported, "RUN --mount=type=ssh is not supported")),
            MountKind::Tmpfs => {
                let target = target.ok_or_else(|| step.at.fail(StepErrorKind::InvalidInstruction, "tmpfs mount needs a target"))?;
                Some(SandboxMount { target: step.image.absolute(&target), kind: SandboxMountKind::Tmpfs { size: m.size } })
            }
            MountKind::Secret => self.secret(step, m, target)?,
            MountKind::Cache => Some(self.cache(step, m, target)?),
            MountKind::Bind => Some(self.bind(step, m, target, src, source, key)?),
        };
        self.mounts.extend(mount);
        Ok(())
    }

    /// A secret as a file on a tmpfs of the step's own, or as a variable (`env=`), or both;
    /// nothing when an optional secret was not given.
    fn secret(&mut self, step: &StepCtx<'_>, m: &Mount, target: Option<String>) -> Result<Option<SandboxMount>, Error> {
        let id = match (expand_opt(step, &m.id)?, &target) {
            (Some(id), _) => id,
            (None, Some(t)) => t.rsplit('/').next().unwrap_or(t).to_string(),
            (None, None) => return Err(step.at.fail(StepErrorKind::InvalidInstruction, "secret mount needs an id or a target")),
        };
        let Some(secret) = step.build.opts.secrets.get(&id) else {
            return if m.required {
                Err(step.at.fail(StepErrorKind::Secret, format!("secret {id:?} is required but was not given (--secret id={id},src=FILE)")))
            } else {
                Ok(None)
            };
        };
        let value = match secret {
            Secret::File(file) => std::fs::read(file).map_err(|e| step.at.fail(StepErrorKind::Secret, format!("reading secret {id:?}: {e}")))?,
            Secret::Value(v) => v.clone(),
        };
        if let Some(var) = &m.env {
            let text = std::str::from_utf8(&value)
                .map_err(|_| step.at.fail(StepErrorKind::Secret, format!("secret {id:?} is not UTF-8 text and cannot be an environment variable")))?;
            self.secret_env.push(format!("{var}={text}"));
            if m.target.is_none() {
                return Ok(None);
            }
        }
        let target = target.unwrap_or_else(|| format!("/run/secrets/{id}"));
        // The step sees a copy on a tmpfs of its own, with the mount's mode and owner
        // (BuildKit's defaults: 0400, root), whatever the source file's are.
        let tmpfs = TmpfsFile::new(&step.build.store.tmp_dir()?, &value, m.mode.unwrap_or(0o400), (m.uid.unwrap_or(0), m.gid.unwrap_or(0)))
            .map_err(|e| step.at.fail(StepErrorKind::Io, format!("putting secret {id:?} on a tmpfs: {e}")))?;
        let source = tmpfs.path().to_path_buf();
        self.secrets.push(tmpfs);
        Ok(Some(SandboxMount { target: step.image.absolute(&target), kind: SandboxMountKind::Bind { source, readonly: true } }))
    }

    /// A cache directory in the store, shared by every build that names its id.
    fn cache(&mut self, step: &StepCtx<'_>, m: &Mount, target: Option<String>) -> Result<SandboxMount, Error> {
        let io = |e: std::io::Error| step.at.fail(StepErrorKind::Io, e.to_string());
        let target = target.ok_or_else(|| step.at.fail(StepErrorKind::InvalidInstruction, "cache mount needs a target"))?;
        let target = step.image.absolute(&target);
        let id = expand_opt(step, &m.id)?.unwrap_or_else(|| target.clone());
        let dir = step.build.store.root().join("forge").join("cache-mounts").join(hex::encode(sha2::Sha256::digest(id.as_bytes())));
        let fresh = !dir.exists();
        step.build.mounts_used.lock().unwrap().insert(id.clone(), (format!("{:?}", m.sharing).to_lowercase(), dir.clone()));
        if fresh {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(|e| step.at.fail(StepErrorKind::Io, format!("creating cache mount {id:?}: {e}")))?;
            }
            // A `--cache-from` cache with this mount's contents fills it; one that cannot is
            // only a cold mount.
            if let Err(e) = step.build.lazy.restore_mount(step.build.store, step.build.opts.cache_registry.as_deref(), &id, &dir) {
                step.build.progress.event(crate::progress::Event::Warning { message: format!("cache mount {id:?} could not be restored from the cache: {e}") });
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| step.at.fail(StepErrorKind::Io, format!("creating cache mount {id:?}: {e}")))?;
        if fresh {
            use std::os::unix::fs::PermissionsExt;
            // BuildKit creates it under umask 022: `mode=0770` gives 0750.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m.mode.unwrap_or(0o755) & !0o022)).map_err(io)?;
            std::os::unix::fs::chown(&dir, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0))).map_err(io)?;
        }
        if m.sharing == Sharing::Locked {
            // One writer at a time: held until the step ends.
            let lock = File::create(dir.with_extension("lock")).map_err(io)?;
            flock(&lock, FlockOperation::LockExclusive).map_err(|e| step.at.fail(StepErrorKind::Io, format!("locking cache mount {id:?}: {e}")))?;
            self.locks.push(lock);
        }
        Ok(SandboxMount { target, kind: SandboxMountKind::Bind { source: dir, readonly: m.readonly } })
    }

    /// A bind of the context or of a `from=` stage or image; a writable one writes to a
    /// throwaway upperdir, never to its source.
    fn bind(
        &mut self,
        step: &StepCtx<'_>,
        m: &Mount,
        target: Option<String>,
        src: Option<String>,
        source: Option<&Source>,
        key: &mut KeyBuilder,
    ) -> Result<SandboxMount, Error> {
        let src = src.unwrap_or_else(|| ".".into());
        let target = step.image.absolute(&target.unwrap_or_else(|| format!("/{}", src.trim_start_matches('/'))));
        let host = match source {
            None => context_path(step, &src, key)?,
            Some(from) => self.stage_path(step, from, &src, key)?,
        };
        if m.readonly || !host.is_dir() {
            return Ok(SandboxMount { target, kind: SandboxMountKind::Bind { source: host, readonly: m.readonly } });
        }
        let io = |e: std::io::Error| step.at.fail(StepErrorKind::Io, e.to_string());
        let scratch = step.build.scratch_dir("rwbind-")?;
        let (up, work) = (scratch.path().join("up"), scratch.path().join("work"));
        for d in [&up, &work] {
            std::fs::create_dir(d).map_err(io)?;
        }
        let mount = OverlayMount::mount_scratch(&step.build.store.tmp_dir()?, &[host], Some((&up, &work)))
            .map_err(|e| step.at.fail(StepErrorKind::Io, format!("mounting writable bind: {e}")))?;
        let mnt = mount.path().to_path_buf();
        self.held_mounts.push(mount);
        self.dirs.push(scratch);
        Ok(SandboxMount { target, kind: SandboxMountKind::Bind { source: mnt, readonly: false } })
    }

    /// `src` inside a stage's or image's tree, mounted read-only for the step.
    fn stage_path(&mut self, step: &StepCtx<'_>, from: &Source, src: &str, key: &mut KeyBuilder) -> Result<PathBuf, Error> {
        let layers = match from {
            Source::Stage(j) => {
                let r = step.finished.get(*j);
                key.part(r.key.as_str());
                key.note(InputKind::Instruction, "mount from", r.key.as_str());
                r.layers.clone()
            }
            Source::Image(reference) => {
                let image = step.build.store.image(reference).map_err(|e| step.at.fail(StepErrorKind::BaseImage, e.to_string()))?;
                key.part(image.descriptor.digest().as_ref());
                key.note(InputKind::Instruction, "mount from", image.descriptor.digest().as_ref());
                image.layers().map_err(|e| step.at.fail(StepErrorKind::Store, e.to_string()))?
            }
        };
        let view = layers::view(step.build, step.at, &layers, &mut self.held_mounts)?;
        let io = |e: std::io::Error| step.at.fail(StepErrorKind::Io, e.to_string());
        let tree = crate::rootfs::Root::open(&view).map_err(io)?;
        tree.resolve(src).map_err(io)?.ok_or_else(|| step.at.fail(StepErrorKind::SourceNotFound, format!("bind source {src:?} not found")))
    }
}

/// `src` in the context; the step's result depends on what it reads there, so it is hashed
/// into `key`.
fn context_path(step: &StepCtx<'_>, src: &str, key: &mut KeyBuilder) -> Result<PathBuf, Error> {
    let context = &step.build.context;
    let matches = context.matches(src, &Dockerignore::default()).map_err(|e| step.at.fail(e.kind(), format!("bind source {e}")))?;
    hash_matches(context, &matches, &step.build.stat_cache, key, InputKind::MountFile).map_err(|e| step.at.fail(e.kind(), e.to_string()))?;
    Ok(matches[0].entries[0].path.clone())
}

fn expand_opt(step: &StepCtx<'_>, v: &Option<String>) -> Result<Option<String>, Error> {
    v.as_deref().map(|s| step.expand(s)).transpose()
}
