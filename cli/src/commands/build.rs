//! `forge build [OPTIONS] CONTEXT`: build an image from a Dockerfile, as `docker build` does.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use forge_builder::{BuildOptions, ByteSize, Cpus, KeyValue, MemorySwap, NetworkMode, SecretSpec, SecurityOpt, SourceDateEpoch};
use forge_layerstore::Store;

use crate::commands::on_demand::OnDemandRuntime;
use crate::commands::output::{self, OutputSpec};
use crate::progress::{Printer, ProgressMode};

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
    /// Say why each step that missed the cache missed: which input (a context file, an ARG or
    /// ENV value, the parent layer, the instruction, a mount source) differs from the nearest
    /// cached step. With `--progress json`, a `cache_miss` event per step.
    #[arg(long)]
    explain_cache: bool,
    /// Export the build cache: `type=local,dest=DIR` (an OCI layout directory) or
    /// `type=registry,ref=REGISTRY/REPO:TAG`, with `mode=min` (the final image's steps, the
    /// default) or `mode=max` (every stage's), `compression=gzip|zstd|uncompressed` (the layers'
    /// form in the cache; default as the images have them) and `cache-mounts=true`. Repeatable.
    #[arg(long = "cache-to", value_name = "type=TYPE,dest=DIR|ref=REF")]
    cache_to: Vec<String>,
    /// Reuse steps from a cache `--cache-to` wrote: `type=local,src=DIR` or
    /// `type=registry,ref=REF`. A cache that does not exist yet is not an error. A registry
    /// cache's layers are fetched only when read (a step runs on them, or the image is run,
    /// pushed or saved). Repeatable.
    #[arg(long = "cache-from", value_name = "type=TYPE,src=DIR|ref=REF")]
    cache_from: Vec<String>,
    /// A label for the image (`KEY=VALUE`); may be repeated.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The network for RUN steps: `default`, `none` or `host`. `default`, as docker's, is a
    /// namespace of the step's own behind forge's bridge with NAT: it reaches what the host
    /// reaches, but not the host's loopback services. `host` is the host's network, where steps
    /// get no CAP_NET_RAW (no raw or packet sockets). `none` gives a step only its own loopback.
    #[arg(long, default_value = "default", value_parser = network_value())]
    network: NetworkMode,
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
    cpus: Option<String>,
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
    #[arg(long, value_enum, default_value_t = ProgressArg::Auto)]
    progress: ProgressArg,
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
    /// How to store layers: none (plain tars, gzipped when the image is pushed or saved) or
    /// compressed right away.
    #[arg(long, value_enum, default_value_t = crate::commands::import::LayerCompression::None)]
    compression: crate::commands::import::LayerCompression,
}

/// `--network`: clap lists and checks the names, the library's `FromStr` makes the value.
fn network_value() -> impl clap::builder::TypedValueParser<Value = NetworkMode> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["default", "none", "host"]).try_map(|s| s.parse::<NetworkMode>())
}

/// `--progress`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProgressArg {
    Auto,
    Tty,
    Plain,
    Json,
}

/// Runs `forge build`.
pub fn run(global: &crate::Global, args: BuildArgs) -> anyhow::Result<()> {
    let store_root = global.store_root()?;
    let registry = args.registry.for_store(&store_root);
    let runtime = std::sync::Arc::new(OnDemandRuntime::default());
    let cache_registry: std::sync::Arc<dyn forge_builder::CacheRegistry> = std::sync::Arc::new(crate::commands::build_cache::RegistryCache { client: forge_registry::Client::new(registry.clone()), runtime: runtime.clone(), config: registry.clone() });
    let cache_from: Vec<forge_builder::CacheFrom> = args.cache_from.iter().map(|v| v.parse()).collect::<Result<_, _>>().context("--cache-from")?;
    // Read from here on, while the store is opened and the build set up: for a build that
    // only hits a registry's cache, the round trip is most of its time.
    let cache_prefetch = (!cache_from.is_empty()).then(|| forge_builder::CachePrefetch::start(cache_from.clone(), Some(cache_registry.clone())));
    let store = crate::commands::build_cache::fetching(Store::open(&store_root).context("opening the store")?, registry.clone());
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
        opts.build_args.extend(a.parse::<KeyValue>()?.build_arg());
    }
    for l in &args.labels {
        let (k, v) = l.parse::<KeyValue>()?.label();
        opts.labels.insert(k, v);
    }
    opts.target = args.target.clone();
    opts.no_cache = args.no_cache;
    opts.explain_cache = args.explain_cache;
    opts.cache_to = args.cache_to.iter().map(|v| v.parse()).collect::<Result<_, _>>().context("--cache-to")?;
    opts.cache_from = cache_from;
    opts.cache_prefetch = cache_prefetch;
    opts.network = args.network;
    for o in &args.security_opt {
        match o.parse::<SecurityOpt>()? {
            SecurityOpt::Seccomp(profile) => opts.seccomp = profile,
        }
    }
    opts.limits.memory = args.memory.as_deref().map(str::parse::<ByteSize>).transpose()?.map(|b| b.0);
    opts.limits.memory_swap = args.memory_swap.as_deref().map(str::parse::<MemorySwap>).transpose()?.map(|m| m.0);
    opts.limits.cpu_shares = args.cpu_shares;
    opts.limits.cpu_quota = args.cpus.as_deref().map(str::parse::<Cpus>).transpose()?.map(Cpus::cfs_quota);
    opts.limits.pids = args.pids_limit;
    for spec in &args.secrets {
        let spec: SecretSpec = spec.parse()?;
        opts.secrets.insert(spec.id.clone(), spec.resolve()?);
    }
    opts.compression = args.compression.into();
    opts.source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(v.parse::<SourceDateEpoch>()?.0),
        _ => None,
    };
    opts.cancel = cancel;
    // Layers stay snapshots until read; a tagged image's are stored after the build (see
    // `finish_tags`).
    opts.lazy_layers = true;

    let mode = match args.progress {
        _ if args.quiet => None,
        ProgressArg::Auto | ProgressArg::Tty if std::io::stderr().is_terminal() => Some(ProgressMode::Tty),
        ProgressArg::Auto | ProgressArg::Plain => Some(ProgressMode::Plain),
        ProgressArg::Tty => Some(ProgressMode::Tty),
        ProgressArg::Json => Some(ProgressMode::Json),
    };
    let printer = Printer::new(mode);
    let bases = RegistryBases { client: forge_registry::Client::new(registry), runtime };
    opts.cache_registry = Some(cache_registry);
    let built = forge_builder::build(&store, &opts, Some(&bases), &printer)?;

    let deferred = output::write(&store, &built, &output, &args.tags)?;
    let pushed = if args.push { push_all(&args, &store, &bases) } else { Ok(()) };
    // After the push (which compresses straight from the snapshots), so the two do not share
    // the cores; whatever the push's fate.
    if deferred {
        crate::commands::finish_tags::spawn(&store_root)?;
    }
    pushed?;
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

/// `--push`: every `-t` name to its registry.
fn push_all(args: &BuildArgs, store: &Store, bases: &RegistryBases) -> anyhow::Result<()> {
    if args.tags.is_empty() {
        bail!("--push needs at least one -t name to push to");
    }
    for t in &args.tags {
        let dest = forge_registry::Reference::parse(t)?;
        let bar = crate::commands::transfer::progress(args.quiet);
        bases.runtime.block_on(bases.client.push(store, t, &dest, bar.as_ref())).context("starting the registry client's runtime")?.with_context(|| format!("pushing {dest}"))?;
        if !args.quiet {
            eprintln!("pushed {dest}");
        }
    }
    Ok(())
}

/// Base images missing from the store are pulled, as `docker build` does.
struct RegistryBases {
    client: forge_registry::Client,
    runtime: std::sync::Arc<OnDemandRuntime>,
}

impl forge_builder::BaseImages for RegistryBases {
    fn fetch(&self, store: &Store, reference: &str) -> Result<String, String> {
        let r = forge_registry::Reference::parse(reference).map_err(|e| e.to_string())?;
        let pulled = self.runtime.block_on(self.client.pull(&r, store, &forge_registry::NoProgress)).map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
        Ok(pulled.name)
    }
}

impl From<crate::commands::import::LayerCompression> for forge_layerstore::archive::Compression {
    fn from(c: crate::commands::import::LayerCompression) -> Self {
        match c {
            crate::commands::import::LayerCompression::None => forge_layerstore::archive::Compression::None,
            crate::commands::import::LayerCompression::Gzip => forge_layerstore::archive::Compression::Gzip,
            crate::commands::import::LayerCompression::Zstd => forge_layerstore::archive::Compression::Zstd,
        }
    }
}
