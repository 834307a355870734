//! What the runtime records in the store's event journal ([`forge_layerstore::events`]):
//! container create, start, die, kill, stop and destroy, network connect and disconnect,
//! volume create and destroy. Every such record goes through here.

use std::collections::BTreeMap;
use std::path::Path;

use forge_layerstore::events::{record_quietly, Event};

use crate::config::Config;
use crate::containers::Containers;

impl Containers {
    /// What docker's container events carry: the container's labels, its image and name.
    pub(crate) fn event_attributes(&self, id: &str) -> BTreeMap<String, String> {
        let Ok(config) = crate::state::read_json::<Config>(&self.path(id).join("config.json")) else { return BTreeMap::new() };
        let mut attributes = config.labels.clone();
        attributes.insert("image".into(), config.image.clone());
        attributes.insert("name".into(), config.name.clone().unwrap_or_default());
        attributes
    }

    /// Records `action` on container `id`, with `extra` attributes.
    pub(crate) fn event(&self, id: &str, action: &str, extra: &[(&str, String)]) {
        self.event_with(id, action, self.event_attributes(id), extra);
    }

    /// [`event`](Containers::event) with attributes read before (the records may be gone).
    pub(crate) fn event_with(&self, id: &str, action: &str, mut attributes: BTreeMap<String, String>, extra: &[(&str, String)]) {
        attributes.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        record_quietly(self.store().root(), Event::now("container", action, id, attributes));
    }

}

/// Records `action` (`connect`, `disconnect`) of container `id` on `network`: at its start and
/// end, and by `network connect`/`disconnect`.
pub(crate) fn network(store_root: &Path, action: &str, network: &str, id: &str) {
    let attributes = [("container", id), ("name", network), ("type", "bridge")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    record_quietly(store_root, Event::now("network", action, network, attributes));
}

/// Records `action` (`create`, `destroy`) on volume `name` of the store at `store_root`.
pub(crate) fn volume(store_root: &Path, action: &str, name: &str) {
    let attributes = [("driver".to_string(), "local".to_string())].into();
    record_quietly(store_root, Event::now("volume", action, name, attributes));
}
