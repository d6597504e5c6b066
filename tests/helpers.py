"""Small helpers the tests share: pushing minimal images with our own client."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from docker_distribution import Digest
from docker_distribution.mediatype import DOCKER_CONFIG, DOCKER_MANIFEST
from docker_distribution.registry import Repository


def push_empty_image(repo: Repository, *tags: str, label: str = "x") -> Digest:
    """A config blob and a schema2 manifest with no layers, tagged ``tags``; returns the manifest digest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Labels": {"l": label}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cdigest = Digest.from_bytes(config)
    repo.upload_monolithic(config, cdigest)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": str(cdigest)},
                           "layers": []}, indent=3).encode()
    digest = Digest.from_bytes(manifest)
    with ThreadPoolExecutor(8) as pool:  # thousands of tags go faster side by side
        results = list(pool.map(lambda t: repo.put_manifest(t, manifest, DOCKER_MANIFEST), tags or (str(digest),)))
    assert set(results) == {digest}
    return digest


def tree(root: Path) -> dict[str, tuple[str, ...]]:
    """Paths → (kind, mode, content digest or link target): what 'identical tree' means here."""
    out: dict[str, tuple[str, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st_ = p.lstat()
            mode = oct(stat.S_IMODE(st_.st_mode))
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", mode)
            else:
                out[rel] = ("file", mode, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def crash_loop(command: str, root: Path, refs: list[str], home: Path, *, iterations: int = 20, seed: int = 0,
               longest: float = 0.8) -> None:
    """Run the CLI's ``command`` (pull or push) on ``refs`` in turn, SIGKILL it at a random moment,
    check the store at ``root``, then run it again to completion: ``iterations`` times."""
    import random
    import signal
    import subprocess
    import sys
    import time

    from docker_distribution.store import Store

    exe = str(Path(sys.executable).parent / "docker-distribution")
    env = {**os.environ, "DOCKER_CONFIG": str(home / "cfg")}
    rng = random.Random(seed)
    for i in range(iterations):
        argv = [exe, "--root", str(root), command, "-q", refs[i % len(refs)]]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.05, longest))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert Store(root).verify() == [], f"iteration {i}"
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"iteration {i}: {done.stderr}"
        store = Store(root)
        assert (store.verify(), store.leftovers()) == ([], []), f"iteration {i}"
