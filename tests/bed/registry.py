"""Start and stop real ``docker-registry`` processes (CNCF distribution 2.8) for the tests.

Each :class:`Registry` listens on a free 127.0.0.1 port with its own temporary storage.
A registry that fails to come up raises :class:`RegistryStartError` carrying its log.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REGISTRY_BINARY = "docker-registry"
START_TIMEOUT = 20.0


class RegistryStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running registry. ``url`` is its base URL (no trailing slash)."""

    name: str
    workdir: Path
    scheme: str = "http"
    auth: dict[str, Any] | None = None
    tls: tuple[Path, Path] | None = None  # (cert, key)
    ca_path: Path | None = None
    proxy_remote: str | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def storage(self) -> Path:
        return self.workdir / "storage"

    @property
    def log_path(self) -> Path:
        return self.workdir / "registry.log"

    @property
    def verify(self) -> str | bool:
        """What to pass as ``requests``' ``verify=`` for this registry."""
        return str(self.ca_path) if self.ca_path else True

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def config(self) -> dict[str, Any]:
        http: dict[str, Any] = {"addr": self.host, "secret": "test-bed-secret",
                                "headers": {"X-Content-Type-Options": ["nosniff"]}}
        if self.tls:
            http["tls"] = {"certificate": str(self.tls[0]), "key": str(self.tls[1])}
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": http,
        }
        if self.auth:
            cfg["auth"] = self.auth
        if self.proxy_remote:
            cfg["proxy"] = {"remoteurl": self.proxy_remote}
        return cfg

    def start(self) -> Registry:
        if shutil.which(REGISTRY_BINARY) is None:
            raise RegistryStartError(
                f"{REGISTRY_BINARY} is not installed: run the set-up (apt-get install docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        for _ in range(5):  # a port can be taken between probing and binding: try another
            self.port = free_port()
            config_path = self.workdir / "config.yml"
            # JSON is YAML, and needs no YAML library
            config_path.write_text(json.dumps(self.config(), indent=2))
            log = open(self.log_path, "ab")
            self.process = subprocess.Popen(
                [REGISTRY_BINARY, "serve", str(config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
            )
            log.close()
            if self._wait_ready():
                return self
            if "address already in use" not in self.log():
                break
        self.stop()
        raise RegistryStartError(f"registry {self.name} did not start; its log:\n{self.log()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                requests.get(f"{self.url}/v2/", verify=self.verify, timeout=2)
                return True
            except requests.ConnectionError:
                time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def blob_path(self, digest: str) -> Path:
        """Where this registry keeps a blob on disk (for corruption tests)."""
        algorithm, hexpart = digest.split(":", 1)
        return self.storage / "docker/registry/v2/blobs" / algorithm / hexpart[:2] / hexpart / "data"
