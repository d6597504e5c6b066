//! Bounded fuzzing of the byte-facing core with proptest: arbitrary and mutated layer streams
//! through decompression and tar apply. Properties: no panic, every failure is a typed error,
//! nothing is ever written outside the target, and a failed diff leaves nothing behind.
//! Seeds: the committed corpus in `tests/corpus/` plus generated archives.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use dd_core::layer::apply::{apply_layer, ApplyOptions, Limits, Mode};
use proptest::prelude::*;

fn corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus");
    let mut out: Vec<Vec<u8>> = fs::read_dir(&dir)
        .map(|it| it.filter_map(|e| e.ok()).filter_map(|e| fs::read(e.path()).ok()).collect())
        .unwrap_or_default();
    // a well-formed seed, so mutations explore near-valid archives too
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "dir/file", &b"hello"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    out.push(gz.finish().unwrap());
    out.push(zstd::encode_all(&tar[..], 3).unwrap());
    out.push(tar);
    out
}

fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            out.push(e.path());
        }
    }
    out.sort();
    out
}

fn check(data: Vec<u8>) {
    let outer = tempfile::tempdir().unwrap();
    let jail = outer.path().join("jail");
    fs::create_dir(&jail).unwrap();
    let limits = Limits { max_bytes: 8 << 20, max_entries: 1000 };
    let rootfs = ApplyOptions { mode: Mode::Rootfs, expected_digest: None, expected_size: None, limits };
    let _ = apply_layer(std::io::Cursor::new(data.clone()), &jail.join("root"), &rootfs);
    let diff = ApplyOptions { mode: Mode::Diff { split: jail.join("split") }, ..rootfs };
    if apply_layer(std::io::Cursor::new(data), &jail.join("diff"), &diff).is_err() {
        assert!(!jail.join("diff").exists() && !jail.join("split").exists());
        assert!(!tree(&jail).iter().any(|p| p.to_string_lossy().ends_with(".partial")));
    }
    assert_eq!(tree(outer.path()), vec![jail], "nothing outside the target");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_escape_or_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        check(data);
    }

    #[test]
    fn mutated_archives_never_escape_or_panic(seed in 0usize..64, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                               cut in proptest::option::of(any::<usize>())) {
        let seeds = corpus();
        let mut data = seeds[seed % seeds.len()].clone();
        for (at, v) in flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= v | 1;
            }
        }
        if let Some(c) = cut {
            if !data.is_empty() {
                data.truncate(c % data.len());
            }
        }
        check(data);
    }
}
