//! A seccomp profile in docker's JSON format (`--security-opt seccomp=profile.json`), compiled
//! to the same kind of filters as the built-in profile.
//!
//! docker (through libseccomp) compiles a profile into one filter in which a matching rule gives
//! its action and anything else the default action. seccompiler's filters have one action for
//! every rule, so the profile becomes several, and the kernel applies the most restrictive
//! result of them all: the first answers *allow* for every call some rule names (whatever its
//! action) and the default action for the rest; then one filter per other action answers that
//! action for the calls its rules match and *allow* otherwise. A call matched by an `ERRNO`
//! rule thus gets `ERRNO` (stricter than the first filter's *allow*), an unmatched call the
//! default action, as in docker.
//!
//! As docker does, a rule is kept only when the process has every capability its `includes`
//! names and none its `excludes` names, when this architecture is among its `arches`, and when
//! the kernel is at least its `minKernel`; names this architecture lacks are skipped.

use std::collections::BTreeMap;
use std::str::FromStr;

use caps::Capability;
use seccompiler::{BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch};
use serde::Deserialize;

use super::Filters;

/// Why a profile cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("seccomp profile: {0}")]
pub struct ProfileError(String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "list")]
    syscalls: Vec<Rule>,
}

/// A list that may be spelled `null` (Go marshals an empty slice so).
fn list<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    #[serde(default, deserialize_with = "list")]
    names: Vec<String>,
    name: Option<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "list")]
    args: Vec<Arg>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default, deserialize_with = "list")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "list")]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// Checks that `json` is a profile forge can apply (for a process with Docker's default
/// capabilities), so a bad one is refused when the container is made rather than when it starts.
pub fn check(json: &str) -> Result<(), ProfileError> {
    compile(json, &crate::caps::DEFAULT).map(drop)
}

/// The filters of profile `json` for a process that keeps `caps`.
pub(crate) fn compile(json: &str, caps: &[Capability]) -> Result<Filters, ProfileError> {
    let bad = |m: String| ProfileError(m);
    let profile: Profile = serde_json::from_str(json).map_err(|e| bad(format!("not docker's JSON profile format: {e}")))?;
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| bad(e.to_string()))?;
    let default = action(&profile.default_action, profile.default_errno_ret)?;
    let kernel = kernel_version();
    // Per syscall, the rules that match it; `None` matches it whatever its arguments.
    type Table = BTreeMap<i64, Option<Vec<SeccompRule>>>;
    let mut by_action: BTreeMap<String, (SeccompAction, Table)> = BTreeMap::new();
    let mut named: Table = BTreeMap::new();
    for rule in &profile.syscalls {
        if !applies(rule, caps, kernel) {
            continue;
        }
        let act = action(&rule.action, rule.errno_ret)?;
        let conditions = rule.args.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
        for name in rule.names.iter().chain(&rule.name) {
            // A call this architecture does not have: nothing to filter.
            let Ok(nr) = syscalls::Sysno::from_str(name) else { continue };
            let nr = i64::from(nr.id());
            let add = |table: &mut Table| -> Result<(), ProfileError> {
                let entry = table.entry(nr).or_insert_with(|| Some(Vec::new()));
                match (entry, conditions.is_empty()) {
                    (entry, true) => *entry = None,
                    (Some(rules), false) => rules.push(SeccompRule::new(conditions.clone()).map_err(|e| ProfileError(format!("{name}: {e}")))?),
                    (None, false) => {}
                }
                Ok(())
            };
            add(&mut named)?;
            if act != SeccompAction::Allow {
                add(&mut by_action.entry(format!("{act:?}")).or_insert_with(|| (act.clone(), BTreeMap::new())).1)?;
            }
        }
    }
    let compile = |rules: Table, mismatch: SeccompAction, matched: SeccompAction| -> Result<BpfProgram, ProfileError> {
        // seccompiler's spelling: an empty list of rules matches the call unconditionally.
        let rules = rules.into_iter().map(|(nr, r)| (nr, r.unwrap_or_default())).collect();
        let filter = SeccompFilter::new(rules, mismatch, matched, arch).map_err(|e| ProfileError(e.to_string()))?;
        BpfProgram::try_from(filter).map_err(|e| ProfileError(e.to_string()))
    };
    let mut programs = Vec::new();
    if default != SeccompAction::Allow {
        programs.push(compile(named, default.clone(), SeccompAction::Allow)?);
    }
    for (_, (act, rules)) in by_action {
        if act != default {
            programs.push(compile(rules, SeccompAction::Allow, act)?);
        }
    }
    Ok(Filters(programs))
}

/// docker's action names.
fn action(name: &str, errno: Option<u32>) -> Result<SeccompAction, ProfileError> {
    Ok(match name {
        "SCMP_ACT_ALLOW" => SeccompAction::Allow,
        "SCMP_ACT_ERRNO" => SeccompAction::Errno(errno.unwrap_or(libc::EPERM as u32)),
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => SeccompAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => SeccompAction::KillProcess,
        "SCMP_ACT_TRAP" => SeccompAction::Trap,
        "SCMP_ACT_LOG" => SeccompAction::Log,
        "SCMP_ACT_TRACE" => SeccompAction::Trace(errno.unwrap_or(libc::EPERM as u32)),
        other => return Err(ProfileError(format!("unknown action {other:?}"))),
    })
}

/// One argument test, on the whole 64-bit argument as libseccomp compares it.
fn condition(a: &Arg) -> Result<SeccompCondition, ProfileError> {
    let (op, value) = match a.op.as_str() {
        "SCMP_CMP_EQ" => (SeccompCmpOp::Eq, a.value),
        "SCMP_CMP_NE" => (SeccompCmpOp::Ne, a.value),
        "SCMP_CMP_LT" => (SeccompCmpOp::Lt, a.value),
        "SCMP_CMP_LE" => (SeccompCmpOp::Le, a.value),
        "SCMP_CMP_GT" => (SeccompCmpOp::Gt, a.value),
        "SCMP_CMP_GE" => (SeccompCmpOp::Ge, a.value),
        // libseccomp's masked test: (arg & value) == valueTwo.
        "SCMP_CMP_MASKED_EQ" => (SeccompCmpOp::MaskedEq(a.value), a.value_two),
        other => return Err(ProfileError(format!("unknown argument operator {other:?}"))),
    };
    SeccompCondition::new(a.index, SeccompCmpArgLen::Qword, op, value).map_err(|e| ProfileError(format!("argument {}: {e}", a.index)))
}

/// docker's name for this architecture (Go's `GOARCH`).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

fn applies(rule: &Rule, caps: &[Capability], kernel: (u32, u32)) -> bool {
    let has = |name: &String| Capability::from_str(name).is_ok_and(|c| caps.contains(&c));
    let inc = &rule.includes;
    let exc = &rule.excludes;
    inc.caps.iter().all(has)
        && !exc.caps.iter().any(has)
        && (inc.arches.is_empty() || inc.arches.iter().any(|a| a == go_arch()))
        && !exc.arches.iter().any(|a| a == go_arch())
        && inc.min_kernel.as_deref().and_then(parse_version).is_none_or(|min| kernel >= min)
}

fn parse_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The running kernel's major and minor version.
fn kernel_version() -> (u32, u32) {
    let uname = rustix::system::uname();
    parse_version(&uname.release().to_string_lossy()).unwrap_or((0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_compile_or_say_why_not() {
        let allow_list = r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
            {"names":["read","write","no_such_call"],"action":"SCMP_ACT_ALLOW"},
            {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
            {"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
            {"names":["reboot"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_BOOT"]}}]}"#;
        // The allowlist, then the ERRNO(38) filter.
        assert_eq!(compile(allow_list, &crate::caps::DEFAULT).unwrap().0.len(), 2);
        let deny_list = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        assert_eq!(compile(deny_list, &crate::caps::DEFAULT).unwrap().0.len(), 1);
        assert!(check("{}").unwrap_err().to_string().contains("not docker's JSON profile format"));
        assert!(check(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap_err().to_string().contains("unknown action"));
        assert!(check(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_XX"}]}]}"#).is_err());
        assert_eq!(parse_version("6.18.44-fc"), Some((6, 18)));
    }
}
