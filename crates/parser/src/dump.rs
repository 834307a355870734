//! BuildKit's AST dump format (`Node.Dump()`), the form `forge debug parse` prints and the
//! conformance `result` files hold. Quoting follows Go's `strconv.Quote`.

use std::fmt::Write;

use crate::node::{Arg, Node};

/// Dumps a list of instructions, one `(…)` line each, with a final newline.
pub(crate) fn dump(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        out.push('(');
        out.push_str(&dump_node(node));
        out.push_str(")\n");
    }
    out
}

fn dump_node(node: &Node) -> String {
    let mut s = node.command();
    if !node.flags.is_empty() {
        let quoted: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        write!(s, " [{}]", quoted.join(" ")).expect("writing to a String cannot fail");
    }
    for arg in &node.args {
        s.push(' ');
        match arg {
            Arg::Word(w) => s.push_str(&go_quote(w)),
            Arg::Nested(inner) => {
                s.push('(');
                s.push_str(&dump_node(inner));
                s.push(')');
            }
        }
    }
    s.trim().to_string()
}

/// Go's `strconv.Quote`: printable characters stay, the rest become escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => write!(out, "\\x{:02x}", c as u32).expect("String write"),
            c if (c as u32) < 0x10000 => write!(out, "\\u{:04x}", c as u32).expect("String write"),
            c => write!(out, "\\U{:08x}", c as u32).expect("String write"),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` without a Unicode category table: the space,
/// and every character that is not a control, a non-space blank, a format character, a
/// surrogate or private-use code point, or a noncharacter.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(u,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0x110CD | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F
        | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let noncharacter = (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE;
    !format_or_private && !noncharacter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{1}\x7f"), r#""\x00\x01\x7f""#);
        assert_eq!(go_quote("café ♥ ☃"), "\"café ♥ ☃\"");
        assert_eq!(go_quote("\u{a0}\u{200b}"), r#""\u00a0\u200b""#);
        assert_eq!(go_quote("'"), "\"'\"");
    }
}
