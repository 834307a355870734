//! Build errors. A failure in a step names the Dockerfile line it came from.

use std::path::PathBuf;

impl From<forge_parser::Error> for Error {
    fn from(e: forge_parser::Error) -> Error {
        Error::Dockerfile(e)
    }
}

/// A build failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Dockerfile does not parse or lower to a graph (the message has file:line:col and a
    /// caret).
    #[error("{}", .0.render())]
    Dockerfile(forge_parser::Error),
    /// Reading the Dockerfile or context failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being read.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The Dockerfile or a `.dockerignore` cannot be used.
    #[error("reading the {what} {}: {problem}", path.display())]
    BuildFile {
        /// `Dockerfile` or `.dockerignore`.
        what: &'static str,
        /// The path as given (never its target: that may be a host file).
        path: PathBuf,
        /// What is wrong with it.
        problem: crate::BuildFileError,
    },
    /// A step failed.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        /// The Dockerfile's name.
        file: String,
        /// The step's line.
        line: usize,
        /// The instruction, abbreviated.
        instruction: String,
        /// What kind of failure it was.
        kind: StepErrorKind,
        /// What went wrong.
        message: String,
    },
    /// A RUN step exited with a failure; `output` holds its last lines.
    #[error("{file}:{line}: {instruction}: process did not complete successfully: {status}{}", tail(.output))]
    RunFailed {
        /// The Dockerfile's name.
        file: String,
        /// The step's line.
        line: usize,
        /// The instruction, abbreviated.
        instruction: String,
        /// How it ended.
        status: String,
        /// Its last lines of output.
        output: Vec<String>,
    },
    /// The store refused.
    #[error(transparent)]
    Store(#[from] forge_layerstore::store::Error),
    /// The build was cancelled.
    #[error("build cancelled")]
    Cancelled,
    /// A layer a `--cache-from` registry cache promised could not be fetched or was wrong.
    #[error("fetching a layer of the build cache: {message} (build again without that --cache-from)")]
    CacheLayer {
        /// What failed.
        message: String,
    },
    /// `--cache-to` could not write the cache.
    #[error("exporting the build cache to {}: {message}", path.display())]
    CacheExport {
        /// The cache's directory.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The build context cannot be read.
    #[error("build context {}: {message}", path.display())]
    Context {
        /// The context directory.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A `.dockerignore` does not parse.
    #[error("{}: {message}", path.display())]
    Dockerignore {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// The store's cache index cannot be opened.
    #[error(transparent)]
    Cache(#[from] forge_layerstore::cache::Error),
    /// The image config cannot be encoded.
    #[error("encoding the image config: {0}")]
    Config(#[from] serde_json::Error),
    /// A build thread panicked (a bug in forge).
    #[error("a build thread panicked")]
    Panicked,
}

impl Error {
    /// The kind of a step's failure; `None` for failures that are not a step's (see the
    /// variants: [`Error::RunFailed`] and [`Error::Cancelled`] are kinds of their own).
    pub fn step_kind(&self) -> Option<StepErrorKind> {
        match self {
            Error::Step { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// The class of a step's failure, so that callers (and an API's status codes) tell them apart
/// without reading the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepErrorKind {
    /// A variable expansion failed (bad syntax, `${X:?message}`).
    Expansion,
    /// The instruction's arguments are invalid: a `--chmod`, an EXPOSE port, a mount without
    /// its target, an ONBUILD trigger, several sources onto a file.
    InvalidInstruction,
    /// forge does not do what the instruction asks: another platform, ssh mounts, git
    /// sources, URLs in COPY, `--security=insecure`.
    Unsupported,
    /// A COPY/ADD or bind-mount source does not exist (or is excluded).
    SourceNotFound,
    /// A `--chown` or `USER` name has no entry in the image's passwd or group file.
    UnknownUser,
    /// A base or `--from` image is not in the store and cannot be pulled.
    BaseImage,
    /// A secret the step needs was not given or cannot be used.
    Secret,
    /// The image config would grow past what an image config may hold.
    TooLarge,
    /// An `ADD <url>` download failed or did not match its checksum.
    Download,
    /// The sandbox could not run the step (not: the step's command failed, that is
    /// [`Error::RunFailed`]).
    Sandbox,
    /// Reading or writing files, or mounting, on the host or in the rootfs failed.
    Io,
    /// The store's snapshots, layers or cache index failed.
    Store,
}

/// A step's failure before it is located at the step: its kind and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault {
    pub(crate) kind: StepErrorKind,
    pub(crate) message: String,
}

impl Fault {
    pub(crate) fn new(kind: StepErrorKind, message: impl Into<String>) -> Fault {
        Fault { kind, message: message.into() }
    }
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("\n--- last lines of output ---\n{}", lines.join("\n"))
}

/// Where a step is: its progress id and its place in the Dockerfile, to locate its errors.
#[derive(Debug, Clone)]
pub(crate) struct At {
    /// `<stage index>/<step index>`.
    pub(crate) id: String,
    pub(crate) file: String,
    pub(crate) line: usize,
    /// The instruction, abbreviated.
    pub(crate) instruction: String,
}

impl At {
    /// An error of `kind` located at this step.
    pub(crate) fn fail(&self, kind: StepErrorKind, message: impl Into<String>) -> Error {
        Error::Step { file: self.file.clone(), line: self.line, instruction: self.instruction.clone(), kind, message: message.into() }
    }

    /// `fault` located at this step.
    pub(crate) fn locate(&self, fault: Fault) -> Error {
        self.fail(fault.kind, fault.message)
    }
}
