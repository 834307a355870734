//! `forge cp [-a] [-L] CONTAINER:SRC DEST|-` and `forge cp [-a] [-L] SRC|- CONTAINER:DEST`:
//! files between a container (stopped or running) and the host, with docker's naming rules.
//! Paths in the container resolve inside its root (forge-runtime's `Rootfs`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::Args;
use forge_runtime::{ArchiveOptions, PathKind, Rootfs};

use crate::commands::create::containers;

/// Arguments of `forge cp`.
#[derive(Args)]
pub struct CpArgs {
    /// Archive mode: keep the files' owners (otherwise files copied in belong to the
    /// container's root, and files copied out to you).
    #[arg(short, long)]
    archive: bool,
    /// Follow a symlink SRC (inside the container for a container's path).
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// `CONTAINER:PATH`, a host path, or `-` for a tar on standard input.
    src: String,
    /// `CONTAINER:PATH`, a host path, or `-` for a tar on standard output.
    dest: String,
}

/// Where one side of a copy is.
enum Side<'a> {
    Container(&'a str, &'a str),
    Host(&'a str),
}

/// docker's rule: a path that starts with `/` or `.`, or has no `:`, is the host's.
fn side(arg: &str) -> Side<'_> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return Side::Host(arg);
    }
    match arg.split_once(':') {
        Some((c, p)) if !c.is_empty() && !c.contains('/') => Side::Container(c, p),
        _ => Side::Host(arg),
    }
}

/// Runs `forge cp`.
pub fn run(global: &crate::Global, args: CpArgs) -> anyhow::Result<()> {
    match (side(&args.src), side(&args.dest)) {
        (Side::Container(..), Side::Container(..)) => bail!("copying between containers is not supported"),
        (Side::Host(_), Side::Host(_)) => bail!("must specify at least one container source (CONTAINER:PATH)"),
        (Side::Container(c, src), Side::Host(dest)) => copy_out(global, &args, c, src, dest),
        (Side::Host(src), Side::Container(c, dest)) => copy_in(global, &args, src, c, dest),
    }
}

fn owner_here() -> (u32, u32) {
    (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw())
}

/// docker's copy target: where the source's top entry lands, given what is at the
/// destination. `contents`: the source ends in `/.`, its entries go into the destination.
fn target(src: &str, src_kind: PathKind, dest: &str, dest_kind: PathKind, contents: bool) -> anyhow::Result<PathBuf> {
    let base = Path::new(src).file_name().map(PathBuf::from);
    let into = |base: Option<PathBuf>| Ok(base.map_or_else(|| PathBuf::from(dest), |b| Path::new(dest).join(b)));
    match (src_kind, dest_kind) {
        (PathKind::Dir, PathKind::Other) => bail!("cannot copy a directory to a file: {dest}"),
        (PathKind::Dir, PathKind::Dir) if !contents => into(base),
        (PathKind::Dir, _) => Ok(PathBuf::from(dest)),
        (_, PathKind::Dir) => into(base),
        (_, PathKind::Missing) if dest.ends_with('/') => bail!("destination directory {dest} does not exist"),
        _ => Ok(PathBuf::from(dest)),
    }
}

/// Fails unless `path`'s parent directory exists in `tree`.
fn parent_exists(tree: &Rootfs, path: &Path, shown: &str) -> anyhow::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if tree.kind(&parent.to_string_lossy(), true)? != PathKind::Dir {
        bail!("the directory of {shown} ({}) does not exist", parent.display());
    }
    Ok(())
}

/// Streams `pack`'s tar into `unpack` through a pipe: nothing is held whole.
fn pipe(pack: impl FnOnce(File) -> anyhow::Result<()> + Send, unpack: impl FnOnce(File) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).context("making a pipe")?;
    let (reader, writer) = (File::from(reader), File::from(writer));
    std::thread::scope(|s| {
        let packer = s.spawn(move || pack(writer));
        let unpacked = unpack(reader);
        let packed = packer.join().unwrap_or_else(|_| Err(anyhow!("the copying thread panicked")));
        // The packer's error explains an unpacker that saw the stream end early.
        packed.and(unpacked)
    })
}

fn copy_out(global: &crate::Global, args: &CpArgs, name: &str, src: &str, dest: &str) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let container = containers.get(name)?;
    let root = containers.rootfs(&container, false)?;
    let src_kind = root.kind(src, args.follow_link)?;
    if src_kind == PathKind::Missing {
        bail!("could not find the file {src} in container {name}");
    }
    let contents = src.ends_with("/.") || src == ".";
    if dest == "-" {
        let top = Path::new(src).file_name().map_or(".".into(), |n| n.to_string_lossy().into_owned());
        let opts = ArchiveOptions { follow: args.follow_link, owner: None };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        root.archive(src, &top, &opts, &mut out)?;
        return out.flush().context("writing the archive to standard output");
    }
    let dest = absolute(dest)?;
    let host = Rootfs::host()?;
    let dest_kind = host.kind(&dest, true)?;
    let to = target(src, src_kind, &dest, dest_kind, contents)?;
    parent_exists(&host, &to, &dest)?;
    let opts = ArchiveOptions { follow: args.follow_link, owner: if args.archive { None } else { Some(owner_here()) } };
    let name = to.to_string_lossy().into_owned();
    pipe(|w| Ok(root.archive(src, &name, &opts, w)?), |r| Ok(host.extract(r)?))
}

fn copy_in(global: &crate::Global, args: &CpArgs, src: &str, name: &str, dest: &str) -> anyhow::Result<()> {
    let containers = containers(global)?;
    let container = containers.get(name)?;
    let root = containers.rootfs(&container, true)?;
    let dest = if dest.starts_with('/') { dest.to_string() } else { format!("/{dest}") };
    let dest_kind = root.kind(&dest, true)?;
    // Files copied in belong to the container's root unless -a keeps their owners.
    let owner = if args.archive { None } else { Some((0, 0)) };
    if src == "-" {
        if dest_kind != PathKind::Dir {
            bail!("destination {dest} in container {name} must be a directory when copying a tar from standard input");
        }
        return Ok(root.extract_under(std::io::stdin(), &dest, owner)?);
    }
    let src_abs = absolute(src)?;
    let host = Rootfs::host()?;
    let src_kind = host.kind(&src_abs, args.follow_link)?;
    if src_kind == PathKind::Missing {
        bail!("could not find {src} on the host");
    }
    let contents = src.ends_with("/.") || src == ".";
    let to = target(&src_abs, src_kind, &dest, dest_kind, contents)?;
    parent_exists(&root, &to, &format!("{name}:{dest}"))?;
    let opts = ArchiveOptions { follow: args.follow_link, owner };
    let to = to.to_string_lossy().into_owned();
    pipe(|w| Ok(host.archive(&src_abs, &to, &opts, w)?), |r| Ok(root.extract(r)?))
}

/// A host path made absolute against the current directory (a trailing `/` or `/.` kept: they
/// mean something to `cp`).
fn absolute(path: &str) -> anyhow::Result<String> {
    if path.starts_with('/') {
        return Ok(path.to_string());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    Ok(format!("{}/{path}", cwd.display()))
}
