//! Mutual TLS for TCP listeners (`--tlsverify`): the server shows its certificate and accepts
//! only clients whose certificate the given CA signed, as dockerd does with `--tlsverify`.
//! Whoever holds such a certificate is root on this host; nobody else gets past the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::error::Error;

/// The PEM files of `--tlscacert`, `--tlscert` and `--tlskey`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signs client certificates.
    pub ca: PathBuf,
    /// The server's certificate (chain).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

fn tls_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(String) -> Error + 'a {
    move |message| Error::Tls { what, path: path.to_path_buf(), message }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(path, what)(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(path, what)(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_err(path, what)("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The acceptor for `files`; every problem with them is found here, before serving.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for ca in certs(&files.ca, "--tlscacert")? {
        roots.add(ca).map_err(|e| tls_err(&files.ca, "--tlscacert")(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err(&files.ca, "--tlscacert")(e.to_string()))?;
    let chain = certs(&files.cert, "--tlscert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| tls_err(&files.key, "--tlskey")(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&files.cert, "--tlscert")(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err(&files.cert, "--tlscert and --tlskey")(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
