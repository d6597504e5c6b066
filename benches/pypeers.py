"""The Python registry clients as blob-fetch peers, in a venv of their own (benches/.cache/peers-venv):
python-dxf (verifies each blob's digest) and oras-py. ``fetch(kind, host, repo, digests, dest)``
runs one of them in a subprocess; ``available()`` says whether they could be installed.

Ours runs inside the benchmark's process, its imports long done, so a peer's run is timed the
same way: the child imports its library first and reports the wall and CPU time of the fetch
alone (starting Python and importing python-dxf take about 0.3 s here, as long as the fetch)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from harness import Reported, run_child
from images import CACHE

VENV = CACHE / "peers-venv"
PY = VENV / "bin" / "python"

# each script: imports, then the timed fetch, then its wall and CPU seconds to the file named last
_TIMED = """
import json, resource, sys, time
def timed(fetch):
    t, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    fetch()
    wall, r1 = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r.ru_utime + r1.ru_stime - r.ru_stime
    with open(sys.argv[-1], "w") as out:
        json.dump({"wall": wall, "cpu": cpu}, out)
host, repo, dest = sys.argv[1:4]
digests = sys.argv[4:-1]
"""

_DXF = _TIMED + """
from dxf import DXF
def fetch():
    d = DXF(host, repo, insecure=True)
    for i, digest in enumerate(digests):
        with open(f"{dest}/dxf-{i}", "wb") as f:
            for chunk in d.pull_blob(digest, chunk_size=1 << 20):  # python-dxf verifies the digest at the end
                f.write(chunk)
timed(fetch)
"""

_ORAS = _TIMED + """
import oras.client
def fetch():
    c = oras.client.OrasClient(hostname=host, insecure=True)
    for i, digest in enumerate(digests):
        c.download_blob(f"{host}/{repo}", digest, f"{dest}/oras-{i}")
timed(fetch)
"""


def available() -> tuple[bool, str]:
    if not PY.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, capture_output=True)
            subprocess.run([str(PY), "-m", "pip", "install", "-q", "python-dxf", "oras"], check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            return False, f"could not install python-dxf/oras: {exc.stderr.decode(errors='replace')[-300:]}"
    return True, ""


def fetch(kind: str, host: str, repo: str, digests: list[str], dest: Path) -> Reported:
    """Run the fetch in the peer's own process; its time without the interpreter's start-up and imports."""
    script = {"dxf": _DXF, "oras": _ORAS}[kind]
    report = dest / f".{kind}-timing.json"
    run_child([str(PY), "-c", script, host, repo, str(dest), *digests, str(report)])
    timing = json.loads(report.read_text())
    report.unlink()
    return Reported(float(timing["wall"]), float(timing["cpu"]))
