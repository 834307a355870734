//! Authentication against a real registry: htpasswd Basic behind TLS with a CA made here, and
//! Bearer tokens from a small token server in this file, with credentials from docker's config.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::{busybox_store, rt};
use forge_registry::{Client, ClientConfig, Credentials, NoProgress, Reference};

fn sh(script: &str, dir: &Path) {
    let out = Command::new("sh").arg("-ec").arg(script).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn basic_auth_over_tls_with_docker_config_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    forge_testkit::self_signed_cert(&certs);
    sh("htpasswd -Bbn forge s3cret > htpasswd", &certs);
    let registry = forge_testkit::Registry::start_with(&format!(
        "http:\n  addr: {{addr}}\n  tls:\n    certificate: {c}/cert.pem\n    key: {c}/key.pem\nauth:\n  htpasswd:\n    realm: forge-test\n    path: {c}/htpasswd\n",
        c = certs.display()
    ));
    let addr = registry.addr.clone();
    // The CA the way docker finds it: <certs.d>/<host:port>/ca.crt.
    let certs_d = tmp.path().join("certs.d");
    std::fs::create_dir_all(certs_d.join(&addr)).unwrap();
    std::fs::copy(certs.join("cert.pem"), certs_d.join(&addr).join("ca.crt")).unwrap();
    let docker_config = tmp.path().join("docker/config.json");
    let client = |_: ()| Client::new(ClientConfig { docker_config: Some(docker_config.clone()), certs_dir: certs_d.clone(), ..ClientConfig::default() });
    let dest = Reference::parse(&format!("{addr}/secure/busybox:1")).unwrap();

    let err = rt().block_on(client(()).push(&store, "busybox:latest", &dest, &NoProgress)).unwrap_err();
    assert!(err.to_string().contains("forge login"), "{err}");
    let wrong = Credentials { username: "forge".into(), password: "nope".into() };
    let err = rt().block_on(client(()).login(&addr, &wrong)).unwrap_err();
    assert!(err.to_string().contains("unauthorized"), "{err}");
    assert!(!docker_config.exists(), "a failed login writes nothing");

    let right = Credentials { username: "forge".into(), password: "s3cret".into() };
    rt().block_on(client(()).login(&addr, &right)).unwrap();
    let text = std::fs::read_to_string(&docker_config).unwrap();
    assert!(text.contains(&base64::engine::general_purpose::STANDARD.encode("forge:s3cret")), "{text}");
    let pushed = rt().block_on(client(()).push(&store, "busybox:latest", &dest, &NoProgress)).unwrap();
    let empty = forge_layerstore::Store::open(&tmp.path().join("empty")).unwrap();
    let pulled = rt().block_on(client(()).pull(&dest, &empty, &NoProgress)).unwrap();
    assert_eq!(pulled.manifest.digest(), pushed.digest());
    assert!(client(()).logout(&addr).unwrap());
    let err = rt().block_on(client(()).pull(&dest, &empty, &NoProgress)).unwrap_err();
    assert!(err.to_string().contains("forge login"), "{err}");
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An RS256 JWT for the registry's token auth, signed with openssl, carrying the certificate
/// in `x5c` so the registry can check it against its root bundle.
fn token(dir: &Path, service: &str, repository: &str) -> String {
    let der = Command::new("openssl").args(["x509", "-in", "cert.pem", "-outform", "DER"]).current_dir(dir).output().unwrap().stdout;
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [base64::engine::general_purpose::STANDARD.encode(der)]});
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "iss": "forge-test-issuer", "sub": "forge", "aud": service, "exp": now + 3600, "nbf": now - 60, "iat": now - 60,
        "jti": "forge-test", "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}],
    });
    let signing_input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
    std::fs::write(dir.join("input"), &signing_input).unwrap();
    let sig = Command::new("openssl").args(["dgst", "-sha256", "-sign", "key.pem", "input"]).current_dir(dir).output().unwrap().stdout;
    format!("{signing_input}.{}", b64url(&sig))
}

#[test]
fn bearer_tokens_from_the_challenge_realm() {
    let tmp = tempfile::tempdir().unwrap();
    let store = busybox_store(tmp.path());
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    forge_testkit::self_signed_cert(&keys);
    let service = "forge-test-registry";
    let repository = "tokened/busybox";
    let jwt = token(&keys, service, repository);

    // The token server: answers every GET with the token and records the query it got.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            loop {
                let mut l = String::new();
                if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
                    break;
                }
            }
            let _ = tx.send(request_line);
            let body = serde_json::json!({"token": jwt, "expires_in": 300}).to_string();
            let mut s = stream;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    let registry = forge_testkit::Registry::start_with(&format!(
        "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: forge-test-issuer\n    rootcertbundle: {}\n",
        keys.join("cert.pem").display()
    ));
    let client = Client::new(ClientConfig { docker_config: Some(tmp.path().join("none.json")), ..ClientConfig::default() });
    let dest = Reference::parse(&format!("{}/{repository}:1", registry.addr)).unwrap();
    let pushed = rt().block_on(client.push(&store, "busybox:latest", &dest, &NoProgress)).unwrap_or_else(|e| panic!("{e}\n{}", registry.log()));
    let empty = forge_layerstore::Store::open(&tmp.path().join("empty")).unwrap();
    let pulled = rt().block_on(client.pull(&dest, &empty, &NoProgress)).unwrap();
    assert_eq!(pulled.manifest.digest(), pushed.digest());
    let asked: Vec<String> = rx.try_iter().collect();
    assert!(asked.iter().any(|l| l.contains(&format!("scope=repository%3A{}%3Apull%2Cpush", repository.replace('/', "%2F")))), "{asked:?}");
    assert!(asked.iter().all(|l| l.contains(&format!("service={service}"))), "{asked:?}");
}
