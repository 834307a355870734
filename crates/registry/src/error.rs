//! Registry client errors, each naming the registry, repository or blob involved.

/// A registry operation failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image reference does not parse.
    #[error("invalid reference {input:?}: {message}")]
    Reference {
        /// The text given.
        input: String,
        /// Why it is invalid.
        message: String,
    },
    /// The connection failed (after retries).
    #[error("{url}: {message}")]
    Connection {
        /// The URL being fetched.
        url: String,
        /// The transport's error.
        message: String,
    },
    /// The registry answered with an error status.
    #[error("{method} {url}: {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error body (shortened).
        body: String,
    },
    /// Authentication failed or the challenge was not understood.
    #[error("authenticating to {registry}: {message}")]
    Auth {
        /// The registry host.
        registry: String,
        /// What went wrong.
        message: String,
    },
    /// The registry sent something that is not what it should be (bad JSON, wrong digest).
    #[error("{what} from {registry}: {message}")]
    Invalid {
        /// Which document or blob.
        what: String,
        /// The registry host.
        registry: String,
        /// What is wrong.
        message: String,
    },
    /// The local store refused.
    #[error(transparent)]
    Store(#[from] forge_layerstore::store::Error),
    /// The local content store refused (including a blob whose digest did not verify).
    #[error(transparent)]
    Content(#[from] forge_layerstore::content::Error),
    /// Reading or writing a local file (docker config, CA file).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}
