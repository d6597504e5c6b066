"""The benchmark images' layers, built deterministically from files every Debian machine has.

``big`` has three layers (about 650 MB of tar in all):

1. binaries: regular files of ``/usr/lib/x86_64-linux-gnu``, in path order, up to 310 MB;
2. small files: the first 38,000 regular files of ``/usr/share`` under 32 KiB, in path order;
3. semi-compressible data: 200 MB alternating 64 KiB blocks of seeded random bytes and text.

Tars are written with fixed mtimes and owners, so the same machine always yields the same
bytes. Built once into ``benches/.cache/`` and reused.
"""

from __future__ import annotations

import io
import os
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
#: where runs write: the journaled scratch filesystem `benches/run` mounts, else the cache itself
SCRATCH = Path(os.environ.get("BENCH_SCRATCH") or CACHE)
MTIME = 1_700_000_000
MB = 1_000_000


def _files(root: str) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                yield p


def _info(name: str, size: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = size, mode, MTIME, 0, 0
    return info


def _write_files(out: Path, files: Iterator[Path], budget: int | None, count: int | None) -> None:
    total = n = 0
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for p in files:
            size = p.stat().st_size
            if count is not None and size >= 32 << 10:
                continue
            with open(p, "rb") as f:
                t.addfile(_info(str(p).lstrip("/"), size, p.stat().st_mode & 0o777), f)
            total += size
            n += 1
            if (budget is not None and total >= budget) or (count is not None and n >= count):
                break


def _write_data(out: Path, size: int, seed: int = 42, per_file: int = 20 * MB) -> None:
    rng = random.Random(seed)
    text = b"".join(f"{i:08d} the quick brown fox jumps over the lazy dog; lorem ipsum dolor sit amet\n".encode()
                    for i in range(900))[: 64 * 1024]
    block = 64 * 1024
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
        for i in range(size // per_file):
            buf = io.BytesIO()
            for j in range(per_file // block):
                buf.write(rng.randbytes(block) if j % 2 == 0 else text)
            data = buf.getvalue()
            t.addfile(_info(f"data/blob{i:03d}.bin", len(data)), io.BytesIO(data))


def big_layers() -> list[Path]:
    """The three uncompressed tars of ``big`` (built on first use)."""
    CACHE.mkdir(exist_ok=True)
    plan: list[tuple[str, Callable[[Path], None]]] = [
        ("big-1-binaries.tar", lambda p: _write_files(p, _files("/usr/lib/x86_64-linux-gnu"), 310 * MB, None)),
        ("big-2-small-files.tar", lambda p: _write_files(p, _files("/usr/share"), None, 38_000)),
        ("big-3-data.tar", lambda p: _write_data(p, 200 * MB)),
    ]
    out = []
    for name, build in plan:
        path = CACHE / name
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            build(tmp)
            tmp.rename(path)
        out.append(path)
    return out


def data_layer(size: int, name: str) -> Path:
    """A single semi-compressible layer of about ``size`` bytes (for memory measurements)."""
    CACHE.mkdir(exist_ok=True)
    path = CACHE / name
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        _write_data(tmp, size, seed=7)
        tmp.rename(path)
    return path


def many_layers(count: int = 20, size: int = 5 * MB) -> list[Path]:
    """``many``: ``count`` semi-compressible layers of about ``size`` bytes each."""
    CACHE.mkdir(exist_ok=True)
    out = []
    for i in range(count):
        path = CACHE / f"many-{i:02d}.tar"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            _write_data(tmp, size, seed=1000 + i, per_file=size)
            tmp.rename(path)
        out.append(path)
    return out
