//! One stage: start from its base, then apply its instructions in order. Metadata instructions
//! change the config; RUN, COPY/ADD and WORKDIR go through [`StageRun::layer_step`], which
//! owns the cache lookup, the snapshot, the diff and the commit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forge_layerstore::cache::CacheEntry;
use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::image::{Healthcheck as ConfigHealthcheck, History};
use forge_layerstore::{Digest, ImageConfig, Layer};
use forge_parser::dag::{predefined_args, Base, Source, PLATFORM, PROXY_ARGS};
use forge_parser::dockerignore::Dockerignore;
use forge_parser::expand::{expand_word, expand_words};
use forge_parser::{Command, Copy, Healthcheck, Instruction, Span, Spanned};

use crate::cache_key::{base_key, KeyBuilder};
use crate::copy::{copy_into, CopyOptions, InlineFile};
use crate::engine::BuildCtx;
use crate::history;
use crate::mount::OverlayMount;
use crate::progress::Event;
use crate::rootfs::Root;
use crate::source::{hash_matches, Matched, SourceTree};
use crate::users::resolve_owner;
use crate::Error;

/// What a finished stage hands to the stages that use it.
#[derive(Debug, Clone)]
pub(crate) struct StageResult {
    pub(crate) config: ImageConfig,
    pub(crate) layers: Vec<Layer>,
    /// The cache key of its last step: a stage built FROM it starts here.
    pub(crate) key: Digest,
    /// Its ARGs: a stage built FROM it inherits them, as in BuildKit.
    pub(crate) args: Vec<(String, Option<String>)>,
    /// See [`StageRun::arg_over_env`]; inherited with the ARGs.
    pub(crate) arg_over_env: Vec<(String, String)>,
}

/// Docker's default PATH, for images whose config sets none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A stage being built.
pub(crate) struct StageRun<'a> {
    pub(crate) ctx: &'a BuildCtx<'a>,
    pub(crate) index: usize,
    pub(crate) config: ImageConfig,
    pub(crate) layers: Vec<Layer>,
    pub(crate) key: Digest,
    /// ARGs declared in this stage with their values (`None`: declared, no value).
    pub(crate) args: Vec<(String, Option<String>)>,
    /// ARG values declared after an ENV of the same name. BuildKit keeps one environment that
    /// ENV and ARG both write, in order, so such an ARG wins in expansions and in RUN (the
    /// image's config keeps the ENV value); a later ENV of the name takes it back.
    pub(crate) arg_over_env: Vec<(String, String)>,
    /// Whether CMD was set in this stage (an ENTRYPOINT then keeps it).
    cmd_set: bool,
    /// The step being run, for progress and errors.
    pub(crate) step_id: String,
    pub(crate) span: Span,
    pub(crate) instruction: String,
}

/// The changes a layer step makes, given the snapshot's directories.
pub(crate) struct Snapshot<'s> {
    /// Lowerdirs, top-most first.
    pub(crate) lowerdirs: &'s [PathBuf],
    pub(crate) upperdir: &'s std::path::Path,
    pub(crate) workdir: &'s std::path::Path,
}

/// An RFC 3339 time: `SOURCE_DATE_EPOCH` when set, else now.
pub(crate) fn timestamp(source_date_epoch: Option<i64>) -> String {
    let t = match source_date_epoch {
        Some(s) => UNIX_EPOCH + Duration::from_secs(s.max(0) as u64),
        None => SystemTime::now(),
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

pub(crate) fn run_stage(ctx: &BuildCtx<'_>, index: usize) -> Result<StageResult, Error> {
    let stage = &ctx.graph.stages[index];
    let mut run = StageRun {
        ctx,
        index,
        config: ImageConfig::scratch(),
        layers: Vec::new(),
        key: base_key("scratch"),
        args: Vec::new(),
        arg_over_env: Vec::new(),
        cmd_set: false,
        step_id: format!("{index}/0"),
        span: stage.span,
        instruction: ctx.line_text(stage.span),
    };
    if let Some(p) = &stage.platform {
        let want = format!("{}/{}", PLATFORM.0, PLATFORM.1);
        if p != &want {
            return Err(run.fail(format!("platform {p:?} is not supported: forge builds {want} only")));
        }
    }
    run.started();
    let start = Instant::now();
    match &stage.base {
        // BuildKit's empty image has Docker's PATH and `/` as its working directory.
        Base::Scratch => {
            run.config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
            run.config.config.working_dir = Some("/".into());
        }
        Base::Stage(j) => {
            let parent = ctx.done.lock().unwrap()[*j].clone().expect("levels run dependencies first");
            run.config = parent.config.clone();
            run.layers = parent.layers.clone();
            run.key = parent.key.clone();
            run.args = parent.args.clone();
            run.arg_over_env = parent.arg_over_env.clone();
        }
        Base::Image(reference) => {
            let image = run.base_image(reference)?;
            run.layers = image.layers().map_err(|e| run.fail(e.to_string()))?;
            run.key = base_key(image.descriptor.digest().as_ref());
            run.config = image.config;
            // A child image does not inherit the history's meaning of "created"; it keeps entries.
        }
    }
    run.done(start, None, None);

    // ONBUILD triggers of the base run first, and are not inherited further.
    let mut instructions: Vec<(Option<usize>, Spanned<Instruction>)> = Vec::new();
    for trigger in run.config.config.on_build.take().unwrap_or_default() {
        let df = forge_parser::parse(&format!("{trigger}\n"), "ONBUILD").map_err(|e| run.fail(format!("ONBUILD trigger {trigger:?}: {e}")))?;
        for ins in df.instructions().map_err(|e| run.fail(format!("ONBUILD trigger {trigger:?}: {e}")))? {
            instructions.push((None, Spanned { value: ins.value, span: stage.span }));
        }
    }
    instructions.extend(stage.instructions.iter().cloned().enumerate().map(|(i, ins)| (Some(i), ins)));

    for (step, (pos, ins)) in instructions.into_iter().enumerate() {
        if ctx.failed.load(std::sync::atomic::Ordering::SeqCst) || ctx.opts.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        run.step_id = format!("{index}/{}", step + 1);
        run.span = ins.span;
        run.instruction = ctx.line_text(ins.span);
        let sources = pos.and_then(|p| stage.sources.get(&p)).cloned().unwrap_or_default();
        run.started();
        let start = Instant::now();
        let stats = run.dispatch(&ins.value, &sources)?;
        if let Some((cpu, mem)) = stats {
            run.done(start, cpu, mem);
        } else {
            run.done(start, None, None);
        }
    }
    Ok(StageResult { config: run.config, layers: run.layers, key: run.key, args: run.args, arg_over_env: run.arg_over_env })
}

impl<'a> StageRun<'a> {
    fn stage_name(&self) -> String {
        self.ctx.graph.stages[self.index].name.clone().unwrap_or_else(|| format!("stage-{}", self.index))
    }

    fn started(&self) {
        self.ctx.progress.event(Event::StepStarted {
            id: self.step_id.clone(),
            stage: self.stage_name(),
            text: self.instruction.clone(),
            line: self.span.start.line,
        });
    }

    fn done(&self, start: Instant, cpu_time: Option<Duration>, peak_memory: Option<u64>) {
        self.ctx.progress.event(Event::StepDone { id: self.step_id.clone(), elapsed: start.elapsed(), cpu_time, peak_memory });
    }

    /// An error located at the current step.
    pub(crate) fn fail(&self, message: String) -> Error {
        Error::Step { file: self.ctx.file.clone(), line: self.span.start.line, instruction: self.instruction.clone(), message }
    }

    /// The bytes of the config's environment and labels, which ENV and LABEL grow.
    fn config_bytes(&self) -> usize {
        let env: usize = self.config.config.env.iter().flatten().map(String::len).sum();
        let labels: usize = self.config.config.labels.iter().flatten().map(|(k, v)| k.len() + v.len()).sum();
        env + labels
    }

    /// Adds `more` bytes to `used`, failing once they could not fit in an image config the
    /// store can read back (each expanded word is bounded, but not how many there are). Half
    /// the config's limit: the history repeats every ENV and LABEL.
    fn check_config_room(&self, used: &mut usize, more: usize) -> Result<(), Error> {
        *used += more;
        let limit = forge_layerstore::store::MAX_JSON_BYTES / 2;
        if *used as u64 > limit {
            return Err(self.fail(format!("the image's environment and labels would exceed {limit} bytes, the most an image config may hold")));
        }
        Ok(())
    }

    /// Variables for expansion: ARGs with values, then the config's ENV (which wins), then the
    /// ARGs declared over an ENV (which win over it); the last of a name counts.
    pub(crate) fn vars(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        for kv in self.config.config.env.iter().flatten() {
            let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
            v.push((k.to_string(), val.to_string()));
        }
        v.extend(self.arg_over_env.iter().cloned());
        v
    }

    pub(crate) fn expand(&self, word: &str) -> Result<String, Error> {
        expand_word(word, &self.vars(), self.ctx.escape).map(|e| e.value).map_err(|e| self.fail(e.to_string()))
    }

    fn expand_all(&self, words: &[String]) -> Result<Vec<String>, Error> {
        let vars = self.vars();
        let mut out = Vec::new();
        for w in words {
            out.extend(expand_words(w, &vars, self.ctx.escape).map_err(|e| self.fail(e.to_string()))?);
        }
        Ok(out)
    }

    /// Build args a RUN step sees in its environment: declared ARGs with values and the proxy
    /// args given with `--build-arg`.
    pub(crate) fn run_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        for p in PROXY_ARGS {
            if let Some(v) = self.ctx.opts.build_args.get(p) {
                if !out.iter().any(|(k, _)| k == p) {
                    out.push((p.to_string(), v.clone()));
                }
            }
        }
        out
    }

    /// `words` with BuildKit's `|N K=V ...` prefix naming every ARG of the stage (inherited
    /// ones included, in the order first declared), each with the value the step sees (as
    /// [`StageRun::vars`] gives it); an ARG without a value shows as empty.
    pub(crate) fn history_args(&self, words: &[String]) -> Vec<String> {
        let vars = self.vars();
        let mut shown: Vec<(String, String)> = Vec::new();
        for (k, declared) in &self.args {
            let v = vars.iter().rev().find(|(vk, _)| vk == k).map(|(_, v)| v.clone()).or_else(|| declared.clone()).unwrap_or_default();
            match shown.iter_mut().find(|(sk, _)| sk == k) {
                Some(slot) => slot.1 = v,
                None => shown.push((k.clone(), v)),
            }
        }
        let mut out = Vec::new();
        if !shown.is_empty() {
            out.push(format!("|{}", shown.len()));
            out.extend(shown.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        out.extend(words.iter().cloned());
        out
    }

    fn history(&mut self, created_by: String, empty_layer: bool) {
        self.config.history.push(History {
            created: Some(timestamp(self.ctx.opts.source_date_epoch)),
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty_layer.then_some(true),
            ..History::default()
        });
    }

    fn base_image(&self, reference: &str) -> Result<forge_layerstore::Image, Error> {
        let store = self.ctx.store;
        match store.image(reference) {
            Ok(image) => Ok(image),
            Err(forge_layerstore::store::Error::NotFound(_)) => {
                let Some(bases) = self.ctx.bases else {
                    return Err(self.fail(format!("base image {reference:?} is not in the store (forge pull it or forge import a rootfs)")));
                };
                let name = bases.fetch(store, reference).map_err(|e| self.fail(format!("pulling base image {reference:?}: {e}")))?;
                store.image(&name).map_err(|e| self.fail(e.to_string()))
            }
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    /// Runs one instruction; returns RUN's CPU time and peak memory when it ran.
    fn dispatch(&mut self, ins: &Instruction, sources: &[Source]) -> Result<Option<(Option<Duration>, Option<u64>)>, Error> {
        match ins {
            Instruction::From(_) => unreachable!("FROM starts a stage"),
            Instruction::Run(r) => return crate::run::run_step(self, r, sources).map(Some),
            Instruction::Copy(c) => self.copy(c, sources)?,
            Instruction::Workdir(w) => self.workdir(w)?,
            Instruction::Cmd(c) => {
                let argv = self.command_argv(c);
                self.history(format!("CMD {}", history::go_quoted_list(&argv)), true);
                self.config.config.cmd = Some(argv);
                // BuildKit marks every CMD so (Docker's Windows-era flag, kept for compatibility).
                self.config.config.args_escaped = Some(true);
                self.cmd_set = true;
            }
            Instruction::Entrypoint(c) => {
                let argv = self.command_argv(c);
                self.history(format!("ENTRYPOINT {}", history::go_quoted_list(&argv)), true);
                self.config.config.entrypoint = Some(argv);
                if !self.cmd_set {
                    self.config.config.cmd = None;
                }
            }
            Instruction::Shell(sh) => {
                self.history(format!("SHELL {}", history::go_list(sh)), true);
                self.config.config.shell = Some(sh.clone());
            }
            Instruction::Env(pairs) => {
                // Every value sees the environment from before this instruction, as in Docker.
                let mut expanded = Vec::new();
                let mut used = self.config_bytes();
                for (k, v) in pairs {
                    let (k, v) = (self.expand(k)?, self.expand(v)?);
                    self.check_config_room(&mut used, k.len() + v.len())?;
                    expanded.push((k, v));
                }
                let text: Vec<String> = expanded.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in &expanded {
                    self.config.set_env(k, v);
                    self.arg_over_env.retain(|(a, _)| a != k);
                }
                self.history(format!("ENV {}", text.join(" ")), true);
            }
            Instruction::Label(pairs) => {
                let mut text = Vec::new();
                let mut used = self.config_bytes();
                for (k, v) in pairs {
                    let (k, v) = (self.expand(k)?, self.expand(v)?);
                    self.check_config_room(&mut used, k.len() + v.len())?;
                    text.push(format!("{k}={v}"));
                    self.config.config.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                self.history(format!("LABEL {}", text.join(" ")), true);
            }
            Instruction::Arg(decls) => {
                let mut text = Vec::new();
                for d in decls {
                    let value = match self.ctx.opts.build_args.get(&d.name) {
                        Some(v) => Some(v.clone()),
                        None => match &d.default {
                            Some(def) => Some(self.expand(def)?),
                            None => self.global_arg(&d.name),
                        },
                    };
                    text.push(match &value {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    });
                    // A redeclared ARG keeps its place, as in BuildKit's `|N` list.
                    if let Some(v) = &value {
                        let in_env = self.config.config.env.iter().flatten().any(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == d.name);
                        self.arg_over_env.retain(|(a, _)| a != &d.name);
                        if in_env {
                            self.arg_over_env.push((d.name.clone(), v.clone()));
                        }
                    }
                    match self.args.iter_mut().find(|(k, _)| k == &d.name) {
                        Some(slot) => slot.1 = value,
                        None => self.args.push((d.name.clone(), value)),
                    }
                }
                self.history(format!("ARG {}", text.join(" ")), true);
            }
            Instruction::Expose(ports) => {
                // BuildKit sorts the words as written, before expanding them.
                let mut words = ports.clone();
                words.sort();
                let mut specs = Vec::new();
                for p in self.expand_all(&words)? {
                    specs.extend(port_specs(&p).map_err(|e| self.fail(e))?);
                }
                for key in &specs {
                    self.config.config.exposed_ports.get_or_insert_with(BTreeMap::new).insert(key.clone(), serde_json::json!({}));
                }
                self.history(history::expose(&specs), true);
            }
            Instruction::Volume(paths) => {
                let paths = self.expand_all(paths)?;
                for p in &paths {
                    self.config.config.volumes.get_or_insert_with(BTreeMap::new).insert(p.clone(), serde_json::json!({}));
                }
                self.history(format!("VOLUME {}", history::go_list(&paths)), true);
            }
            Instruction::User(u) => {
                let u = self.expand(u)?;
                self.history(format!("USER {u}"), true);
                self.config.config.user = Some(u);
            }
            Instruction::StopSignal(s) => {
                let s = self.expand(s)?;
                self.history(format!("STOPSIGNAL {s}"), true);
                self.config.config.stop_signal = Some(s);
            }
            Instruction::Maintainer(m) => {
                let m = self.expand(m)?;
                self.history(format!("MAINTAINER {m}"), true);
                self.config.author = Some(m);
            }
            // BuildKit records no history entry for ONBUILD.
            Instruction::Onbuild { text, .. } => {
                self.config.config.on_build.get_or_insert_with(Vec::new).push(text.clone());
            }
            Instruction::Healthcheck(h) => {
                // Zero is "not set" in Docker's config (Go's omitempty).
                let ns = |d: &Option<Duration>| d.map(|d| d.as_nanos() as i64).filter(|&n| n != 0);
                let check = match h {
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
                };
                self.history(history::healthcheck(&check), true);
                self.config.config.healthcheck = Some(check);
            }
        }
        Ok(None)
    }

    /// The value of a global ARG (declared before the first FROM) or a predefined one.
    fn global_arg(&self, name: &str) -> Option<String> {
        if let Some((_, v)) = self.ctx.graph.global_args.iter().rev().find(|(k, _)| k == name) {
            return v.clone();
        }
        predefined_args().into_iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// argv of a CMD/ENTRYPOINT/RUN: exec form as written, shell form through SHELL.
    pub(crate) fn command_argv(&self, c: &Command) -> Vec<String> {
        match c {
            Command::Exec(v) => v.clone(),
            Command::Shell(s) => {
                let mut argv = self.shell();
                argv.push(s.clone());
                argv
            }
        }
    }

    pub(crate) fn shell(&self) -> Vec<String> {
        self.config.config.shell.clone().unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }

    /// The working directory, absolute.
    pub(crate) fn cwd(&self) -> String {
        self.config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
    }

    fn workdir(&mut self, w: &str) -> Result<(), Error> {
        let w = self.expand(w)?;
        // As BuildKit (moby's NormalizeWorkdir): an absolute path is taken as written, trailing
        // slash and all; a relative one is joined to the current directory and cleaned.
        let path = if w.starts_with('/') { w } else { forge_parser::dockerignore::clean(&format!("{}/{}", self.cwd().trim_end_matches('/'), w)) };
        self.config.config.working_dir = Some(path.clone());
        // BuildKit makes a layer for every WORKDIR but `/`, even when the directory exists.
        if path == "/" {
            self.history("WORKDIR /".into(), true);
            return Ok(());
        }
        let user = self.config.config.user.clone().unwrap_or_default();
        let mut key = KeyBuilder::new(&self.key, "WORKDIR");
        key.part(&path).part(&user);
        let key = key.finish();
        let this = &*self;
        let layer = self.layer_step(&key, |snap| {
            let mount = OverlayMount::mount_scratch(&this.ctx.store.tmp_dir()?, snap.lowerdirs, Some((snap.upperdir, snap.workdir)))
                .map_err(|e| this.fail(format!("mounting the rootfs: {e}")))?;
            let root = Root::open(mount.path()).map_err(|e| this.fail(e.to_string()))?;
            let owner = if user.is_empty() { (0, 0) } else { resolve_owner(&root, &user).map_err(|e| this.fail(e))? };
            root.mkdir_all(&path, owner, 0o755).map_err(|e| this.fail(format!("creating {path}: {e}")))?;
            Ok(())
        })?;
        self.finish_step(key, layer, format!("WORKDIR {path}"));
        Ok(())
    }

    fn copy(&mut self, c: &Copy, sources: &[Source]) -> Result<(), Error> {
        let verb = if c.add { "ADD" } else { "COPY" };
        let mut dest = self.expand(&c.dest)?;
        if !dest.starts_with('/') {
            let keep_slash = dest.ends_with('/') || dest == ".";
            dest = format!("{}/{}", self.cwd().trim_end_matches('/'), dest);
            if keep_slash && !dest.ends_with('/') {
                dest.push('/');
            }
        }
        let shown_dest = self.expand(&c.dest)?;
        let chown = c.chown.as_deref().map(|s| self.expand(s)).transpose()?;
        let chmod_text = c.chmod.as_deref().map(|m| self.expand(m)).transpose()?;
        let chmod = match &chmod_text {
            Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| self.fail(format!("invalid --chmod {m:?}: must be octal")))?),
            None => None,
        };
        let exclude = Dockerignore::new(self.expand_all(&c.exclude)?).map_err(|e| self.fail(e.to_string()))?;
        // Each source is one word after expansion (a value with spaces names one file), as in BuildKit.
        let srcs = c.sources.iter().map(|s| self.expand(s)).collect::<Result<Vec<_>, _>>()?;
        if srcs.iter().any(|s| s.starts_with("git@") || s.ends_with(".git")) {
            return Err(self.fail("ADD from a git repository is not supported; clone it into the context".into()));
        }
        if !c.add && srcs.iter().any(|s| crate::remote::is_url(s)) {
            return Err(self.fail("COPY does not take URLs; use ADD".into()));
        }
        let checksum = c.checksum.as_deref().map(|s| self.expand(s)).transpose()?;
        let inline: Vec<InlineFile> = c
            .inline
            .iter()
            .map(|h| {
                let body = if h.expand { self.expand(&h.content) } else { Ok(h.content.clone()) };
                body.map(|b| InlineFile { name: h.name.clone(), content: b.into_bytes() })
            })
            .collect::<Result<_, _>>()?;

        // Where the sources come from: the context, or a stage's or image's tree mounted read-only.
        let mut holders: Vec<OverlayMount> = Vec::new();
        let tree_owned;
        let (tree, from_key): (&SourceTree, String) = match (&c.from, sources.first()) {
            (None, _) => (&self.ctx.context, "context".into()),
            (Some(from), src) => {
                let (layers, key) = match src {
                    Some(Source::Stage(j)) => {
                        let r = self.ctx.done.lock().unwrap()[*j].clone().expect("levels run dependencies first");
                        (r.layers.clone(), r.key.to_string())
                    }
                    _ => {
                        let reference = match src {
                            Some(Source::Image(r)) => r.clone(),
                            _ => self.expand(from)?,
                        };
                        let image = self.base_image(&reference)?;
                        (image.layers().map_err(|e| self.fail(e.to_string()))?, image.descriptor.digest().to_string())
                    }
                };
                let dir = self.view(&layers, &mut holders)?;
                tree_owned = SourceTree::open(&dir, Dockerignore::default(), false).map_err(|e| self.fail(e.to_string()))?;
                (&tree_owned, key)
            }
        };
        let mut matches: Vec<Matched> = Vec::new();
        // Made only for ADD <url>: a COPY's key computation, run on every build, touches no disk.
        let mut downloads: Option<tempfile::TempDir> = None;
        let mut remote_digests = Vec::new();
        for s in &srcs {
            if crate::remote::is_url(s) {
                if downloads.is_none() {
                    downloads = Some(crate::engine::scratch_dir(self.ctx.store, "add-")?);
                }
                let dir = downloads.as_ref().expect("made just above").path();
                let (m, digest) = crate::remote::fetch(s, dir, checksum.as_deref()).map_err(|e| self.fail(e))?;
                remote_digests.push(digest.to_string());
                matches.push(m);
                continue;
            }
            matches.extend(tree.matches(s, &exclude).map_err(|e| self.fail(format!("source {e}")))?);
        }
        let mut key = KeyBuilder::new(&self.key, verb);
        key.part(&dest).part(chown.as_deref().unwrap_or("")).part(&format!("{chmod:?}")).part(&from_key);
        key.part(&format!("parents={} add={}", c.parents, c.add));
        for f in &inline {
            key.part(&f.name).part(&String::from_utf8_lossy(&f.content));
        }
        // Remote files enter the key by content digest (they live outside the tree).
        key.list(&remote_digests);
        let local: Vec<Matched> = matches.iter().filter(|m| !m.remote).cloned().collect();
        hash_matches(tree, &local, &self.ctx.stat_cache, key.hasher()).map_err(|e| self.fail(e.to_string()))?;
        let key = key.finish();

        // BuildKit's wording: the flags that change the files, then the expanded sources.
        let mut shown: Vec<String> = vec![verb.to_string()];
        if c.parents {
            shown.push("--parents".into());
        }
        shown.extend(chown.iter().map(|o| format!("--chown={o}")));
        shown.extend(chmod_text.iter().map(|m| format!("--chmod={m}")));
        shown.extend(srcs.iter().cloned());
        shown.extend(c.inline.iter().map(|h| format!("<<{}", h.name)));
        shown.push(shown_dest);
        let created_by = format!("{} # buildkit", shown.join(" "));
        let opts = CopyOptions { owner: None, from_context: c.from.is_none(), chmod, extract_archives: c.add, parents: c.parents };
        let this = &*self;
        let layer = self.layer_step(&key, |snap| {
            let mount = OverlayMount::mount_scratch(&this.ctx.store.tmp_dir()?, snap.lowerdirs, Some((snap.upperdir, snap.workdir)))
                .map_err(|e| this.fail(format!("mounting the rootfs: {e}")))?;
            let root = Root::open(mount.path()).map_err(|e| this.fail(e.to_string()))?;
            let owner = chown.as_deref().map(|spec| resolve_owner(&root, spec)).transpose().map_err(|e| this.fail(e))?;
            let opts = CopyOptions { owner, ..opts.clone() };
            copy_into(&root, &matches, &inline, &dest, &opts).map_err(|e| this.fail(e))?;
            Ok(())
        })?;
        drop(holders);
        drop(downloads);
        self.finish_step(key, layer, created_by);
        Ok(())
    }

    /// Mounts `layers` read-only at a scratch directory kept alive by `holders`; returns it.
    pub(crate) fn view(&self, layers: &[Layer], holders: &mut Vec<OverlayMount>) -> Result<PathBuf, Error> {
        let chain = self.ctx.store.unpack(layers)?;
        let lowerdirs = match &chain {
            Some(c) => {
                // A committed snapshot's dirs are its own tree plus its parents'.
                self.ctx.store.snapshots().dirs(c.as_str()).map_err(|e| self.fail(e.to_string()))?.lowerdirs
            }
            None => Vec::new(),
        };
        let mount = OverlayMount::mount_scratch(&self.ctx.store.tmp_dir()?, &lowerdirs, None)
            .map_err(|e| self.fail(format!("mounting a read-only view: {e}")))?;
        let path = mount.path().to_path_buf();
        holders.push(mount);
        Ok(path)
    }

    /// A step that may make a layer: reuse the cached result for `key`, or prepare a snapshot
    /// on the current layers, let `change` modify it, diff the upperdir into a layer, commit the
    /// snapshot and record the result in the cache.
    pub(crate) fn layer_step(&self, key: &Digest, change: impl FnOnce(&Snapshot<'_>) -> Result<(), Error>) -> Result<Option<Layer>, Error> {
        let ctx = self.ctx;
        let store = ctx.store;
        let index_key = crate::cache_key::layer_key(key, ctx.opts.compression, ctx.opts.source_date_epoch);
        if !ctx.opts.no_cache {
            if let Some(entry) = ctx.cache.get(&index_key) {
                if entry.layer.as_ref().is_none_or(|l| store.content().exists(&l.digest)) {
                    ctx.progress.event(Event::StepCached { id: self.step_id.clone() });
                    return Ok(entry.layer);
                }
            }
        }
        let chain = store.unpack(&self.layers)?;
        let snap_key = format!("build-{}", unique());
        store.snapshots().prepare(&snap_key, chain.as_ref()).map_err(|e| self.fail(e.to_string()))?;
        let mut guard = SnapshotGuard { store, key: Some(snap_key.clone()) };
        let dirs = store.snapshots().dirs(&snap_key).map_err(|e| self.fail(e.to_string()))?;
        let (upper, work) = dirs.upper.clone().expect("an active snapshot has an upperdir");
        change(&Snapshot { lowerdirs: &dirs.lowerdirs, upperdir: &upper, workdir: &work })?;

        // A step that changed nothing still makes a layer (an empty tar), as in BuildKit.
        let layer = {
            let opts = LayerOptions { compression: ctx.opts.compression, source_date_epoch: ctx.opts.source_date_epoch };
            let info = store.write_layer(&LayerSource::OverlayUpper(&upper), &opts)?;
            let new_chain = forge_layerstore::chain_id(chain.iter().chain([&info.diff_id])).expect("one diffID at least");
            if !store.snapshots().exists(&new_chain).map_err(|e| self.fail(e.to_string()))? {
                match store.snapshots().commit(&new_chain, &snap_key) {
                    Ok(()) => guard.key = None,
                    // Another build committed the same layer meanwhile; ours is dropped.
                    Err(forge_layerstore::snapshot::Error::AlreadyExists(_)) => {}
                    Err(e) => return Err(self.fail(e.to_string())),
                }
            }
            Some(Layer::from(&info))
        };
        ctx.cache.put(&index_key, &CacheEntry { layer: layer.clone() }).map_err(|e| self.fail(e.to_string()))?;
        Ok(layer)
    }

    pub(crate) fn finish_step(&mut self, key: Digest, layer: Option<Layer>, created_by: String) {
        let empty = layer.is_none();
        if let Some(l) = layer {
            self.config.rootfs.diff_ids.push(l.diff_id.clone());
            self.layers.push(l);
        }
        self.key = key;
        self.history(created_by, empty);
    }
}

/// Removes an uncommitted build snapshot, however the step ends.
struct SnapshotGuard<'s> {
    store: &'s forge_layerstore::Store,
    key: Option<String>,
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if let Some(k) = &self.key {
            let _ = self.store.snapshots().remove(k);
        }
    }
}

/// A name no other build or step of this process uses.
pub(crate) fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
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
}
