//! `forge inspect NAME...`: containers and images as JSON, in the shapes `docker inspect`
//! prints (a container first, as docker tries it first, then an image).

use anyhow::Context;
use clap::Args;
use forge_layerstore::Store;
use forge_runtime::{Container, Containers, Status};

/// Arguments of `forge inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// Containers (IDs, ID prefixes or names) or images (tags, IDs or digests).
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `forge inspect`.
pub fn run(global: &crate::Global, args: InspectArgs) -> anyhow::Result<()> {
    let store = Store::open(&global.store_root()?).context("opening the store")?;
    let containers = Containers::open(&store)?;
    let tags = store.index().list()?;
    let mut out = Vec::new();
    for name in &args.images {
        match containers.get(name) {
            Ok(c) => {
                out.push(container_json(&store, &containers, &c));
                continue;
            }
            Err(forge_runtime::Error::NotFound(_)) => {}
            Err(e) => return Err(e).with_context(|| format!("inspecting {name}")),
        }
        let image = store.image(name).with_context(|| format!("inspecting {name}"))?;
        let repo_tags: Vec<&String> = tags.iter().filter(|(_, d)| d.digest() == image.descriptor.digest()).map(|(n, _)| n).collect();
        let layers = image.layers()?;
        out.push(serde_json::json!({
            "Id": image.id()?,
            "RepoTags": repo_tags,
            "ManifestDigest": image.descriptor.digest().to_string(),
            "Created": image.config.created,
            "Author": image.config.author,
            "Architecture": image.config.architecture,
            "Os": image.config.os,
            "Config": image.config.config,
            "RootFS": image.config.rootfs,
            "History": image.config.history,
            "Layers": layers,
            "Size": layers.iter().map(|l| l.size).sum::<u64>(),
        }));
    }
    crate::stdout::outln!("{}", serde_json::to_string_pretty(&out)?)?;
    Ok(())
}

/// docker's container JSON, with the fields forge has. Written out here rather than through
/// bollard-stubs' `ContainerInspectResponse`: that model is ~100 optional fields (and a crate
/// of every other Engine API model) to fill a score of them; the keys below are docker's.
/// Where forge differs: `Config.Cmd` holds the whole resolved command (entrypoint included,
/// `Config.Entrypoint` is null), and an unnamed container has the name `""`.
fn container_json(store: &Store, containers: &Containers, c: &Container) -> serde_json::Value {
    let (config, state) = (&c.config, &c.state);
    // The image's ID (its config digest) as docker shows it; the manifest digest if the image
    // has gone since.
    let image_id = store.image(&config.image_digest).ok().and_then(|i| i.id().ok()).map_or_else(|| config.image_digest.clone(), |d| d.to_string());
    let time = |t: &str| if t.is_empty() { "0001-01-01T00:00:00Z".to_string() } else { t.to_string() };
    let (restart_name, max_retries) = match config.restart {
        forge_runtime::RestartPolicy::OnFailure { max } => ("on-failure", max),
        p => (p.name(), 0),
    };
    serde_json::json!({
        "Id": config.id,
        "Created": config.created,
        "Path": config.args.first(),
        "Args": config.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": state.status.to_string(),
            "Running": state.status == Status::Running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": state.oom_killed,
            "Dead": false,
            "Pid": state.pid,
            "ExitCode": state.exit_code,
            "Error": state.error,
            "StartedAt": time(&state.started_at),
            "FinishedAt": time(&state.finished_at),
        },
        "Image": image_id,
        "LogPath": containers.log_path(&config.id),
        "Name": config.name.as_ref().map(|n| format!("/{n}")).unwrap_or_default(),
        "RestartCount": state.restart_count,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "NetworkMode": config.network,
            "RestartPolicy": { "Name": restart_name, "MaximumRetryCount": max_retries },
            "AutoRemove": config.auto_remove,
        },
        "Config": {
            "Hostname": config.hostname,
            "User": config.user,
            "Env": config.env,
            "Cmd": config.args,
            "Image": config.image,
            "WorkingDir": config.working_dir,
            "OpenStdin": config.open_stdin,
            "Tty": config.tty,
            "Entrypoint": null,
            "Labels": config.labels,
            "StopSignal": config.stop_signal,
            "StopTimeout": config.stop_timeout,
        },
    })
}
