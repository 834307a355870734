//! `forge images`: the tagged images of the store.

use anyhow::Context;
use clap::{Args, ValueEnum};
use forge_layerstore::Store;
use serde::Serialize;

use crate::stdout::outln;

/// Output formats for listing commands.
#[derive(Clone, Copy, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document for scripts.
    Json,
}

/// Arguments of `forge images`.
#[derive(Args)]
pub struct ImagesArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Serialize)]
struct Row {
    repository: String,
    tag: String,
    id: String,
    digest: String,
    created: Option<String>,
    size: u64,
}

/// Runs `forge images`.
pub fn run(global: &crate::Global, args: ImagesArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let mut rows = Vec::new();
    for (name, desc) in store.index().list()? {
        let (repository, tag) = split_name(&name);
        let (id, created, size) = match store.image_of(&desc) {
            Ok(image) => (image.id()?.to_string(), image.config.created.clone(), image.layers()?.iter().map(|l| l.size).sum()),
            Err(e) => (format!("<broken: {e}>"), None, 0),
        };
        rows.push(Row { repository, tag, id, digest: desc.digest().to_string(), created, size });
    }
    print(rows, &args)
}

/// `forge -H ... images`: the server's tagged images, printed as the local ones.
pub fn run_remote(client: &crate::commands::remote::Client, args: ImagesArgs) -> anyhow::Result<()> {
    let list: Vec<serde_json::Value> = serde_json::from_value(client.get("/images/json")?)?;
    let mut rows = Vec::new();
    for image in &list {
        // 0: the image records no creation time.
        let created = image["Created"].as_u64().filter(|t| *t > 0).map(|t| std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t));
        let digest = image["RepoDigests"][0].as_str().and_then(|d| d.rsplit_once('@')).map(|(_, d)| d.to_string()).unwrap_or_default();
        for name in image["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str()) {
            let (repository, tag) = split_name(name);
            rows.push(Row {
                repository,
                tag,
                id: image["Id"].as_str().unwrap_or_default().to_string(),
                digest: digest.clone(),
                created: created.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                size: image["Size"].as_u64().unwrap_or(0),
            });
        }
    }
    rows.sort_by(|a, b| (&a.repository, &a.tag).cmp(&(&b.repository, &b.tag)));
    print(rows, &args)
}

fn print(rows: Vec<Row>, args: &ImagesArgs) -> anyhow::Result<()> {
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&rows)?)?,
        Format::Table => {
            outln!("{:<40} {:<16} {:<14} {:<22} {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")?;
            for r in rows {
                let id = r.id.trim_start_matches("sha256:").chars().take(12).collect::<String>();
                outln!("{:<40} {:<16} {:<14} {:<22} {:>10}", r.repository, r.tag, id, r.created.unwrap_or_default(), human_size(r.size))?;
            }
        }
    }
    Ok(())
}

/// `host:5000/app:1` to (`host:5000/app`, `1`).
pub fn split_name(name: &str) -> (String, String) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (name[..slash + i].to_string(), name[slash + i + 1..].to_string()),
        None => (name.to_string(), String::new()),
    }
}

fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{bytes}B") } else { format!("{v:.1}{}", units[u]) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_split_at_the_tag_not_the_port() {
        assert_eq!(super::split_name("127.0.0.1:5000/app:1"), ("127.0.0.1:5000/app".into(), "1".into()));
        assert_eq!(super::split_name("busybox:latest"), ("busybox".into(), "latest".into()));
        assert_eq!(super::split_name("host:5000/app"), ("host:5000/app".into(), "".into()));
    }
}
