//! One stage: start from its base, run its base's ONBUILD triggers, then its instructions in
//! order, each through its step module (`step/`), reporting progress as it goes.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use forge_layerstore::image::History;
use forge_layerstore::{Digest, ImageConfig, Layer};
use forge_parser::dag::{Base, BuildGraph, Source, PLATFORM};
use forge_parser::{Instruction, Span, Spanned};

use crate::cache_key::base_key;
use crate::ctx::BuildCtx;
use crate::error::{At, StepErrorKind};
use crate::progress::Event;
use crate::scheduler::{Finished, StageResult};
use crate::step::config::{self, StageImage};
use crate::step::run::Usage;
use crate::step::{self, Made, StepCtx};
use crate::vars::{Vars, DEFAULT_PATH};
use crate::Error;

/// An RFC 3339 time: `SOURCE_DATE_EPOCH` when set, else now.
pub(crate) fn timestamp(source_date_epoch: Option<i64>) -> String {
    let t = match source_date_epoch {
        Some(s) => UNIX_EPOCH + Duration::from_secs(s.max(0) as u64),
        None => SystemTime::now(),
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Sets the image's time, as BuildKit does: that of its last layer's history entry (when that
/// layer was first made, so a fully cached rebuild gives the same image), or now when no
/// layer has one; history entries without a time (the steps that made no layer) get it too.
/// `SOURCE_DATE_EPOCH` sets every time to itself.
pub(crate) fn image_created(config: &mut ImageConfig, source_date_epoch: Option<i64>) {
    let last_layer = config.history.iter().rev().filter(|h| h.empty_layer != Some(true)).find_map(|h| h.created.clone());
    let created = match source_date_epoch {
        Some(_) => timestamp(source_date_epoch),
        None => last_layer.unwrap_or_else(|| timestamp(None)),
    };
    for h in &mut config.history {
        h.created.get_or_insert_with(|| created.clone());
    }
    config.created = Some(created);
}

/// An instruction to run, with its position among the stage's own (`None`: an ONBUILD trigger).
type Planned = (Option<usize>, Spanned<Instruction>);

/// A stage being built.
struct StageRun<'a> {
    build: &'a BuildCtx<'a>,
    finished: &'a Finished,
    /// The stage's name or `stage-N`, for progress.
    name: String,
    image: StageImage,
    layers: Vec<Layer>,
    /// The cache key of the last step.
    key: Digest,
    /// The step being run.
    at: At,
}

/// Builds stage `index` of `graph`; the stages it uses are in `finished`.
pub(crate) fn run_stage(build: &BuildCtx<'_>, graph: &BuildGraph, finished: &Finished, index: usize) -> Result<StageResult, Error> {
    let stage = &graph.stages[index];
    let mut run = StageRun {
        build,
        finished,
        name: stage.name.clone().unwrap_or_else(|| format!("stage-{index}")),
        image: StageImage::new(ImageConfig::scratch(), Vars::default()),
        layers: Vec::new(),
        key: base_key("scratch"),
        at: At { id: format!("{index}/0"), file: build.file.clone(), line: stage.span.start.line, instruction: build.line_text(stage.span) },
    };
    if let Some(p) = &stage.platform {
        let want = format!("{}/{}", PLATFORM.0, PLATFORM.1);
        if p != &want {
            return Err(run.at.fail(StepErrorKind::Unsupported, format!("platform {p:?} is not supported: forge builds {want} only")));
        }
    }
    run.started();
    let start = Instant::now();
    run.from(&stage.base)?;
    run.done(start, (None, None));

    for (step, (pos, ins)) in run.instructions(stage.span, &stage.instructions)?.into_iter().enumerate() {
        if finished.stopped() || build.opts.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        run.at = At { id: format!("{index}/{}", step + 1), file: build.file.clone(), line: ins.span.start.line, instruction: build.line_text(ins.span) };
        let sources = pos.and_then(|p| stage.sources.get(&p)).cloned().unwrap_or_default();
        run.started();
        let start = Instant::now();
        let usage = run.dispatch(&ins.value, &sources)?;
        run.done(start, usage);
    }
    Ok(StageResult { config: run.image.config, layers: run.layers, key: run.key, vars: run.image.vars })
}

impl StageRun<'_> {
    fn started(&self) {
        self.build.progress.event(Event::StepStarted {
            id: self.at.id.clone(),
            stage: self.name.clone(),
            text: self.at.instruction.clone(),
            line: self.at.line,
        });
    }

    fn done(&self, start: Instant, (cpu_time, peak_memory): Usage) {
        self.build.progress.event(Event::StepDone { id: self.at.id.clone(), elapsed: start.elapsed(), cpu_time, peak_memory });
    }

    /// Starts from the stage's base.
    fn from(&mut self, base: &Base) -> Result<(), Error> {
        match base {
            // BuildKit's empty image has Docker's PATH and `/` as its working directory.
            Base::Scratch => {
                self.image.config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
                self.image.config.config.working_dir = Some("/".into());
            }
            Base::Stage(j) => {
                let parent = self.finished.get(*j);
                self.image = StageImage::new(parent.config.clone(), parent.vars.clone());
                self.layers = parent.layers.clone();
                self.key = parent.key.clone();
            }
            Base::Image(reference) => {
                let image = self.build.base_image(&self.at, reference)?;
                self.layers = image.layers().map_err(|e| self.at.fail(StepErrorKind::Store, e.to_string()))?;
                self.key = base_key(image.descriptor.digest().as_ref());
                // A child image keeps the base's history entries.
                self.image.config = image.config;
            }
        }
        Ok(())
    }

    /// The base's ONBUILD triggers (which run first and are not inherited further), then the
    /// stage's own instructions with their positions (for their `--from` sources).
    fn instructions(&mut self, span: Span, own: &[Spanned<Instruction>]) -> Result<Vec<Planned>, Error> {
        let mut out = Vec::new();
        for trigger in self.image.config.config.on_build.take().unwrap_or_default() {
            let fail = |e: &dyn std::fmt::Display| self.at.fail(StepErrorKind::InvalidInstruction, format!("ONBUILD trigger {trigger:?}: {e}"));
            let df = forge_parser::parse(&format!("{trigger}\n"), "ONBUILD").map_err(|e| fail(&e))?;
            for ins in df.instructions().map_err(|e| fail(&e))? {
                out.push((None, Spanned { value: ins.value, span }));
            }
        }
        out.extend(own.iter().cloned().enumerate().map(|(i, ins)| (Some(i), ins)));
        Ok(out)
    }

    /// Runs one instruction; returns what a RUN step measured.
    fn dispatch(&mut self, ins: &Instruction, sources: &[Source]) -> Result<Usage, Error> {
        let made = match ins {
            Instruction::From(_) => unreachable!("FROM starts a stage"),
            Instruction::Run(r) => {
                let (made, usage) = step::run::run(&self.step_ctx(), r, sources)?;
                self.record(made);
                return Ok(usage);
            }
            Instruction::Copy(c) => Some(step::copy::copy(&self.step_ctx(), c, sources)?),
            Instruction::Workdir(w) => {
                let expanded = self.step_ctx().expand(w)?;
                let path = config::workdir(&mut self.image, expanded);
                match step::workdir::workdir(&self.step_ctx(), &path)? {
                    Some(made) => Some(made),
                    None => {
                        self.history(format!("WORKDIR {path}"), None);
                        None
                    }
                }
            }
            _ => {
                let build = self.build;
                let scope = step::scope(build);
                let created_by = config::apply(&mut self.image, ins, &scope).map_err(|e| self.at.locate(e))?;
                if let Some(text) = created_by {
                    self.history(text, None);
                }
                None
            }
        };
        if let Some(made) = made {
            self.record(made);
        }
        Ok((None, None))
    }

    fn step_ctx(&self) -> StepCtx<'_> {
        StepCtx { build: self.build, finished: self.finished, at: &self.at, image: &self.image, layers: &self.layers, parent_key: &self.key }
    }

    /// Records a layer step's result: its layer (if any), key and history entry.
    fn record(&mut self, made: Made) {
        let created = made.layer.is_some().then_some(made.created);
        if let Some(l) = made.layer {
            self.image.config.rootfs.diff_ids.push(l.diff_id.clone());
            self.layers.push(l);
        }
        self.key = made.key;
        self.history(made.created_by, created);
    }

    /// Adds a history entry: `layer_created` is when the entry's layer was first made, `None`
    /// for an entry without a layer, whose time is the image's (see [`image_created`]).
    fn history(&mut self, created_by: String, layer_created: Option<String>) {
        let empty_layer = layer_created.is_none();
        let created = match self.build.opts.source_date_epoch {
            Some(_) => Some(timestamp(self.build.opts.source_date_epoch)),
            None => layer_created,
        };
        self.image.config.history.push(History {
            created,
            created_by: Some(created_by),
            comment: Some("buildkit.dockerfile.v0".into()),
            empty_layer: empty_layer.then_some(true),
            ..History::default()
        });
    }
}
