//! A stage's variables: its ARGs and the image's ENV, as expansions, RUN's environment and
//! history's `|N` prefix see them. Pure functions of the stage's state, tested without root.

use forge_layerstore::ImageConfig;
use forge_parser::dag::PROXY_ARGS;
use forge_parser::expand::{expand_word, expand_words};

use crate::error::{Fault, StepErrorKind};

/// Docker's default PATH, for images whose config sets none.
pub(crate) const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The ARGs of a stage (inherited ones included: a stage built FROM another inherits them, as
/// in BuildKit).
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    /// ARGs declared with their values (`None`: declared, no value), in the order first declared.
    pub(crate) args: Vec<(String, Option<String>)>,
    /// ARG values declared after an ENV of the same name. BuildKit keeps one environment that
    /// ENV and ARG both write, in order, so such an ARG wins in expansions and in RUN (the
    /// image's config keeps the ENV value); a later ENV of the name takes it back.
    pub(crate) arg_over_env: Vec<(String, String)>,
}

fn env_pairs(config: &ImageConfig) -> impl Iterator<Item = (&str, &str)> {
    config.config.env.iter().flatten().map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

impl Vars {
    /// Variables for expansion: ARGs with values, then the config's ENV (which wins), then the
    /// ARGs declared over an ENV (which win over it); the last of a name counts.
    pub(crate) fn all(&self, config: &ImageConfig) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        v.extend(env_pairs(config).map(|(k, val)| (k.to_string(), val.to_string())));
        v.extend(self.arg_over_env.iter().cloned());
        v
    }

    /// One word expanded to one value (quotes removed).
    pub(crate) fn expand(&self, config: &ImageConfig, escape: char, word: &str) -> Result<String, Fault> {
        expand_word(word, &self.all(config), escape).map(|e| e.value).map_err(expansion)
    }

    /// Words expanded, each possibly into several (split on unquoted blanks).
    pub(crate) fn expand_all(&self, config: &ImageConfig, escape: char, words: &[String]) -> Result<Vec<String>, Fault> {
        let vars = self.all(config);
        let mut out = Vec::new();
        for w in words {
            out.extend(expand_words(w, &vars, escape).map_err(expansion)?);
        }
        Ok(out)
    }

    /// Build args a RUN step sees in its environment: declared ARGs with values and the proxy
    /// args given with `--build-arg`.
    pub(crate) fn run_args(&self, build_args: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self.args.iter().filter_map(|(k, v)| Some((k.clone(), v.clone()?))).collect();
        for p in PROXY_ARGS {
            if let Some(v) = build_args.get(p) {
                if !out.iter().any(|(k, _)| k == p) {
                    out.push((p.to_string(), v.clone()));
                }
            }
        }
        out
    }

    /// A RUN step's environment: build args, then the image's ENV (which wins), then ARGs
    /// declared over an ENV, with Docker's PATH when the image sets none.
    pub(crate) fn run_env(&self, config: &ImageConfig, args: &[(String, String)]) -> Vec<String> {
        let mut env: Vec<(String, String)> = args.to_vec();
        for (k, v) in env_pairs(config) {
            env.retain(|(ek, _)| ek != k);
            env.push((k.to_string(), v.to_string()));
        }
        for (k, v) in &self.arg_over_env {
            match env.iter_mut().find(|(ek, _)| ek == k) {
                Some(slot) => slot.1 = v.clone(),
                None => env.push((k.clone(), v.clone())),
            }
        }
        if !env.iter().any(|(k, _)| k == "PATH") {
            env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
        }
        env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `words` with BuildKit's `|N K=V ...` prefix naming every ARG of the stage (inherited
    /// ones included, in the order first declared), each with the value the step sees (as
    /// [`Vars::all`] gives it); an ARG without a value shows as empty.
    pub(crate) fn history_args(&self, config: &ImageConfig, words: &[String]) -> Vec<String> {
        let vars = self.all(config);
        let mut shown: Vec<(String, String)> = Vec::new();
        for (k, declared) in &self.args {
            let v = vars.iter().rev().find(|(vk, _)| vk == k).map(|(_, v)| v.clone()).or_else(|| declared.clone()).unwrap_or_default();
            match shown.iter_mut().find(|(sk, _)| sk == k) {
                Some(slot) => slot.1 = v,
                None => shown.push((k.clone(), v)),
            }
        }
        let mut out = Vec::new();
        if !shown.is_empty() {
            out.push(format!("|{}", shown.len()));
            out.extend(shown.into_iter().map(|(k, v)| format!("{k}={v}")));
        }
        out.extend(words.iter().cloned());
        out
    }

    /// Declares ARG `name` with `value`: a redeclared ARG keeps its place (as in BuildKit's
    /// `|N` list), and one over an ENV of its name wins over it.
    pub(crate) fn declare(&mut self, config: &ImageConfig, name: &str, value: Option<String>) {
        if let Some(v) = &value {
            let in_env = env_pairs(config).any(|(k, _)| k == name);
            self.arg_over_env.retain(|(a, _)| a != name);
            if in_env {
                self.arg_over_env.push((name.to_string(), v.clone()));
            }
        }
        match self.args.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.args.push((name.to_string(), value)),
        }
    }
}

fn expansion(e: forge_parser::expand::ExpandError) -> Fault {
    Fault::new(StepErrorKind::Expansion, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arg_over_env_wins_until_env_again() {
        let mut config = ImageConfig::scratch();
        config.set_env("A", "env");
        let mut vars = Vars::default();
        vars.declare(&config, "B", None);
        vars.declare(&config, "A", Some("arg".into()));
        assert_eq!(vars.expand(&config, '\\', "$A-${B:-unset}").unwrap(), "arg-unset");
        assert_eq!(vars.run_env(&config, &vars.run_args(&Default::default())), [format!("PATH={DEFAULT_PATH}"), "A=arg".into()]);
        assert_eq!(vars.history_args(&config, &["true".into()]), ["|2", "B=", "A=arg", "true"]);
        vars.arg_over_env.retain(|(k, _)| k != "A");
        assert_eq!(vars.expand(&config, '\\', "$A").unwrap(), "env");
    }
}
