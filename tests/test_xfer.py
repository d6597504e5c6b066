"""moby's xfer tests (moby distribution/xfer/*_test.go) against our transfer, download and upload managers."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
import time
from pathlib import Path

import docker_distribution as dd
import pytest
from docker_distribution import errors as E
from docker_distribution.progress import CollectingProgress, Progress
from docker_distribution.store.layers import LayerStore, PendingLayer, chain_id
from docker_distribution.descriptor import Descriptor
from docker_distribution.xfer import (
    LayerDownloadManager,
    TransferContext,
    TransferManager,
)
from docker_distribution.xfer.upload import LayerUploadManager


def _counting_job(steps: int = 10, delay: float = 0.005, inactive_at: int | None = None):  # type: ignore[no-untyped-def]
    def job(ctx: TransferContext) -> int:
        ctx.wait_for_slot()
        for i in range(1, steps + 1):
            if inactive_at == i:
                ctx.inactive()
            ctx.check()
            ctx.progress(Progress("job", action="Working", current=i, total=steps))
            time.sleep(delay)
        return steps

    return job


class Tracker:
    def __init__(self) -> None:
        self.items: list[int] = []

    def write_progress(self, p: Progress) -> None:
        self.items.append(p.current)


def test_transfer() -> None:
    tm = TransferManager(5)
    jobs = []
    for i in range(3):
        tracker = Tracker()
        t, w = tm.transfer(f"t{i}", _counting_job(), tracker)
        jobs.append((t, w, tracker))
    for t, w, tracker in jobs:
        assert t.done.wait(5)
        assert t.error is None
        assert tracker.items == sorted(tracker.items) and tracker.items[-1] == 10
        t.release(w)
        assert t.released.wait(5)


def _limited(limit: int, inactive_at: int | None) -> int:
    tm = TransferManager(limit)
    running = 0
    peak = 0
    lock = threading.Lock()

    def job(ctx: TransferContext) -> int:
        nonlocal running, peak
        ctx.wait_for_slot()
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            for i in range(1, 11):
                if inactive_at == i:
                    with lock:
                        running -= 1
                    ctx.inactive()
                time.sleep(0.003)
                ctx.progress(Progress("j", action="x", current=i, total=10))
        finally:
            if inactive_at is None:
                with lock:
                    running -= 1
        return 10

    started = [tm.transfer(f"k{i}", job, CollectingProgress()) for i in range(8)]
    for t, _ in started:
        assert t.done.wait(10) and t.result == 10 and t.error is None
    return peak


def test_concurrency_limit() -> None:
    assert _limited(3, None) <= 3


def test_inactive_jobs_release_their_slot() -> None:
    assert _limited(3, 5) <= 3  # all 8 finish although they keep running after going inactive


def test_watch_release_cancels_the_transfer() -> None:
    tm = TransferManager(5)
    t, first = tm.transfer("k", _counting_job(steps=1000, delay=0.01), CollectingProgress())
    outs = [CollectingProgress() for _ in range(4)]
    watchers = [first] + [t.watch(o) for o in outs]
    deadline = time.monotonic() + 5  # a loaded machine may be slow to run the job's first steps
    while not all(o.items for o in outs) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(o.items for o in outs), "every watcher receives progress"
    assert not t.done.is_set()  # released while still running
    for w in watchers:
        t.release(w)
    assert t.done.wait(5) and isinstance(t.error, E.OperationCancelledError)
    assert t.released.wait(5)


def test_watch_finished_transfer() -> None:
    tm = TransferManager(5)
    t, w1 = tm.transfer("k", _counting_job(steps=3), CollectingProgress())
    w2 = t.watch(CollectingProgress())
    assert t.done.wait(5)
    late = CollectingProgress()
    w3 = t.watch(late)
    assert late.items and late.items[-1].current == 3  # a late watcher still sees the last progress
    for w in (w1, w2, w3):
        t.release(w)
    assert t.released.wait(5)


def test_duplicate_transfer_runs_once() -> None:
    tm = TransferManager(5)
    calls = 0
    lock = threading.Lock()

    def job(ctx: TransferContext) -> int:
        nonlocal calls
        with lock:
            calls += 1
        return _counting_job(steps=20)(ctx)  # type: ignore[no-any-return]

    pairs = [tm.transfer("same", job, CollectingProgress()) for _ in range(5)]
    assert len({id(t) for t, _ in pairs}) == 1
    t = pairs[0][0]
    assert t.done.wait(5) and calls == 1
    for tt, w in pairs:
        tt.release(w)
    assert t.released.wait(5) and t.done.is_set()


# --- the download manager -------------------------------------------------------------------


def _layer(id: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = (id * 5).encode()
        info = tarfile.TarInfo(id)
        info.size, info.mtime = len(data), 1
        t.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


class MockDescriptor:
    concurrent = 0
    peak = 0
    lock = threading.Lock()

    def __init__(self, id: str, *, retries: int = 0, diff_id: dd.Digest | None = None) -> None:
        self._id = id
        self.data = _layer(id)
        self.retries = retries
        self.attempts = 0
        self._diff_id = diff_id
        self.registered_diff_id: dd.Digest | None = None

    def key(self) -> str:
        return self._id

    def id(self) -> str:
        return self._id

    def diff_id(self) -> dd.Digest:
        if self._diff_id is None:
            raise E.ObjectNotFoundError("unknown")
        return self._diff_id

    def expected(self) -> tuple[dd.Digest | None, int | None]:
        return dd.digest_bytes(self.data), len(self.data)

    def registered(self, diff_id: dd.Digest) -> None:
        self.registered_diff_id = diff_id

    def download(self, ctx: TransferContext, pending: PendingLayer) -> None:
        with MockDescriptor.lock:
            MockDescriptor.concurrent += 1
            MockDescriptor.peak = max(MockDescriptor.peak, MockDescriptor.concurrent)
        try:
            for i in range(11):
                ctx.check()
                ctx.progress(Progress(self._id, action="Downloading", current=i, total=10))
                time.sleep(0.01)
            self.attempts += 1
            if self.attempts <= self.retries:
                raise E.DistributionError(f"simulating download attempt failure {self.attempts}/{self.retries}")
            pending.feed(self.data)
        finally:
            with MockDescriptor.lock:
                MockDescriptor.concurrent -= 1


def _tar_digest(id: str) -> dd.Digest:
    return dd.digest_bytes(gzip.decompress(_layer(id)))


def test_successful_download(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    first = store.register(io.BytesIO(_layer("id1")), None)
    first.release()
    manager = LayerDownloadManager(store, 3, wait_duration=0.001)
    descs = [MockDescriptor("id1", diff_id=_tar_digest("id1")), MockDescriptor("id2"), MockDescriptor("id3"),
             MockDescriptor("id2"), MockDescriptor("id4", retries=1), MockDescriptor("id5")]
    out = CollectingProgress()
    MockDescriptor.peak = 0
    rootfs, release = manager.download([], descs, out)
    try:
        assert rootfs == [_tar_digest(i) for i in ("id1", "id2", "id3", "id2", "id4", "id5")]
        assert out.last("id1").action == "Already exists"
        for i in ("id2", "id3", "id4", "id5"):
            assert out.last(i).action == "Pull complete", i
        assert [d.registered_diff_id for d in descs] == rootfs
        assert MockDescriptor.peak <= 3
        assert any(p.action.startswith("Retrying in") for p in out.items if p.id == "id4")
        top: dd.Digest | None = None
        for d in rootfs:
            top = chain_id(top, d)
        assert top is not None and store.exists(top)
    finally:
        release()


def test_cancelled_download(tmp_path: Path) -> None:
    manager = LayerDownloadManager(LayerStore(tmp_path), 3, wait_duration=0.001)
    cancel = threading.Event()
    threading.Timer(0.001, cancel.set).start()
    with pytest.raises(E.OperationCancelledError):
        manager.download([], [MockDescriptor(f"c{i}") for i in range(4)], CollectingProgress(), cancel)


@pytest.mark.parametrize("fails, max_attempts, error", [
    (1, 5, None), (4, 5, None), (5, 5, "simulating download attempt failure 5/5"),
    (1, 1, "simulating download attempt failure 1/1"),
])
def test_max_download_attempts(tmp_path: Path, fails: int, max_attempts: int, error: str | None) -> None:
    manager = LayerDownloadManager(LayerStore(tmp_path), 3, max_attempts=max_attempts, wait_duration=0.0001)
    desc = MockDescriptor("id4", retries=fails)
    if error is None:
        rootfs, release = manager.download([], [desc], CollectingProgress())
        release()
        assert rootfs == [_tar_digest("id4")]
    else:
        with pytest.raises(E.DistributionError) as info:
            manager.download([], [desc], CollectingProgress())
        assert str(info.value) == error


# --- the upload manager (moby distribution/xfer/upload_test.go) ------------------------------------------------------------

# moby's uploadDescriptors: (diffID, simulated failures); the first is there twice
UPLOADS = [
    ("sha256:cbbf2f9a99b47fc460d422812b6a5adff7dfee951d8fa2e4a98caa0382cfbdbf", 0),
    ("sha256:1515325234325236634634608943609283523908626098235490238423902343", 0),
    ("sha256:6929356290463485374960346430698374523437683470934634534953453453", 0),
    ("sha256:cbbf2f9a99b47fc460d422812b6a5adff7dfee951d8fa2e4a98caa0382cfbdbf", 0),
    ("sha256:8159352387436803946235346346368745389534789534897538734598734987", 1),
    ("sha256:4637863963478346897346987346987346789346789364879364897364987346", 0),
]
UPLOAD_LIMIT = 3


class MockUploadDescriptor:
    """moby's mockUploadDescriptor: 11 steps of 10 ms, failing ``retries`` times, and failing
    with ``concurrency limit exceeded`` if more than the manager's limit run at once."""

    lock = threading.Lock()
    running = 0
    peak = 0

    def __init__(self, diff_id: str, retries: int = 0) -> None:
        self.diff_id = diff_id
        self.retries = retries
        self.attempts = 0
        self.finished = 0
        self.remote: Descriptor | None = None

    def key(self) -> str:
        return self.diff_id

    def id(self) -> str:
        return self.diff_id

    def upload(self, ctx: TransferContext) -> Descriptor:
        with MockUploadDescriptor.lock:
            MockUploadDescriptor.running += 1
            MockUploadDescriptor.peak = max(MockUploadDescriptor.peak, MockUploadDescriptor.running)
            over = MockUploadDescriptor.running > UPLOAD_LIMIT
        try:
            self.attempts += 1
            if over:
                raise E.DistributionError("concurrency limit exceeded")
            for i in range(11):
                ctx.check()
                time.sleep(0.01)
                ctx.progress(Progress(self.diff_id, action="Pushing", current=i, total=10))
            if self.retries:
                self.retries -= 1
                raise E.DistributionError("simulating retry")
            self.finished += 1
            return Descriptor(media_type="application/vnd.docker.image.rootfs.diff.tar.gzip",
                              digest=dd.Digest.parse(self.diff_id), size=11)
        finally:
            with MockUploadDescriptor.lock:
                MockUploadDescriptor.running -= 1

    def set_remote_descriptor(self, d: Descriptor) -> None:
        self.remote = d


def _uploads() -> list[MockUploadDescriptor]:
    MockUploadDescriptor.running = MockUploadDescriptor.peak = 0
    return [MockUploadDescriptor(d, r) for d, r in UPLOADS]


def test_successful_upload() -> None:
    manager = LayerUploadManager(UPLOAD_LIMIT, wait_duration=0.001)
    descs = _uploads()
    out = CollectingProgress()
    manager.upload(descs, out)
    assert MockUploadDescriptor.peak <= UPLOAD_LIMIT
    # the duplicate key is uploaded once, and both descriptors learn the result
    assert [d.attempts for d in descs] == [1, 1, 1, 0, 2, 1]
    assert sum(d.finished for d in descs) == 5
    assert all(d.remote is not None and str(d.remote.digest) == d.diff_id for d in descs)
    retried = UPLOADS[4][0]
    assert any(p.id == retried and p.action.startswith("Retrying in") for p in out.items)
    assert {p.id for p in out.items if p.action == "Preparing"} == {d for d, _ in UPLOADS}
    assert any(p.action == "Waiting" for p in out.items)  # 5 distinct uploads, 3 slots


def test_cancelled_upload() -> None:
    manager = LayerUploadManager(UPLOAD_LIMIT, wait_duration=0.001)
    descs = _uploads()
    cancel = threading.Event()
    threading.Timer(0.001, cancel.set).start()
    with pytest.raises(E.OperationCancelledError):
        manager.upload(descs, CollectingProgress(), cancel)
    # the running uploads are cancelled too (each needs 110 ms to finish): none completes
    deadline = time.monotonic() + 5
    while MockUploadDescriptor.running and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert MockUploadDescriptor.running == 0
    assert sum(d.finished for d in descs) == 0 and all(d.remote is None for d in descs)


# --- limits (moby's defaults: negative counts are refused; a concurrency of 0 means no limit) ----------

def test_negative_counts_are_refused_with_mobys_messages(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    cases = [
        (lambda: LayerDownloadManager(store, -1), "invalid max concurrent downloads: -1"),
        (lambda: LayerDownloadManager(store, max_attempts=-2), "invalid max download attempts: -2"),
        (lambda: LayerDownloadManager(store).set_concurrency(-3), "invalid max concurrent downloads: -3"),
        (lambda: LayerUploadManager(-1), "invalid max concurrent uploads: -1"),
        (lambda: LayerUploadManager().set_concurrency(-4), "invalid max concurrent uploads: -4"),
    ]
    for make, message in cases:
        with pytest.raises(E.InvalidOptionError) as info:
            make()
        assert str(info.value) == message


def test_a_concurrency_of_zero_means_no_limit() -> None:
    tm = TransferManager(0)
    go = threading.Event()

    def job(ctx: TransferContext) -> int:
        ctx.wait_for_slot()
        go.wait(5)
        return 1

    started = [tm.transfer(f"k{i}", job, CollectingProgress()) for i in range(8)]
    assert all(t.started for t, _ in started) and tm.active == 8  # none waits for a slot
    go.set()
    for t, w in started:
        assert t.done.wait(5) and t.result == 1
        t.release(w)
