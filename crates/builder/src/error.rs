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
    /// An option is invalid.
    #[error("{0}")]
    Options(String),
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
    /// An error located at this step.
    pub(crate) fn fail(&self, message: String) -> Error {
        Error::Step { file: self.file.clone(), line: self.line, instruction: self.instruction.clone(), message }
    }
}
