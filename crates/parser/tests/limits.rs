//! Hostile Dockerfiles: nesting that would recurse thousands deep, expansions that grow
//! without bound, and lines of megabytes in error messages. Each runs on a thread with a
//! 1 MiB stack, half of what the builder's threads get, so a recursion that is not bounded
//! overflows here first.

use std::collections::HashMap;

use forge_parser::dockerignore::{Dockerignore, Glob};
use forge_parser::expand::{expand_word, expand_words, MAX_EXPANDED_BYTES, MAX_NESTING};

fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new().stack_size(1 << 20).spawn(f).unwrap().join().unwrap();
}

fn nested(depth: usize) -> String {
    format!("{}x{}", "${a:-".repeat(depth), "}".repeat(depth))
}

#[test]
fn substitutions_nest_to_the_limit_and_no_further() {
    on_small_stack(|| {
        let vars: HashMap<String, String> = HashMap::new();
        assert_eq!(expand_word(&nested(MAX_NESTING), &vars, '\\').unwrap().value, "x");
        for depth in [MAX_NESTING + 1, 3000] {
            let err = expand_word(&nested(depth), &vars, '\\').unwrap_err().to_string();
            assert!(err.contains(&format!("nested more than {MAX_NESTING} deep")), "{err}");
            // The word is 15 KB; the message shows its start only.
            assert!(err.len() < 400, "{} bytes", err.len());
        }
        // Inside double quotes, and through the field-splitting entry point.
        let quoted = format!("\"{}\"", nested(3000));
        assert!(expand_words(&quoted, &vars, '\\').is_err());
    });
}

#[test]
fn an_instruction_nests_in_onbuild_to_the_limit_only() {
    on_small_stack(|| {
        let text = format!("FROM scratch\n{}RUN true\n", "ONBUILD ".repeat(5000));
        let err = forge_parser::parse(&text, "Dockerfile").unwrap_err();
        assert!(err.message().contains(&format!("ONBUILD nested more than {MAX_NESTING} deep")), "{}", err.message());
        assert!(err.render().len() < 1000, "{} bytes", err.render().len());
    });
}

#[test]
fn expansion_results_are_bounded() {
    let big = "x".repeat(MAX_EXPANDED_BYTES / 2 + 1);
    let vars = HashMap::from([("a".to_string(), big.clone()), ("s".to_string(), "x".repeat(4096))]);
    assert_eq!(expand_word("$a", &vars, '\\').unwrap().value, big);
    for word in ["$a$a", "${a}${a}", "\"$a$a\"", "${b:-$a$a}", "${s//?/$s}"] {
        let err = expand_word(word, &vars, '\\').unwrap_err().to_string();
        assert!(err.contains(&format!("larger than the limit of {MAX_EXPANDED_BYTES} bytes")), "{word}: {err}");
    }
    // `ENV a=${a}${a}`, forty times over: stops at the limit instead of growing to 2^40.
    let mut env = vec![("a".to_string(), "x".to_string())];
    let mut error = None;
    for _ in 0..40 {
        match expand_word("${a}${a}", &env, '\\') {
            Ok(e) => env.push(("a".to_string(), e.value)),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(error.is_some_and(|e| e.message.contains("larger than the limit")));
    assert!(env.last().unwrap().1.len() <= MAX_EXPANDED_BYTES);
    // A message made of a value is cut too.
    let err = expand_word("${unset:?$a}", &vars, '\\').unwrap_err().to_string();
    assert!(err.len() < 1000, "{} bytes", err.len());
    let err = Dockerignore::parse(&format!("[{}", "z".repeat(60_000))).and_then(|d| d.is_excluded("x")).unwrap_err().to_string();
    assert!(err.len() < 1000, "{} bytes", err.len());
}

#[test]
fn errors_never_echo_a_long_line() {
    // A megabyte-long instruction made of continuation lines, with the error at its end.
    let long = format!("FROM scratch\nENV {}\n", "a=b \\\n".repeat(200_000) + "oops");
    let err = forge_parser::parse(&long, "Dockerfile").unwrap_err();
    assert!(err.render().len() < 1000, "{} bytes", err.render().len());
    // One physical line over BuildKit's 64 KiB, and a 20 MB unknown keyword.
    for text in [format!("FROM scratch\nRUN {}\n", "y".repeat(70_000)), format!("{} x\n", "K".repeat(20 << 20))] {
        let err = forge_parser::parse(&text, "Dockerfile").unwrap_err();
        let shown = err.render();
        assert!(shown.len() < 1000, "{} bytes", shown.len());
    }
}

#[test]
fn long_runs_of_stars_do_not_recurse() {
    on_small_stack(|| {
        let stars = "*".repeat(50_000);
        // Finishing is the test: the answer for such a pattern does not matter.
        let _ = Glob::new(&format!("{stars}x")).unwrap().matches("abcx");
        let ignore = Dockerignore::parse(&format!("{}\n", "**/".repeat(20_000))).unwrap();
        let _ = ignore.is_excluded("a/b/c");
    });
}
