//! `ADD <url>`: the file is downloaded (streamed to disk, never held in memory), checked against
//! `--checksum` when given, and then copied like a context file named after the URL's last path
//! segment, with mode 0600 and the mtime of the response's Last-Modified (0 without one), as
//! BuildKit gives them.
//! Remote archives are not extracted, as in Docker.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use forge_layerstore::digest::HashingWriter;
use forge_layerstore::Digest;

use crate::source::{Entry, Matched};

/// Whether a source names a remote file.
pub(crate) fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// Downloads `url` into `dir`; returns the match to copy and the content's digest.
pub(crate) fn fetch(url: &str, dir: &Path, checksum: Option<&str>) -> Result<(Matched, Digest), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let name = parsed.path_segments().and_then(|mut s| s.next_back()).filter(|n| !n.is_empty()).unwrap_or("download").to_string();
    // As the registry client: reqwest has no TLS provider of its own; an error means one is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;
    let mut resp = client.get(parsed).send().map_err(|e| format!("downloading {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("downloading {url}: {}", resp.status()));
    }
    let modified = resp
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let path = dir.join(&name);
    let file = File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut writer = HashingWriter::new(io::BufWriter::new(file));
    resp.copy_to(&mut writer).map_err(|e| format!("downloading {url}: {e}"))?;
    let (mut out, digest, _) = writer.finish();
    out.flush().map_err(|e| format!("{}: {e}", path.display()))?;
    drop(out);
    if let Some(want) = checksum {
        if want != digest.as_str() {
            return Err(format!("checksum mismatch for {url}: expected {want}, got {digest}"));
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| format!("{}: {e}", path.display()))?;
    set_mtime(&path, modified).map_err(|e| format!("{}: {e}", path.display()))?;
    let meta = std::fs::symlink_metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((Matched { rel: name, entries: vec![Entry { rel: String::new(), path, meta }], remote: true }, digest))
}

/// Sets a file's times to the server's (or the epoch), so the layer does not depend on when it
/// was downloaded.
fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = rustix::fs::Timespec { tv_sec: secs, tv_nsec: 0 };
    rustix::fs::utimensat(rustix::fs::CWD, path, &rustix::fs::Timestamps { last_access: t, last_modification: t }, rustix::fs::AtFlags::empty())?;
    Ok(())
}
