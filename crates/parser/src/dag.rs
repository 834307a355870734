//! The build graph: stages, the edges between them (a stage's base, `COPY --from`,
//! `RUN --mount from=`), global ARG scoping, `--target` pruning, and which stages can run at
//! the same time.
//!
//! ```
//! use forge_parser::dag::{BuildGraph, GraphOptions, Base};
//! let src = "ARG BASE=busybox\nFROM ${BASE} AS a\nRUN echo a > /a\nFROM ${BASE} AS b\nRUN echo b > /b\n\
//!            FROM scratch AS unused\nFROM ${BASE}\nCOPY --from=a /a /\nCOPY --from=b /b /\n";
//! let df = forge_parser::parse(src, "Dockerfile").unwrap();
//! let graph = BuildGraph::new(&df, &GraphOptions::default()).unwrap();
//! assert_eq!(graph.stages[0].base, Base::Image("busybox".into()));
//! // a and b build in parallel, then the final stage; the unused stage never runs.
//! assert_eq!(graph.levels, vec![vec![0, 1], vec![3]]);
//! ```

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Error;
use crate::expand::expand_word;
use crate::flags::MountKind;
use crate::instruction::{Instruction, Spanned};
use crate::span::Span;
use crate::Dockerfile;

/// What the graph needs from the build's options.
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (default: the last one).
    pub target: Option<String>,
}

/// The platform forge builds for; ARGs like TARGETARCH describe it.
pub const PLATFORM: (&str, &str) = ("linux", "amd64");

/// Build args every Dockerfile may use without declaring them globally: the platform ones
/// (in FROM lines) and the proxy ones (in RUN, kept out of the image history).
pub fn predefined_args() -> Vec<(&'static str, String)> {
    let (os, arch) = PLATFORM;
    let platform = format!("{os}/{arch}");
    vec![
        ("TARGETPLATFORM", platform.clone()),
        ("TARGETOS", os.into()),
        ("TARGETARCH", arch.into()),
        ("TARGETVARIANT", String::new()),
        ("BUILDPLATFORM", platform),
        ("BUILDOS", os.into()),
        ("BUILDARCH", arch.into()),
        ("BUILDVARIANT", String::new()),
    ]
}

/// The proxy build args, usable with `--build-arg` without an ARG line.
pub const PROXY_ARGS: [&str; 10] =
    ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"];

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference (expanded), resolved in the store or pulled.
    Image(String),
    /// An earlier stage, by index.
    Stage(usize),
}

/// What a `--from` (COPY or RUN --mount) refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference.
    Image(String),
}

/// One `FROM` and the instructions up to the next.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Position among the stages (what `COPY --from=0` means).
    pub index: usize,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    /// The base.
    pub base: Base,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// The `FROM` line.
    pub span: Span,
    /// Instructions after FROM.
    pub instructions: Vec<Spanned<Instruction>>,
    /// For each COPY --from / RUN --mount from= in `instructions` (by position): its source.
    pub sources: BTreeMap<usize, Vec<Source>>,
    /// Earlier stages this one needs (base and sources).
    pub deps: BTreeSet<usize>,
}

/// A Dockerfile lowered to stages and edges.
#[derive(Debug, Clone)]
pub struct BuildGraph {
    /// Every stage, in source order.
    pub stages: Vec<Stage>,
    /// The stage the build produces.
    pub target: usize,
    /// Global ARGs (before the first FROM) with their values after build args and defaults;
    /// `None` for an ARG with neither. Stages see these only when they redeclare them.
    pub global_args: Vec<(String, Option<String>)>,
    /// The stages the target needs, grouped so that every stage's dependencies are in an
    /// earlier group: stages in one group can run in parallel.
    pub levels: Vec<Vec<usize>>,
    /// `--build-arg` names that no ARG declares (BuildKit warns about these).
    pub unused_build_args: Vec<String>,
}

impl BuildGraph {
    /// Lowers a parsed Dockerfile. Errors (unknown or later stages, a stage copying from
    /// itself, instructions before FROM, a missing target) name the line.
    pub fn new(df: &Dockerfile, opts: &GraphOptions) -> Result<BuildGraph, Error> {
        let instructions = df.instructions()?;
        let fail = |span: Span, msg: String| Err(df.error_at(span, msg));
        let mut global_args: Vec<(String, Option<String>)> = Vec::new();
        let mut declared: BTreeSet<String> = BTreeSet::new();
        let mut stages: Vec<Stage> = Vec::new();

        for spanned in instructions {
            let span = spanned.span;
            match spanned.value {
                Instruction::Arg(decls) if stages.is_empty() => {
                    for d in decls {
                        declared.insert(d.name.clone());
                        let scope = meta_scope(&global_args);
                        let value = match opts.build_args.get(&d.name) {
                            Some(v) => Some(v.clone()),
                            None => match &d.default {
                                Some(def) => Some(expand(df, span, def, &scope)?),
                                None => None,
                            },
                        };
                        global_args.push((d.name, value));
                    }
                }
                Instruction::From(from) => {
                    let scope = meta_scope(&global_args);
                    let image = expand(df, span, &from.image, &scope)?;
                    let platform = from.platform.as_deref().map(|p| expand(df, span, p, &scope)).transpose()?;
                    let base = if image.eq_ignore_ascii_case("scratch") {
                        Base::Scratch
                    } else if let Some(i) = stages.iter().position(|s| s.name.as_deref() == Some(&image.to_lowercase())) {
                        Base::Stage(i)
                    } else {
                        Base::Image(image)
                    };
                    if let Some(name) = &from.name {
                        if stages.iter().any(|s| s.name.as_deref() == Some(name)) {
                            return fail(span, format!("duplicate stage name {name:?}"));
                        }
                        if name.parse::<usize>().is_ok() {
                            return fail(span, format!("invalid stage name {name:?}: it cannot be a number"));
                        }
                    }
                    let deps = match base {
                        Base::Stage(i) => BTreeSet::from([i]),
                        _ => BTreeSet::new(),
                    };
                    stages.push(Stage {
                        index: stages.len(),
                        name: from.name,
                        base,
                        platform,
                        span,
                        instructions: Vec::new(),
                        sources: BTreeMap::new(),
                        deps,
                    });
                }
                other => {
                    let Some(stage) = stages.last_mut() else {
                        return fail(span, "no build stage in current context: the first instruction must be FROM (ARG may come before it)".into());
                    };
                    if let Instruction::Arg(decls) = &other {
                        declared.extend(decls.iter().map(|d| d.name.clone()));
                    }
                    stage.instructions.push(Spanned { value: other, span });
                }
            }
        }
        if stages.is_empty() {
            return Err(df.error_at(Span::default(), "no FROM instruction: a Dockerfile needs at least one stage".into()));
        }

        // Second pass: resolve --from references now that every stage's name is known, so a
        // reference to a later stage can be told apart from an image name.
        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        for stage in &mut stages {
            let scope = stage_scope(&global_args, stage, &opts.build_args);
            for (pos, inst) in stage.instructions.iter().enumerate() {
                let mut refs: Vec<&str> = Vec::new();
                match &inst.value {
                    Instruction::Copy(c) => refs.extend(c.from.as_deref()),
                    Instruction::Run(r) => {
                        refs.extend(r.mounts.iter().filter(|m| m.kind != MountKind::Secret).filter_map(|m| m.from.as_deref()))
                    }
                    _ => {}
                }
                for raw in refs {
                    let value = expand(df, inst.span, raw, &scope)?;
                    let source = resolve_ref(&value, stage.index, &names).map_err(|m| df.error_at(inst.span, m))?;
                    if let Source::Stage(i) = source {
                        stage.deps.insert(i);
                    }
                    stage.sources.entry(pos).or_default().push(source);
                }
            }
        }

        let target = match &opts.target {
            None => stages.len() - 1,
            Some(t) => {
                let t = t.to_lowercase();
                match stages.iter().position(|s| s.name.as_deref() == Some(&t)) {
                    Some(i) => i,
                    None => return Err(df.error_at(Span::default(), format!("target stage {t:?} could not be found"))),
                }
            }
        };
        let levels = levels_for(&stages, target);
        let mut unused_build_args: Vec<String> = opts
            .build_args
            .keys()
            .filter(|k| !declared.contains(*k) && !PROXY_ARGS.contains(&k.as_str()) && !predefined_args().iter().any(|(p, _)| p == k))
            .cloned()
            .collect();
        unused_build_args.sort();
        Ok(BuildGraph { stages, target, global_args, levels, unused_build_args })
    }

    /// The stages the target needs, in an order where dependencies come first.
    pub fn needed(&self) -> impl Iterator<Item = usize> + '_ {
        self.levels.iter().flatten().copied()
    }
}

/// A `--from` value: a stage name, a stage index, or else an image reference.
fn resolve_ref(value: &str, current: usize, names: &[Option<String>]) -> Result<Source, String> {
    let lower = value.to_lowercase();
    if let Some(i) = names.iter().position(|n| n.as_deref() == Some(&lower)) {
        return match i.cmp(&current) {
            std::cmp::Ordering::Less => Ok(Source::Stage(i)),
            std::cmp::Ordering::Equal => Err(format!("circular dependency: stage {value:?} refers to itself")),
            std::cmp::Ordering::Greater => Err(format!("stage {value:?} is defined after this one: a stage can only use earlier stages")),
        };
    }
    if let Ok(i) = value.parse::<usize>() {
        return if i < current {
            Ok(Source::Stage(i))
        } else {
            Err(format!("invalid --from value {value:?}: stage {i} is not an earlier stage"))
        };
    }
    if value.is_empty() {
        return Err("empty --from value".into());
    }
    Ok(Source::Image(value.to_string()))
}

/// Groups the stages `target` needs into levels of mutually independent stages.
fn levels_for(stages: &[Stage], target: usize) -> Vec<Vec<usize>> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(stages[i].deps.iter().copied());
        }
    }
    // Dependencies always point to earlier stages, so one pass in index order settles levels.
    let mut level = vec![0usize; stages.len()];
    for &i in &needed {
        level[i] = stages[i].deps.iter().map(|&d| level[d] + 1).max().unwrap_or(0);
    }
    let depth = needed.iter().map(|&i| level[i]).max().unwrap_or(0);
    (0..=depth).map(|l| needed.iter().copied().filter(|&i| level[i] == l).collect()).collect()
}

/// Global ARGs plus the predefined platform args: what FROM lines can use.
fn meta_scope(global_args: &[(String, Option<String>)]) -> Vec<(String, String)> {
    let mut scope: Vec<(String, String)> = predefined_args().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    scope.extend(global_args.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))));
    scope
}

/// The ARG values a stage's `--from` flags can use: redeclared globals and its own ARGs.
fn stage_scope(global_args: &[(String, Option<String>)], stage: &Stage, build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut scope = Vec::new();
    for inst in &stage.instructions {
        if let Instruction::Arg(decls) = &inst.value {
            for d in decls {
                let value = build_args
                    .get(&d.name)
                    .cloned()
                    .or_else(|| d.default.clone())
                    .or_else(|| global_args.iter().rev().find(|(k, _)| *k == d.name).and_then(|(_, v)| v.clone()));
                if let Some(v) = value {
                    scope.push((d.name.clone(), v));
                }
            }
        }
    }
    scope
}

fn expand(df: &Dockerfile, span: Span, word: &str, scope: &[(String, String)]) -> Result<String, Error> {
    expand_word(word, scope, df.escape()).map(|e| e.value).map_err(|e| df.error_at(span, e.to_string()))
}
