"""Transfer scheduling (moby's ``distribution/xfer``): concurrency limits, deduplication of
identical transfers, retries with countdowns, and the layer download/upload managers."""

from .download import DownloadDescriptor, LayerDownloadManager
from .transfer import (
           DEFAULT_WAIT_DURATION,
           Transfer,
           TransferContext,
           TransferManager,
           Watcher,
)

__all__ = ["DEFAULT_WAIT_DURATION", "DownloadDescriptor", "LayerDownloadManager", "Transfer", "TransferContext",
           "TransferManager", "Watcher"]
