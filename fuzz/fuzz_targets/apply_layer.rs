//! A layer tar built from the input, applied to an empty directory: no panic, no hang, and
//! nothing written beside the root (a sentinel directory next to it must stay as it was).
//!
//! The input is decoded into entries rather than used as a tar as is: a random tar fails its
//! header checksum, so the fuzzer would rarely get past the first block. Device nodes stay off
//! (`device_nodes: false`): a bug that wrote through a node would write to a real device.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use forge_layerstore::archive::extract::{apply_layer, ApplyOptions, WhiteoutMode};
use libfuzzer_sys::fuzz_target;

/// Consumes input bytes in order; runs dry as zeros.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    fn take(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte() as usize % (max + 1)).min(self.0.len());
        let (taken, rest) = self.0.split_at(n);
        self.0 = rest;
        taken.to_vec()
    }
}

/// The tar the input describes: entries of every type tar layers use, with names, link
/// targets, modes and contents from the input, PAX and GNU long-name records included. Headers
/// are filled field by field: `Header::set_path` would refuse the `..` and absolute names the
/// extraction must refuse itself.
fn tar_of(data: &[u8]) -> Vec<u8> {
    let mut input = Bytes(data);
    let mut tar = tar::Builder::new(Vec::new());
    while !input.0.is_empty() {
        let kind = input.byte();
        let name = input.take(60);
        let link = input.take(60);
        let body = input.take(40);
        let mode = (u32::from(input.byte()) << 4) | 0o600;
        let (entry_type, body) = match kind % 9 {
            0 => (tar::EntryType::Regular, body),
            1 => (tar::EntryType::Directory, Vec::new()),
            2 => (tar::EntryType::Symlink, Vec::new()),
            3 => (tar::EntryType::Link, Vec::new()),
            4 => (tar::EntryType::Fifo, Vec::new()),
            5 => (tar::EntryType::Char, Vec::new()),
            6 => {
                let records = [("path", &name), ("linkpath", &link), ("SCHILY.xattr.user.x", &body)];
                tar.append_pax_extensions(records.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.as_slice()))).unwrap();
                continue;
            }
            7 => (tar::EntryType::GNULongName, name.clone()),
            _ => (tar::EntryType::new(input.byte()), body),
        };
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(entry_type);
        // Both fit the 100-byte fields (`take(60)`); longer names come through PAX and GNU records.
        let old = header.as_old_mut();
        old.name[..name.len()].copy_from_slice(&name);
        old.linkname[..link.len()].copy_from_slice(&link);
        header.set_mode(mode);
        header.set_uid(u64::from(input.byte()));
        header.set_gid(0);
        header.set_mtime(u64::from(input.byte()) << 20);
        header.set_size(body.len() as u64);
        header.set_cksum();
        tar.append(&header, &body[..]).unwrap();
    }
    tar.into_inner().unwrap()
}

/// The scratch directory: `root` (applied to) and `outside` (the sentinel). A fixed path, so
/// that absolute link targets into `outside` can come from the dictionary
/// (`fuzz/apply_layer.dict`); one fuzzing process at a time.
fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let base = PathBuf::from("/tmp/forge-fuzz-apply");
        std::fs::create_dir_all(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/sentinel"), "sentinel").unwrap();
        base
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, data)) = data.split_first() else { return };
    let base = base();
    let root = base.join("root");
    if root.exists() {
        // The previous input's tree (read-only entries do not stop root).
        std::fs::remove_dir_all(&root).unwrap();
    }
    std::fs::create_dir(&root).unwrap();
    let whiteouts = if flags & 1 == 0 { WhiteoutMode::Delete } else { WhiteoutMode::OverlayDevice };
    let _ = apply_layer(&tar_of(data)[..], &root, &ApplyOptions { whiteouts, device_nodes: false });
    assert_eq!(names(base), ["outside", "root"], "something was written beside the root");
    assert_eq!(names(&base.join("outside")), ["sentinel"], "something was written into the sentinel directory");
    let sentinel = base.join("outside/sentinel");
    assert!(std::fs::symlink_metadata(&sentinel).unwrap().is_file());
    assert_eq!(std::fs::read(&sentinel).unwrap(), b"sentinel");
});
