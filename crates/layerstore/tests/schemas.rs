//! What forge writes validates against the OCI image-spec JSON schemas
//! (`../shared/conformance/oci-image-spec/schema`), checked by Python's `jsonschema`
//! (draft-04, with the alias table the conformance README gives), not by our own code. The
//! docker schema2 blobs of the conformance set also read back through our types unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use forge_layerstore::archive::Compression;
use forge_layerstore::{Digest, ImageConfig, Store};

fn conformance() -> Option<PathBuf> {
    forge_testkit::shared_data("conformance/oci-image-spec")
}

const VALIDATOR: &str = r#"
import json, sys, pathlib
from jsonschema import Draft4Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
d = pathlib.Path(sys.argv[1])
aliases = {
  "config-schema.json": ["https://opencontainers.org/schema/image/config"],
  "content-descriptor.json": ["https://opencontainers.org/schema/descriptor", "https://opencontainers.org/schema/image/content-descriptor.json"],
  "defs-descriptor.json": ["https://opencontainers.org/schema/image/descriptor/mediaType", "https://opencontainers.org/schema/defs-descriptor.json", "https://opencontainers.org/schema/image/defs-descriptor.json"],
  "defs.json": ["https://opencontainers.org/schema/defs.json", "https://opencontainers.org/schema/image/defs.json", "https://opencontainers.org/schema/image/descriptor/defs.json"],
  "image-index-schema.json": ["https://opencontainers.org/schema/image/index"],
  "image-layout-schema.json": ["https://opencontainers.org/schema/image/layout"],
  "image-manifest-schema.json": ["https://opencontainers.org/schema/image/manifest"],
}
reg = Registry()
for f, uris in aliases.items():
    r = Resource.from_contents(json.loads((d / f).read_text()), default_specification=DRAFT4)
    for u in uris + [f]:
        reg = reg.with_resource(u, r)
failed = 0
for pair in sys.argv[2:]:
    schema, doc = pair.split("=", 1)
    v = Draft4Validator(json.loads((d / schema).read_text()), registry=reg)
    errors = list(v.iter_errors(json.loads(pathlib.Path(doc).read_text())))
    for e in errors:
        print(f"{doc} against {schema}: {e.message} at {list(e.path)}")
    failed += len(errors)
sys.exit(1 if failed else 0)
"#;

fn validate(schemas: &Path, pairs: &[(&str, PathBuf)]) {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(VALIDATOR).arg(schemas.join("schema"));
    for (schema, doc) in pairs {
        cmd.arg(format!("{schema}={}", doc.display()));
    }
    let out = cmd.output().expect("python3 with jsonschema (scripts/install-deps.sh installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn manifests_configs_index_and_layout_validate() {
    let Some(schemas) = conformance() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    forge_testkit::busybox_rootfs(&rootfs);
    let tar = Command::new("tar").arg("-C").arg(&rootfs).args(["-cf", "-", "."]).output().unwrap().stdout;
    let root = tmp.path().join("store");
    forge_layerstore::import::import_rootfs(&root, &tar[..], "busybox:latest", Compression::Zstd).unwrap();
    let store = Store::open(&root).unwrap();
    // A config with every Docker field too: the schema allows what it does not name.
    let mut image = store.image("busybox:latest").unwrap();
    image.config.config.healthcheck = Some(forge_layerstore::image::Healthcheck { test: Some(vec!["NONE".into()]), ..Default::default() });
    image.config.config.labels = Some([("a".to_string(), "b".to_string())].into_iter().collect());
    image.config.config.exposed_ports = Some([("80/tcp".to_string(), serde_json::json!({}))].into_iter().collect());
    let desc = store.write_image(&image.config, &image.layers().unwrap()).unwrap();
    store.tag("full:1", &desc).unwrap();
    let full = store.image("full:1").unwrap();

    let blob = |d: &str| store.content().path(&Digest::from_str(d).unwrap());
    validate(&schemas, &[
        ("image-manifest-schema.json", blob(full.descriptor.digest().as_ref())),
        ("config-schema.json", blob(full.manifest.config().digest().as_ref())),
        ("image-index-schema.json", root.join("index.json")),
        ("image-layout-schema.json", root.join("oci-layout")),
    ]);
}

#[test]
fn docker_schema2_blobs_read_back_unchanged() {
    let Some(conformance) = conformance() else { return };
    let dir = conformance.join("schema-tests");
    let index: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let mut configs = 0;
    for entry in index.as_array().unwrap() {
        let file = entry["file"].as_str().unwrap();
        if !file.contains("docker-schema2") || entry["schema"] != "config-schema.json" {
            continue;
        }
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let config: ImageConfig = serde_json::from_value(value.clone()).unwrap();
        // An explicit `null` reads as absent and is not written back; every value survives.
        // (Pulled configs are stored as the registry's bytes, so their digest never changes.)
        assert_eq!(without_nulls(serde_json::to_value(&config).unwrap()), without_nulls(value), "{file}");
        configs += 1;
    }
    assert!(configs > 0, "no docker schema2 config among the fixtures");
}

fn without_nulls(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect(),
        serde_json::Value::Array(a) => a.into_iter().map(without_nulls).collect(),
        other => other,
    }
}
