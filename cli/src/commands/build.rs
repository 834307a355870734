//! `forge build [OPTIONS] CONTEXT`: build an image from a Dockerfile, as `docker build` does.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use forge_builder::{BuildOptions, Event, Network, Secret};
use forge_layerstore::Store;

use crate::commands::output::{self, OutputSpec};

/// Arguments of `forge build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` to read a tar of it from standard input.
    context: String,
    /// Name and optionally tag the image (`name:tag`); may be repeated.
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// The Dockerfile (default `CONTEXT/Dockerfile`; `-` reads it from standard input).
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    file: Option<String>,
    /// A build-time variable (`KEY=VALUE`, or `KEY` to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    target: Option<String>,
    /// Run every step even when its result is cached.
    #[arg(long)]
    no_cache: bool,
    /// A label for the image (`KEY=VALUE`); may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The network for RUN steps: `default`, `none` or `host`. Unlike docker, `default` means
    /// the host's network (forge sets up no bridge yet): steps reach the host's loopback
    /// services. On the host's network steps get no CAP_NET_RAW (no raw or packet sockets).
    /// `none` gives a step only its own loopback.
    #[arg(long, value_enum, default_value_t = NetworkArg::Default)]
    network: NetworkArg,
    /// A security option for RUN steps: `seccomp=unconfined` runs them without Docker's
    /// default seccomp profile (only when a step needs a system call it blocks).
    #[arg(long = "security-opt", value_name = "OPT")]
    security_opt: Vec<String>,
    /// Memory limit per RUN step (e.g. `512m`, `2g`).
    #[arg(short = 'm', long, value_name = "BYTES")]
    memory: Option<String>,
    /// Memory plus swap limit per RUN step; `-1` for unlimited swap.
    #[arg(long, value_name = "BYTES")]
    memory_swap: Option<String>,
    /// CPU shares (relative weight) of RUN steps.
    #[arg(short = 'c', long, value_name = "SHARES")]
    cpu_shares: Option<u64>,
    /// Number of CPUs a RUN step may use (e.g. `1.5`).
    #[arg(long, value_name = "CPUS")]
    cpus: Option<f64>,
    /// Maximum number of processes in a RUN step.
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` (or `env=VAR`).
    #[arg(long = "secret", value_name = "id=ID,src=PATH")]
    secrets: Vec<String>,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Where the result goes: `type=image` (default, the store), `type=oci,dest=FILE.tar`,
    /// `type=docker,dest=FILE.tar`, or `type=local,dest=DIR`.
    #[arg(short = 'o', long, value_name = "type=TYPE[,dest=PATH]")]
    output: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Push every `-t` name after the build (names must include the registry).
    #[arg(long)]
    push: bool,
    #[command(flatten)]
    registry: crate::commands::transfer::RegistryOptions,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = crate::commands::import::LayerCompression::Gzip)]
    compression: crate::commands::import::LayerCompression,
}

#[derive(Clone, Copy, ValueEnum)]
enum NetworkArg {
    /// The host's network, the same as `host` (forge has no bridge yet)
    Default,
    /// A network namespace with only loopback
    None,
    /// The host's network
    Host,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressMode {
    Auto,
    Tty,
    Plain,
    Json,
}

/// Runs `forge build`.
pub fn run(global: &crate::Global, args: BuildArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    // Checked before the build, not when tagging after it.
    for t in &args.tags {
        forge_layerstore::store::check_name(t).context("-t")?;
    }
    // Held until the image is tagged or exported, so a `forge store gc` beside the build
    // leaves its snapshots and blobs alone.
    let _lease = store.lease("build", &[])?;
    let output = match &args.output {
        Some(o) => OutputSpec::parse(o)?,
        None => OutputSpec::Image,
    };
    // Set first: a signal must also stop a read of standard input that never ends.
    let cancel = forge_builder::Cancel::new();
    let on_signal = cancel.clone();
    crate::signals::on_interrupt(move || on_signal.cancel());
    let stdin = || crate::signals::Interruptible::new(std::io::stdin().lock(), cancel.clone());
    // A context on stdin is unpacked into a scratch directory first.
    let _stdin_context;
    let context = if args.context == "-" {
        let dir = tempfile::Builder::new().prefix("context-").tempdir_in(store.tmp_dir()?)?;
        // The hardened layer extractor: a context tar may not write outside its directory.
        let opts = forge_layerstore::archive::ApplyOptions { whiteouts: forge_layerstore::archive::WhiteoutMode::Delete, device_nodes: false };
        forge_layerstore::archive::apply_layer(stdin(), dir.path(), &opts).context("unpacking the context tar from standard input")?;
        let path = dir.path().to_path_buf();
        _stdin_context = Some(dir);
        path
    } else {
        let path = PathBuf::from(&args.context);
        if !path.is_dir() {
            bail!("build context {:?} is not a directory", args.context);
        }
        path
    };

    let mut opts = BuildOptions::new(context.clone());
    match args.file.as_deref() {
        Some("-") => {
            if args.context == "-" {
                bail!("the context and the Dockerfile cannot both come from standard input");
            }
            opts.dockerfile_text = Some(forge_builder::read_dockerfile(stdin()).context("reading the Dockerfile from standard input")?);
        }
        Some(f) => opts.dockerfile = Some(PathBuf::from(f)),
        None => {}
    }
    for a in &args.build_args {
        match a.split_once('=') {
            Some((k, v)) => opts.build_args.insert(k.to_string(), v.to_string()),
            // `--build-arg KEY` takes the value from forge's environment, or is skipped.
            None => match std::env::var(a) {
                Ok(v) => opts.build_args.insert(a.clone(), v),
                Err(_) => None,
            },
        };
    }
    for l in &args.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        opts.labels.insert(k.to_string(), v.to_string());
    }
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.network = match args.network {
        NetworkArg::Default => Network::Default,
        NetworkArg::None => Network::None,
        NetworkArg::Host => Network::Host,
    };
    for o in &args.security_opt {
        match o.split_once(['=', ':']) {
            Some(("seccomp", profile)) => opts.seccomp = profile.parse().with_context(|| format!("--security-opt {o}"))?,
            _ => bail!("--security-opt {o:?} is not supported: forge knows seccomp=unconfined"),
        }
    }
    opts.limits.memory = args.memory.as_deref().map(parse_bytes).transpose()?;
    opts.limits.memory_swap = match args.memory_swap.as_deref() {
        Some("-1") => Some(u64::MAX),
        Some(s) => Some(parse_bytes(s)?),
        None => None,
    };
    opts.limits.cpu_shares = args.cpu_shares;
    if let Some(cpus) = args.cpus {
        if !(cpus > 0.0) {
            bail!("--cpus must be a positive number, got {cpus}");
        }
        let period = 100_000u64;
        opts.limits.cpu_quota = Some(((cpus * period as f64) as i64, period));
    }
    opts.limits.pids = args.pids_limit;
    opts.secrets = parse_secrets(&args.secrets)?;
    opts.compression = args.compression.into();
    opts.source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse().with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?),
        _ => None,
    };
    opts.cancel = cancel;

    let mode = match args.progress {
        _ if args.quiet => None,
        ProgressMode::Auto | ProgressMode::Tty if std::io::stderr().is_terminal() => Some(ProgressMode::Tty),
        ProgressMode::Auto => Some(ProgressMode::Plain),
        m => Some(m),
    };
    let printer = Printer::new(mode);
    let progress = |e: Event| printer.print(e);
    let bases = RegistryBases { client: args.registry.client(), runtime: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()? };
    let built = forge_builder::build(&store, &opts, Some(&bases), &progress)?;

    output::write(&store, &built, &output, &args.tags)?;
    if args.push {
        if args.tags.is_empty() {
            bail!("--push needs at least one -t name to push to");
        }
        for t in &args.tags {
            let dest = forge_registry::Reference::parse(t)?;
            let bar = crate::commands::transfer::progress(args.quiet);
            bases.runtime.block_on(bases.client.push(&store, t, &dest, bar.as_ref())).with_context(|| format!("pushing {dest}"))?;
            if !args.quiet {
                eprintln!("pushed {dest}");
            }
        }
    }
    if let Some(path) = &args.iidfile {
        std::fs::write(path, built.image_id.as_str()).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.quiet {
        crate::stdout::outln!("{}", built.image_id)?;
    } else if mode != Some(ProgressMode::Json) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "writing image {} done", built.image_id);
        for t in &args.tags {
            let _ = writeln!(err, "naming to {} done", forge_layerstore::store::normalize_tag(t));
        }
    }
    Ok(())
}

/// Base images missing from the store are pulled, as `docker build` does.
struct RegistryBases {
    client: forge_registry::Client,
    runtime: tokio::runtime::Runtime,
}

impl forge_builder::BaseImages for RegistryBases {
    fn fetch(&self, store: &Store, reference: &str) -> Result<String, String> {
        let r = forge_registry::Reference::parse(reference).map_err(|e| e.to_string())?;
        let pulled = self.runtime.block_on(self.client.pull(&r, store, &forge_registry::NoProgress)).map_err(|e| e.to_string())?;
        Ok(pulled.name)
    }
}

impl From<crate::commands::import::LayerCompression> for forge_layerstore::archive::Compression {
    fn from(c: crate::commands::import::LayerCompression) -> Self {
        match c {
            crate::commands::import::LayerCompression::Gzip => forge_layerstore::archive::Compression::Gzip,
            crate::commands::import::LayerCompression::Zstd => forge_layerstore::archive::Compression::Zstd,
        }
    }
}

/// `512`, `512k`, `64m`, `2g` (binary units, as docker).
fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let lower = s.trim().to_lowercase();
    let lower = lower.trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1u64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("invalid size {s:?} (use e.g. 512m or 2g)"))?;
    if n < 0.0 {
        bail!("invalid size {s:?}: negative");
    }
    Ok((n * mult as f64) as u64)
}

fn parse_secrets(specs: &[String]) -> anyhow::Result<BTreeMap<String, Secret>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => bail!("invalid --secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR"),
            }
        }
        let secret = match (src, env) {
            (Some(_), Some(_)) => bail!("invalid --secret {spec:?}: give src= or env=, not both"),
            (Some(src), None) => {
                if !src.is_file() {
                    bail!("--secret {spec:?}: {} is not a file", src.display());
                }
                id = id.or_else(|| src.file_name().map(|n| n.to_string_lossy().into_owned()));
                Secret::File(src)
            }
            // The value stays in memory: the builder puts it on a tmpfs only while a step uses it.
            (None, Some(var)) => {
                let value = std::env::var_os(&var).with_context(|| format!("--secret {spec:?}: environment variable {var} is not set"))?;
                id = id.or_else(|| Some(var.clone()));
                Secret::Value(std::os::unix::ffi::OsStringExt::into_vec(value))
            }
            (None, None) => bail!("invalid --secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR"),
        };
        match id {
            Some(id) => out.insert(id, secret),
            None => bail!("invalid --secret {spec:?}: expected id=ID,src=PATH or id=ID,env=VAR"),
        };
    }
    Ok(out)
}

#[derive(Default)]
struct PrinterState {
    /// Step ids in the order they started, to number them as buildx does.
    order: Vec<String>,
    /// The live view's line per running step (TTY mode).
    bars: std::collections::HashMap<String, indicatif::ProgressBar>,
    /// A CACHED step's line says so when it finishes.
    cached: std::collections::HashSet<String>,
}

/// Renders build events: a live view on a terminal (one line per running step with its
/// elapsed time and last output line; a finished step keeps its summary line), plain lines
/// (`#N ...` as buildx's plain mode), or JSON lines.
struct Printer {
    mode: Option<ProgressMode>,
    state: Mutex<PrinterState>,
    multi: indicatif::MultiProgress,
}

impl Printer {
    fn new(mode: Option<ProgressMode>) -> Printer {
        Printer { mode, state: Mutex::new(PrinterState::default()), multi: indicatif::MultiProgress::new() }
    }

    fn number(&self, id: &str) -> usize {
        let mut st = self.state.lock().unwrap();
        match st.order.iter().position(|s| s == id) {
            Some(i) => i + 1,
            None => {
                st.order.push(id.to_string());
                st.order.len()
            }
        }
    }

    fn print(&self, e: Event) {
        match self.mode {
            None => {}
            Some(ProgressMode::Json) => eprintln!("{}", serde_json::to_string(&e).unwrap_or_default()),
            Some(ProgressMode::Tty) => self.live(e),
            Some(_) => self.plain(e),
        }
    }

    fn plain(&self, e: Event) {
        let mut err = std::io::stderr().lock();
        let _ = match e {
            Event::StepStarted { id, stage, text, .. } => writeln!(err, "#{} [{stage}] {text}", self.number(&id)),
            Event::StepCached { id } => writeln!(err, "#{} CACHED", self.number(&id)),
            Event::Output { id, line, .. } => writeln!(err, "#{} {line}", self.number(&id)),
            Event::StepDone { id, elapsed, cpu_time, peak_memory } => {
                writeln!(err, "#{} DONE {:.1}s{}", self.number(&id), elapsed.as_secs_f64(), usage(cpu_time, peak_memory))
            }
            Event::Warning { message } => writeln!(err, "WARNING: {message}"),
        };
    }

    fn live(&self, e: Event) {
        match e {
            Event::StepStarted { id, stage, text, .. } => {
                let n = self.number(&id);
                let bar = self.multi.add(indicatif::ProgressBar::new_spinner());
                bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
                bar.set_prefix(format!("#{n} [{stage}] {text}"));
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                self.state.lock().unwrap().bars.insert(id, bar);
            }
            Event::StepCached { id } => {
                self.state.lock().unwrap().cached.insert(id);
            }
            Event::Output { id, line, .. } => {
                if let Some(bar) = self.state.lock().unwrap().bars.get(&id) {
                    bar.set_message(line);
                }
            }
            Event::StepDone { id, elapsed, cpu_time, peak_memory } => {
                let mut st = self.state.lock().unwrap();
                let cached = st.cached.remove(&id);
                if let Some(bar) = st.bars.remove(&id) {
                    bar.set_style(indicatif::ProgressStyle::with_template("  {prefix} {wide_msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()));
                    let what = if cached { "CACHED".to_string() } else { format!("DONE {:.1}s{}", elapsed.as_secs_f64(), usage(cpu_time, peak_memory)) };
                    bar.finish_with_message(what);
                }
            }
            Event::Warning { message } => {
                let _ = self.multi.println(format!("WARNING: {message}"));
            }
        }
    }
}

/// ` cpu 1.20s peak 30.5 MiB`, for RUN steps.
fn usage(cpu_time: Option<std::time::Duration>, peak_memory: Option<u64>) -> String {
    let mut extra = String::new();
    if let Some(cpu) = cpu_time {
        extra.push_str(&format!(" cpu {:.2}s", cpu.as_secs_f64()));
    }
    if let Some(mem) = peak_memory {
        extra.push_str(&format!(" peak {:.1} MiB", mem as f64 / (1 << 20) as f64));
    }
    extra
}
