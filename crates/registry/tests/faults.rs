//! Faults between forge and a real registry, injected by a proxy in this file: dropped
//! connections mid-body (blobs and manifests), 500s, 429 with Retry-After, and a byte flipped
//! in flight (once, or every time), a streamed upload refused at its start or at its end. Pull and push complete through the transient ones; bytes
//! that never verify are rejected after bounded retries and never stored. Also a hostile
//! image pushed with raw HTTP: a config larger than the store reads is refused.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{busybox_store, rt};
use forge_layerstore::Store;
use forge_registry::{Client, ClientConfig, NoProgress, Reference};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Every Nth request gets a 500.
    ServerError,
    /// Every Nth request gets 429 with Retry-After: 1.
    TooMany,
    /// Blob downloads are cut off halfway, every time the proxy sees them for the first time.
    CutBlobs,
    /// Blob downloads carry one altered byte.
    FlipByte,
    /// Manifest downloads are cut off halfway the first time the proxy sees each.
    CutManifests,
    /// The first download of each blob and manifest carries one altered byte.
    FlipOnce,
    /// An upload streamed in one PATCH (chunked, no Content-Length) gets a 500 and the
    /// connection closed, its body unread.
    RefuseStreams,
    /// An upload streamed in one PATCH goes through; the PUT that would finish it gets a 400.
    RefuseStreamedPut,
}

/// Streamed uploads [`Fault::RefuseStreams`] refused.
static REFUSED_STREAMS: AtomicUsize = AtomicUsize::new(0);
/// Streamed uploads forwarded, and the PUTs finishing them refused, by [`Fault::RefuseStreamedPut`].
static FORWARDED_STREAMS: AtomicUsize = AtomicUsize::new(0);
static REFUSED_PUTS: AtomicUsize = AtomicUsize::new(0);

/// Starts a proxy to `upstream` injecting `fault`; returns its address.
fn proxy(upstream: String, fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let (upstream, count, seen) = (upstream.clone(), count.clone(), seen.clone());
            std::thread::spawn(move || {
                let _ = serve(client, &upstream, fault, &count, &seen);
            });
        }
    });
    addr
}

/// Reads a chunked request body from `s`, whole.
fn read_chunked(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let line = |s: &mut TcpStream| -> std::io::Result<String> {
        let mut l = Vec::new();
        let mut byte = [0u8; 1];
        while !l.ends_with(b"\r\n") {
            s.read_exact(&mut byte)?;
            l.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&l).trim().to_string())
    };
    let mut body = Vec::new();
    loop {
        let size = usize::from_str_radix(line(s)?.split(';').next().unwrap_or("0"), 16).map_err(std::io::Error::other)?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            while !line(s)?.is_empty() {}
            return Ok(body);
        }
        let at = body.len();
        body.resize(at + size, 0);
        s.read_exact(&mut body[at..])?;
        line(s)?;
    }
}

/// Reads one request (head and Content-Length body) from `s`.
fn read_request(s: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Ok(None);
        }
        // A TLS handshake (the client probing for HTTPS first): this proxy speaks plain HTTP.
        if head.is_empty() && byte[0] == 0x16 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let len = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0))).unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn serve(mut client: TcpStream, upstream: &str, fault: Fault, count: &AtomicUsize, seen: &Mutex<HashSet<String>>) -> std::io::Result<()> {
    while let Some((mut head, mut body)) = read_request(&mut client)? {
        let n = count.fetch_add(1, Ordering::SeqCst);
        let is_blob_get = head.starts_with("GET ") && head.contains("/blobs/sha256:");
        let is_manifest_get = head.starts_with("GET ") && head.contains("/manifests/");
        let first_time = seen.lock().unwrap().insert(head.lines().next().unwrap_or_default().to_string());
        let streamed = head.starts_with("PATCH ") && head.to_ascii_lowercase().contains("transfer-encoding: chunked");
        match fault {
            Fault::RefuseStreams if streamed => {
                REFUSED_STREAMS.fetch_add(1, Ordering::SeqCst);
                client.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            }
            // Forwarded with its length, as the upstream reads it the same either way.
            Fault::RefuseStreamedPut if streamed => {
                body = read_chunked(&mut client)?;
                let lines: Vec<&str> = head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding:")).collect();
                head = format!("{}\r\nContent-Length: {}\r\n\r\n", lines.join("\r\n"), body.len());
                FORWARDED_STREAMS.fetch_add(1, Ordering::SeqCst);
            }
            Fault::RefuseStreamedPut if head.starts_with("PUT ") && head.contains("digest=") && body.is_empty() && FORWARDED_STREAMS.load(Ordering::SeqCst) > REFUSED_PUTS.load(Ordering::SeqCst) => {
                REFUSED_PUTS.fetch_add(1, Ordering::SeqCst);
                client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            }
            Fault::ServerError if n % 3 == 1 => {
                client.write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            Fault::TooMany if n % 4 == 1 => {
                client.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n")?;
                continue;
            }
            _ => {}
        }
        // One request per upstream connection, which the upstream closes after answering.
        let mut up = TcpStream::connect(upstream)?;
        let mut lines: Vec<&str> = head.trim_end().split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")).collect();
        lines.push("Connection: close");
        up.write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())?;
        up.write_all(&body)?;
        let mut response = Vec::new();
        up.read_to_end(&mut response)?;
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
        let status_ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.1 206");
        match fault {
            Fault::CutBlobs if is_blob_get && status_ok && response.len() - split > 1000 && !head.to_ascii_lowercase().contains("range:") => {
                // Headers and half the body, then the connection dies.
                let half = split + (response.len() - split) / 2;
                client.write_all(&response[..half])?;
                return Ok(());
            }
            Fault::FlipByte if is_blob_get && status_ok && response.len() > split + 100 => {
                response[split + 100] ^= 0xff;
            }
            Fault::CutManifests if is_manifest_get && status_ok && first_time && response.len() > split + 10 => {
                let half = split + (response.len() - split) / 2;
                client.write_all(&response[..half])?;
                return Ok(());
            }
            // Byte 10 of a manifest is inside its JSON (`{"schemaVersion"...`): still JSON-ish,
            // wrong digest.
            Fault::FlipOnce if (is_blob_get || is_manifest_get) && status_ok && first_time && response.len() > split + 100 => {
                response[split + 10] ^= 0x01;
            }
            _ => {}
        }
        // The upstream's answer says `Connection: close`; the client connects again.
        client.write_all(&response)?;
        return Ok(());
    }
    Ok(())
}

fn setup() -> (tempfile::TempDir, Store, forge_testkit::Registry) {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let registry = forge_testkit::Registry::start();
    (tmp, store, registry)
}

fn client() -> Client {
    client_retrying(6)
}

fn client_retrying(max_retries: u32) -> Client {
    Client::new(ClientConfig { max_retries, ..ClientConfig::default() })
}

#[test]
fn push_and_pull_survive_500s_and_429s() {
    for fault in [Fault::ServerError, Fault::TooMany] {
        let (tmp, store, registry) = setup();
        let via = proxy(registry.addr.clone(), fault);
        let dest = Reference::parse(&format!("{via}/faulty/busybox:1")).unwrap();
        let pushed = rt().block_on(client().push(&store, "busybox:latest", &dest, &NoProgress)).unwrap();
        let empty = Store::open(&tmp.path().join("empty")).unwrap();
        let pulled = rt().block_on(client().pull(&dest, &empty, &NoProgress)).unwrap();
        assert_eq!(pulled.manifest.digest(), pushed.digest());
        assert!(forge_layerstore::maintenance::fsck(&empty, false).unwrap().is_clean());
    }
}

#[test]
fn pull_resumes_a_blob_cut_off_mid_body() {
    let (tmp, store, registry) = setup();
    let direct = Reference::parse(&format!("{}/cut/busybox:1", registry.addr)).unwrap();
    rt().block_on(client().push(&store, "busybox:latest", &direct, &NoProgress)).unwrap();
    let via = proxy(registry.addr.clone(), Fault::CutBlobs);
    let dest = Reference::parse(&format!("{via}/cut/busybox:1")).unwrap();
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    rt().block_on(client().pull(&dest, &empty, &NoProgress)).unwrap();
    let image = empty.image(&dest.to_string()).unwrap();
    for l in image.layers().unwrap() {
        empty.content().verify(&l.digest).unwrap();
    }
}

#[test]
fn an_altered_blob_is_rejected_and_not_stored() {
    let (tmp, store, registry) = setup();
    let direct = Reference::parse(&format!("{}/flip/busybox:1", registry.addr)).unwrap();
    rt().block_on(client().push(&store, "busybox:latest", &direct, &NoProgress)).unwrap();
    let layer = store.image("busybox:latest").unwrap().layers().unwrap()[0].digest.clone();
    let via = proxy(registry.addr.clone(), Fault::FlipByte);
    let dest = Reference::parse(&format!("{via}/flip/busybox:1")).unwrap();
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    let err = rt().block_on(client_retrying(2).pull(&dest, &empty, &NoProgress)).unwrap_err();
    assert!(err.to_string().contains("digest mismatch"), "{err}");
    assert!(err.to_string().contains("gave up after 3 attempts"), "{err}");
    assert!(!empty.content().exists(&layer), "the altered layer was stored");
    assert!(empty.index().list().unwrap().is_empty(), "a failed pull tagged something");
}

#[test]
fn pull_fetches_a_cut_off_manifest_again() {
    let (tmp, store, registry) = setup();
    let direct = Reference::parse(&format!("{}/cutm/busybox:1", registry.addr)).unwrap();
    let pushed = rt().block_on(client().push(&store, "busybox:latest", &direct, &NoProgress)).unwrap();
    let via = proxy(registry.addr.clone(), Fault::CutManifests);
    // By tag, and by digest (a second manifest request the proxy has not seen).
    for reference in [format!("{via}/cutm/busybox:1"), format!("{via}/cutm/busybox@{}", pushed.digest())] {
        let dest = Reference::parse(&reference).unwrap();
        let empty = Store::open(&tmp.path().join(format!("empty-{}", reference.len()))).unwrap();
        let pulled = rt().block_on(client().pull(&dest, &empty, &NoProgress)).unwrap_or_else(|e| panic!("{reference}: {e}"));
        assert_eq!(pulled.manifest.digest(), pushed.digest());
        assert!(forge_layerstore::maintenance::fsck(&empty, false).unwrap().is_clean());
    }
}

#[test]
fn pull_fetches_altered_bytes_again_and_verifies_them() {
    let (tmp, store, registry) = setup();
    let direct = Reference::parse(&format!("{}/flip1/busybox:1", registry.addr)).unwrap();
    let pushed = rt().block_on(client().push(&store, "busybox:latest", &direct, &NoProgress)).unwrap();
    let via = proxy(registry.addr.clone(), Fault::FlipOnce);
    // By digest, so that the manifest's bytes are checked too.
    let dest = Reference::parse(&format!("{via}/flip1/busybox@{}", pushed.digest())).unwrap();
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    let pulled = rt().block_on(client().pull(&dest, &empty, &NoProgress)).unwrap();
    assert_eq!(pulled.manifest.digest(), pushed.digest());
    let image = empty.image(&dest.to_string()).unwrap();
    for l in image.layers().unwrap() {
        empty.content().verify(&l.digest).unwrap();
    }
    assert!(forge_layerstore::maintenance::fsck(&empty, false).unwrap().is_clean());
}

/// Uploads `bytes` as a blob of `repo` with the distribution API (monolithic upload).
async fn upload(http: &reqwest::Client, base: &str, repo: &str, bytes: Vec<u8>) -> String {
    let digest = forge_layerstore::Digest::of(&bytes).to_string();
    let resp = http.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with("http") { location } else { format!("{base}{location}") };
    let sep = if location.contains('?') { '&' } else { '?' };
    let resp = http.put(format!("{location}{sep}digest={digest}")).header("content-type", "application/octet-stream").body(bytes).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());
    digest
}

#[test]
fn a_config_larger_than_the_store_reads_is_refused_and_not_tagged() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = forge_testkit::Registry::start();
    let base = format!("http://{}", registry.addr);
    // 60 MB of valid config JSON, pushed the way a hostile registry user would.
    let config = format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"pad":"{}"}}"#, "x".repeat(60 << 20)).into_bytes();
    let config_size = config.len();
    let manifest = rt().block_on(async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::new();
        let config_digest = upload(&http, &base, "big/config", config).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
            "layers": []
        });
        let resp = http
            .put(format!("{base}/v2/big/config/manifests/1"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());
        config_digest
    });
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let dest = Reference::parse(&format!("{}/big/config:1", registry.addr)).unwrap();
    let err = rt().block_on(client().pull(&dest, &store, &NoProgress)).unwrap_err().to_string();
    assert!(err.contains("image config") && err.contains(&format!("more than the {} bytes", forge_layerstore::store::MAX_JSON_BYTES)), "{err}");
    assert!(store.index().list().unwrap().is_empty(), "a refused pull tagged something");
    assert!(!store.content().exists(&manifest.parse().unwrap()), "the config was downloaded");
}

/// Pushes a 12 MiB plain layer (big enough to stream while it is compressed) through a proxy
/// injecting `fault`, then pulls it back and checks it; the registry, for its log.
fn push_a_plain_layer_through(fault: Fault) -> forge_testkit::Registry {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(12u32 << 20)).map(|i| (i % 251) as u8).collect();
    let store = common::one_file_store(tmp.path(), "plain:1", &data, forge_layerstore::archive::Compression::None);
    let registry = forge_testkit::Registry::start();
    let via = proxy(registry.addr.clone(), fault);
    let dest = Reference::parse(&format!("{via}/plain/app:1")).unwrap();
    rt().block_on(client().push(&store, "plain:1", &dest, &NoProgress)).unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    let empty = Store::open(&tmp.path().join("empty")).unwrap();
    rt().block_on(client().pull(&dest, &empty, &NoProgress)).unwrap();
    let pulled = empty.image(&dest.to_string()).unwrap().layers().unwrap().remove(0);
    assert_eq!(pulled.diff_id, store.image("plain:1").unwrap().layers().unwrap()[0].diff_id);
    empty.content().verify(&pulled.digest).unwrap();
    registry
}

#[test]
fn a_refused_streamed_upload_sends_the_stored_blob_instead() {
    let log = push_a_plain_layer_through(Fault::RefuseStreams).log();
    // The stream was tried and refused; nothing streamed reached the registry: the blob went
    // up from the store in one PUT.
    assert_eq!(REFUSED_STREAMS.load(Ordering::SeqCst), 1);
    assert_eq!(log.matches("\"PATCH ").count(), 0, "{log}");
}

#[test]
fn a_streamed_upload_whose_last_put_is_refused_sends_the_stored_blob_instead() {
    push_a_plain_layer_through(Fault::RefuseStreamedPut);
    assert_eq!((FORWARDED_STREAMS.load(Ordering::SeqCst), REFUSED_PUTS.load(Ordering::SeqCst)), (1, 1));
}
