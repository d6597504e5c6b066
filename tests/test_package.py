"""The installed wheel: imported from site-packages, typed, with a curated API and a CLI."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
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


def _own_doc(obj: object) -> str | None:
    """``obj``'s docstring, but not the one ``@dataclass`` writes for a class that has none (its
    name and signature, e.g. ``Platform(os: str = '', ...)``)."""
    doc = getattr(obj, "__doc__", None)
    if doc and dataclasses.is_dataclass(obj) and isinstance(obj, type):
        try:
            generated = obj.__name__ + str(inspect.signature(obj)).replace(" -> None", "")
        except (TypeError, ValueError):
            return str(doc)
        if doc == generated:
            return None
    return doc


def test_a_dataclass_without_a_docstring_counts_as_undocumented() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bare:
        x: int = 0

    @dataclasses.dataclass(frozen=True)
    class Told:
        """Says what it is."""

        x: int = 0

    assert Bare.__doc__ and _own_doc(Bare) is None
    assert _own_doc(Told) == "Says what it is."


def _undocumented_members(cls: type) -> list[str]:
    """Public methods and properties of ``cls`` with no docstring of their own nor on a base
    class of this package that they override (a Protocol's method documents its implementations)."""
    missing = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if not (inspect.isfunction(func) or isinstance(value, property)):
            continue
        inherited = [getattr(base, name, None) for base in cls.__mro__[1:]
                     if base.__module__.startswith("docker_distribution")]
        if not func.__doc__ and not any(getattr(i, "__doc__", None) for i in inherited):
            missing.append(f"{cls.__name__}.{name}")
    return missing


def _public_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(dd.__path__, "docker_distribution.")
             if not any(part.startswith("_") for part in m.name.split("."))]
    assert len(names) > 30
    return ["docker_distribution", *names]


def test_every_public_name_and_its_methods_are_documented() -> None:
    """What each module exports (its ``__all__``), the top-level package's included."""
    missing = set()
    for module in _public_modules():
        mod = importlib.import_module(module)
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                if not _own_doc(obj):
                    missing.add(f"{obj.__module__}.{obj.__qualname__}")
            if inspect.isclass(obj):
                missing.update(f"{obj.__module__}.{m}" for m in _undocumented_members(obj))
    assert sorted(missing) == []


def test_every_module_says_what_it_owns() -> None:
    undocumented = [n for n in _public_modules() if not (importlib.import_module(n).__doc__ or "").strip()]
    assert undocumented == []


def test_cli_prints_file_digests(tmp_path: Path) -> None:
    f = tmp_path / "blob"
    f.write_bytes(b"hello")
    exe = shutil.which("docker-distribution", path=str(Path(sys.executable).parent))
    assert exe, "the console script is installed beside the interpreter"
    out = subprocess.run([exe, "digest", str(f)], capture_output=True, text=True, check=True).stdout
    assert out.split()[:2] == ["sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", "5"]
    bad = subprocess.run([exe, "digest", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ")
