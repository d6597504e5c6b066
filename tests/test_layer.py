"""Native layer streaming: apply, rebuild and produce, checked against independent oracles
(Python's gzip/zstandard/tarfile and GNU tar), whiteouts, and a hostile corpus."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Any

import docker_distribution as dd
import pytest
import zstandard
from docker_distribution import errors as E
from docker_distribution.layer import (
    LayerApplier,
    LayerProducer,
    Limits,
    ProducedLayer,
    TarReader,
    apply_layer,
    produce_layer,
)
from helpers import tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def make_tar(entries: list[tuple[str, str, bytes | str]], *, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """entries: (name, kind in file/dir/symlink/hardlink/chr, data or link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "file":
                assert isinstance(data, bytes)
                info.size = len(data)
                info.mode = 0o644
                t.addfile(info, io.BytesIO(data))
                continue
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            t.addfile(info)
    return buf.getvalue()


def write_gz(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data))
    return path


# --- round trips ----------------------------------------------------------------------------

_names = st.from_regex(r"[a-z0-9_.-]{1,12}", fullmatch=True).filter(lambda s: s not in (".", "..") and not s.startswith(".wh."))
_files = st.dictionaries(st.lists(_names, min_size=1, max_size=3).map("/".join), st.tuples(st.binary(max_size=20_000),
                         st.sampled_from([0o644, 0o600, 0o755, 0o700, 0o444])), min_size=1, max_size=15)


def _materialise(root: Path, files: dict[str, tuple[bytes, int]]) -> None:
    for name, (data, mode) in sorted(files.items()):
        p = root / name
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if p.exists():
                continue
            p.write_bytes(data)
            p.chmod(mode)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            continue
    (root / "zz-link").symlink_to("a/target/elsewhere")
    first = next((p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()), None)
    if first is not None:
        os.link(first, root / "zz-hard")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(files=_files, codec=st.sampled_from(["gzip", "zstd", "none"]))
def test_produce_then_apply_gives_the_same_tree(tmp_path_factory: pytest.TempPathFactory,
                                                files: dict[str, tuple[bytes, int]], codec: str) -> None:
    work = tmp_path_factory.mktemp("rt")
    src, dst, blob = work / "src", work / "dst", work / "layer"
    src.mkdir()
    _materialise(src, files)
    produced = produce_layer(blob, source_dir=src, compression=codec, mtime=1)  # type: ignore[arg-type]
    assert produced.digest == dd.Digest.from_file(blob)[0] and produced.size == blob.stat().st_size
    applied = apply_layer(blob, dst, digest=produced.digest, size=produced.size)
    assert applied.diff_id == produced.diff_id
    assert tree(dst) == tree(src)
    assert (dst / "zz-hard").stat().st_ino == next(p for p in dst.rglob("*") if p.is_file() and not p.is_symlink()
                                                   and p.name != "zz-hard" and p.stat().st_nlink > 1).stat().st_ino

    # independent oracle: Python decompresses and tarfile reads the same tree
    raw = blob.read_bytes()
    tar_bytes = {"gzip": gzip.decompress, "zstd": lambda b: zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(b),
                 "none": lambda b: b}[codec](raw)
    assert dd.digest_bytes(tar_bytes) == produced.diff_id
    oracle = work / "oracle"
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as t:
        t.extractall(oracle, filter="tar")
    assert tree(oracle) == tree(src)


def test_gnu_tar_and_tarfile_archives_apply(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "deep" / ("x" * 120)).mkdir(parents=True)  # a long name: PAX / GNU long-name records
    (src / "deep" / ("x" * 120) / ("y" * 150)).write_bytes(b"long")
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "bin" / "alias").symlink_to("tool")
    os.link(src / "bin" / "tool", src / "bin" / "hard")
    for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", format=fmt) as t:
            t.add(src, arcname=".")
        blob = tmp_path / f"{name}.tgz"
        blob.write_bytes(buf.getvalue())
        out = tmp_path / f"out-{name}"
        apply_layer(blob, out)
        assert tree(out) == tree(src), name
    gnu = tmp_path / "gnu-tar.tgz"
    subprocess.run(["tar", "-czf", str(gnu), "-C", str(src), "."], check=True)
    out = tmp_path / "out-gnutar"
    applied = apply_layer(gnu, out)
    assert tree(out) == tree(src)
    assert applied.compression == "gzip"
    assert applied.diff_id == dd.digest_bytes(gzip.decompress(gnu.read_bytes()))


def test_diff_mode_rebuilds_the_exact_tar_of_gnu_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "conf").write_bytes(os.urandom(5000))
    (src / "etc" / ".wh.removed").write_bytes(b"")
    (src / "etc" / "link").symlink_to("/etc/conf")
    blob = tmp_path / "layer.tgz"
    subprocess.run(["tar", "-czf", str(blob), "-C", str(src), "."], check=True)
    target, split = tmp_path / "diff", tmp_path / "split"
    applied = apply_layer(blob, target, mode="diff", split=split)
    assert (target / "etc" / ".wh.removed").exists()
    rebuilt = TarReader(target, split).read()
    assert rebuilt == gzip.decompress(blob.read_bytes())  # byte for byte, trailing blocks included
    assert dd.digest_bytes(rebuilt) == applied.diff_id
    # and the producer can push it again with the same diffID
    again = produce_layer(tmp_path / "again.tgz", source_diff=(target, split))
    assert again.diff_id == applied.diff_id


# --- whiteouts ------------------------------------------------------------------------------


def test_whiteouts_layer_by_layer(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    layers = [
        make_tar([("a/", "dir", b""), ("a/file", "file", b"1"), ("a/keep", "file", b"k"), ("dir/", "dir", b""),
                  ("dir/sub/", "dir", b""), ("dir/sub/x", "file", b"x"), ("opq/", "dir", b""), ("opq/old", "file", b"o")]),
        # a file deleted, a directory deleted, an opaque directory with new content
        make_tar([("a/.wh.file", "file", b""), (".wh.dir", "file", b""), ("opq/", "dir", b""),
                  ("opq/.wh..wh..opq", "file", b""), ("opq/new", "file", b"n")]),
        # a path re-created after deletion
        make_tar([("a/file", "file", b"again"), ("dir/", "dir", b""), ("dir/fresh", "file", b"f")]),
    ]
    states = []
    for i, data in enumerate(layers):
        apply_layer(write_gz(tmp_path / f"l{i}.tgz", data), rootfs)
        states.append(sorted(tree(rootfs)))
    assert "a/file" not in states[1] and "dir" not in states[1] and "dir/sub/x" not in states[1]
    assert "opq/old" not in states[1] and "opq/new" in states[1] and "a/keep" in states[1]
    assert not any(".wh." in p for s in states for p in s)
    assert (rootfs / "a" / "file").read_bytes() == b"again"
    assert sorted(os.listdir(rootfs / "dir")) == ["fresh"]


# --- the hostile corpus ---------------------------------------------------------------------


def _hostile(tmp_path: Path) -> dict[str, bytes]:
    big = gzip.compress(make_tar([("bomb", "file", b"\0" * (8 << 20))]))
    full = gzip.compress(make_tar([("f", "file", os.urandom(200_000))]))
    zfull = zstandard.ZstdCompressor().compress(make_tar([("f", "file", os.urandom(200_000))]))
    return {
        "traversal": gzip.compress(make_tar([("../escape", "file", b"x")])),
        "absolute": gzip.compress(make_tar([("/tmp/dd-escape", "file", b"x")])),
        "symlink escape then write": gzip.compress(make_tar([("up", "symlink", "../../.."), ("up/escape", "file", b"x")])),
        # a directory known to be real is replaced by an escaping symlink: what was known is forgotten
        "directory replaced by a symlink escape, then write": gzip.compress(make_tar([
            ("d/", "dir", b""), ("d/f1", "file", b"x"), ("d", "symlink", "../../.."), ("d/escape", "file", b"x")])),
        "hardlink escape": gzip.compress(make_tar([("h", "hardlink", "../../../etc/passwd")])),
        "bomb": big,
        "truncated gzip": full[: len(full) // 2],
        "truncated zstd": zfull[: len(zfull) // 2],
        "garbage after gzip": full + b"GARBAGE-GARBAGE",
        "garbage after zstd": zfull + b"GARBAGE-GARBAGE",
        "xz": b"\xfd7zXZ\x00" + b"\0" * 64,
        "whiteout of the parent": gzip.compress(make_tar([("a/", "dir", b""), ("a/.wh...", "file", b"")])),
    }


EXPECTED = {
    "traversal": E.PathEscapeError, "absolute": E.PathEscapeError, "symlink escape then write": E.PathEscapeError,
    "directory replaced by a symlink escape, then write": E.PathEscapeError,
    "hardlink escape": E.PathEscapeError, "bomb": E.LayerLimitError, "truncated gzip": E.CorruptLayerError,
    "truncated zstd": E.CorruptLayerError, "garbage after gzip": E.CorruptLayerError,
    "garbage after zstd": E.CorruptLayerError, "xz": E.UnsupportedCompressionError,
    "whiteout of the parent": E.PathEscapeError,
}


@pytest.mark.parametrize("case", sorted(EXPECTED))
@pytest.mark.parametrize("mode", ["rootfs", "diff"])
def test_hostile_layers_give_typed_errors_and_write_nothing_outside(tmp_path: Path, case: str, mode: str) -> None:
    jail = tmp_path / "jail"
    jail.mkdir()
    blob = tmp_path / "blob"
    blob.write_bytes(_hostile(tmp_path)[case])
    target = jail / "target"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(EXPECTED[case]) as info:
        apply_layer(blob, target, mode=mode, split=jail / "split" if mode == "diff" else None,  # type: ignore[arg-type]
                    limits=Limits(max_bytes=4 << 20))
    assert isinstance(info.value, E.LayerError)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/dd-escape").exists()
    if mode == "diff":
        assert os.listdir(jail) == [], "a failed diff leaves no staging, split or target"
    else:
        assert os.listdir(jail) in ([], ["target"])


def test_device_node_as_non_root_is_refused() -> None:
    # pytest's tmp dirs are private to root: use one the unprivileged child can reach
    work = Path(tempfile.mkdtemp(prefix="dd-nonroot-"))
    work.chmod(0o755)
    blob = write_gz(work / "dev.tgz", make_tar([("dev/", "dir", b""), ("dev/null", "chr", b"")]))
    blob.chmod(0o644)
    target = work / "t"
    target.mkdir()
    target.chmod(0o777)
    code = (
        "import os, sys\n"
        "from docker_distribution.layer import apply_layer\n"
        "from docker_distribution.errors import NotPermittedError\n"
        "os.setgid(65534); os.setuid(65534)  # drop root after the imports (the interpreter lives under /root)\n"
        f"try:\n    apply_layer({str(blob)!r}, {str(target)!r})\n"
        "except NotPermittedError as e:\n    print('refused:', e); sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    if os.geteuid() != 0:
        code = code.replace("os.setgid(65534); os.setuid(65534)", "pass")  # already unprivileged
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    finally:
        shutil.rmtree(work)
    assert proc.returncode == 0, proc.stderr
    assert "refused: device node dev/null: operation requires root" in proc.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes and ownership need root")
def test_as_root_devices_and_ownership_are_applied(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("owned")
        info.uid, info.gid, info.size, info.mode = 1234, 5678, 1, 0o4755
        t.addfile(info, io.BytesIO(b"x"))
        dev = tarfile.TarInfo("null")
        dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.CHRTYPE, 1, 3, 0o666
        t.addfile(dev)
    blob = write_gz(tmp_path / "own.tgz", buf.getvalue())
    apply_layer(blob, tmp_path / "t")
    st_ = (tmp_path / "t" / "owned").stat()
    assert (st_.st_uid, st_.st_gid) == (1234, 5678)
    assert stat.S_IMODE(st_.st_mode) == 0o4755  # chown before chmod keeps setuid
    assert stat.S_ISCHR((tmp_path / "t" / "null").lstat().st_mode)


# --- streaming ------------------------------------------------------------------------------


def test_applier_fed_in_chunks_verifies_at_the_end(tmp_path: Path) -> None:
    data = gzip.compress(make_tar([("big", "file", os.urandom(3 << 20)), ("small", "file", b"s")]))
    digest = dd.digest_bytes(data)
    with LayerApplier(tmp_path / "diff", mode="diff", split=tmp_path / "split", digest=digest, size=len(data)) as ap:
        for i in range(0, len(data), 100_000):
            ap.feed(data[i:i + 100_000])
        applied = ap.finish()
    assert applied.digest == digest and applied.size == len(data)
    assert (tmp_path / "diff" / "small").read_bytes() == b"s"

    corrupt = bytearray(data)
    corrupt[-100] ^= 0xFF
    ap2 = LayerApplier(tmp_path / "bad", mode="diff", split=tmp_path / "bad-split", digest=digest, size=len(data))
    with pytest.raises((E.DigestMismatchError, E.CorruptLayerError)):
        for i in range(0, len(corrupt), 100_000):
            ap2.feed(bytes(corrupt[i:i + 100_000]))
        ap2.finish()
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad-split").exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_an_applier_that_failed_keeps_saying_why(tmp_path: Path) -> None:
    """After the worker stops on an error, every later feed and finish raise that error (not a
    bare "context canceled" that a caller would take for its own cancel)."""
    ap = LayerApplier(tmp_path / "diff", mode="diff", split=tmp_path / "split")
    with pytest.raises(E.CorruptLayerError) as first:
        for _ in range(10_000):  # not a tar: the worker stops at the first header; feeds fail once its pipes fill
            ap.feed(b"not a layer " * 10_000)
    for call in (lambda: ap.feed(b"more"), ap.finish):
        with pytest.raises(E.CorruptLayerError) as again:
            call()
        assert str(again.value) == str(first.value)
    assert os.listdir(tmp_path) == []


def test_aborting_an_applier_removes_its_staging(tmp_path: Path) -> None:
    data = gzip.compress(make_tar([("f", "file", os.urandom(1 << 20))]))
    ap = LayerApplier(tmp_path / "diff", mode="diff", split=tmp_path / "split")
    ap.feed(data[: len(data) // 2])
    ap.abort()
    assert os.listdir(tmp_path) == []


def test_producer_streams_chunks(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").write_bytes(os.urandom(5 << 20))
    prod = LayerProducer(source_dir=src, compression="zstd")
    body = b"".join(prod)
    result = prod.result()
    assert result.digest == dd.digest_bytes(body) and result.size == len(body)
    # 5 MiB of tar is two zstd frames: a reader must read across them
    with tarfile.open(fileobj=io.BytesIO(zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(body))) as t:
        assert t.extractfile("data").read() == (src / "data").read_bytes()  # type: ignore[union-attr]


def _produced_blocks(tmp_path: Path, codec: str, data: bytes) -> tuple[ProducedLayer, bytes]:
    """A one-file layer produced on 2 threads (so in several blocks), and its bytes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(data)
    produced = produce_layer(tmp_path / "layer", source_dir=src, compression=codec, threads=2)  # type: ignore[arg-type]
    return produced, (tmp_path / "layer").read_bytes()


def test_parallel_gzip_members_read_as_one_stream(tmp_path: Path) -> None:
    produced, raw = _produced_blocks(tmp_path, "gzip", os.urandom(3 << 20) + b"a" * (3 << 20))
    assert dd.digest_bytes(gzip.decompress(raw)) == produced.diff_id
    gunzip = subprocess.run(["gzip", "-dc"], input=raw, capture_output=True, check=True).stdout
    assert dd.digest_bytes(gunzip) == produced.diff_id


def test_parallel_zstd_frames_read_as_one_stream(tmp_path: Path) -> None:
    produced, raw = _produced_blocks(tmp_path, "zstd", os.urandom(5 << 20) + b"a" * (6 << 20))
    frames, rest = [], raw
    while rest:  # each frame is complete on its own and declares its size
        frames.append(zstandard.frame_content_size(rest))
        obj = zstandard.ZstdDecompressor().decompressobj()
        assert len(obj.decompress(rest)) == frames[-1]
        rest = obj.unused_data
    assert len(frames) >= 3 and frames[:-1] == [4 << 20] * (len(frames) - 1) and sum(frames) == produced.uncompressed_size
    unzstd = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, check=True).stdout
    assert dd.digest_bytes(unzstd) == produced.diff_id
    whole = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(raw)
    assert dd.digest_bytes(whole) == produced.diff_id


def test_layers_apply_in_parallel_threads(tmp_path: Path) -> None:
    blobs = []
    for i in range(4):
        data = make_tar([(f"f{j}", "file", os.urandom(200_000)) for j in range(20)])
        blobs.append((write_gz(tmp_path / f"{i}.tgz", data), dd.digest_bytes(data)))
    results: dict[int, dd.Digest] = {}

    def work(i: int) -> None:
        results[i] = apply_layer(blobs[i][0], tmp_path / f"out{i}").diff_id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: blobs[i][1] for i in range(4)}


def test_invalid_options_are_value_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        apply_layer(tmp_path / "x", tmp_path / "y", mode="diff")
    shutil.rmtree(tmp_path)


@pytest.mark.parametrize("make, message", [
    (lambda t: Limits(max_bytes=-1), "invalid layer limit max_bytes: -1"),
    (lambda t: Limits(max_entries=-5), "invalid layer limit max_entries: -5"),
    (lambda t: apply_layer(t / "x", t / "y", mode="diff"), "mode='diff' needs a split path"),
    (lambda t: apply_layer(t / "x", t / "y", mode="flat"), "invalid apply mode 'flat': use 'diff' or 'rootfs'"),
    (lambda t: apply_layer(t / "x", t / "y", size=-1), "invalid layer size: -1"),
    (lambda t: LayerApplier(t / "y", size=-2), "invalid layer size: -2"),
    (lambda t: produce_layer(t / "o", source_dir=t, threads=-1), "invalid thread count: -1"),
    (lambda t: LayerProducer(source_dir=t, mtime=-1), "invalid mtime: -1"),
])
def test_invalid_numbers_and_modes_are_typed_option_errors(tmp_path: Path, make: Any, message: str) -> None:
    """Refused before any work, as InvalidOptionError (a ValueError), never the native side's
    OverflowError for a negative number; nothing is created."""
    with pytest.raises(E.InvalidOptionError) as info:
        make(tmp_path)
    assert str(info.value) == message
    assert list(tmp_path.iterdir()) == []
