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


def test_waits_only_for_announced_requests():
    """A long max_wait is spent only while another request is announced (still decoding):
    the announced late request joins the first one's batch, and a lone request never waits
    (with max_wait = 60 s, the 20-s guard below would trip if it did)."""
    calls = []

    async def main():
        batcher = MicroBatcher(_forward(calls), max_batch=16, max_wait_s=60)
        await batcher.start()
        lone = await asyncio.wait_for(batcher.embed([np.ones((2, 2))]), 20)

        late_withdraw = batcher.announce()

        async def late():
            await asyncio.sleep(0.2)           # "decoding" while the first one is queued
            late_withdraw()
            return await batcher.embed([np.full((1, 3), 2.0)])

        first = batcher.announce()
        first()
        timings: dict = {}
        pair = await asyncio.wait_for(asyncio.gather(
            batcher.embed([np.ones((1, 1))], timings), late()), 20)
        gave_up = batcher.announce()
        gave_up()                               # a bad upload withdraws without embedding
        gave_up()                               # idempotent
        after = await asyncio.wait_for(batcher.embed([np.ones((1, 1))]), 20)
        await batcher.stop()
        return lone, pair, after, timings

    lone, pair, after, timings = asyncio.run(main())
    assert calls == [1, 2, 1]                  # the late request shared the second pass
    np.testing.assert_array_equal(lone, [[4.0, 4.0]])
    np.testing.assert_array_equal(pair[0], [[1.0, 1.0]])
    np.testing.assert_array_equal(pair[1], [[6.0, 3.0]])
    np.testing.assert_array_equal(after, [[1.0, 1.0]])
    assert timings["batch"] == 2 and timings["queue"] >= 0 and timings["forward"] >= 0
