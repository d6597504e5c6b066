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
from .upload import LayerUploadManager, UploadDescriptor

__all__ = ["DEFAULT_WAIT_DURATION", "DownloadDescriptor", "LayerDownloadManager", "LayerUploadManager", "UploadDescriptor", "Transfer", "TransferContext",
           "TransferManager", "Watcher"]
