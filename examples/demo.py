"""The README's main job: a real local registry, an image built from local files, pushed, then
pulled back into the embedded store with docker-style progress, verified and unpacked.

Until our own push lands (issue #7) the image is pushed by skopeo, a real peer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test bed's registry launcher and OCI layout writer

from bed.registry import Registry  # noqa: E402
from docker_distribution.store import Store  # noqa: E402
from oci import image_manifest, skopeo_push, write_layout  # noqa: E402


def build_sample(work: Path) -> list[Path]:
    """Two layers from files every Debian machine has."""
    base, app = work / "base", work / "app"
    for d, sources in ((base, ["/etc/os-release", "/etc/debian_version", "/usr/share/common-licenses"]),
                       (app, ["/usr/share/doc/bash"])):
        for s in map(Path, sources):
            if not s.exists():
                continue
            dest = d / s.relative_to("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if s.is_dir():
                shutil.copytree(s, dest, symlinks=True)
            else:
                shutil.copy2(s, dest)
    (app / "hello.sh").write_text("#!/bin/sh\necho hello from docker-distribution\n")
    (app / "hello.sh").chmod(0o755)
    return [base, app]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dd-demo-") as tmp:
        work = Path(tmp)
        reg = Registry("demo", work / "registry").start()
        try:
            print(f"started docker-registry at {reg.url}")
            layout = work / "layout"
            entry = image_manifest(layout, build_sample(work))
            write_layout(layout, "latest", [entry], as_index=False)
            ref = f"{reg.host}/demo/sample:latest"
            skopeo_push(layout, "latest", ref)
            print(f"built a 2-layer sample image from local files and pushed it to {ref} (with skopeo)\n")

            store_root = work / "store"
            cli = [sys.executable, "-m", "docker_distribution.cli", "--root", str(store_root)]
            t0 = time.perf_counter()
            subprocess.run([*cli, "pull", ref], check=True)
            print(f"\npulled in {time.perf_counter() - t0:.2f}s into the embedded store at {store_root}")
            subprocess.run([*cli, "images"], check=True)
            rootfs = work / "rootfs"
            subprocess.run([*cli, "unpack", ref, str(rootfs)], check=True)
            out = subprocess.run(["sh", str(rootfs / "hello.sh")], capture_output=True, text=True, check=True).stdout
            print(f"unpacked the root filesystem into {rootfs}; its hello.sh says: {out.strip()}")
            problems = Store(store_root).verify()
            print("store verified: every blob, config and layer re-hashed" if not problems else problems)
            print("demo complete")
        finally:
            reg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
