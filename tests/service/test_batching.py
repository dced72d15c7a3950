"""MicroBatcher: requests share forward passes, each gets exactly its own rows, errors reach all."""

import asyncio

import numpy as np
import pytest

from radsearch.service.batching import MicroBatcher


def _forward(calls):
    def forward(batch):
        calls.append(len(batch))
        return np.stack([np.array([im.sum(), im.size], np.float64) for im in batch])
    return forward


def test_concurrent_requests_are_batched_and_routed():
    calls = []

    async def main():
        batcher = MicroBatcher(_forward(calls), max_batch=64, max_wait_s=0.05)
        await batcher.start()
        requests = [[np.full((2, 2), 10 * r + i, np.float64) for i in range(r % 3 + 1)]
                    for r in range(20)]
        answers = await asyncio.gather(*(batcher.embed(images) for images in requests))
        await batcher.stop()
        return requests, answers, batcher

    requests, answers, batcher = asyncio.run(main())
    for images, rows in zip(requests, answers):
        np.testing.assert_array_equal(rows[:, 0], [im.sum() for im in images])
    assert sum(calls) == sum(len(r) for r in requests) == batcher.images
    assert len(calls) < len(requests) and batcher.batches == len(calls)


def test_one_at_a_time_and_errors():
    calls = []

    def failing(batch):
        raise ValueError("model broke")

    async def main():
        single = MicroBatcher(_forward(calls), max_batch=1, max_wait_s=0.05)
        await single.start()
        await asyncio.gather(*(single.embed([np.ones((1, 1))]) for _ in range(5)))
        await single.stop()
        broken = MicroBatcher(failing, max_batch=8)
        await broken.start()
        results = await asyncio.gather(*(broken.embed([np.ones((1, 1))]) for _ in range(3)),
                                       return_exceptions=True)
        ok = await asyncio.gather(broken.embed([np.ones((1, 1))]), return_exceptions=True)
        await broken.stop()
        return results, ok

    results, ok = asyncio.run(main())
    assert calls == [1] * 5
    assert all(isinstance(r, ValueError) for r in results + ok)   # worker survives a failure
