//! Image configs: Docker's config format, which is the OCI image config plus fields OCI lacks.
//!
//! oci-spec 0.10's `ImageConfiguration` has no `Healthcheck`, `Shell`, `OnBuild` or
//! `ArgsEscaped`, and keys labels, ports and volumes by `HashMap`. Docker and BuildKit write
//! those fields and tools read them back, so a config read through oci-spec and written again
//! would lose them. [`ImageConfig`] is therefore a serde mirror of Docker's format with ordered
//! maps, and every struct keeps unknown fields in `extra` so that a config made by another
//! tool survives a round trip byte for byte (after [`crate::canonical`] ordering).
//! Manifests and indexes, which oci-spec models completely, use oci-spec's types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::digest::Digest;

/// An image config (`application/vnd.oci.image.config.v1+json`, or Docker's
/// `application/vnd.docker.container.image.v1+json`, which has the same shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// Who made the image (`MAINTAINER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture, `amd64` for forge's images.
    pub architecture: String,
    /// Operating system, `linux`.
    pub os: String,
    /// Architecture variant, when one applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// How a container of this image runs.
    #[serde(default)]
    pub config: ContainerConfig,
    /// The layers' diffIDs, bottom first.
    pub rootfs: RootFs,
    /// One entry per build step, including the ones that made no layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Fields forge does not model, kept for the round trip.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The `config` object: the container defaults the Dockerfile's metadata instructions set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: keys like `80/tcp`, values empty objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// `ENV` as `KEY=value`, in definition order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: keys are paths, values empty objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, Value>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker's flag that a shell-form CMD/ENTRYPOINT is already escaped (Windows images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `ONBUILD` triggers, as written after the keyword.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// `SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields forge does not model.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Docker's health check. Durations are nanoseconds, as Docker stores them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", "..."]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// Time between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// Time a check may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// Grace period after start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// Time between checks during the start period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// Failures before unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The `rootfs` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, bottom first.
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> RootFs {
        RootFs { kind: "layers".into(), diff_ids: Vec::new() }
    }
}

/// One history entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// RFC 3339 time of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The step, as Docker words it (`RUN /bin/sh -c make`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Author of the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text, e.g. `buildkit.dockerfile.v0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl ImageConfig {
    /// An empty linux/amd64 config, as `FROM scratch` starts.
    pub fn scratch() -> ImageConfig {
        ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..ImageConfig::default() }
    }

    /// The value of `key` in the config's `Env`, if set.
    pub fn env(&self, key: &str) -> Option<&str> {
        self.config.env.as_deref()?.iter().rev().find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key=value` in `Env`, replacing an earlier value in place as Docker does.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env.iter_mut().find(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = entry,
            None => env.push(entry),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_fields_oci_spec_lacks_survive_a_round_trip() {
        let text = r#"{"architecture":"amd64","config":{"ArgsEscaped":true,"Cmd":["sh"],"Env":["PATH=/bin"],
            "Healthcheck":{"Interval":30000000000,"Retries":3,"Test":["CMD-SHELL","true"]},
            "OnBuild":["RUN echo child"],"Shell":["/bin/ash","-c"],"Domainname":""},
            "container":"abc","os":"linux","rootfs":{"diff_ids":[],"type":"layers"}}"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let config: ImageConfig = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(config.config.shell.as_deref(), Some(&["/bin/ash".to_string(), "-c".to_string()][..]));
        assert_eq!(config.config.healthcheck.as_ref().unwrap().retries, Some(3));
        assert_eq!(config.config.on_build.as_ref().unwrap()[0], "RUN echo child");
        assert_eq!(serde_json::to_value(&config).unwrap(), value);
    }

    #[test]
    fn set_env_replaces_in_place() {
        let mut c = ImageConfig::scratch();
        c.set_env("A", "1");
        c.set_env("B", "2");
        c.set_env("A", "3");
        assert_eq!(c.config.env.as_deref().unwrap(), ["A=3", "B=2"]);
        assert_eq!(c.env("A"), Some("3"));
        assert_eq!(c.env("C"), None);
    }
}
