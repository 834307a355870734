//! The build graph: edges, ARG scoping, target pruning, parallel levels, and errors.

use std::collections::BTreeMap;

mod common;

use forge_parser::dag::{Base, BuildGraph, GraphOptions, Source};

fn graph(src: &str, opts: &GraphOptions) -> Result<BuildGraph, forge_parser::Error> {
    BuildGraph::new(&forge_parser::parse(src, "Dockerfile")?, opts)
}

fn opts(args: &[(&str, &str)], target: Option<&str>) -> GraphOptions {
    GraphOptions {
        build_args: args.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
        target: target.map(str::to_string),
    }
}

const MULTI: &str = "\
ARG VERSION=1.0
ARG BASE=alpine:${VERSION}
FROM ${BASE} AS deps
RUN echo deps
FROM deps AS build
COPY --from=tools /bin/tool /bin/
FROM scratch AS tools
FROM busybox AS test
RUN --mount=type=bind,from=build,target=/b true
FROM deps AS final
COPY --from=build /out /out
COPY --from=0 /etc/x /x
COPY --from=registry.example/img:1 /y /y
";

#[test]
fn global_args_expand_in_from_and_build_args_override() {
    let g = graph("ARG VERSION=1.0\nARG BASE=alpine:${VERSION}\nFROM ${BASE}\n", &GraphOptions::default()).unwrap();
    assert_eq!(g.stages[0].base, Base::Image("alpine:1.0".into()));
    let g = graph("ARG VERSION=1.0\nARG BASE=alpine:${VERSION}\nFROM ${BASE}\n", &opts(&[("VERSION", "2")], None)).unwrap();
    assert_eq!(g.stages[0].base, Base::Image("alpine:2".into()));
    assert_eq!(g.global_args, vec![("VERSION".into(), Some("2".into())), ("BASE".into(), Some("alpine:2".into()))]);
}

#[test]
fn predefined_platform_args_work_in_from() {
    let g = graph("FROM img-${TARGETOS}-${TARGETARCH}\n", &GraphOptions::default()).unwrap();
    assert_eq!(g.stages[0].base, Base::Image("img-linux-amd64".into()));
}

#[test]
fn forward_stage_reference_is_an_error_with_location() {
    let err = graph(MULTI, &GraphOptions::default()).unwrap_err();
    assert!(err.message().contains("\"tools\" is defined after this one"), "{}", err.message());
    assert_eq!(err.position().line, 6);
}

#[test]
fn edges_pruning_and_levels() {
    let src = MULTI.replace("COPY --from=tools /bin/tool /bin/\n", "");
    let g = graph(&src, &GraphOptions::default()).unwrap();
    assert_eq!(g.stages.len(), 5);
    assert_eq!(g.stages[1].base, Base::Stage(0));
    assert_eq!(g.stages[3].sources.values().next().unwrap(), &vec![Source::Stage(1)]);
    let final_stage = &g.stages[4];
    assert_eq!(final_stage.deps.iter().copied().collect::<Vec<_>>(), vec![0, 1]);
    assert!(final_stage.sources.values().flatten().any(|s| *s == Source::Image("registry.example/img:1".into())));
    // tools (2) and test (3) are not needed by the final stage.
    assert_eq!(g.levels, vec![vec![0], vec![1], vec![4]]);
    let g = graph(&src, &opts(&[], Some("TEST"))).unwrap();
    assert_eq!(g.target, 3);
    assert_eq!(g.levels, vec![vec![0], vec![1], vec![3]]);
}

#[test]
fn errors() {
    for (src, o, part) in [
        ("FROM a AS x\nCOPY --from=x /a /b\n", GraphOptions::default(), "refers to itself"),
        ("FROM a\nCOPY --from=1 /a /b\n", GraphOptions::default(), "not an earlier stage"),
        ("FROM a\n", opts(&[], Some("nope")), "target stage \"nope\" could not be found"),
        ("RUN true\nFROM a\n", GraphOptions::default(), "no build stage"),
        ("ARG X\n", GraphOptions::default(), "no FROM"),
        ("FROM a AS x\nFROM b AS x\n", GraphOptions::default(), "duplicate stage name"),
        ("FROM ${X:?X_is_required}\n", GraphOptions::default(), "X_is_required"),
    ] {
        let err = graph(src, &o).expect_err(src);
        assert!(err.message().contains(part), "{src:?}: {}", err.message());
    }
}

#[test]
fn stage_args_expand_from_values_and_unused_args_are_reported() {
    let src = "FROM a AS builder\nFROM b\nARG SRC=builder\nCOPY --from=${SRC} /x /x\n";
    let g = graph(src, &opts(&[("UNUSED", "1"), ("HTTP_PROXY", "http://p")], None)).unwrap();
    assert!(g.stages[1].deps.contains(&0));
    assert_eq!(g.unused_build_args, vec!["UNUSED"]);
}
