//! `forge commit`, `forge export` and `forge diff`: a container's files as an image, a tar, or
//! a list of changes.

use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use forge_layerstore::diff::{LayerOptions, LayerSource};
use forge_layerstore::image::History;
use forge_layerstore::{Layer, Store};
use forge_parser::{Command, Instruction};
use forge_runtime::ArchiveOptions;

use crate::commands::create::containers;
use crate::stdout::outln;

/// Arguments of `forge commit`.
#[derive(Args)]
pub struct CommitArgs {
    /// Commit message (the history entry's comment).
    #[arg(short, long)]
    message: Option<String>,
    /// Author (`Name <email>`).
    #[arg(short, long)]
    author: Option<String>,
    /// A Dockerfile instruction applied to the image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
    /// LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL); repeatable.
    #[arg(short, long = "change")]
    change: Vec<String>,
    /// Freeze a running container while its layer is written (`--pause=false`: don't).
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pause: bool,
    /// The container (ID, ID prefix or name).
    container: String,
    /// The new image's name.
    repository: Option<String>,
}

/// Runs `forge commit`: prints the new image's ID.
pub fn commit(global: &crate::Global, args: CommitArgs) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let c = containers.get(&args.container)?;
    let image = store.image(&c.config.image_digest).with_context(|| format!("reading the image of container {} ({})", c.short_id(), c.config.image))?;
    let mut layers = image.layers()?;
    let mut config = image.config.clone();
    // The container's resolved settings become the image's, as docker commits them.
    config.config.env = Some(c.config.env.clone());
    if config.config.entrypoint.is_none() {
        config.config.cmd = Some(c.config.args.clone());
    }
    if !c.config.working_dir.is_empty() {
        config.config.working_dir = Some(c.config.working_dir.clone());
    }
    if !c.config.user.is_empty() {
        config.config.user = Some(c.config.user.clone());
    }
    for change in &args.change {
        apply_change(&mut config, change)?;
    }
    let _lease = store.lease("commit", &[image.descriptor.digest().to_string().parse()?])?;
    // Frozen, a running container cannot change its files while they are read.
    let _thaw = if args.pause && c.state.status == forge_runtime::Status::Running && !c.state.paused {
        containers.pause(&c)?;
        Some(Thaw(&containers, &c))
    } else {
        None
    };
    // The same differ as a build's RUN step: the upperdir is the change set.
    let upper = containers.writable_layer(&c)?;
    let info = store.write_layer(&LayerSource::OverlayUpper(&upper), &LayerOptions::default()).context("writing the container's layer")?;
    layers.push(Layer::from(&info));
    let created = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    config.created = Some(created.clone());
    if let Some(a) = &args.author {
        config.author = Some(a.clone());
    }
    config.rootfs.diff_ids.push(info.diff_id.clone());
    config.history.push(History { created: Some(created), created_by: Some(c.config.args.join(" ")), author: args.author.clone(), comment: args.message.clone(), empty_layer: None });
    let manifest = store.write_image(&config, &layers)?;
    if let Some(name) = &args.repository {
        store.tag(name, &manifest)?;
    }
    let id = store.image_of(&manifest)?.id()?;
    outln!("{id}")
}

/// Unpauses the container it paused, however the commit ends.
struct Thaw<'a>(&'a forge_runtime::Containers, &'a forge_runtime::Container);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.unpause(self.1) {
            let _ = writeln!(std::io::stderr(), "warning: container {} stays paused: {e}", self.1.short_id());
        }
    }
}

/// Applies one `-c` instruction (docker's commit subset) to `config`.
fn apply_change(config: &mut forge_layerstore::ImageConfig, change: &str) -> anyhow::Result<()> {
    let file = forge_parser::parse(&format!("FROM scratch\n{change}\n"), "--change").with_context(|| format!("parsing --change {change:?}"))?;
    let instructions = file.instructions().with_context(|| format!("parsing --change {change:?}"))?;
    let [_, instruction] = instructions.as_slice() else { bail!("--change {change:?}: give exactly one instruction") };
    let argv = |c: &Command| match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    };
    let c = &mut config.config;
    match &instruction.value {
        Instruction::Cmd(cmd) => c.cmd = Some(argv(cmd)),
        Instruction::Entrypoint(cmd) => c.entrypoint = Some(argv(cmd)),
        Instruction::Env(pairs) => {
            let env = c.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(ek, _)| ek) != k);
                env.push(format!("{k}={}", unquote(v)));
            }
        }
        Instruction::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs {
                labels.insert(unquote(k), unquote(v));
            }
        }
        Instruction::Expose(ports) => {
            let exposed = c.exposed_ports.get_or_insert_with(Default::default);
            for p in ports {
                let p = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                exposed.insert(p, serde_json::json!({}));
            }
        }
        Instruction::Volume(paths) => {
            let volumes = c.volumes.get_or_insert_with(Default::default);
            for p in paths {
                volumes.insert(p.clone(), serde_json::json!({}));
            }
        }
        Instruction::User(u) => c.user = Some(u.clone()),
        Instruction::Workdir(w) => c.working_dir = Some(w.clone()),
        Instruction::StopSignal(s) => c.stop_signal = Some(s.clone()),
        other => bail!("--change {change:?}: {} cannot be changed by commit (docker's subset: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, VOLUME, WORKDIR, STOPSIGNAL)", keyword(other)),
    }
    Ok(())
}

fn keyword(i: &Instruction) -> &'static str {
    match i {
        Instruction::From(_) => "FROM",
        Instruction::Run(_) => "RUN",
        Instruction::Copy(_) => "COPY/ADD",
        Instruction::Arg(_) => "ARG",
        Instruction::Shell(_) => "SHELL",
        Instruction::Maintainer(_) => "MAINTAINER",
        Instruction::Onbuild { .. } => "ONBUILD",
        Instruction::Healthcheck(_) => "HEALTHCHECK",
        _ => "this instruction",
    }
}

/// The parser keeps quotes in ENV and LABEL values; a value quoted whole loses them.
fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return v[1..v.len() - 1].to_string();
        }
    }
    v.to_string()
}

/// Arguments of `forge export`.
#[derive(Args)]
pub struct ExportArgs {
    /// Write to this file instead of standard output.
    #[arg(short, long)]
    output: Option<std::path::PathBuf>,
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge export`: the container's files (its layers flattened, without its mounts) as a tar.
pub fn export(global: &crate::Global, args: ExportArgs) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let c = containers.get(&args.container)?;
    let root = containers.snapshot_view(&c)?;
    let opts = ArchiveOptions::default();
    match &args.output {
        Some(path) => {
            // Written beside, then renamed: an interrupted export leaves no half archive.
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::Builder::new().prefix(".forge-export-").tempfile_in(dir).with_context(|| format!("creating a file in {}", dir.display()))?;
            let mut out = std::io::BufWriter::new(tmp.as_file_mut());
            root.archive("/", "", &opts, &mut out)?;
            out.flush().with_context(|| format!("writing {}", path.display()))?;
            drop(out);
            tmp.persist(path).with_context(|| format!("writing {}", path.display()))?;
            Ok(())
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            root.archive("/", "", &opts, &mut out)?;
            out.flush().context("writing the archive to standard output")
        }
    }
}

/// Arguments of `forge diff`.
#[derive(Args)]
pub struct DiffArgs {
    /// The container (ID, ID prefix or name).
    container: String,
}

/// Runs `forge diff`: `A`dded, `C`hanged and `D`eleted paths, as docker prints them.
pub fn diff(global: &crate::Global, args: DiffArgs) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let c = containers.get(&args.container)?;
    for (kind, path) in containers.changes(&c)? {
        outln!("{kind} {path}")?;
    }
    Ok(())
}
