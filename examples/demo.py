"""The README's main job, as far as the project has come.

Starts a real local registry (Debian's docker-registry, as the tests do), uploads a
sample blob made from local files, fetches it back, and verifies every byte with the
native digester. It grows into pull → unpack → push as those land.
"""

from __future__ import annotations

import sys
import tarfile
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test bed's registry launcher

from bed.registry import Registry  # noqa: E402

import docker_distribution as dd  # noqa: E402


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dd-demo-") as tmp:
        work = Path(tmp)
        reg = Registry("demo", work / "registry").start()
        try:
            print(f"started docker-registry at {reg.url} (storage {reg.storage})")
            layer = work / "layer.tar"
            with tarfile.open(layer, "w") as tar:
                for p in ("/etc/os-release", "/etc/hostname", "/usr/share/common-licenses/GPL-3"):
                    if Path(p).exists():
                        tar.add(p)
            digest, size = dd.Digest.from_file(layer)
            print(f"built a sample layer from local files: {digest.short_id} ({size} bytes)")

            repo = "demo/sample"
            t0 = time.perf_counter()
            r = requests.post(f"{reg.url}/v2/{repo}/blobs/uploads/", timeout=30)
            r.raise_for_status()
            location = requests.compat.urljoin(reg.url + "/", r.headers["Location"])
            sep = "&" if "?" in location else "?"
            requests.put(f"{location}{sep}digest={digest}", data=layer.read_bytes(), timeout=30).raise_for_status()
            print(f"uploaded {digest} to {reg.host}/{repo}")

            fetched = work / "fetched"
            with requests.get(f"{reg.url}/v2/{repo}/blobs/{digest}", stream=True, timeout=30) as resp:
                resp.raise_for_status()
                with open(fetched, "wb") as f:
                    for chunk in resp.iter_content(1 << 20):
                        f.write(chunk)
            dd.verify_file(fetched, digest, size)
            print(f"fetched it back and verified size and digest natively in {time.perf_counter() - t0:.2f}s")
            print("demo complete: pull, unpack and push arrive with the protocol and store issues")
        finally:
            reg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
