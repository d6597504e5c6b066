"""The installed wheel: imported from site-packages, typed, with a curated API and a CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import docker_distribution as dd

SOURCE_TREE = Path(__file__).resolve().parent.parent / "python"


def test_package_is_imported_from_the_installed_wheel() -> None:
    installed = Path(dd.__file__).resolve()
    assert SOURCE_TREE not in installed.parents, installed
    assert "site-packages" in installed.parts


def test_wheel_ships_typing_information() -> None:
    pkg = Path(dd.__file__).parent
    assert (pkg / "py.typed").is_file()
    assert (pkg / "_native.pyi").is_file()


def test_public_api_is_curated() -> None:
    for name in dd.__all__:
        assert hasattr(dd, name), name
    assert "_native" not in dd.__all__


def test_cli_prints_file_digests(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    exe = shutil.which("docker-distribution", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed beside the interpreter"
    out = subprocess.run([exe, "digest", str(f)], capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "5"]
    bad = subprocess.run([exe, "digest", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ")
