//! Which device nodes a step may use: Docker's default rules. Creating any node is allowed
//! (`mknod` is harmless by itself, and images ship nodes), but reading or writing one is
//! allowed only for the pseudo-devices every container has. Without this, a step could read
//! the host's disks through a node it made or one that came in a layer.
//!
//! cgroup v1 enforces the rules with the `devices` controller (lines in `devices.allow`);
//! cgroup v2 with an eBPF program attached to the step's cgroup, built here.

use std::fmt;

/// Device kinds, with the values the kernel passes a device program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Block = 1,
    Char = 2,
}

/// Access bits, as the kernel passes them to a device program.
const MKNOD: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
const RWM: u32 = READ | WRITE | MKNOD;

/// One allow rule; `None` is any number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    kind: Kind,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
}

const fn dev(major: u32, minor: u32) -> Rule {
    Rule { kind: Kind::Char, major: Some(major), minor: Some(minor), access: RWM }
}

/// Docker's (runc's) default allow list; everything else is denied.
pub(crate) const DEFAULT: [Rule; 11] = [
    Rule { kind: Kind::Char, major: None, minor: None, access: MKNOD },
    Rule { kind: Kind::Block, major: None, minor: None, access: MKNOD },
    dev(1, 3), // null
    dev(1, 5), // zero
    dev(1, 7), // full
    dev(1, 8), // random
    dev(1, 9), // urandom
    dev(5, 0), // tty
    dev(5, 1), // console
    dev(5, 2), // ptmx
    Rule { kind: Kind::Char, major: Some(136), minor: None, access: RWM }, // pts/*
];

/// The rule as a line for cgroup v1's `devices.allow` (`c 1:3 rwm`).
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let access: String = [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')].iter().filter(|(bit, _)| self.access & bit != 0).map(|(_, c)| *c).collect();
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// The eBPF program (`BPF_PROG_TYPE_CGROUP_DEVICE`) that allows exactly `rules`: it returns 1
/// when a rule matches the access, else 0.
///
/// Written as instructions here because the program is a dozen compares: the crates that
/// assemble eBPF are whole toolchains (object files, BTF, maps) for a job this small.
pub(crate) fn program(rules: &[Rule]) -> Vec<u64> {
    // Registers: r1 the context (struct bpf_cgroup_dev_ctx { access_type, major, minor });
    // r2 the device kind, r3 the access bits, r4 major, r5 minor; r1 is scratch afterwards.
    let mut p = vec![
        ldx_w(2, 1, 0),
        alu_k(AND, 2, 0xffff),
        ldx_w(3, 1, 0),
        alu_k(RSH, 3, 16),
        ldx_w(4, 1, 4),
        ldx_w(5, 1, 8),
    ];
    for rule in rules {
        // Each check jumps past the rest of this rule's block when it fails.
        let mut checks: Vec<Vec<u64>> = vec![vec![jne_k(2, rule.kind as i32)]];
        if rule.access & RWM != RWM {
            checks.push(vec![mov_x(1, 3), alu_k(AND, 1, (!rule.access & RWM) as i32), jne_k(1, 0)]);
        }
        if let Some(major) = rule.major {
            checks.push(vec![jne_k(4, major as i32)]);
        }
        if let Some(minor) = rule.minor {
            checks.push(vec![jne_k(5, minor as i32)]);
        }
        let allow = [mov_k(0, 1), EXIT];
        let mut block: Vec<u64> = checks.concat();
        let len = block.len() + allow.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if *insn & 0xff == JNE_K as u64 {
                // Skip to the first instruction after the block.
                *insn = with_off(*insn, (len - i - 1) as i16);
            }
        }
        p.extend(block);
        p.extend(allow);
    }
    p.extend([mov_k(0, 0), EXIT]);
    p
}

// Instruction encoding (`struct bpf_insn` on a little-endian machine): opcode, dst and src
// registers in one byte, a 16-bit offset, a 32-bit immediate.
const LDX_MEM_W: u8 = 0x61;
const ALU64_K: u8 = 0x07;
const AND: u8 = 0x50;
const RSH: u8 = 0x70;
const MOV_K: u8 = 0xb7;
const MOV_X: u8 = 0xbf;
const JNE_K: u8 = 0x55;
const EXIT: u64 = 0x95;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    code as u64 | ((dst as u64) << 8) | ((src as u64) << 12) | ((off as u16 as u64) << 16) | ((imm as u32 as u64) << 32)
}

fn with_off(insn: u64, off: i16) -> u64 {
    (insn & !(0xffff << 16)) | ((off as u16 as u64) << 16)
}

fn ldx_w(dst: u8, src: u8, off: i16) -> u64 {
    insn(LDX_MEM_W, dst, src, off, 0)
}

fn alu_k(op: u8, dst: u8, imm: i32) -> u64 {
    insn(ALU64_K | op, dst, 0, 0, imm)
}

fn mov_k(dst: u8, imm: i32) -> u64 {
    insn(MOV_K, dst, 0, 0, imm)
}

fn mov_x(dst: u8, src: u8) -> u64 {
    insn(MOV_X, dst, src, 0, 0)
}

fn jne_k(dst: u8, imm: i32) -> u64 {
    insn(JNE_K, dst, 0, 0, imm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines_are_dockers() {
        let lines: Vec<String> = DEFAULT.iter().map(|r| r.to_string()).collect();
        assert_eq!(&lines[..3], ["c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert_eq!(lines[10], "c 136:* rwm");
    }
}
