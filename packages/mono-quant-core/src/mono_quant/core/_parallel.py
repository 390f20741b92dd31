"""Block loops spread over a few Python threads, each torch op single-threaded.

By default every op of a block loop uses PyTorch's intra-op threads: one
fork/join per op, a few hundred per large tensor. When another process holds
a core, each of those joins waits for a descheduled thread and the whole loop
collapses (measured: 3.2x the quiet time with both cores busy, where a fair
share is 2x). Inside :func:`block_threads` the loops instead hand whole blocks
to ``n`` threads that pull the next block as they finish one, and every op runs
on one thread: a busy core slows only the blocks that run on it.

Codes, qparams and dequantized values do not depend on the number of threads:
every block computes the same values. Error sums are combined in block order;
each block's sum is a BLAS dot product, whose rounding depends on its own thread
count, so they agree to float32 rounding (as they do for different
``torch.set_num_threads`` values without this module).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["block_threads", "current_block_threads", "run_blocks"]

T = TypeVar("T")

_lock = threading.Lock()
_local = threading.local()  # .busy: this thread is running a block (nested loops run inline)
_threads = 0  # 0: off, ops use torch's own threads
_pool: ThreadPoolExecutor | None = None
_pool_size = 0


def _forget_pool() -> None:
    # A forked child has the pool object but none of its threads.
    global _pool, _pool_size
    _pool, _pool_size = None, 0


os.register_at_fork(after_in_child=_forget_pool)


def current_block_threads() -> int:
    """The thread count set by the innermost :func:`block_threads`, or 0 outside one."""
    return _threads


@contextlib.contextmanager
def block_threads(threads: int | None = None) -> Iterator[int]:
    """Run mono-quant's block loops on ``threads`` threads, each op single-threaded.

    Use it where the machine is shared (a training node, a laptop, CI): a core
    taken by another process then costs its share of the work and no more.
    ``None`` takes ``torch.get_num_threads()`` as it is on entry. While the block
    is active, ``torch.set_num_threads(1)`` holds for the whole process (every
    thread's torch ops run single-threaded); the previous count is restored on
    exit. Codes, qparams and dequantized values are identical with or without it.
    The setting is process-wide: enter it from one thread at a time (nesting is fine).

    >>> import torch
    >>> from mono_quant.core import PerChannel, QParams, block_threads, quantize
    >>> x = torch.randn(4096, 512)
    >>> scale = x.abs().amax(dim=1) / 127
    >>> qp = QParams(scale, torch.zeros(4096, dtype=torch.int32), dtype="int8", granularity=PerChannel(0))
    >>> with block_threads(2):
    ...     q = quantize(x, qp)
    >>> torch.equal(q, quantize(x, qp))
    True
    """
    global _threads
    if threads is None:
        threads = torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    with _lock:
        previous_threads = _threads
        previous_torch = torch.get_num_threads()
        _threads = threads
        torch.set_num_threads(1)
    try:
        yield threads
    finally:
        with _lock:
            _threads = previous_threads
            torch.set_num_threads(previous_torch)


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mono-quant-block")
            _pool_size = workers
        return _pool


def run_blocks(n_blocks: int, worker: Callable[[], Callable[[int], T]]) -> list[T]:
    """``[work(i) for i in range(n_blocks)]`` where each thread gets ``work = worker()``.

    ``worker`` makes a thread's block function with its own scratch buffers.
    Outside :func:`block_threads` (or for a single block) everything runs in the
    calling thread, in order. Inside, the caller and ``threads - 1`` pool threads
    take the next block index until none is left; the results come back in
    block order, and an exception is raised after every thread has stopped.
    A loop started from inside a block runs inline.
    """
    threads = min(_threads, n_blocks)
    if threads <= 1 or getattr(_local, "busy", False):
        work = worker()
        return [work(i) for i in range(n_blocks)]
    results: list[T | None] = [None] * n_blocks
    counter = itertools.count()
    failed = threading.Event()

    def drain() -> None:
        _local.busy = True
        try:
            work = worker()
            while not failed.is_set():
                i = next(counter)  # atomic under the GIL
                if i >= n_blocks:
                    return
                results[i] = work(i)
        except BaseException:
            failed.set()  # the other threads stop after their current block
            raise
        finally:
            _local.busy = False

    pool = _executor(threads - 1)
    futures: list[Future[None]] = [pool.submit(drain) for _ in range(threads - 1)]
    error: BaseException | None = None
    try:
        drain()
    except BaseException as e:  # noqa: BLE001 -- wait for the others, then raise it
        error = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001 -- raised below
            error = error or e
    if error is not None:
        raise error
    return results  # type: ignore[return-value]
