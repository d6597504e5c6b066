"""Type stubs for the native extension. Users import from ``docker_distribution`` instead."""

from typing import final

__all__ = [
    "Applied",
    "BlobFile",
    "Digester",
    "LayerApplier",
    "LayerProducer",
    "Produced",
    "TarReader",
    "apply_diff",
    "apply_layer_file",
    "produce_layer_file",
    "DEFAULT_GZIP_LEVEL",
    "DEFAULT_ZSTD_LEVEL",
    "__version__",
    "digest_bytes",
    "digest_file",
    "parse_digest",
    "verify_file",
]

__version__: str
DEFAULT_GZIP_LEVEL: int
DEFAULT_ZSTD_LEVEL: int

@final
class Digester:
    def __new__(cls, algorithm: str = "sha256") -> Digester: ...
    def update(self, data: bytes, /) -> None: ...
    def finalize(self) -> str: ...
    def peek(self) -> str: ...
    @property
    def algorithm(self) -> str: ...
    @property
    def written(self) -> int: ...

@final
class BlobFile:
    def __new__(cls, path: str, /, *, hashing: bool = True, writeback: bool = False, algorithm: str = "sha256") -> BlobFile: ...
    def write(self, data: bytes, /) -> int: ...
    def truncate(self, size: int, /) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def peek(self) -> str | None: ...
    @property
    def size(self) -> int: ...

def parse_digest(value: str, /) -> tuple[str, str]: ...
def digest_bytes(data: bytes, /, algorithm: str = "sha256") -> str: ...
def digest_file(path: str, /, algorithm: str = "sha256") -> tuple[str, int]: ...
def verify_file(path: str, digest: str, /, size: int | None = None) -> None: ...

@final
class Applied:
    """What applying a layer produced (the fields of :class:`~docker_distribution.layer.AppliedLayer`)."""

    @property
    def diff_id(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def uncompressed_size(self) -> int: ...
    @property
    def entries(self) -> int: ...
    @property
    def content_size(self) -> int: ...
    @property
    def compression(self) -> str: ...

@final
class Produced:
    """What producing a layer wrote (the fields of :class:`~docker_distribution.layer.ProducedLayer`)."""

    @property
    def digest(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def diff_id(self) -> str: ...
    @property
    def uncompressed_size(self) -> int: ...


def apply_diff(diff: str, split: str, target: str, /) -> int: ...
def apply_layer_file(
    path: str,
    target: str,
    /,
    *,
    mode: str,
    split: str | None = None,
    digest: str | None = None,
    size: int | None = None,
    max_bytes: int | None = None,
    max_entries: int | None = None,
) -> Applied: ...
def produce_layer_file(
    dest: str,
    /,
    *,
    source_dir: str | None = None,
    source_diff: tuple[str, str] | None = None,
    compression: str = "gzip",
    level: int | None = None,
    threads: int | None = None,
    mtime: int | None = None,
) -> Produced: ...
@final
class LayerApplier:
    def __new__(
        cls,
        target: str,
        /,
        *,
        mode: str,
        split: str | None = None,
        digest: str | None = None,
        size: int | None = None,
        max_bytes: int | None = None,
        max_entries: int | None = None,
    ) -> LayerApplier: ...
    def feed(self, data: bytes, /) -> None: ...
    def finish(self) -> Applied: ...
    def abort(self) -> None: ...

@final
class LayerProducer:
    def __new__(
        cls,
        *,
        source_dir: str | None = None,
        source_diff: tuple[str, str] | None = None,
        compression: str = "gzip",
        level: int | None = None,
        threads: int | None = None,
        mtime: int | None = None,
    ) -> LayerProducer: ...
    def read_chunk(self) -> bytes | None: ...
    @property
    def tar_bytes(self) -> int: ...
    def result(self) -> Produced: ...

@final
class TarReader:
    def __new__(cls, root: str, split: str, /) -> TarReader: ...
    def read(self, size: int = ..., /) -> bytes: ...
