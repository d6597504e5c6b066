"""Image references: the docker grammar of distribution/reference, as one immutable value.

A :class:`Reference` is a repository name (``domain`` + ``path``) with an optional tag
and an optional digest. Two parsers, as upstream:

* :func:`parse` — the strict grammar (``Parse``): no defaults are applied.
* :func:`parse_normalized_named` — the familiar form users type (``ParseNormalizedNamed``):
  ``busybox`` ⇒ ``docker.io/library/busybox``.

Errors are :class:`~docker_distribution.errors.InvalidReferenceError` with upstream's
messages. ``str(ref)`` is the full form; :attr:`Reference.familiar` the short one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .digest import Digest
from .errors import InvalidReferenceError

__all__ = [
    "DEFAULT_DOMAIN",
    "LEGACY_DEFAULT_DOMAIN",
    "NAME_TOTAL_LENGTH_MAX",
    "Reference",
    "as_reference",
    "parse",
    "parse_any_reference",
    "parse_docker_ref",
    "parse_normalized_named",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255  # upstream's NameTotalLengthMax

# --- the grammar (distribution/reference regexp.go) -----------------------------------------
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_REMOTE_NAME = rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_NAME = rf"(?:{_DOMAIN}/)?{_REMOTE_NAME}"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$", re.ASCII)
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_REMOTE_NAME})$", re.ASCII)
_ANCHORED_TAG_RE = re.compile(rf"^{_TAG}$", re.ASCII)
_ANCHORED_DIGEST_RE = re.compile(rf"^{_DIGEST}$", re.ASCII)
_ANCHORED_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")

# go-digest's registered algorithms and their hex lengths
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

ERR_REFERENCE_INVALID_FORMAT = "invalid reference format"
ERR_TAG_INVALID_FORMAT = "invalid tag format"
ERR_DIGEST_INVALID_FORMAT = "invalid digest format"
ERR_NAME_CONTAINS_UPPERCASE = "repository name must be lowercase"
ERR_NAME_EMPTY = "repository name must have at least one component"
ERR_NAME_TOO_LONG = f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
ERR_NAME_NOT_CANONICAL = "repository name must be canonical"


def _validate_digest(value: str) -> None:
    """go-digest's ``Digest.Validate``, with its messages."""
    algorithm, sep, encoded = value.partition(":")
    if not sep or not encoded or not algorithm:
        raise InvalidReferenceError("invalid checksum digest format")
    want = _DIGEST_LENGTHS.get(algorithm)
    if want is None:
        raise InvalidReferenceError("unsupported digest algorithm")
    if len(encoded) != want:
        raise InvalidReferenceError("invalid checksum digest length")
    if not re.fullmatch(r"[a-f0-9]+", encoded):
        raise InvalidReferenceError("invalid checksum digest format")


def _parsed_digest(value: str) -> Digest:
    """A reference's digest as a :class:`Digest`, go-digest's messages for a bad one."""
    _validate_digest(value)
    return Digest.parse(value)


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed reference. ``domain`` is ``""`` only for references made by the strict
    :func:`parse` without a domain; normalized references always have one."""

    domain: str
    path: str
    tag: str | None = None
    #: the digest as a value; a string given here is parsed (``InvalidReferenceError`` if bad)
    digest: Digest | None = None

    def __post_init__(self) -> None:
        if isinstance(self.digest, str):
            object.__setattr__(self, "digest", _parsed_digest(self.digest))

    # --- views -------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """``Named.Name()``: domain and path, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """``FamiliarName``: ``busybox`` for ``docker.io/library/busybox``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        rest = self.path
        if rest.startswith(OFFICIAL_REPO_PREFIX) and "/" not in rest[len(OFFICIAL_REPO_PREFIX):]:
            return rest[len(OFFICIAL_REPO_PREFIX):]
        return rest

    @property
    def familiar(self) -> str:
        """``FamiliarString``: the short form with tag and digest, e.g. ``busybox:latest``."""
        return self.familiar_name + self._suffix()

    @property
    def is_name_only(self) -> bool:
        """True when the reference has neither a tag nor a digest (``docker.io/library/alpine``)."""
        return self.tag is None and self.digest is None

    def _suffix(self) -> str:
        s = f":{self.tag}" if self.tag is not None else ""
        return s + (f"@{self.digest}" if self.digest is not None else "")

    def __str__(self) -> str:
        return self.name + self._suffix()

    # --- modifiers (copies) ------------------------------------------------------------------

    def with_tag(self, tag: str) -> Reference:
        """``WithTag``: keeps any digest; raises on an invalid tag."""
        if not _ANCHORED_TAG_RE.match(tag):
            raise InvalidReferenceError(ERR_TAG_INVALID_FORMAT)
        return replace(self, tag=tag)

    def with_digest(self, digest: Digest | str) -> Reference:
        """``WithDigest``: keeps any tag; raises on a malformed digest."""
        if isinstance(digest, Digest):
            return replace(self, digest=digest)
        if not _ANCHORED_DIGEST_RE.match(str(digest)):
            raise InvalidReferenceError(ERR_DIGEST_INVALID_FORMAT)
        return replace(self, digest=_parsed_digest(str(digest)))

    def trim(self) -> Reference:
        """``TrimNamed``: the repository alone, without tag or digest."""
        return replace(self, tag=None, digest=None)

    def tag_name_only(self) -> Reference:
        """``TagNameOnly``: add ``:latest`` to a name-only reference."""
        return replace(self, tag=DEFAULT_TAG) if self.is_name_only else self


def with_name(name: str) -> Reference:
    """``WithName``: a name-only reference from an already-canonical name."""
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(ERR_NAME_TOO_LONG)
    m = _ANCHORED_NAME_RE.match(name)
    if m is None:
        raise InvalidReferenceError(ERR_NAME_EMPTY if not name else ERR_REFERENCE_INVALID_FORMAT)
    return Reference(m.group(1) or "", m.group(2))


def parse(s: str) -> Reference:
    """``Parse``: the strict grammar, with upstream's errors; nothing is defaulted."""
    m = _REFERENCE_RE.match(s)
    if m is None:
        if not s:
            raise InvalidReferenceError(ERR_NAME_EMPTY)
        if _REFERENCE_RE.match(s.lower()):
            raise InvalidReferenceError(ERR_NAME_CONTAINS_UPPERCASE)
        raise InvalidReferenceError(ERR_REFERENCE_INVALID_FORMAT)
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(ERR_NAME_TOO_LONG)
    nm = _ANCHORED_NAME_RE.match(name)
    assert nm is not None  # the full match implies the name matches
    return Reference(nm.group(1) or "", nm.group(2), tag, _parsed_digest(digest) if digest is not None else None)


def _split_docker_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i]
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_normalized_named(s: str) -> Reference:
    """``ParseNormalizedNamed``: parse what a user typed, adding docker.io and library/."""
    if _ANCHORED_IDENTIFIER_RE.match(s):
        raise InvalidReferenceError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    domain, remainder = _split_docker_domain(s)
    tag_sep = remainder.find(":")
    remote = remainder[:tag_sep] if tag_sep > -1 else remainder
    if remote.lower() != remote:
        raise InvalidReferenceError(f"invalid reference format: repository name ({remote}) must be lowercase")
    ref = parse(f"{domain}/{remainder}")
    if not ref.domain:
        raise InvalidReferenceError(ERR_NAME_NOT_CANONICAL)
    return ref


def parse_docker_ref(s: str) -> Reference:
    """``ParseDockerRef``: normalized, ``:latest`` added to a bare name, a tag dropped
    when a digest is present (the digest alone identifies the content)."""
    ref = parse_normalized_named(s)
    if ref.digest is not None and ref.tag is not None:
        return replace(ref, tag=None)
    return ref.tag_name_only()


def parse_any_reference(s: str) -> Reference | str:
    """``ParseAnyReference``: a bare 64-hex ID or ``sha256:`` digest gives the digest string;
    anything else is parsed as a normalized name."""
    if _ANCHORED_IDENTIFIER_RE.match(s):
        return f"sha256:{s}"
    try:
        _validate_digest(s)
        return s
    except InvalidReferenceError:
        return parse_normalized_named(s)


def as_reference(value: Reference | str) -> Reference:
    """``value`` if it is a :class:`Reference`, else the string parsed as a user types it
    (:func:`parse_normalized_named`); a :class:`TypeError` naming the type for anything else."""
    if isinstance(value, Reference):
        return value
    if isinstance(value, str):
        return parse_normalized_named(value)
    raise TypeError(f"expected a reference (a Reference or a str such as 'host/repo:tag'), got {type(value).__name__}")
