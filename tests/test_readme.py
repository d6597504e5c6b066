"""The README's Python examples are code: each passes ``mypy --strict`` and runs against the
real registry of the test bed (its ``localhost:5000`` read as the bed's address)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from bed.registry import Registry
from oci import image_manifest, skopeo_push, write_layout

README = Path(__file__).resolve().parent.parent / "README.md"


def _examples() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has Python examples"
    return blocks


@pytest.mark.parametrize("index", range(len(_examples())))
def test_a_readme_example_type_checks_under_mypy_strict(index: int, tmp_path: Path) -> None:
    path = tmp_path / f"readme_example_{index}.py"
    path.write_text(_examples()[index])
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("index", range(len(_examples())))
def test_a_readme_example_runs(index: int, registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "greeting").write_text("hello\n")
    layout = tmp_path / "layout"
    write_layout(layout, "1.0", [image_manifest(layout, [src])], as_index=False)
    skopeo_push(layout, "1.0", f"{registry.host}/team/app:1.0")
    (tmp_path / "layer.tar.gz").write_bytes(b"hello")  # what the example verifies
    code = _examples()[index].replace("localhost:5000", registry.host)
    env = {**os.environ, "DOCKER_DISTRIBUTION_ROOT": str(tmp_path / "store"), "DOCKER_CONFIG": str(tmp_path / "cfg")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "rootfs" / "etc" / "greeting").read_text() == "hello\n"
    assert "'1.0'" in r.stdout and "'stable'" in r.stdout  # the tag list, after the push
    assert f"manifest for {registry.host}/team/app:nope not found" in r.stdout
