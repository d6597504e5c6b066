"""TLS for registry connections: one ``ssl.SSLContext`` per trust setting, shared by every connection.

Left to itself, urllib3 builds a context for each new connection and loads its trust store
into it — the CA bundle for a verified endpoint, and the system's default roots even for an
insecure one whose certificate is never checked. That costs about 50 ms of CPU per connection
here (``set_default_verify_paths``, 144 roots), paid again by every blob download that opens a
connection of its own. :class:`TLSAdapter` hands urllib3 a context built once per
``(verify, client certificate)`` — keyed by the files' paths, sizes and mtimes, so a rewritten
``certs.d`` bundle is read again — with exactly what ``requests`` would have set: the same
roots (``requests``' default bundle, or the endpoint's), the same client certificate, hostname
checks on whenever the certificate is verified.

An endpoint the user declared insecure is left unverified on purpose, and moby says nothing
about it; :func:`quiet_insecure` silences urllib3's ``InsecureRequestWarning`` for that one
host (a filter in the process's warnings, matching only that host's message).
"""

from __future__ import annotations

import os
import re
import ssl
import threading
import warnings
from typing import TYPE_CHECKING, Any

import requests
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import InsecureRequestWarning
from urllib3.util.ssl_ import create_urllib3_context

from .connection import AbortingAdapter

if TYPE_CHECKING:
    from requests.adapters import _HostParams, _PoolKwargs

__all__ = ["TLSAdapter", "quiet_insecure", "tls_context"]

_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
_lock = threading.Lock()


def _file_key(path: str, what: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:  # requests' own words for these
        raise OSError(f"Could not find {what}, invalid path: {path}") from None
    return path, st.st_mtime_ns, st.st_size


def _cert_files(cert: tuple[str, str] | str | None) -> tuple[str, str | None] | None:
    if cert is None:
        return None
    return (cert, None) if isinstance(cert, str) else (cert[0], cert[1])


def tls_context(verify: bool | str, cert: tuple[str, str] | str | None = None) -> ssl.SSLContext:
    """The shared context for ``requests``-style ``verify`` (False, True, or a CA bundle path or
    directory) and ``cert`` (a client certificate file, or ``(cert, key)``)."""
    roots = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    files = _cert_files(cert)
    key: tuple[object, ...] = (
        _file_key(roots, "a suitable TLS CA certificate bundle") if isinstance(roots, str) else False,
        tuple(_file_key(f, "the TLS certificate file") for f in files if f is not None) if files else None,
    )
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED if roots else ssl.CERT_NONE)
            if isinstance(roots, str):
                if os.path.isdir(roots):
                    ctx.load_verify_locations(capath=roots)
                else:
                    ctx.load_verify_locations(cafile=roots)
            if files:
                ctx.load_cert_chain(files[0], files[1])
            _contexts[key] = ctx
    return ctx


class TLSAdapter(AbortingAdapter):
    """``requests``' adapter with the connection pools keyed by, and built with, a shared context
    (and connections that reset rather than flush an abandoned request: :mod:`.connection`)."""

    def build_connection_pool_key_attributes(self, request: requests.PreparedRequest, verify: bool | str,
                                             cert: str | tuple[str, str] | None = None) -> tuple[_HostParams, _PoolKwargs]:
        host, pool = super().build_connection_pool_key_attributes(request, verify, cert)
        if host["scheme"] == "https":
            for k in ("ca_certs", "ca_cert_dir", "cert_file", "key_file"):
                pool.pop(k, None)  # type: ignore[misc]
            pool["ssl_context"] = tls_context(verify, cert)
        return host, pool

    def cert_verify(self, conn: Any, url: str, verify: bool | str, cert: Any) -> None:
        # the shared context carries the roots and the client certificate; urllib3 would load
        # them into it again for each connection if the pool named them too
        super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
        if url.lower().startswith("https"):
            conn.ca_certs = conn.ca_cert_dir = conn.cert_file = conn.key_file = None


def quiet_insecure(hostname: str) -> None:
    """No ``InsecureRequestWarning`` for ``hostname``, an endpoint declared insecure. Added once:
    each change to the filters makes Python forget which warnings it has already shown."""
    message = f"Unverified HTTPS request is being made to host '{re.escape(hostname)}'"
    if not any(f[0] == "ignore" and f[1] is not None and f[1].pattern == message and f[2] is InsecureRequestWarning
               for f in warnings.filters):
        warnings.filterwarnings("ignore", message=message, category=InsecureRequestWarning)
