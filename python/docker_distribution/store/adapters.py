"""The seed's adapters from the store to what pull and push consume (moby distribution/config.go).

* :func:`new_image_config_store_from_store`: ``put(config) → image ID``, ``get(id) → config``.
* :func:`new_layer_providers_from_store`: ``get(chain_id) → PushLayer``; an empty ChainID gives
  the empty layer; ``open()`` is the uncompressed tar; ``media_type()`` is always the
  uncompressed tar type (the pusher compresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ..digest import Digest
from ..layer import TarReader
from ..mediatype import DOCKER_LAYER
from .images import ImageStore
from .layers import Layer, LayerStore

__all__ = ["EMPTY_LAYER_DIFF_ID", "ImageConfigStore", "PushLayer", "PushLayerProvider",
           "new_image_config_store_from_store", "new_layer_providers_from_store"]

#: the diffID of an empty tar (1024 zero bytes), moby's ``layer.EmptyLayer``
EMPTY_LAYER_DIFF_ID = Digest("sha256", "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")


class ImageConfigStore(Protocol):
    """moby's ``ImageConfigStore``: image configs by image ID."""

    def put(self, config: bytes) -> Digest:
        """Store a config; its image ID."""
        ...

    def get(self, image_id: Digest) -> bytes:
        """A stored config's bytes."""
        ...


def new_image_config_store_from_store(store: ImageStore) -> ImageConfigStore:
    """moby's ``NewImageConfigStoreFromStore``: the image store itself serves."""
    return store


class PushLayer(Protocol):
    """moby's ``PushLayer``: one layer of an image being pushed."""

    def chain_id(self) -> Digest | None:
        """The layer's ChainID (None for the empty layer)."""
        ...

    def diff_id(self) -> Digest:
        """The sha256 of the layer's uncompressed tar."""
        ...

    def parent(self) -> PushLayer | None:
        """The layer beneath, or None for a base layer."""
        ...

    def open(self) -> BinaryIO | TarReader:
        """The layer's uncompressed tar, to read (the pusher compresses it)."""
        ...

    def size(self) -> int:
        """The uncompressed tar's size (moby's ``DiffSize``)."""
        ...

    def media_type(self) -> str:
        """The uncompressed layer media type, always (as moby)."""
        ...

    def release(self) -> None:
        """Let go of the layer in the store."""
        ...

    def layer(self) -> Layer | None:
        """The store's layer behind it (None for the empty layer)."""
        ...


class PushLayerProvider(Protocol):
    """moby's ``PushLayerProvider``: push layers by ChainID."""

    def get(self, chain_id: Digest | None) -> PushLayer:
        """The layer ``chain_id`` (a reference to release); None gives the empty layer."""
        ...


@dataclass
class _StoreLayer:
    _layer: Layer

    def chain_id(self) -> Digest | None:
        return self._layer.chain_id

    def diff_id(self) -> Digest:
        return self._layer.diff_id

    def parent(self) -> PushLayer | None:
        p = self._layer.parent
        return _StoreLayer(p) if p is not None else None

    def open(self) -> TarReader:
        return self._layer.tar_stream()

    def size(self) -> int:
        return self._layer.size

    def media_type(self) -> str:
        return DOCKER_LAYER

    def release(self) -> None:
        self._layer.release()

    def layer(self) -> Layer | None:
        return self._layer


class _EmptyLayer:
    def chain_id(self) -> Digest | None:
        return None

    def diff_id(self) -> Digest:
        return EMPTY_LAYER_DIFF_ID

    def parent(self) -> PushLayer | None:
        return None

    def open(self) -> BinaryIO:
        import io

        return io.BytesIO(b"\0" * 1024)

    def size(self) -> int:
        return 0

    def media_type(self) -> str:
        return DOCKER_LAYER

    def release(self) -> None:
        pass

    def layer(self) -> Layer | None:
        return None


@dataclass
class _Provider:
    store: LayerStore

    def get(self, chain_id: Digest | None) -> PushLayer:
        if chain_id is None:
            return _EmptyLayer()
        return _StoreLayer(self.store.get(chain_id))


def new_layer_providers_from_store(store: LayerStore) -> PushLayerProvider:
    """moby's ``NewLayerProvidersFromStore``: push layers from the layer store."""
    return _Provider(store)
