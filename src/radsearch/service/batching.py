"""Micro-batching: concurrent requests share one model forward pass, run outside the event loop.

Each request submits its images and awaits a future. One worker task takes everything queued,
waits up to ``max_wait_s`` for more (up to ``max_batch`` images), runs ``forward`` once on the
whole batch in a single dedicated thread (the event loop keeps accepting requests meanwhile), and
hands every request its own rows back. With ``max_batch=1`` it degenerates to one-at-a-time, the
reference the benchmark compares against.

The wait is only worth it when another request is on its way: requests ``announce()`` themselves
while their uploads are still being decoded, and the worker stops waiting as soon as the queue is
empty and nobody is announced (a lone client pays no batching delay).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class _Job:
    images: Sequence[np.ndarray]
    future: asyncio.Future
    queued: float                    # loop time when submitted
    timings: dict | None = None      # filled with queue / forward seconds and the batch size


class MicroBatcher:
    """``await batcher.embed(images)`` → rows of ``forward(all queued images)`` for this request."""

    def __init__(self, forward: Callable[[list[np.ndarray]], np.ndarray], max_batch: int = 16,
                 max_wait_s: float = 0.005):
        self.forward = forward
        self.max_batch = max(1, int(max_batch))
        self.max_wait_s = max(0.0, float(max_wait_s))
        self._queue: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                           thread_name_prefix="radsearch-model")
        self.batches = 0            # forward passes run (for /health and the benchmark)
        self.images = 0
        self._coming = 0            # requests announced (decoding) that have not submitted yet

    def announce(self) -> Callable[[], None]:
        """A request will call ``embed`` soon; call the returned function (idempotent) once it
        has, or when it gives up (a bad upload), before its ``embed``."""
        self._coming += 1
        withdrawn = False

        def withdraw() -> None:
            nonlocal withdrawn
            if not withdrawn:
                withdrawn = True
                self._coming -= 1
        return withdraw

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._pool.shutdown(wait=True)

    async def embed(self, images: Sequence[np.ndarray], timings: dict | None = None) -> np.ndarray:
        """This request's rows; ``timings`` (optional) receives ``queue`` (seconds waiting for
        the model thread), ``forward`` (seconds of the shared pass) and ``batch`` (its size)."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        await self._queue.put(_Job(list(images), future, loop.time(), timings))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            size = len(jobs[0].images)
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                if self._queue.empty() and self._coming <= 0:
                    break                    # nobody else is on the way: do not wait
                timeout = deadline - loop.time()
                try:
                    job = (self._queue.get_nowait() if timeout <= 0
                           else await asyncio.wait_for(self._queue.get(), timeout))
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
                size += len(job.images)
            await self._forward(loop, jobs)

    async def _forward(self, loop, jobs: list[_Job]) -> None:
        batch = [image for job in jobs for image in job.images]
        started = loop.time()
        try:
            rows = await loop.run_in_executor(self._pool, self.forward, batch)
        except Exception as exc:  # noqa: BLE001 — handed to every waiting request
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self.batches += 1
        self.images += len(batch)
        took = loop.time() - started
        start = 0
        for job in jobs:
            if job.timings is not None:
                job.timings.update(queue=started - job.queued, forward=took, batch=len(batch))
            stop = start + len(job.images)
            if not job.future.done():
                job.future.set_result(rows[start:stop])
            start = stop
