//! What push and pull share: the client options, the async runtime, and progress bars on a
//! terminal (plain lines otherwise).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use clap::Args;
use forge_registry::{Client, ClientConfig, LineProgress, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Options of commands that talk to a registry.
#[derive(Args, Clone, Debug)]
pub struct RegistryOptions {
    /// Use plain HTTP (registries on localhost and 127.0.0.0/8 always get it).
    #[arg(long)]
    pub insecure: bool,
    /// Directory of extra CA certificates per registry (`DIR/<host:port>/ca.crt`).
    #[arg(long, value_name = "DIR", default_value = "/etc/docker/certs.d")]
    pub certs_dir: std::path::PathBuf,
}

impl RegistryOptions {
    pub fn client(&self) -> Client {
        Client::new(self.config())
    }

    pub fn config(&self) -> ClientConfig {
        ClientConfig { insecure: self.insecure, certs_dir: self.certs_dir.clone(), ..ClientConfig::default() }
    }

    /// The config for commands working on the store at `store_root`: one HTTPS probe per
    /// insecure registry and store, not per command (see `ClientConfig::schemes`). A CI runner
    /// that pulls its base image and then builds probes once.
    pub fn for_store(&self, store_root: &std::path::Path) -> ClientConfig {
        ClientConfig { schemes: Some(store_root.join("registry-schemes")), ..self.config() }
    }
}

/// Runs a future to completion on a fresh runtime.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    Ok(rt.block_on(f))
}

/// Bars on a terminal, lines elsewhere.
pub fn progress(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(forge_registry::NoProgress)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars { multi: MultiProgress::new(), bars: Mutex::new(HashMap::new()) })
    } else {
        Box::new(LineProgress)
    }
}

struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress for Bars {
    fn start(&self, digest: &str, total: u64, already: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
        bar.set_prefix(short(digest));
        bar.set_position(already);
        self.bars.lock().unwrap().insert(digest.to_string(), bar);
    }

    fn advance(&self, digest: &str, bytes: u64) {
        if let Some(b) = self.bars.lock().unwrap().get(digest) {
            b.inc(bytes);
        }
    }

    fn done(&self, digest: &str, how: &str) {
        match self.bars.lock().unwrap().remove(digest) {
            Some(b) => b.finish_with_message(how.to_string()),
            None => {
                let _ = self.multi.println(format!("{}: {how}", short(digest)));
            }
        }
    }
}

fn short(digest: &str) -> String {
    digest.trim_start_matches("sha256:").chars().take(12).collect()
}
