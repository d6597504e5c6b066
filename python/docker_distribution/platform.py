"""Platforms and moby's selection of a manifest from a list on Linux (moby distribution/pull_v2_unix.go, filterManifests).

:func:`default_platform` is the host, with the amd64 micro-architecture level (v1–v4) read
from the CPU flags; :func:`normalize` is containerd's; :func:`only` gives the ordered list of
acceptable platforms (amd64/v3 → v3, v2, v1, 386; arm64 → … arm/v5); :func:`filter_manifests`
keeps and orders the entries of an index accordingly.
"""

from __future__ import annotations

import os
import platform as _platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .descriptor import Descriptor

__all__ = ["Platform", "default_platform", "filter_manifests", "format_all", "matches", "normalize", "only",
           "parse_platform"]


@dataclass(frozen=True, slots=True)
class Platform:
    """An OCI platform: os, architecture, variant and os version (empty when not given). Parse one
    from text with :func:`parse_platform`; compare with :func:`matches` after :func:`normalize`."""

    os: str = ""
    architecture: str = ""
    variant: str = ""
    os_version: str = ""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> Platform | None:
        """The platform of an OCI ``platform`` object (None when there is none)."""
        if not doc:
            return None
        return cls(str(doc.get("os", "")), str(doc.get("architecture", "")), str(doc.get("variant", "")),
                   str(doc.get("os.version", "")))


_KNOWN_OS = frozenset("aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 "
                      "solaris windows zos".split())
_KNOWN_ARCH = frozenset("386 amd64 amd64p32 arm armbe arm64 arm64be ppc64 ppc64le loong64 mips mipsle mips64 mips64le "
                        "mips64p32 mips64p32le ppc riscv riscv64 s390 s390x sparc sparc64 wasm".split())
_OS_AND_VERSION = re.compile(r"([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.-]*)\))?")
_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")


def parse_platform(value: str) -> Platform:
    """``os[(osversion)][/arch[/variant]]`` as ``--platform`` takes it: containerd's ``platforms.Parse``.

    One component is an OS (with the host's architecture) if it names a known one, else a known
    architecture (on the host's OS); anything else, and any component outside ``[A-Za-z0-9_.-]``,
    raises :class:`~docker_distribution.errors.InvalidOptionError` with containerd's text."""
    from .errors import InvalidOptionError

    def invalid(why: str) -> InvalidOptionError:
        return InvalidOptionError(f"{why}: invalid argument")

    if "*" in value:
        raise invalid(f'"{value}": wildcards not yet supported')
    parts = value.split("/", 3)
    head = _OS_AND_VERSION.fullmatch(parts[0])
    if head is None:
        raise invalid(f'"{parts[0]}" is an invalid OS component of "{value}": OSAndVersion specifier component must '
                      f'match "^{_OS_AND_VERSION.pattern}$"')
    for part in parts[1:]:
        if not _COMPONENT.fullmatch(part):
            raise invalid(f'"{part}" is an invalid component of "{value}": platform specifier component must match '
                          f'"^{_COMPONENT.pattern}$"')
    os_name, os_version = normalize(Platform(head.group(1))).os, head.group(2) or ""
    host = default_platform()
    if len(parts) == 1:
        if os_name in _KNOWN_OS:
            variant = host.variant if host.architecture == "arm" and host.variant != "v7" else ""
            return Platform(os_name, host.architecture, variant, os_version)
        arch = normalize(Platform(host.os, parts[0]))
        if arch.architecture in _KNOWN_ARCH:
            return replace(arch, variant="" if arch.architecture == "arm" and arch.variant == "v7" else arch.variant)
        raise invalid(f'"{value}": unknown operating system or architecture')
    if len(parts) == 2:
        p = normalize(Platform(os_name, parts[1], "", os_version))
        return replace(p, variant="") if p.architecture == "arm" and p.variant == "v7" else p
    if len(parts) == 3:
        p = normalize(Platform(os_name, parts[1], parts[2], os_version))
        return replace(p, variant="v8") if p.architecture == "arm64" and not p.variant else p
    raise invalid(f'"{value}": cannot parse platform specifier')


def _host_arch() -> str:
    m = _platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i386": "386", "i686": "386",
            "armv7l": "arm", "armv6l": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(m, m)


_AMD64_LEVELS = [
    ("v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
    ("v3", {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}),
    ("v2", {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}),
]


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _amd64_variant(flags: set[str]) -> str:
    level = ""
    for name, needed in reversed(_AMD64_LEVELS):  # v2, then v3, then v4: each needs the ones below
        if needed <= flags:
            level = name
        else:
            break
    return level or "v1"


def default_platform() -> Platform:
    """This machine's platform (containerd's ``platforms.DefaultSpec``): OS, architecture, and the
    variant (the amd64 microarchitecture level from the CPU's flags, ``v8`` on arm64)."""
    arch = _host_arch()
    variant = ""
    if arch == "amd64":
        variant = _amd64_variant(_cpu_flags())
    elif arch == "arm64":
        variant = "v8"
    elif arch == "arm":
        variant = "v" + (re.sub(r"\D", "", _platform.machine()) or "7")
    return Platform(os.uname().sysname.lower(), arch, variant)


def normalize(p: Platform) -> Platform:
    """containerd's ``platforms.Normalize``: the canonical spelling (``x86_64`` → ``amd64``,
    ``aarch64`` → ``arm64``, default variants dropped or filled in); an empty OS is this machine's."""
    os_name = (p.os or default_platform().os).lower()
    if os_name == "macos":
        os_name = "darwin"
    arch, variant = p.architecture.lower(), p.variant.lower()
    if arch == "i386":
        arch, variant = "386", ""
    elif arch in ("x86_64", "x86-64", "amd64"):
        arch = "amd64"
        if variant == "v1":
            variant = ""
    elif arch in ("aarch64", "arm64"):
        arch = "arm64"
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "armhf":
        arch, variant = "arm", "v7"
    elif arch == "armel":
        arch, variant = "arm", "v6"
    elif arch == "arm":
        variant = {"": "v7", "7": "v7", "5": "v5", "6": "v6", "8": "v8"}.get(variant, variant)
    return replace(p, os=os_name, architecture=arch, variant=variant)


def _with_default(requested: Platform | None) -> Platform:
    host = default_platform()
    p = requested or Platform()
    if not p.os:
        p = replace(p, os=host.os)
    if not p.architecture:
        p = replace(p, architecture=host.architecture, variant=host.variant)
    return p


def only(p: Platform) -> list[Platform]:
    """containerd's ``platforms.Only``: the acceptable platforms, most preferred first."""
    p = normalize(p)
    out: list[Platform] = []
    if p.architecture == "amd64":
        m = re.fullmatch(r"v(\d)", p.variant)
        if m and int(m.group(1)) > 1:
            out += [replace(p, variant=f"v{n}") for n in range(int(m.group(1)), 1, -1)]
        out += [replace(p, variant=""), replace(p, architecture="386", variant="")]
        return out
    if p.architecture == "arm":
        m = re.fullmatch(r"v(\d)", p.variant)
        if m and int(m.group(1)) > 5:
            return [replace(p, variant=f"v{n}") for n in range(int(m.group(1)), 4, -1)]
        return [p]
    if p.architecture == "arm64":
        v = p.variant or "v8"
        m = re.fullmatch(r"v(8|9)(?:\.(\d))?", v)
        if not m:
            return []
        major, minor = int(m.group(1)), int(m.group(2) or 0)

        def arm64(variant: str) -> Platform:
            return replace(p, variant="" if variant == "v8" else variant)

        if major == 8:
            out += [arm64(f"v8.{n}") for n in range(minor, 0, -1)] + [arm64("v8")]
        else:
            out += [arm64(f"v9.{n}") for n in range(minor, 0, -1)] + [arm64("v9")]
            out += [arm64(f"v8.{n}") for n in range(min(minor + 5, 9), 0, -1)] + [arm64("v8")]
        out += [replace(p, architecture="arm", variant=v) for v in ("v8", "v7", "v6", "v5")]
        return out
    return [p]


def _empty(d: Descriptor) -> bool:
    return not d.platform or not any(d.platform.get(k) for k in ("os", "architecture", "variant", "os.version",
                                                                    "os.features", "features"))


def filter_manifests(entries: Sequence[Descriptor], requested: Platform | None) -> list[Descriptor]:
    """Keep the entries that match the requested (or host) platform, most preferred first;
    entries without any platform match everything and come last."""
    vector = only(_with_default(requested))
    ranked: list[tuple[int, int, Descriptor]] = []
    for i, d in enumerate(entries):
        if _empty(d):
            ranked.append((len(vector) + 1, i, d))
        elif (rank := _rank(vector, Platform.from_json(d.platform) or Platform())) is not None:
            ranked.append((rank, i, d))
    return [d for _, _, d in sorted(ranked)]


def matches(requested: Platform | None, candidate: Platform) -> bool:
    """Whether an image of platform ``candidate`` is acceptable for ``requested`` (or the host)."""
    return _rank(only(_with_default(requested)), candidate) is not None


def _rank(vector: Sequence[Platform], candidate: Platform) -> int | None:
    """The candidate's place in the preference vector (OS, architecture and variant, normalised)."""
    cand = normalize(candidate)
    for rank, want in enumerate(vector):
        if (cand.os, cand.architecture, cand.variant) == (want.os, want.architecture, want.variant):
            return rank
    return None


def format_all(p: Platform) -> str:
    """``os[(osversion)]/arch[/variant]``."""
    head = p.os + (f"({p.os_version})" if p.os_version else "")
    return "/".join(x for x in (head, p.architecture, p.variant) if x)
