//! The Docker Engine API over forge's library crates: what `forge serve` answers on a unix
//! socket, so the `docker` CLI, docker-compose and the Docker SDKs drive forge unchanged.
//!
//! forge stays daemonless: the server keeps no state of its own. Every request opens what it
//! needs from the store (tags, containers, leases are files there), so the daemonless CLI and
//! the server see the same images and containers at the same time, and a restarted server
//! finds everything where it was.
//!
//! The code follows a request: `listen.rs` binds the sockets (a unix socket mode 0660, root
//! and an optional group; TCP on loopback, or anywhere with mutual TLS from `tls.rs`),
//! `server.rs` accepts connections and drains them on shutdown, `router.rs` strips and checks
//! the `/vX.YZ` prefix (`version.rs`) and sends the request to its handler by path; the
//! handlers (`system.rs`, `images.rs`, `build.rs`, `containers.rs`, `running.rs`, `exec.rs`,
//! `archive.rs`, `volumes.rs`) read their parameters
//! through `query.rs` and registry credentials through `credentials.rs`, call the library
//! crates and answer through `http.rs` (JSON, JSON-lines streams, `{"message": ...}` errors
//! with docker's status codes, `error.rs`).
//!
//! JSON shapes come from `bollard-stubs` (generated from the Engine API's swagger file); a
//! handler says so where it writes one by hand.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), forge_api::Error> {
//! let opts = forge_api::Options {
//!     root: "/var/lib/forge".into(),
//!     listen: vec!["unix:///run/forge.sock".parse()?],
//!     group: Some("docker".into()),
//!     registry: forge_registry::ClientConfig::default(),
//!     tls: None,
//!     monitor: forge_runtime::MonitorCommand {
//!         program: "/usr/bin/forge".into(),
//!         args: vec!["--root".into(), "/var/lib/forge".into(), "container".into(), "monitor".into()],
//!     },
//! };
//! // Until SIGTERM or SIGINT; then requests in flight finish and the socket is removed.
//! forge_api::serve(opts).await
//! # }
//! ```

#![deny(missing_docs)]

mod archive;
mod build;
mod containers;
mod credentials;
mod error;
mod exec;
mod http;
mod images;
mod listen;
mod query;
mod router;
mod running;
mod server;
mod system;
mod tls;
mod version;
mod volumes;

pub use error::Error;
pub use listen::{Listener, ListenSpec};
pub use server::{serve, Options};
pub use tls::TlsFiles;
pub use version::{API_VERSION, MIN_API_VERSION};
