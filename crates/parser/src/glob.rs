//! Glob matching shared by `${VAR#pattern}` expansion and `.dockerignore` patterns.
//!
//! Patterns compile to tokens and match by simulating the automaton over all positions at
//! once, so time is linear in the text for any number of stars (a backtracking matcher is
//! exponential; the fuzzer found that).

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// One literal character.
    Lit(char),
    /// One character; `/` only when `slash`.
    Any { slash: bool },
    /// Any run of characters; containing `/` only when `slash`.
    Star { slash: bool },
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class { negated: bool, ranges: Vec<(char, char)> },
    /// `(.*/)?`: nothing, or anything that ends with a `/` (`**/` in `.dockerignore`).
    AnyDirs,
}

/// The automaton's state set: two slots per token position (the second is "inside the `.*`
/// of an AnyDirs").
struct States(Vec<bool>);

impl States {
    fn new(toks: &[Tok]) -> States {
        let mut s = States(vec![false; 2 * (toks.len() + 1)]);
        s.add(toks, 0, false);
        s
    }

    /// Adds a state and everything reachable from it without reading a character.
    /// A loop with its own stack, not recursion: a pattern of thousands of `*` would
    /// otherwise recurse thousands deep.
    fn add(&mut self, toks: &[Tok], pos: usize, inside: bool) {
        let mut todo = vec![(pos, inside)];
        while let Some((pos, inside)) = todo.pop() {
            let slot = 2 * pos + usize::from(inside);
            if self.0[slot] {
                continue;
            }
            self.0[slot] = true;
            if inside {
                continue;
            }
            match toks.get(pos) {
                Some(Tok::Star { .. }) => todo.push((pos + 1, false)),
                Some(Tok::AnyDirs) => {
                    todo.push((pos, true));
                    todo.push((pos + 1, false));
                }
                _ => {}
            }
        }
    }

    fn accepts(&self, toks: &[Tok]) -> bool {
        self.0[2 * toks.len()]
    }

    fn is_empty(&self) -> bool {
        !self.0.iter().any(|b| *b)
    }

    fn step(&self, toks: &[Tok], c: char) -> States {
        let mut next = States(vec![false; self.0.len()]);
        for pos in 0..toks.len() {
            if self.0[2 * pos + 1] {
                next.add(toks, pos, true);
                if c == '/' {
                    next.add(toks, pos + 1, false);
                }
            }
            if !self.0[2 * pos] {
                continue;
            }
            match &toks[pos] {
                Tok::Lit(x) if *x == c => next.add(toks, pos + 1, false),
                Tok::Any { slash } if *slash || c != '/' => next.add(toks, pos + 1, false),
                Tok::Class { negated, ranges } if ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated => {
                    next.add(toks, pos + 1, false)
                }
                Tok::Star { slash } if *slash || c != '/' => next.add(toks, pos, false),
                _ => {}
            }
        }
        next
    }
}

/// Whether the pattern matches all of `s`.
pub(crate) fn matches(toks: &[Tok], s: &[char]) -> bool {
    let mut states = States::new(toks);
    for &c in s {
        states = states.step(toks, c);
        if states.is_empty() {
            return false;
        }
    }
    states.accepts(toks)
}

/// The shortest (or, `longest`, the longest) prefix of `s` the pattern matches.
pub(crate) fn prefix_len(toks: &[Tok], s: &[char], longest: bool) -> Option<usize> {
    let mut states = States::new(toks);
    let mut found = states.accepts(toks).then_some(0);
    if found.is_some() && !longest {
        return found;
    }
    for (i, &c) in s.iter().enumerate() {
        states = states.step(toks, c);
        if states.is_empty() {
            break;
        }
        if states.accepts(toks) {
            found = Some(i + 1);
            if !longest {
                break;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(s: &str) -> Vec<Tok> {
        s.chars()
            .map(|c| match c {
                '*' => Tok::Star { slash: false },
                '?' => Tok::Any { slash: false },
                c => Tok::Lit(c),
            })
            .collect()
    }

    #[test]
    fn stars_are_linear() {
        let pattern = lits(&"a*".repeat(200));
        let text: Vec<char> = "a".repeat(5000).chars().chain(['/']).collect();
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn prefixes_and_dirs() {
        let s: Vec<char> = "xxyy".chars().collect();
        assert_eq!(prefix_len(&lits("*x"), &s, false), Some(1));
        assert_eq!(prefix_len(&lits("*x"), &s, true), Some(2));
        let any_dirs = vec![Tok::AnyDirs, Tok::Lit('a')];
        assert!(matches(&any_dirs, &['a']));
        assert!(matches(&any_dirs, &"x/y/a".chars().collect::<Vec<_>>()));
        assert!(!matches(&any_dirs, &"xa".chars().collect::<Vec<_>>()));
        assert!(!matches(&lits("a*"), &"a/b".chars().collect::<Vec<_>>()));
    }
}
