"""The README's main job: a real local registry, an image built from local files and pushed
with our own push, then pulled back into a second, empty store with docker-style progress,
unpacked, run, and verified. skopeo, a real peer, reads the pushed image too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test bed's registry launcher and OCI layout writer

from bed.registry import Registry  # noqa: E402
import docker_distribution as dd  # noqa: E402
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
            ref = f"{reg.host}/demo/sample:latest"
            pusher_root = work / "store-a"
            image_id = Store(pusher_root).image_from_directories(build_sample(work), dd.parse_normalized_named(ref))
            print(f"built image {image_id.short_id} from local files in store {pusher_root}\n")

            def cli(root: Path, *args: str) -> None:
                subprocess.run([sys.executable, "-m", "docker_distribution.cli", "--root", str(root), *args], check=True)

            t0 = time.perf_counter()
            cli(pusher_root, "push", ref)
            print(f"\npushed in {time.perf_counter() - t0:.2f}s")
            inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{ref}"],
                                     capture_output=True, text=True, check=True).stdout
            print(f"skopeo sees it: {len(json.loads(inspect)['Layers'])} layers, digest {json.loads(inspect)['Digest']}\n")

            store_root = work / "store-b"
            t0 = time.perf_counter()
            cli(store_root, "pull", ref)
            print(f"\npulled in {time.perf_counter() - t0:.2f}s into an empty store at {store_root}")
            cli(store_root, "images")
            rootfs = work / "rootfs"
            cli(store_root, "unpack", ref, str(rootfs))
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
