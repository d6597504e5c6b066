"""The registry service: which endpoints serve a repository, with which TLS, and whose credentials.

moby's ``registry.Service`` (moby registry/service.go): mirror and insecure-registry configuration,
index-name normalisation, per-host TLS from a ``certs.d`` directory, and endpoint lookup for
pull (mirrors first) and push (never mirrors). Insecure hosts get HTTPS without verification
first, then plain HTTP. ``127.0.0.0/8`` and ``::1/128`` are always insecure.

Beyond moby (which mirrors only Docker Hub, moby#18818): ``ServiceOptions.registry_mirrors``
maps any registry host to its own list of pull mirrors.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidRegistryConfigError
from ..reference import Reference
from .auth import AuthConfig

__all__ = [
    "APIEndpoint",
    "DEFAULT_CERTS_DIR",
    "DEFAULT_NAMESPACE",
    "DEFAULT_REGISTRY_HOST",
    "DEFAULT_V2_REGISTRY",
    "INDEX_HOSTNAME",
    "INDEX_NAME",
    "INDEX_SERVER",
    "IndexInfo",
    "RegistryService",
    "ServiceOptions",
    "TLSConfig",
    "convert_to_hostname",
    "get_auth_config_key",
    "normalize_index_name",
    "resolve_auth_config",
    "validate_index_name",
    "validate_mirror",
]

DEFAULT_NAMESPACE = "docker.io"
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
INDEX_HOSTNAME = "index.docker.io"
INDEX_SERVER = f"https://{INDEX_HOSTNAME}/v1/"
INDEX_NAME = "docker.io"
DEFAULT_V2_REGISTRY = f"https://{DEFAULT_REGISTRY_HOST}"
#: where per-host CA and client certificates live, as for dockerd
DEFAULT_CERTS_DIR = Path("/etc/docker/certs.d")
#: environment variable that moves the certs.d root (for users without write access to /etc)
CERTS_DIR_ENV = "DOCKER_DISTRIBUTION_CERTS_D"
#: always insecure, as in moby: "a stop-gap for people running a private registry on localhost"
ALWAYS_INSECURE = ("::1/128", "127.0.0.0/8")

_DOMAIN_RE = re.compile(
    r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"|\[(?:[a-fA-F0-9:]+)\])(?::[0-9]+)?$"
)

LookupIP = Callable[[str], Sequence[str]]


def _system_lookup_ip(host: str) -> Sequence[str]:
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


# --- validation -----------------------------------------------------------------------------


def normalize_index_name(name: str) -> str:
    """``index.docker.io`` ⇒ ``docker.io``; nothing else is rewritten (as moby)."""
    return INDEX_NAME if name == INDEX_HOSTNAME else name


def validate_index_name(name: str) -> str:
    """moby's ``ValidateIndexName``: the normalized registry name (``index.docker.io`` →
    ``docker.io``); one that begins or ends with a hyphen is an :class:`InvalidRegistryConfigError`."""
    name = normalize_index_name(name)
    if name.startswith("-") or name.endswith("-"):
        raise InvalidRegistryConfigError(f"invalid index name ({name}). Cannot begin or end with a hyphen")
    return name


def validate_mirror(mirror: str) -> str:
    """moby's ``ValidateMirror``: an http(s) URL without query, fragment or userinfo; returned with one trailing ``/``."""
    scheme, sep, _ = mirror.partition("://")
    if not sep or not scheme:
        raise InvalidRegistryConfigError(
            f"invalid mirror: no scheme specified for {_go_quote(mirror)}: must use either 'https://' or 'http://'"
        )
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise InvalidRegistryConfigError(
            f"invalid mirror: {_go_quote(mirror)} is not a valid URI: parse {_go_quote(mirror)}: "
            "first path segment in URL cannot contain colon"
        )
    u = urlsplit(mirror)
    if u.scheme not in ("http", "https"):
        raise InvalidRegistryConfigError(
            f"invalid mirror: unsupported scheme {_go_quote(u.scheme)} in {_go_quote(mirror)}: "
            "must use either 'https://' or 'http://'"
        )
    if "?" in mirror or "#" in mirror:
        raise InvalidRegistryConfigError(f"invalid mirror: query or fragment at end of the URI {_go_quote(mirror)}")
    if "@" in u.netloc:
        userinfo, _, hostport = u.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        masked = urlunsplit((u.scheme, f"{user}:xxxxx@{hostport}", u.path, "", ""))
        raise InvalidRegistryConfigError(f"invalid mirror: username/password not allowed in URI {_go_quote(masked)}")
    return mirror.rstrip("/") + "/"


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _split_host_port(s: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``, enough for registry hosts (``[v6]:port`` or ``host:port``)."""
    if s.startswith("["):
        end = s.find("]")
        if end < 0 or not s[end + 1:].startswith(":"):
            return None
        return s[1:end], s[end + 2:]
    if s.count(":") != 1:
        return None
    host, port = s.split(":")
    return host, port


def _validate_host_port(s: str) -> None:
    hp = _split_host_port(s)
    host, port = hp if hp else (s, "")
    if not _DOMAIN_RE.match(s) and not _is_ip(host):
        raise InvalidRegistryConfigError(f"invalid host {_go_quote(host)}")
    if port:
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InvalidRegistryConfigError(f"invalid port {_go_quote(port)}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


# --- configuration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """What a user configures: dockerd's ``registry-mirrors`` and ``insecure-registries``, plus
    ``registry_mirrors`` (host → mirrors, beyond moby) and the ``certs.d`` root."""

    mirrors: Sequence[str] = ()
    insecure_registries: Sequence[str] = ()
    registry_mirrors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    certs_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class IndexInfo:
    """moby's ``registry.IndexInfo``: a registry's normalised name, its configured mirrors,
    whether it must be reached over verified TLS, and whether it is Docker Hub."""

    name: str
    mirrors: tuple[str, ...] = ()
    secure: bool = True
    official: bool = False


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """TLS settings of one endpoint, in the terms ``requests`` takes.

    ``verify`` is False for insecure registries; ``ca_bundle`` is a PEM file combining the
    system roots with the host's ``certs.d/*.crt`` (None: the default roots); ``client_cert``
    is a ``(cert, key)`` pair from ``certs.d/*.cert`` + ``*.key``.
    """

    verify: bool = True
    ca_bundle: str | None = None
    client_cert: tuple[str, str] | None = None

    @property
    def requests_verify(self) -> bool | str:
        """The value for ``requests``' ``verify``: False when unverified, else the CA bundle's path or
        True (system roots)."""
        if not self.verify:
            return False
        return self.ca_bundle or True


@dataclass(frozen=True, slots=True)
class APIEndpoint:
    """One place to talk to: ``url`` is the base (``scheme://host[:port][/path]``, no trailing slash)."""

    url: str
    mirror: bool = False
    official: bool = False
    tls: TLSConfig = field(default_factory=TLSConfig)

    @property
    def scheme(self) -> str:
        """``https`` or ``http``."""
        return urlsplit(self.url).scheme

    @property
    def host(self) -> str:
        """``host[:port]`` of the endpoint."""
        return urlsplit(self.url).netloc


def get_auth_config_key(index: IndexInfo) -> str:
    """The official index's credentials are keyed by its full v1 URL; others by host[:port]."""
    return INDEX_SERVER if index.official else index.name


def convert_to_hostname(url: str) -> str:
    """Strip ``http(s)://`` and anything from the first ``/``."""
    stripped = url
    if url.startswith("http://"):
        stripped = url[7:]
    elif url.startswith("https://"):
        stripped = url[8:]
    return stripped.split("/", 1)[0]


def resolve_auth_config(auth_configs: Mapping[str, AuthConfig], index: IndexInfo) -> AuthConfig:
    """moby's ``ResolveAuthConfig``: exact key, then (non-official only) any key whose hostname matches."""
    key = get_auth_config_key(index)
    if key in auth_configs:
        return auth_configs[key]
    if index.official:
        return AuthConfig()
    for registry, cfg in auth_configs.items():
        if index.name == convert_to_hostname(registry):
            return cfg
    return AuthConfig()


class RegistryService:
    """Implements the seed's ``RegistryResolver``: endpoint lookup and credential resolution."""

    def __init__(self, options: ServiceOptions | None = None, *, lookup_ip: LookupIP | None = None) -> None:
        options = options or ServiceOptions()
        self._lookup_ip = lookup_ip or _system_lookup_ip
        self.certs_dir = options.certs_dir or Path(os.environ.get(CERTS_DIR_ENV) or DEFAULT_CERTS_DIR)
        self.mirrors = self._load_mirrors(options.mirrors)
        self.registry_mirrors = {
            normalize_index_name(host): self._load_mirrors(ms) for host, ms in options.registry_mirrors.items()
        }
        self.insecure_cidrs, self.index_configs = self._load_insecure(options.insecure_registries)
        self._bundles: dict[str, str] = {}
        self._lock = threading.Lock()

    # --- configuration loading -------------------------------------------------------------

    @staticmethod
    def _load_mirrors(mirrors: Sequence[str]) -> tuple[str, ...]:
        unique: list[str] = []
        for m in mirrors:
            v = validate_mirror(m)
            if v not in unique:
                unique.append(v)
        return tuple(unique)

    def _load_insecure(
        self, registries: Sequence[str]
    ) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], dict[str, IndexInfo]]:
        cidrs: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        configs: dict[str, IndexInfo] = {}
        for r in [*registries, *ALWAYS_INSECURE]:
            validate_index_name(r)
            low = r.lower()
            if low.startswith("http://"):
                r = r[7:]
            elif low.startswith("https://"):
                r = r[8:]
            elif "://" in r:
                raise InvalidRegistryConfigError(f"insecure registry {r} should not contain '://'")
            try:
                net = ipaddress.ip_network(r, strict=False) if "/" in r else None
            except ValueError:
                net = None
            if net is not None:
                if net not in cidrs:
                    cidrs.append(net)
                continue
            try:
                _validate_host_port(r)
            except InvalidRegistryConfigError as exc:
                raise InvalidRegistryConfigError(f"insecure registry {r} is not valid: {exc}") from None
            configs[r] = IndexInfo(name=r, secure=False)
        configs[INDEX_NAME] = IndexInfo(name=INDEX_NAME, mirrors=self.mirrors, secure=True, official=True)
        return tuple(cidrs), configs

    # --- queries ---------------------------------------------------------------------------

    def is_secure_index(self, name: str) -> bool:
        """False when ``name`` is configured insecure or (after DNS) lies in an insecure CIDR."""
        if name in self.index_configs:
            return self.index_configs[name].secure
        return not self._cidr_match(name)

    def _cidr_match(self, host_port: str) -> bool:
        if not self.insecure_cidrs:
            return False
        hp = _split_host_port(host_port)
        host = hp[0] if hp else host_port
        if _is_ip(host):
            addresses = [host]
        else:
            try:
                addresses = list(self._lookup_ip(host))
            except OSError:
                return False
        for addr in addresses:
            ip = ipaddress.ip_address(addr)
            if any(ip.version == net.version and ip in net for net in self.insecure_cidrs):
                return True
        return False

    def index_info(self, name: str) -> IndexInfo:
        """moby's ``newIndexInfo``: the registry ``name`` (normalized) with its mirrors and whether
        it is secure, from the configured index configs."""
        name = normalize_index_name(name)
        if name in self.index_configs:
            return self.index_configs[name]
        return IndexInfo(name=name, mirrors=self.registry_mirrors.get(name, ()), secure=self.is_secure_index(name))

    def resolve_auth_config(self, auth_configs: Mapping[str, AuthConfig], ref: Reference) -> AuthConfig:
        """moby's ``ResolveAuthConfig`` for ``ref``'s registry (:func:`resolve_auth_config`)."""
        return resolve_auth_config(auth_configs, self.index_info(ref.domain))

    def tls_config(self, host: str) -> TLSConfig:
        """TLS for ``host[:port]``: unverified when insecure, else system roots plus ``certs.d/<host>/``."""
        if not self.is_secure_index(host):
            return TLSConfig(verify=False)
        directory = self.certs_dir / host
        if not directory.is_dir():
            return TLSConfig()
        cas = sorted(p for p in directory.iterdir() if p.suffix == ".crt")
        certs = sorted(p for p in directory.iterdir() if p.suffix == ".cert")
        keys = sorted(p for p in directory.iterdir() if p.suffix == ".key")
        client: tuple[str, str] | None = None
        for cert in certs:
            key = cert.with_suffix(".key")
            if not key.exists():
                raise InvalidRegistryConfigError(
                    f"missing key {key.name} for client certificate {cert.name}. "
                    "CA certificates must use the extension .crt"
                )
            client = client or (str(cert), str(key))
        for key in keys:
            if not key.with_suffix(".cert").exists():
                raise InvalidRegistryConfigError(f"missing client certificate {key.with_suffix('.cert').name} for key {key.name}")
        return TLSConfig(verify=True, ca_bundle=self._bundle(host, cas) if cas else None, client_cert=client)

    def _bundle(self, host: str, cas: Sequence[Path]) -> str:
        """One PEM file with the default roots and the host's CAs (``requests`` takes a single path)."""
        import certifi

        with self._lock:
            if host not in self._bundles:
                fd, path = tempfile.mkstemp(prefix="dd-ca-", suffix=".pem")
                with os.fdopen(fd, "wb") as f:
                    f.write(Path(certifi.where()).read_bytes())
                    for ca in cas:
                        f.write(b"\n" + ca.read_bytes())
                self._bundles[host] = path
            return self._bundles[host]

    def _endpoints(self, hostname: str, include_mirrors: bool) -> list[APIEndpoint]:
        hostname = normalize_index_name(hostname)
        out: list[APIEndpoint] = []
        if hostname in (INDEX_NAME, INDEX_HOSTNAME):
            mirrors: Sequence[str] = self.mirrors
        else:
            mirrors = self.registry_mirrors.get(hostname, ())
        if include_mirrors:
            for m in mirrors:
                u = urlsplit(m)
                out.append(APIEndpoint(url=m.rstrip("/"), mirror=True, tls=self.tls_config(u.netloc)))
        if hostname == INDEX_NAME:
            out.append(APIEndpoint(url=DEFAULT_V2_REGISTRY, official=True, tls=self.tls_config(DEFAULT_REGISTRY_HOST)))
            return out
        tls = self.tls_config(hostname)
        out.append(APIEndpoint(url=f"https://{hostname}", tls=tls))
        if not tls.verify:
            out.append(APIEndpoint(url=f"http://{hostname}", tls=tls))
        return out

    def lookup_pull_endpoints(self, hostname: str) -> list[APIEndpoint]:
        """Mirrors first (Docker Hub's, or the host's own — beyond moby), then the registry itself."""
        return self._endpoints(hostname, include_mirrors=True)

    def lookup_push_endpoints(self, hostname: str) -> list[APIEndpoint]:
        """Never mirrors."""
        return self._endpoints(hostname, include_mirrors=False)

    def is_insecure_registry(self, host: str) -> bool:
        """True when ``host[:port]`` is configured insecure (plain HTTP or unverified TLS allowed)."""
        return not self.is_secure_index(host)
