//! Layer apply / rebuild / produce, end to end through the public core API.
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use dd_core::compression::Compression;
use dd_core::digest::{Algorithm, Digest};
use dd_core::error::Error;
use dd_core::layer::apply::{apply_layer, Applied, ApplyOptions, Limits, Mode};
use dd_core::layer::produce::{produce, Codec, Source};
use dd_core::layer::split::TarStream;
use proptest::prelude::*;

fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        // set_path refuses "..": write the raw name the way a hostile tool would
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn rootfs() -> ApplyOptions {
    ApplyOptions { mode: Mode::Rootfs, expected_digest: None, expected_size: None, limits: Limits::default() }
}

fn apply_bytes(data: Vec<u8>, target: &Path, opts: &ApplyOptions) -> Result<Applied, Error> {
    apply_layer(std::io::Cursor::new(data), target, opts)
}

#[test]
fn gzip_layer_applies_and_reports_digests() {
    let tar = tar_of(&[("etc/", tar::EntryType::Directory, b"", None), ("etc/hosts", tar::EntryType::Regular, b"127.0.0.1 x\n", None)]);
    let compressed = gz(&tar);
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions {
        expected_digest: Some(Digest::of_bytes(Algorithm::Sha256, &compressed)),
        expected_size: Some(compressed.len() as u64),
        ..rootfs()
    };
    let a = apply_bytes(compressed.clone(), dir.path(), &opts).unwrap();
    assert_eq!(a.compression, Compression::Gzip);
    assert_eq!(a.diff_id, Digest::of_bytes(Algorithm::Sha256, &tar));
    assert_eq!(a.uncompressed_size, tar.len() as u64);
    assert_eq!(fs::read(dir.path().join("etc/hosts")).unwrap(), b"127.0.0.1 x\n");
}

#[test]
fn an_uncompressed_layer_s_diff_id_is_the_sha256_of_its_tar_whatever_its_digest() {
    // the applier hashes an uncompressed sha256 blob once, for its digest and its diffID alike
    let tar = tar_of(&[("a", tar::EntryType::Regular, b"uncompressed\n", None)]);
    let sha256 = Digest::of_bytes(Algorithm::Sha256, &tar);
    for expected in [None, Some(sha256.clone()), Some(Digest::of_bytes(Algorithm::Sha512, &tar))] {
        let dir = tempfile::tempdir().unwrap();
        let opts = ApplyOptions { expected_digest: expected.clone(), expected_size: Some(tar.len() as u64), ..rootfs() };
        let a = apply_bytes(tar.clone(), dir.path(), &opts).unwrap();
        assert_eq!(a.compression, Compression::None);
        assert_eq!(a.diff_id, sha256);
        assert_eq!(a.digest, expected.unwrap_or_else(|| sha256.clone()));
        assert_eq!((a.size, a.uncompressed_size), (tar.len() as u64, tar.len() as u64));
    }
    // a lying digest is still refused
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions { expected_digest: Some(Digest::of_bytes(Algorithm::Sha256, b"other")), ..rootfs() };
    assert!(matches!(apply_bytes(tar, dir.path(), &opts), Err(Error::DigestMismatch { .. })));
}

#[test]
fn diff_mode_stages_and_rebuilds_the_identical_tar() {
    let tar = tar_of(&[
        ("a/", tar::EntryType::Directory, b"", None),
        ("a/file", tar::EntryType::Regular, &[7u8; 3000], None),
        ("a/.wh.gone", tar::EntryType::Regular, b"", None),
        ("a/link", tar::EntryType::Symlink, b"", Some("file")),
        ("a/hard", tar::EntryType::Link, b"", Some("a/file")),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("diff");
    let split = tmp.path().join("tar-split.zst");
    let opts = ApplyOptions { mode: Mode::Diff { split: split.clone() }, ..rootfs() };
    let applied = apply_bytes(gz(&tar), &target, &opts).unwrap();
    assert!(target.join("a/.wh.gone").exists(), "a diff keeps whiteout files");
    let mut rebuilt = Vec::new();
    TarStream::open(&target, &split).unwrap().read_to_end(&mut rebuilt).unwrap();
    assert_eq!(rebuilt, tar);
    assert_eq!(Digest::of_bytes(Algorithm::Sha256, &rebuilt), applied.diff_id);
}

/// What moby's `directory.Size` gives for the diff directory, walked here the same way.
fn du_apparent(root: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.len() > 0 && seen.insert(std::os::unix::fs::MetadataExt::ino(&m)) {
                total += m.len();
            }
        }
    }
    total
}

#[test]
fn the_content_size_is_what_docker_measures_of_the_diff() {
    let big = vec![1u8; 300 << 10]; // streamed by the parser, not a writer thread
    let tar = tar_of(&[
        ("a/", tar::EntryType::Directory, b"", None),
        ("a/file", tar::EntryType::Regular, &[7u8; 3000], None),
        ("a/big", tar::EntryType::Regular, &big, None),
        ("a/.wh.gone", tar::EntryType::Regular, b"", None),
        ("a/link", tar::EntryType::Symlink, b"", Some("file")),
        ("a/hard", tar::EntryType::Link, b"", Some("a/file")),
        ("a/twice", tar::EntryType::Regular, &[1u8; 500], None),
        ("a/twice", tar::EntryType::Regular, &[2u8; 20], None),
        ("d/", tar::EntryType::Directory, b"", None),
        ("d/x", tar::EntryType::Regular, &[3u8; 70], None),
        ("d", tar::EntryType::Regular, b"now a file", None),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("diff");
    let opts = ApplyOptions { mode: Mode::Diff { split: tmp.path().join("split") }, ..rootfs() };
    let applied = apply_bytes(gz(&tar), &target, &opts).unwrap();
    assert_eq!(applied.content_size, 3000 + (300 << 10) + 4 + 20 + 10);
    assert_eq!(applied.content_size, du_apparent(&target));
}

#[test]
fn a_digest_mismatch_leaves_nothing_behind() {
    let tar = tar_of(&[("f", tar::EntryType::Regular, b"x", None)]);
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("diff");
    let opts = ApplyOptions {
        mode: Mode::Diff { split: tmp.path().join("split") },
        expected_digest: Some(Digest::of_bytes(Algorithm::Sha256, b"other")),
        ..rootfs()
    };
    assert!(matches!(apply_bytes(gz(&tar), &target, &opts), Err(Error::DigestMismatch { .. })));
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "no staging, no split, no target");
}

#[test]
fn whiteouts_and_opaque_directories_apply_to_lower_layers_only() {
    let dir = tempfile::tempdir().unwrap();
    let lower = tar_of(&[
        ("d/", tar::EntryType::Directory, b"", None),
        ("d/old", tar::EntryType::Regular, b"1", None),
        ("keep", tar::EntryType::Regular, b"k", None),
        ("gone", tar::EntryType::Regular, b"g", None),
        ("gonedir/", tar::EntryType::Directory, b"", None),
        ("gonedir/x", tar::EntryType::Regular, b"x", None),
    ]);
    apply_bytes(lower, dir.path(), &rootfs()).unwrap();
    let upper = tar_of(&[
        ("d/new", tar::EntryType::Regular, b"2", None),
        ("d/.wh..wh..opq", tar::EntryType::Regular, b"", None),
        (".wh.gone", tar::EntryType::Regular, b"", None),
        (".wh.gonedir", tar::EntryType::Regular, b"", None),
        ("gone2", tar::EntryType::Regular, b"n", None),
        (".wh.gone2", tar::EntryType::Regular, b"", None),
    ]);
    apply_bytes(upper, dir.path(), &rootfs()).unwrap();
    let mut names: Vec<_> = fs::read_dir(dir.path().join("d")).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec!["new"]);
    assert!(!dir.path().join("gone").exists() && !dir.path().join("gonedir").exists());
    assert!(dir.path().join("keep").exists());
    assert!(dir.path().join("gone2").exists(), "a whiteout does not hide its own layer's file");
    assert!(!dir.path().join(".wh.gone").exists());
}

#[test]
fn hostile_entries_are_refused_and_write_nothing_outside() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    fs::create_dir(&root).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("traversal", tar_of(&[("../escape", tar::EntryType::Regular, b"x", None)])),
        ("absolute", tar_of(&[("/tmp/escape", tar::EntryType::Regular, b"x", None)])),
        ("symlink escape", tar_of(&[
            ("up", tar::EntryType::Symlink, b"", Some("../..")),
            ("up/escape", tar::EntryType::Regular, b"x", None),
        ])),
        ("hardlink escape", tar_of(&[("h", tar::EntryType::Link, b"", Some("../../etc/passwd"))])),
        ("whiteout of the parent", tar_of(&[("a/", tar::EntryType::Directory, b"", None), ("a/.wh...", tar::EntryType::Regular, b"", None)])),
    ];
    for (what, data) in cases {
        let r = apply_bytes(data, &root, &rootfs());
        assert!(matches!(r, Err(Error::PathEscape { .. })), "{what}: {r:?}");
    }
    let names: Vec<_> = fs::read_dir(outer.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["root"]);
}

#[test]
fn limits_stop_a_bomb() {
    let big = vec![0u8; 4 << 20];
    let tar = tar_of(&[("zeros", tar::EntryType::Regular, &big, None)]);
    let dir = tempfile::tempdir().unwrap();
    let opts = ApplyOptions { limits: Limits { max_bytes: 1 << 20, max_entries: 10 }, ..rootfs() };
    assert!(matches!(apply_bytes(gz(&tar), dir.path(), &opts), Err(Error::LimitExceeded { .. })));
    let many: Vec<(String, tar::EntryType, &[u8], Option<&str>)> =
        (0..20).map(|i| (format!("f{i}"), tar::EntryType::Regular, &b""[..], None)).collect();
    let refs: Vec<_> = many.iter().map(|(n, k, d, l)| (n.as_str(), *k, *d, *l)).collect();
    let opts = ApplyOptions { limits: Limits { max_bytes: 1 << 30, max_entries: 10 }, ..rootfs() };
    assert!(matches!(apply_bytes(tar_of(&refs), dir.path(), &opts), Err(Error::LimitExceeded { .. })));
}

#[test]
fn truncated_and_trailing_garbage_streams_are_errors() {
    let tar = tar_of(&[("f", tar::EntryType::Regular, &[1u8; 100_000], None)]);
    let full = gz(&tar);
    let dir = tempfile::tempdir().unwrap();
    let r = apply_bytes(full[..full.len() / 2].to_vec(), dir.path(), &rootfs());
    assert!(matches!(r, Err(Error::Decompression { .. })), "{r:?}");
    let mut garbage = full.clone();
    garbage.extend_from_slice(b"this is not gzip");
    let r = apply_bytes(garbage, dir.path(), &rootfs());
    assert!(matches!(r, Err(Error::Decompression { .. })), "{r:?}");
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let r = apply_bytes(z[..z.len() - 10].to_vec(), dir.path(), &rootfs());
    assert!(matches!(r, Err(Error::Decompression { .. })), "{r:?}");
    assert!(matches!(apply_bytes(b"BZh91AY&SY".to_vec(), dir.path(), &rootfs()), Err(Error::UnsupportedCompression("bzip2"))));
    // a plain tar cut inside an entry's content, inside its padding, and between entries
    let tar = tar_of(&[("f", tar::EntryType::Regular, &[1u8; 1000], None), ("g", tar::EntryType::Regular, &[2u8; 10], None)]);
    for cut in [512 + 600, 512 + 1000 + 5, 512 + 1024 + 512 + 3] {
        let r = apply_bytes(tar[..cut].to_vec(), &dir.path().join(format!("cut{cut}")), &rootfs());
        assert!(matches!(r, Err(Error::InvalidLayer(_))), "cut at {cut}: {r:?}");
    }
}

#[test]
fn zstd_skippable_frame_is_detected() {
    let tar = tar_of(&[("f", tar::EntryType::Regular, b"zz", None)]);
    let mut data = vec![0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    data.extend(zstd::encode_all(&tar[..], 3).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let a = apply_bytes(data, dir.path(), &rootfs()).unwrap();
    assert_eq!(a.compression, Compression::Zstd);
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"zz");
}

fn tree_summary(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn rec(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let desc = if m.file_type().is_symlink() {
                format!("link:{}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                rec(root, &p, out);
                format!("dir:{:o}", m.permissions().mode() & 0o7777)
            } else {
                format!("file:{:o}:{}", m.permissions().mode() & 0o7777, Digest::of_bytes(Algorithm::Sha256, &fs::read(&p).unwrap()))
            };
            out.push((rel, desc));
        }
    }
    rec(root, root, &mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn produce_then_apply_round_trips(files in proptest::collection::btree_map("[a-z]{1,8}(/[a-z]{1,8}){0,2}", (proptest::collection::vec(any::<u8>(), 0..5000), 0o400u32..0o777), 1..12),
                                      codec in prop_oneof![Just(Codec::Gzip { level: 6 }), Just(Codec::Zstd { level: 3 }), Just(Codec::None)]) {
        let src = tempfile::tempdir().unwrap();
        for (name, (data, mode)) in &files {
            let p = src.path().join(name);
            if p.exists() { continue; }
            if fs::create_dir_all(p.parent().unwrap()).is_err() { continue; }
            if fs::write(&p, data).is_err() { continue; }
            fs::set_permissions(&p, fs::Permissions::from_mode(*mode | 0o600)).unwrap();
        }
        symlink("some/target", src.path().join("zz-link")).unwrap();
        let mut out = Vec::new();
        let produced = produce(Source::Dir { path: src.path().to_path_buf(), mtime: Some(1) }, codec, 2, &mut out).unwrap();
        prop_assert_eq!(produced.digest.clone(), Digest::of_bytes(Algorithm::Sha256, &out));
        prop_assert_eq!(produced.size, out.len() as u64);
        let dst = tempfile::tempdir().unwrap();
        let applied = apply_bytes(out, dst.path(), &rootfs()).unwrap();
        prop_assert_eq!(applied.diff_id, produced.diff_id);
        prop_assert_eq!(tree_summary(src.path()), tree_summary(dst.path()));
    }
}

/// Hands out at most a few bytes per read, as a slow network does.
struct Trickle(Vec<u8>, usize);

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len() - self.1).min(1 + self.1 % 7);
        buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
        self.1 += n;
        Ok(n)
    }
}

#[test]
fn gzip_members_of_any_size_arriving_a_few_bytes_at_a_time_decode() {
    // empty members in a row (what an eStargz footer or a flushing writer leaves) between real ones
    let data: Vec<u8> = (0..400_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
    let tar = tar_of(&[("a", tar::EntryType::Regular, &data, None)]);
    let (head, tail) = tar.split_at(5000);
    let mut stream = gz(head);
    for _ in 0..3 {
        stream.extend(gz(b""));
    }
    stream.extend(gz(tail));
    stream.extend(gz(b""));
    let dir = tempfile::tempdir().unwrap();
    let applied = apply_layer(Trickle(stream.clone(), 0), &dir.path().join("t"), &rootfs()).unwrap();
    assert_eq!(applied.diff_id, Digest::of_bytes(Algorithm::Sha256, &tar));
    assert_eq!(applied.size, stream.len() as u64);
    assert_eq!(fs::read(dir.path().join("t/a")).unwrap(), data);
}

/// Small files are made on writer threads; everything that depends on one must see it written:
/// a hardlink to it, a later entry at the same path, a directory replacing it (and the files
/// queued inside a directory a later entry replaces), in both targets.
#[test]
fn entries_that_depend_on_queued_small_files_see_them_written() {
    use tar::EntryType::{Directory, Link, Regular};
    let mut entries: Vec<(String, tar::EntryType, Vec<u8>, Option<&str>)> = Vec::new();
    for i in 0..300 {
        entries.push((format!("many/f{i:03}"), Regular, format!("file {i}\n").into_bytes(), None));
    }
    let big = vec![7u8; 300 << 10]; // bigger than a writer thread's files: streamed by the parser
    entries.extend([
        ("many/f299-link".to_string(), Link, Vec::new(), Some("many/f299")),
        ("dup".to_string(), Regular, b"first\n".to_vec(), None),
        ("dup".to_string(), Regular, b"second\n".to_vec(), None),
        ("was-file".to_string(), Regular, b"x".to_vec(), None),
        ("was-file/".to_string(), Directory, Vec::new(), None),
        ("was-file/inner".to_string(), Regular, b"inner\n".to_vec(), None),
        ("tree/a".to_string(), Regular, b"a\n".to_vec(), None),
        ("tree".to_string(), Regular, b"now a file\n".to_vec(), None),
        ("big".to_string(), Regular, big.clone(), None),
        ("big-link".to_string(), Link, Vec::new(), Some("big")),
    ]);
    let refs: Vec<(&str, tar::EntryType, &[u8], Option<&str>)> =
        entries.iter().map(|(n, k, d, l)| (n.as_str(), *k, d.as_slice(), *l)).collect();
    let tar = tar_of(&refs);
    let check = |root: &Path| {
        for i in [0, 150, 299] {
            assert_eq!(fs::read_to_string(root.join(format!("many/f{i:03}"))).unwrap(), format!("file {i}\n"));
        }
        assert_eq!(fs::read_to_string(root.join("many/f299-link")).unwrap(), "file 299\n");
        assert_eq!(fs::read_to_string(root.join("dup")).unwrap(), "second\n");
        assert_eq!(fs::read_to_string(root.join("was-file/inner")).unwrap(), "inner\n");
        assert_eq!(fs::read_to_string(root.join("tree")).unwrap(), "now a file\n");
        assert_eq!(fs::read(root.join("big-link")).unwrap(), big);
        let mode = fs::metadata(root.join("many/f000")).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
    };
    let dir = tempfile::tempdir().unwrap();
    apply_bytes(gz(&tar), &dir.path().join("root"), &rootfs()).unwrap();
    check(&dir.path().join("root"));
    let split = dir.path().join("split");
    let diff = ApplyOptions { mode: Mode::Diff { split: split.clone() }, ..rootfs() };
    // (no rebuild check: entries this tar overwrites are gone from the tree, as in moby's diffs)
    let a = apply_bytes(gz(&tar), &dir.path().join("diff"), &diff).unwrap();
    check(&dir.path().join("diff"));
    assert_eq!(a.entries, entries.len() as u64);

    // a lower directory the layer writes into and then replaces with a file
    let lower = dir.path().join("lower");
    fs::create_dir_all(lower.join("d")).unwrap();
    fs::write(lower.join("d/old"), b"old").unwrap();
    let layer = tar_of(&[("d/new", Regular, b"new", None), ("d", Regular, b"d is a file\n", None)]);
    apply_bytes(gz(&layer), &lower, &rootfs()).unwrap();
    assert_eq!(fs::read_to_string(lower.join("d")).unwrap(), "d is a file\n");
}

#[test]
fn producers_running_at_once_share_the_compression_slots_and_give_the_same_layer() {
    // 10 MiB: three zstd blocks and ten gzip members each, so every producer's workers queue for
    // the process-wide slots (one per core) many times over
    let data: Vec<u8> = (0..10u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8 & 0x3f).collect();
    let tar = tar_of(&[("big", tar::EntryType::Regular, &data, None)]);
    for codec in [Codec::Zstd { level: 3 }, Codec::Gzip { level: 1 }, Codec::Gzip { level: 6 }] {
        let one = move |tar: Vec<u8>| {
            let mut out = Vec::new();
            let p = produce(Source::Tar(Box::new(std::io::Cursor::new(tar))), codec, 3, &mut out).unwrap();
            (p, out)
        };
        let (alone, alone_bytes) = one(tar.clone());
        let handles: Vec<_> = (0..8).map(|_| {
            let tar = tar.clone();
            std::thread::spawn(move || one(tar)) // `one` is Copy: each thread has its own
        }).collect();
        for h in handles {
            let (p, bytes) = h.join().unwrap();
            // every result describes its own bytes, and they hold the same tar
            assert_eq!((p.digest.clone(), p.size), (Digest::of_bytes(Algorithm::Sha256, &bytes), bytes.len() as u64));
            assert_eq!((&p.diff_id, p.uncompressed_size), (&alone.diff_id, tar.len() as u64));
            let mut back = Vec::new();
            match codec {
                Codec::Zstd { .. } => { zstd::stream::read::Decoder::new(&bytes[..]).unwrap().read_to_end(&mut back).unwrap(); }
                _ => { flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut back).unwrap(); }
            }
            assert!(back == tar, "{codec:?}: a producer among others wrote another tar");
            // and the same bytes, but for ISA-L's level 1: even with its state fully initialised
            // (rust/igzip), run at once with other compressions it now and then (1 run in 120
            // under three loaded processes) gives a different, valid member; libdeflate and
            // libzstd never differ
            if codec != (Codec::Gzip { level: 1 }) {
                assert!(bytes == alone_bytes, "{codec:?}: a producer among others wrote different bytes");
            }
        }
        assert_eq!(alone.diff_id, Digest::of_bytes(Algorithm::Sha256, &tar));
    }
}

#[test]
fn a_prefetched_playback_is_identical_and_stops_cleanly() {
    // many small files, empty ones, and one bigger than a read: the prefetcher's lanes and window
    let mut entries: Vec<(String, Vec<u8>)> = (0..3000).map(|i| (format!("d{}/f{i}", i % 7), vec![(i % 251) as u8; i % 900])).collect();
    entries.push(("big".into(), (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect()));
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in &entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    let tar = b.into_inner().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (target, split) = (tmp.path().join("diff"), tmp.path().join("split"));
    apply_bytes(gz(&tar), &target, &ApplyOptions { mode: Mode::Diff { split: split.clone() }, ..rootfs() }).unwrap();

    let mut stream = TarStream::open(&target, &split).unwrap();
    stream.start_prefetch().unwrap();
    assert!(stream.prefetching());
    let mut rebuilt = Vec::new();
    stream.read_to_end(&mut rebuilt).unwrap();
    assert!(rebuilt == tar, "the prefetched playback differs from the layer");

    // dropped halfway: the prefetching threads stop and are joined (the test would hang otherwise)
    let mut stream = TarStream::open(&target, &split).unwrap();
    let mut half = vec![0u8; tar.len() / 2];
    stream.read_exact(&mut half).unwrap();
    stream.start_prefetch().unwrap();
    stream.read_exact(&mut half[..4096]).unwrap();
    drop(stream);
}

#[test]
fn a_damaged_or_hostile_split_record_is_a_corrupt_record_and_reads_nothing_outside() {
    let tmp = tempfile::tempdir().unwrap();
    let diff = tmp.path().join("diff");
    fs::create_dir(&diff).unwrap();
    fs::write(diff.join("inside"), b"ok").unwrap();
    fs::write(tmp.path().join("secret"), b"outside the diff").unwrap();
    let record = |body: &[u8]| {
        let mut raw = b"DDSPLIT1".to_vec();
        raw.extend_from_slice(body);
        zstd::encode_all(raw.as_slice(), 1).unwrap()
    };
    let file = |rel: &str, size: u64| {
        let mut r = vec![2u8];
        r.extend_from_slice(&(rel.len() as u16).to_le_bytes());
        r.extend_from_slice(rel.as_bytes());
        r.extend_from_slice(&size.to_le_bytes());
        r
    };
    let good = record(&[file("inside", 2), vec![0u8]].concat());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a path up and out", record(&[file("../secret", 16), vec![0u8]].concat())),
        ("an absolute path", record(&[file(&tmp.path().join("secret").display().to_string(), 16), vec![0u8]].concat())),
        ("an unknown record type", record(&[9u8, 0, 0])),
        ("a record cut short", record(&file("inside", 2)[..5])),
        ("not zstd", b"garbage, not a record".to_vec()),
        ("truncated zstd", good[..good.len() - 3].to_vec()),
        ("zstd of something else", zstd::encode_all(&b"{\"not\": \"a record\"}"[..], 1).unwrap()),
    ];
    let split = tmp.path().join("split");
    fs::write(&split, &good).unwrap();
    let mut out = Vec::new();
    TarStream::open(&diff, &split).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, b"ok");
    for (what, bytes) in cases {
        fs::write(&split, &bytes).unwrap();
        let mut out = Vec::new();
        let err = match TarStream::open(&diff, &split) {
            Err(e) => e,
            Ok(mut s) => Error::from_io(s.read_to_end(&mut out).expect_err(what)),
        };
        assert!(matches!(err, Error::CorruptRecord { .. }), "{what}: {err}");
        assert!(!out.windows(7).any(|w| w == b"outside"), "{what}: read the file outside the diff");
    }
}

#[test]
fn the_tar_bytes_counter_ends_at_the_uncompressed_size() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    let tar = tar_of(&[("a", tar::EntryType::Regular, &[7u8; 300_000], None), ("b", tar::EntryType::Regular, b"bb", None)]);
    for codec in [Codec::None, Codec::Gzip { level: 1 }, Codec::Zstd { level: 3 }] {
        let counter = Arc::new(AtomicU64::new(0));
        let p = dd_core::layer::produce::produce_counting(Source::Tar(Box::new(std::io::Cursor::new(tar.clone()))), codec, 2,
                                                          std::io::sink(), counter.clone()).unwrap();
        assert_eq!((counter.load(Ordering::Relaxed), p.uncompressed_size), (tar.len() as u64, tar.len() as u64), "{codec:?}");
    }
}

/// The blocks of the first zstd frame in `data` (RFC 8878 §3.1.1): how many, and the size field
/// of each (a compressed block's is its compressed size).
fn first_frame_blocks(data: &[u8]) -> Vec<usize> {
    assert_eq!(data[..4], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
    let fhd = data[4];
    let single_segment = fhd & 0x20 != 0;
    let fcs = match fhd >> 6 {
        0 => usize::from(single_segment),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let dict = [0, 1, 2, 4][usize::from(fhd & 3)];
    let mut at = 5 + usize::from(!single_segment) + dict + fcs;
    let mut sizes = Vec::new();
    loop {
        let h = u32::from(data[at]) | u32::from(data[at + 1]) << 8 | u32::from(data[at + 2]) << 16;
        let (last, kind, size) = (h & 1 == 1, (h >> 1) & 3, (h >> 3) as usize);
        sizes.push(size);
        at += 3 + if kind == 1 { 1 } else { size };
        if last {
            return sizes;
        }
    }
}

#[test]
fn zstd_blocks_are_not_pre_split_at_the_double_fast_levels() {
    // text of steady statistics: without the pre-splitter a 4 MiB frame is 4 MiB / max block
    // size blocks, whatever libzstd's default 128 KiB would have given
    let words: Vec<&[u8]> = vec![b"layer ", b"digest ", b"manifest ", b"registry ", b"blob ", b"tag ", b"push ", b"pull "];
    let mut text = Vec::with_capacity(5 << 20);
    let mut x: u64 = 1;
    while text.len() < 5 << 20 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        text.extend_from_slice(words[(x >> 61) as usize]);
    }
    let tar = tar_of(&[("t", tar::EntryType::Regular, &text, None)]);
    for level in [2, 3, 4] {
        let mut out = Vec::new();
        produce(Source::Tar(Box::new(std::io::Cursor::new(tar.clone()))), Codec::Zstd { level }, 2, &mut out).unwrap();
        let blocks = first_frame_blocks(&out);
        assert_eq!(blocks.len(), (4usize << 20).div_ceil(127 << 10), "level {level}: {blocks:?}");
        let mut back = Vec::new();
        zstd::stream::read::Decoder::new(&out[..]).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == tar, "level {level}: round trip");
    }
}

#[test]
fn a_slow_output_holds_the_producer_back() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// Output whose first write waits a second (an upload that has not started yet), then notes
    /// how much tar the producer had taken by then.
    struct Slow {
        taken: Arc<AtomicU64>,
        seen: Option<u64>,
    }
    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.seen.is_none() {
                std::thread::sleep(std::time::Duration::from_secs(1));
                self.seen = Some(self.taken.load(Ordering::Relaxed));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // 128 MiB that does not compress: unbounded, all of it is read and compressed within the second
    let mut data = vec![0u8; 128 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let tar = tar_of(&[("r", tar::EntryType::Regular, &data, None)]);
    drop(data);
    for (codec, block) in [(Codec::Gzip { level: 1 }, 1u64 << 20), (Codec::Zstd { level: 3 }, 4 << 20)] {
        let taken = Arc::new(AtomicU64::new(0));
        let mut out = Slow { taken: taken.clone(), seen: None };
        let p = dd_core::layer::produce::produce_counting(Source::Tar(Box::new(std::io::Cursor::new(tar.clone()))), codec, 2,
                                                          &mut out, taken).unwrap();
        assert_eq!(p.uncompressed_size, tar.len() as u64, "{codec:?}");
        // 32 MiB compressed and not written (as much tar, as it does not compress), one more block
        // from each worker, and the blocks filling and queued: 2 × 2 workers
        let seen = out.seen.expect("written");
        let bound = (32 << 20) + 8 * block;
        assert!(seen <= bound, "{codec:?}: {seen} bytes of tar taken before the first write returned (bound {bound})");
    }
}
