"""Daemon peers for the benchmarks: Debian's containerd and dockerd, started in a private
directory (their own sockets, data roots and state) and stopped again afterwards."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from harness import run_child


class Daemons:
    """containerd + dockerd (overlay2): sockets and state under ``root``, content and layers under
    ``data`` (default: ``root``); ``docker(...)`` and ``ctr(...)`` talk to them."""

    def __init__(self, root: Path, data: Path | None = None) -> None:
        self.root = root
        self.data = data or root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.available = bool(shutil.which("dockerd") and shutil.which("containerd") and shutil.which("ctr"))
        self.why = "" if self.available else "dockerd/containerd are not installed"

    @property
    def ctd_sock(self) -> str:
        return str(self.root / "containerd.sock")

    @property
    def docker_sock(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def start(self) -> Daemons:
        if not self.available:
            return self
        for d in (self.root, self.data):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "daemons.log", "ab")
        self.procs.append(subprocess.Popen(
            ["containerd", "--root", str(self.data / "ctd-root"), "--state", str(self.root / "ctd-state"),
             "--address", self.ctd_sock], stdout=log, stderr=log))
        self._wait(lambda: subprocess.run(["ctr", "--address", self.ctd_sock, "version"], capture_output=True).returncode == 0)
        self.procs.append(subprocess.Popen(
            ["dockerd", "--data-root", str(self.data / "docker"), "--exec-root", str(self.root / "exec"),
             "--pidfile", str(self.root / "docker.pid"), "-H", self.docker_sock, "--iptables=false",
             "--ip6tables=false", "--bridge=none", "--containerd", self.ctd_sock, "--storage-driver", "overlay2"],
            stdout=log, stderr=log))
        self._wait(lambda: subprocess.run(["docker", "-H", self.docker_sock, "info"], capture_output=True).returncode == 0)
        return self

    def _wait(self, ok: object, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ok():  # type: ignore[operator]
                return
            time.sleep(0.2)
        self.available = False
        self.why = f"a daemon did not start (see {self.root / 'daemons.log'})"

    def pids(self) -> list[int]:
        """The daemons doing the work (their CPU time and peak RSS count for their scenarios)."""
        return [p.pid for p in self.procs if p.poll() is None]

    def docker(self, *args: str) -> None:
        run_child(["docker", "-H", self.docker_sock, *args])

    def ctr(self, *args: str) -> None:
        run_child(["ctr", "--address", self.ctd_sock, *args])

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()
        for d in (self.root, self.data):
            subprocess.run(["umount", "-R", str(d)], capture_output=True)
            shutil.rmtree(d, ignore_errors=True)
