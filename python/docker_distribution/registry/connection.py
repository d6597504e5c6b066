"""Registry connections that drop what an abandoned request still had to send.

Closing a TCP socket hands its unsent bytes to the kernel, which goes on sending them and only
then ends the connection. For an upload given up mid-body (a push that failed or was
cancelled) that is up to the socket's send buffer — 3.4 MB was seen here behind a slow
registry — still going to the registry after the push has returned. So a connection closed
while its request is unanswered is closed with ``SO_LINGER`` 0: the kernel drops the unsent
bytes and resets the connection, as the registry would see from a client that died. A
connection closed idle (its last request answered) closes as usual.

:class:`AbortingAdapter` is ``requests``' adapter with such connections in its pools.
"""

from __future__ import annotations

import socket
import struct
from typing import TYPE_CHECKING, Any

from requests.adapters import DEFAULT_POOLBLOCK, HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["AbortingAdapter"]

_LINGER_RESET = struct.pack("ii", 1, 0)

if TYPE_CHECKING:
    _Base = HTTPConnection
else:
    _Base = object


class _ResetUnanswered(_Base):
    """Remembers whether a request was sent and its response not yet received."""

    _dd_unanswered = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._dd_unanswered = True
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        response = super().getresponse()
        self._dd_unanswered = False
        return response

    def close(self) -> None:
        sock = self.sock
        if self._dd_unanswered and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            except OSError:
                pass  # already gone: nothing left to drop
        self._dd_unanswered = False
        super().close()


class _Connection(_ResetUnanswered, HTTPConnection):
    pass


class _TLSConnection(_ResetUnanswered, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class AbortingAdapter(HTTPAdapter):
    """``requests``' adapter whose connections reset instead of flushing an abandoned request."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = DEFAULT_POOLBLOCK,
                         **pool_kwargs: Any) -> None:
        """Build the pool manager with our connection pools (whose connections reset when abandoned)."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
