//! Where a build's image goes (`forge build --output`): the store (tagged), an OCI or Docker
//! archive file, or a plain directory.

use std::path::PathBuf;

use anyhow::{bail, Context};
use forge_builder::Built;
use forge_layerstore::export::{self, ArchiveFormat};
use forge_layerstore::Store;

/// A parsed `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    /// Tag the image in the store.
    Image,
    /// An archive file.
    Archive { format: ArchiveFormat, dest: PathBuf },
    /// The image's root filesystem in a directory.
    Local { dest: PathBuf },
}

impl OutputSpec {
    /// Parses `type=image`, `type=oci,dest=x.tar`, `type=docker,dest=x.tar`, `type=local,dest=dir`
    /// (or a bare path, which docker reads as `type=local`).
    pub fn parse(text: &str) -> anyhow::Result<OutputSpec> {
        if !text.contains('=') {
            return Ok(OutputSpec::Local { dest: PathBuf::from(text) });
        }
        let mut kind = None;
        let mut dest = None;
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest", v)) => dest = Some(PathBuf::from(v)),
                Some(("name", _)) => {}
                _ => bail!("invalid --output {text:?}: unknown field {field:?}"),
            }
        }
        let need_dest = |kind: &str| dest.clone().with_context(|| format!("--output type={kind} needs dest=PATH"));
        Ok(match kind.as_deref() {
            Some("image") | None => OutputSpec::Image,
            Some("oci") => OutputSpec::Archive { format: ArchiveFormat::Oci, dest: need_dest("oci")? },
            Some("docker") => OutputSpec::Archive { format: ArchiveFormat::Docker, dest: need_dest("docker")? },
            Some("local") => OutputSpec::Local { dest: need_dest("local")? },
            Some(other) => bail!("unsupported --output type {other:?}: use image, oci, docker or local"),
        })
    }
}

/// Delivers `built` as `spec` says. Tags are applied in the store in every case, so an archive
/// or directory build can still be referred to later; a tag whose image has big layers still
/// kept as snapshots is pending (see `finish_tags`). Whether one is.
pub fn write(store: &Store, built: &Built, spec: &OutputSpec, tags: &[String]) -> anyhow::Result<bool> {
    let mut deferred = false;
    for t in tags {
        deferred |= store.tag_or_defer(t, &built.manifest, crate::commands::finish_tags::at_once_below()).with_context(|| format!("tagging {t}"))?;
    }
    match spec {
        OutputSpec::Image => {}
        OutputSpec::Archive { format, dest } => {
            let image = store.image_of(&built.manifest)?;
            let names: Vec<String> = tags.iter().map(|t| forge_layerstore::store::normalize_tag(t)).collect();
            crate::commands::save::write_output(dest, |out| Ok(export::save(store, &[(names, image)], *format, out)?))?;
        }
        OutputSpec::Local { dest } => {
            let image = store.image_of(&built.manifest)?;
            export::unpack_image(store, &image, dest).with_context(|| format!("unpacking into {}", dest.display()))?;
        }
    }
    Ok(deferred)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        assert_eq!(OutputSpec::parse("type=image").unwrap(), OutputSpec::Image);
        assert_eq!(OutputSpec::parse("out").unwrap(), OutputSpec::Local { dest: "out".into() });
        assert_eq!(
            OutputSpec::parse("type=docker,dest=a.tar").unwrap(),
            OutputSpec::Archive { format: ArchiveFormat::Docker, dest: "a.tar".into() }
        );
        assert!(OutputSpec::parse("type=oci").unwrap_err().to_string().contains("dest=PATH"));
        assert!(OutputSpec::parse("type=registry").unwrap_err().to_string().contains("unsupported"));
    }
}
