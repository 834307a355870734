//! The content store: commit by rename with verification, per-ingest locks, resume, and
//! concurrent writers of the same content.

use std::io::Write;

use forge_layerstore::content::{ContentStore, Error};
use forge_layerstore::Digest;

fn store() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    (dir, store)
}

#[test]
fn commit_stores_read_only_blob_in_oci_layout() {
    let (dir, store) = store();
    let mut w = store.writer("r1").unwrap();
    w.write_all(b"layer bytes").unwrap();
    let d = w.commit(Some(11), Some(&Digest::of(b"layer bytes"))).unwrap();
    let path = dir.path().join("blobs/sha256").join(d.hex());
    assert_eq!(std::fs::read(&path).unwrap(), b"layer bytes");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    assert_eq!(store.size(&d).unwrap(), 11);
    assert_eq!(store.list().unwrap(), vec![d.clone()]);
    store.verify(&d).unwrap();
    // The ingest is gone once committed.
    assert_eq!(std::fs::read_dir(dir.path().join("forge/ingest")).unwrap().count(), 0);
}

#[test]
fn mismatches_store_nothing() {
    let (_dir, store) = store();
    let mut w = store.writer("bad-digest").unwrap();
    w.write_all(b"abc").unwrap();
    let wrong = Digest::of(b"xyz");
    let err = w.commit(None, Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
    let mut w = store.writer("bad-size").unwrap();
    w.write_all(b"abc").unwrap();
    assert!(matches!(w.commit(Some(4), None).unwrap_err(), Error::SizeMismatch { expected: 4, actual: 3, .. }));
    assert!(store.list().unwrap().is_empty());
    // A fresh writer on the failed ref starts from zero.
    assert_eq!(store.writer("bad-digest").unwrap().offset(), 0);
}

#[test]
fn one_writer_per_ref() {
    let (_dir, store) = store();
    let _held = store.writer("busy").unwrap();
    assert!(matches!(store.writer("busy").unwrap_err(), Error::Locked(r) if r == "busy"));
    // Another ref is not blocked.
    store.writer("other").unwrap();
}

#[test]
fn interrupted_ingest_resumes() {
    let (_dir, store) = store();
    let mut w = store.writer("resume").unwrap();
    w.write_all(b"first half, ").unwrap();
    drop(w);
    let mut w = store.writer("resume").unwrap();
    assert_eq!(w.offset(), 12);
    w.write_all(b"second half").unwrap();
    let d = w.commit(Some(23), Some(&Digest::of(b"first half, second half"))).unwrap();
    assert_eq!(std::fs::read(store.path(&d)).unwrap(), b"first half, second half");
}

#[test]
fn same_content_from_many_threads_all_succeed() {
    let (_dir, store) = store();
    let data = vec![7u8; 1 << 20];
    let digest = Digest::of(&data);
    std::thread::scope(|s| {
        for i in 0..4 {
            let (store, data, digest) = (&store, &data, &digest);
            s.spawn(move || {
                let mut w = store.writer(&format!("thread-{i}")).unwrap();
                w.write_all(data).unwrap();
                assert_eq!(&w.commit(Some(data.len() as u64), Some(digest)).unwrap(), digest);
            });
        }
    });
    assert_eq!(store.list().unwrap(), vec![digest.clone()]);
    store.verify(&digest).unwrap();
}

#[test]
fn corruption_and_absence_are_reported() {
    let (_dir, store) = store();
    let mut w = store.writer("c").unwrap();
    w.write_all(b"original").unwrap();
    let d = w.commit(None, None).unwrap();
    let path = store.path(&d);
    std::fs::remove_file(&path).unwrap();
    std::fs::write(&path, b"tampered").unwrap();
    assert!(matches!(store.verify(&d).unwrap_err(), Error::DigestMismatch { .. }));
    store.delete(&d).unwrap();
    store.delete(&d).unwrap();
    assert!(matches!(store.open_blob(&d).unwrap_err(), Error::NotFound(_)));
    assert!(!store.exists(&d));
}

#[test]
fn a_writer_hashed_by_its_caller_stores_what_it_was_given_and_checks_the_size() {
    let (dir, store) = store();
    let bytes = b"a layer's tar";
    // Bytes an interrupted writer of the same ingest left are dropped, not resumed.
    let mut w = store.writer("layer").unwrap();
    w.write_all(b"stale").unwrap();
    drop(w);
    let mut w = store.writer_hashed_by_caller("layer").unwrap();
    assert_eq!(w.offset(), 0);
    w.write_all(bytes).unwrap();
    assert_eq!(w.offset(), bytes.len() as u64);
    let d = w.commit(Some(bytes.len() as u64), Some(&Digest::of(bytes))).unwrap();
    assert_eq!(std::fs::read(dir.path().join("blobs/sha256").join(d.hex())).unwrap(), bytes);
    store.verify(&d).unwrap();

    let mut w = store.writer_hashed_by_caller("short").unwrap();
    w.write_all(b"abc").unwrap();
    let err = w.commit(Some(4), Some(&Digest::of(b"abcd"))).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { expected: 4, actual: 3, .. }), "{err}");
    assert!(!store.exists(&Digest::of(b"abcd")));

    // Without the caller's digest there is nothing to name the blob by: an error, nothing stored.
    let mut w = store.writer_hashed_by_caller("no-digest").unwrap();
    w.write_all(b"xyz").unwrap();
    let err = w.commit(Some(3), None).unwrap_err();
    assert!(err.to_string().contains("caller's digest"), "{err}");
    assert_eq!(store.list().unwrap(), vec![d]);
    assert_eq!(std::fs::read_dir(dir.path().join("forge/ingest")).unwrap().count(), 0);
}

#[test]
fn a_writer_past_the_page_cache_stores_every_byte_and_leaves_at_most_the_tail_cached() {
    let (dir, store) = store();
    let direct = forge_testkit::direct_io_works(dir.path());
    if !direct {
        eprintln!("skipped: the page-cache check (no direct I/O under {}); the bytes are still checked", dir.path().display());
    }
    // Around the 4 KiB alignment and the 1 MiB staging block, written in uneven pieces.
    for (i, size) in [0usize, 1, 4095, 4096, 4097, 1 << 20, (1 << 20) + 1, (7 << 19) + 7].into_iter().enumerate() {
        let bytes: Vec<u8> = (0..size).map(|j| (j * 31 + j / 4093) as u8).collect();
        let mut w = store.writer_hashed_by_caller(&format!("uncached-{i}")).unwrap();
        w.past_page_cache();
        for piece in bytes.chunks(1000 + 37 * i) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.offset(), size as u64);
        let d = w.commit(Some(size as u64), Some(&Digest::of(&bytes))).unwrap();
        if direct {
            // Only the tail after the last whole 1 MiB block went through the page cache (a
            // buffered writer leaves every byte there).
            let tail = (size % (1 << 20)).div_ceil(4096) as u64 * 4096;
            let cached = forge_testkit::cached_bytes(&store.path(&d));
            assert!(cached <= tail, "size {size}: {cached} bytes cached, tail {tail}");
        }
        store.verify(&d).unwrap();
        assert_eq!(std::fs::read(store.path(&d)).unwrap(), bytes, "size {size}");
    }
    // A flush writes what is staged; the bytes after it go on at the right place.
    let bytes: Vec<u8> = (0..(3 << 19) + 10).map(|j| (j % 251) as u8).collect();
    let mut w = store.writer_hashed_by_caller("uncached-flushed").unwrap();
    w.past_page_cache();
    w.write_all(&bytes[..3 << 19]).unwrap();
    w.flush().unwrap();
    w.write_all(&bytes[3 << 19..]).unwrap();
    let d = w.commit(Some(bytes.len() as u64), Some(&Digest::of(&bytes))).unwrap();
    assert_eq!(std::fs::read(store.path(&d)).unwrap(), bytes);
}

#[test]
fn a_dropped_writer_past_the_page_cache_resumes_after_its_whole_blocks() {
    let (_dir, store) = store();
    let bytes: Vec<u8> = (0..(5 << 19) + 3).map(|j| (j % 241) as u8).collect();
    let mut w = store.writer("uncached-resume").unwrap();
    w.past_page_cache();
    w.write_all(&bytes[..3 << 19]).unwrap();
    drop(w);
    // The staged half block is gone; the resumed writer hashes what is there and goes on.
    let mut w = store.writer("uncached-resume").unwrap();
    assert_eq!(w.offset(), 1 << 20);
    w.past_page_cache();
    w.write_all(&bytes[1 << 20..]).unwrap();
    let d = w.commit(Some(bytes.len() as u64), Some(&Digest::of(&bytes))).unwrap();
    assert_eq!(std::fs::read(store.path(&d)).unwrap(), bytes);
}
