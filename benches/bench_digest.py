"""sha256: our native digester against ``hashlib.sha256``, in one thread and in two at once.

The two-thread rows hash two separate buffers concurrently; their throughput divided by the
one-thread throughput shows whether the GIL is released (2.0 would be perfect scaling on two cores).
"""

from __future__ import annotations

import argparse
import hashlib
import threading
from collections.abc import Callable

from docker_distribution import _native
from harness import Case, fmt_rate, measure, table, write_result

MiB = 1 << 20
GiB = 1 << 30


def _in_threads(fn: Callable[[bytes], object], buffers: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        threads = [threading.Thread(target=fn, args=(b,)) for b in buffers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return run


def _repeat(fn: Callable[[bytes], object], buf: bytes, times: int) -> Callable[[], None]:
    def run() -> None:
        for _ in range(times):
            fn(buf)
    return run


def ours(b: bytes) -> object:
    return _native.digest_bytes(b)


def peer(b: bytes) -> object:
    return hashlib.sha256(b).digest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--big", type=int, default=GiB, help="size of the large input in bytes")
    args = ap.parse_args()

    small = bytes(range(256)) * (MiB // 256)
    big = [bytes([i]) * args.big for i in (1, 2)]
    reps = 256  # 1 MiB × 256 per timed run, so each run lasts long enough to time

    rows = []
    for label, o, p, nbytes in [
        ("1 MiB ×256, 1 thread", _repeat(ours, small, reps), _repeat(peer, small, reps), reps * MiB),
        (f"{args.big // MiB} MiB, 1 thread", lambda: ours(big[0]), lambda: peer(big[0]), args.big),
        ("1 MiB ×256, 2 threads", _in_threads(lambda b: _repeat(ours, b, reps)(), [small, small]),
         _in_threads(lambda b: _repeat(peer, b, reps)(), [small, small]), 2 * reps * MiB),
        (f"{args.big // MiB} MiB, 2 threads", _in_threads(ours, big), _in_threads(peer, big), 2 * args.big),
    ]:
        rows.append((measure(Case(f"{label}", o, nbytes), args.runs),
                     measure(Case("hashlib.sha256", p, nbytes), args.runs)))

    md = table("sha256: native vs hashlib", rows)
    one_small, one_big, two_small, two_big = (r[0] for r in rows)
    md += "\n| check | value | target |\n|---|---|---|\n"
    for label, (mine, theirs) in (("1 MiB", rows[0]), (f"{args.big // MiB} MiB", rows[1])):
        md += f"| native ÷ hashlib speed, one thread, {label} | {theirs.median / mine.median:.2f}× | ≥ 0.95× |\n"
    md += f"| two-thread ÷ one-thread throughput, 1 MiB | {two_small.throughput / one_small.throughput:.2f}× | ≥ 1.7× |\n"
    md += f"| two-thread ÷ one-thread throughput, {args.big // MiB} MiB | {two_big.throughput / one_big.throughput:.2f}× | ≥ 1.7× |\n"
    md += f"\nOne-thread native rate: {fmt_rate(one_big.throughput)}.\n"
    print(md)
    print(f"written to {write_result('digest', md)}")


if __name__ == "__main__":
    main()
