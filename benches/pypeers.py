"""The Python registry clients as blob-fetch peers, in a venv of their own (benches/.cache/peers-venv):
python-dxf (verifies each blob's digest) and oras-py. ``fetch(kind, host, repo, digests, dest)``
runs one of them in a subprocess; ``available()`` says whether they could be installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness import run_child
from images import CACHE

VENV = CACHE / "peers-venv"
PY = VENV / "bin" / "python"

_DXF = """
import sys
from dxf import DXF
host, repo, dest = sys.argv[1:4]
d = DXF(host, repo, insecure=True)
for i, digest in enumerate(sys.argv[4:]):
    with open(f"{dest}/dxf-{i}", "wb") as f:
        for chunk in d.pull_blob(digest, chunk_size=1 << 20):  # python-dxf verifies the digest at the end
            f.write(chunk)
"""

_ORAS = """
import sys
import oras.client
host, repo, dest = sys.argv[1:4]
c = oras.client.OrasClient(hostname=host, insecure=True)
for i, digest in enumerate(sys.argv[4:]):
    c.download_blob(f"{host}/{repo}", digest, f"{dest}/oras-{i}")
"""


def available() -> tuple[bool, str]:
    if not PY.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
            subprocess.run([str(PY), "-m", "pip", "install", "-q", "python-dxf", "oras"], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            return False, f"could not install python-dxf/oras: {exc.stderr.decode(errors='replace')[-300:]}"
    return True, ""


def fetch(kind: str, host: str, repo: str, digests: list[str], dest: Path) -> None:
    script = {"dxf": _DXF, "oras": _ORAS}[kind]
    run_child([str(PY), "-c", script, host, repo, str(dest), *digests])
