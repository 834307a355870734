//! The text of history entries (`docker history`, the config's `history[].created_by`).
//!
//! BuildKit's Dockerfile frontend writes most metadata instructions with Go's `fmt` verbs applied
//! to the parsed values: `%q` of a string list for CMD and ENTRYPOINT (`["cat" "a"]`), `%v` for
//! SHELL, VOLUME and EXPOSE (`[/bin/sh -c]`), and `%q` of the health check struct pointer
//! (`&{["CMD" "true"] "5s" "0s" "0s" "0s" '\x00'}`). These functions reproduce that formatting
//! so that histories compare equal with Docker 28.5's; they are written by hand because no
//! crate implements Go's verbs.

use forge_layerstore::image::Healthcheck;

/// Go's `%v` of a string slice: `[a b]`.
pub(crate) fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub(crate) fn go_quoted_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// Go's `strconv.Quote`: printable characters as they are, the usual backslash escapes, and
/// `\x`/`\u`/`\U` for the rest.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_char(c, '"', &mut out);
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: the quoted character with that code point (`'\x03'` for 3).
fn go_quote_rune(n: i64) -> String {
    let c = u32::try_from(n).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
    let mut out = String::from("'");
    escape_char(c, '\'', &mut out);
    out.push('\'');
    out
}

fn escape_char(c: char, quote: char, out: &mut String) {
    match c {
        '\u{07}' => out.push_str("\\a"),
        '\u{08}' => out.push_str("\\b"),
        '\u{0C}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{0B}' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if c.is_control() => {
            if (c as u32) <= 0xFFFF {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push_str(&format!("\\U{:08x}", c as u32));
            }
        }
        c => out.push(c),
    }
}

/// Go's `time.Duration.String` of `ns` nanoseconds: `0s`, `1.5s`, `1m30s`, `1h0m0s`, `500ms`.
pub(crate) fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    if u < 1_000_000_000 {
        let (div, unit) = match u {
            0..1_000 => (1, "ns"),
            1_000..1_000_000 => (1_000, "µs"),
            _ => (1_000_000, "ms"),
        };
        return format!("{sign}{}{unit}", fraction(u, div));
    }
    let secs = u / 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fraction(s * 1_000_000_000 + u % 1_000_000_000, 1_000_000_000));
    out.push('s');
    out
}

/// `value / div` with the remainder as decimals, trailing zeros dropped.
fn fraction(value: u64, div: u64) -> String {
    let (whole, rest) = (value / div, value % div);
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let decimals = format!("{rest:0width$}");
    format!("{whole}.{}", decimals.trim_end_matches('0'))
}

/// `HEALTHCHECK` as BuildKit writes it: `%q` of the config's health check pointer.
pub(crate) fn healthcheck(h: &Healthcheck) -> String {
    let d = |v: Option<i64>| go_quote(&go_duration(v.unwrap_or(0)));
    format!(
        "HEALTHCHECK &{{{} {} {} {} {} {}}}",
        go_quoted_list(h.test.as_deref().unwrap_or_default()),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        go_quote_rune(h.retries.unwrap_or(0)),
    )
}

/// `EXPOSE` as Docker 28.5 writes it: every `port/proto` (ranges expanded) in the order of the
/// words (which BuildKit sorts as written, before expansion), repeats kept.
pub(crate) fn expose(ports: &[String]) -> String {
    format!("EXPOSE {}", go_list(ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn go_formatting() {
        assert_eq!(go_quoted_list(&s(&["cat", "a"])), r#"["cat" "a"]"#);
        assert_eq!(go_quoted_list(&s(&["sh", "-c", "echo \"hi\"\t\\ é\u{1}"])), r#"["sh" "-c" "echo \"hi\"\t\\ é\x01"]"#);
        assert_eq!(go_list(&s(&["/bin/sh", "-ec"])), "[/bin/sh -ec]");
        assert_eq!(go_list(&[]), "[]");
        assert_eq!(go_quote_rune(0), r"'\x00'");
        assert_eq!(go_quote_rune(3), r"'\x03'");
        assert_eq!(go_quote_rune(10), r"'\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), r"'\''");
    }

    #[test]
    fn go_durations() {
        let s = 1_000_000_000;
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(5 * s), "5s");
        assert_eq!(go_duration(90 * s), "1m30s");
        assert_eq!(go_duration(3600 * s), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(2_000), "2µs");
        assert_eq!(go_duration(7), "7ns");
        assert_eq!(go_duration(61 * s + 10_000_000), "1m1.01s");
    }

    #[test]
    fn healthcheck_and_expose() {
        // Both as Docker 28.5 wrote them for the same Dockerfile.
        let h = Healthcheck {
            test: Some(s(&["CMD-SHELL", "curl -f \"http://x/\" || exit 1"])),
            interval: Some(90_000_000_000),
            timeout: Some(1_500_000_000),
            start_period: Some(3_600_000_000_000),
            start_interval: None,
            retries: Some(3),
        };
        assert_eq!(healthcheck(&h), r#"HEALTHCHECK &{["CMD-SHELL" "curl -f \"http://x/\" || exit 1"] "1m30s" "1.5s" "1h0m0s" "0s" '\x03'}"#);
        assert_eq!(expose(&s(&["443/tcp", "5000/tcp", "5001/tcp", "80/udp", "8080/tcp", "8080/tcp"])), "EXPOSE [443/tcp 5000/tcp 5001/tcp 80/udp 8080/tcp 8080/tcp]");
    }
}
