//! A fake registry that answers nonsense: every case ends in a clear error, never a panic, and
//! never a tag in the store.

mod common;

use std::sync::Arc;

use forge_layerstore::Store;
use forge_registry::{Client, ClientConfig, Error, NoProgress, Reference};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Route = Arc<dyn Fn(&str, &str) -> Vec<u8> + Send + Sync>;

/// Serves `route(method, path)` as the whole raw response, one request per connection.
async fn fake(route: Route) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let route = route.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // The client's HTTPS probe: this fake speaks plain HTTP only.
                    if buf[0] == 0x16 {
                        return;
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut parts = head.split(' ');
                let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                let _ = conn.write_all(&route(method, path)).await;
            });
        }
    });
    addr
}

fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

/// A registry whose manifests are `manifest` and whose blobs are `blob`.
fn serving(content_type: &'static str, manifest: Vec<u8>, blob: Vec<u8>) -> Route {
    Arc::new(move |_, path| {
        if path.contains("/manifests/") {
            answer("200 OK", &[("Content-Type", content_type)], &manifest)
        } else {
            answer("200 OK", &[], &blob)
        }
    })
}

async fn pull(route: Route, pin: Option<&str>) -> Error {
    let addr = fake(route).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let client = Client::new(ClientConfig { docker_config: Some(tmp.path().join("none.json")), max_retries: 1, ..ClientConfig::default() });
    let text = match pin {
        Some(d) => format!("{addr}/bad/image@{d}"),
        None => format!("{addr}/bad/image:v1"),
    };
    let err = client.pull(&Reference::parse(&text).unwrap(), &store, &NoProgress).await.unwrap_err();
    assert!(store.index().list().unwrap().is_empty(), "tagged after {err}");
    err
}

fn one_layer_manifest(layer: &[u8], declared: u64) -> Vec<u8> {
    let config = b"{}";
    let d = |b: &[u8]| forge_layerstore::Digest::of(b).to_string();
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": d(config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d(layer), "size": declared }]
    })
    .to_string()
    .into_bytes()
}

#[test]
fn nonsense_is_a_clear_error() {
    common::rt().block_on(async {
        let err = pull(serving(OCI, b"not json".to_vec(), Vec::new()), None).await;
        assert!(matches!(err, Error::Invalid { .. }) && err.to_string().contains("manifest"), "{err}");

        let pinned = format!("sha256:{}", "0".repeat(64));
        let err = pull(serving(OCI, b"{}".to_vec(), Vec::new()), Some(&pinned)).await;
        assert!(err.to_string().contains("asked for sha256:000"), "{err}");

        let v1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        let err = pull(serving(v1, br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#.to_vec(), Vec::new()), None).await;
        assert!(matches!(err, Error::Invalid { .. }), "{err}");

        // The store's limit for JSON documents, also at pull.
        let err = pull(serving(OCI, vec![b' '; 17 << 20], Vec::new()), None).await;
        assert!(err.to_string().contains(&format!("larger than {} bytes", forge_layerstore::store::MAX_JSON_BYTES)), "{err}");

        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1,"platform":{"os":"linux","architecture":"s390x"}}]}"#;
        let err = pull(serving("application/vnd.oci.image.index.v1+json", index.to_vec(), Vec::new()), None).await;
        assert!(err.to_string().contains("no linux/amd64 image"), "{err}");

        // A blob longer than its descriptor says is cut off, not written to the end of the disk.
        let layer = vec![7u8; 1000];
        let err = pull(serving(OCI, one_layer_manifest(&layer, 10), layer.clone()), None).await;
        assert!(err.to_string().contains("bytes the manifest announced"), "{err}");

        let err = pull(Arc::new(|_, _| answer("401 Unauthorized", &[], b"")), None).await;
        assert!(matches!(err, Error::Auth { .. }) && err.to_string().contains("without a WWW-Authenticate"), "{err}");

        let err = pull(Arc::new(|_, _| answer("401 Unauthorized", &[("WWW-Authenticate", "Bearer service=\"x\"")], b"")), None).await;
        assert!(err.to_string().contains("without a realm"), "{err}");

        let err = pull(Arc::new(|_, _| answer("401 Unauthorized", &[("WWW-Authenticate", "Bearer realm=\"http://127.0.0.1:1/token\"")], b"")), None).await;
        assert!(err.to_string().contains("token server"), "{err}");

        let err = pull(Arc::new(|_, _| answer("503 Service Unavailable", &[], b"{\"errors\":[{\"code\":\"UNAVAILABLE\"}]}")), None).await;
        assert!(matches!(err, Error::Status { status: 503, .. }) && err.to_string().contains("UNAVAILABLE"), "{err}");

        let err = pull(Arc::new(|_, _| b"garbage\r\n\r\n".to_vec()), None).await;
        assert!(matches!(err, Error::Connection { .. }), "{err}");
    });
}
