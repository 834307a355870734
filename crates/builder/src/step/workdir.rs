//! WORKDIR's layer: BuildKit makes one for every WORKDIR but `/`, even when the directory
//! exists. The path itself is a config change (`config::workdir`).

use crate::cache_key::{InputKind, KeyBuilder};
use crate::step::{Made, StepCtx};
use crate::users::resolve_owner;
use crate::error::StepErrorKind;
use crate::Error;

/// Creates `path` (already made absolute) owned by the image's user; `None` for `/`.
pub(crate) fn workdir(step: &StepCtx<'_>, path: &str) -> Result<Option<Made>, Error> {
    if path == "/" {
        return Ok(None);
    }
    let user = step.image.config.config.user.clone().unwrap_or_default();
    let mut key = KeyBuilder::new(step.parent_key, "WORKDIR");
    key.part(path).part(&user);
    key.note(InputKind::Instruction, "path", path).note(InputKind::Config, "USER", &user);
    let (key, inputs) = key.finish_with_inputs();
    let (layer, created) = step.layer(&key, inputs, |snap| {
        let (_mount, root) = snap.mount(step.build.store, step.at)?;
        let owner = if user.is_empty() { (0, 0) } else { resolve_owner(&root, &user).map_err(|e| step.at.fail(StepErrorKind::UnknownUser, e))? };
        root.mkdir_all(path, owner, 0o755).map_err(|e| step.at.fail(StepErrorKind::Io, format!("creating {path}: {e}")))?;
        Ok(None)
    })?;
    Ok(Some(Made { key, layer, created, created_by: format!("WORKDIR {path}") }))
}
