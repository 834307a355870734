//! Failures: [`Error`] for starting the server, [`ApiError`] for one request (docker's status
//! code and a message, sent as `{"message": ...}`).

use hyper::StatusCode;

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `-H` address forge cannot serve.
    #[error("invalid -H {addr:?}: {reason}")]
    Address {
        /// The address as given.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A socket could not be made ready.
    #[error("{what} {addr}: {source}")]
    Socket {
        /// What was being done.
        what: &'static str,
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--group` names no group.
    #[error("--group {0:?}: no such group")]
    NoSuchGroup(String),
    /// A TLS file cannot be used.
    #[error("{what} {}: {message}", path.display())]
    Tls {
        /// Which flag named it.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store cannot be opened.
    #[error("opening the store: {0}")]
    Store(#[from] forge_layerstore::store::Error),
}

/// One request's failure: the status docker answers with and the message its client shows.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }

    /// 400: the request itself is wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409.
    pub(crate) fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500 with the real cause.
    pub(crate) fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }

    /// 501: an endpoint or option forge does not have (yet).
    pub(crate) fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, message)
    }
}

impl From<forge_layerstore::store::Error> for ApiError {
    fn from(e: forge_layerstore::store::Error) -> ApiError {
        use forge_layerstore::store::Error as E;
        match &e {
            E::NotFound(name) => ApiError::not_found(format!("No such image: {name}")),
            E::Ambiguous(_) | E::InvalidName { .. } => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e),
        }
    }
}

impl From<forge_layerstore::index::Error> for ApiError {
    fn from(e: forge_layerstore::index::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<forge_runtime::Error> for ApiError {
    fn from(e: forge_runtime::Error) -> ApiError {
        use forge_runtime::Error as E;
        match &e {
            E::NotFound(name) => ApiError::not_found(format!("No such container: {name}")),
            E::NoSuchVolume(name) => ApiError::not_found(format!("No such volume: {name}")),
            E::VolumeInUse { .. } => ApiError::conflict(e.to_string()),
            E::Image { source: forge_layerstore::store::Error::NotFound(name), .. } => ApiError::not_found(format!("No such image: {name}")),
            E::NameInUse { .. } | E::WrongStatus { .. } | E::Pause { .. } => ApiError::conflict(e.to_string()),
            // docker's client turns these words into `run`'s exit codes 127 and 126.
            E::Exec { message, not_found: true } => ApiError::bad_request(format!("{message}: executable file not found in $PATH")),
            E::Exec { message, not_found: false } => ApiError::bad_request(format!("{message}: permission denied")),
            E::Ambiguous(_) | E::Invalid { .. } | E::NoCommand | E::Limits(_) => ApiError::bad_request(e.to_string()),
            _ => ApiError::internal(e),
        }
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::internal(format!("the request's worker failed: {e}"))
    }
}
