"""acache: coalescing awaits, the event loop never blocked, exceptions,
backends, sync functions, methods."""

import asyncio
import threading

import pytest

import tcache


@pytest.fixture(autouse=True)
def cache_dir(tmp_cache_dir):
    with tcache.config(dir=str(tmp_cache_dir)):
        yield tmp_cache_dir


def test_concurrent_awaits_of_equal_calls_coalesce():
    runs = []

    async def main():
        release = asyncio.Event()

        @tcache.acache
        async def fetch(x, y=1):
            runs.append(x)
            await release.wait()
            return x + y

        waiting = [asyncio.ensure_future(fetch(1)) for _ in range(5)]
        waiting.append(asyncio.ensure_future(fetch(1, y=1)))
        waiting.append(asyncio.ensure_future(fetch(2)))
        while len(runs) < 2:
            await asyncio.sleep(0)
        release.set()
        results = await asyncio.gather(*waiting)
        assert await fetch(1) == 2  # now a stored hit
        return results

    assert asyncio.run(main()) == [2] * 6 + [3]
    assert sorted(runs) == [1, 2]


def test_exceptions_reach_every_awaiter_and_are_not_cached():
    runs = []

    async def main():
        gate = asyncio.Event()

        @tcache.acache(name="acache.fails")
        async def fails(x):
            runs.append(x)
            await gate.wait()
            raise KeyError(x)

        first = [asyncio.ensure_future(fails(1)) for _ in range(3)]
        while not runs:
            await asyncio.sleep(0)
        gate.set()
        outcomes = await asyncio.gather(*first, return_exceptions=True)
        assert all(isinstance(o, KeyError) for o in outcomes)
        with pytest.raises(KeyError):
            await fails(1)

    asyncio.run(main())
    assert runs == [1, 1]


def test_cancelling_one_awaiter_leaves_the_others_their_value():
    async def main():
        release = asyncio.Event()
        started = asyncio.Event()

        @tcache.acache
        async def slow(x):
            started.set()
            await release.wait()
            return x * 10

        a = asyncio.ensure_future(slow(4))
        b = asyncio.ensure_future(slow(4))
        await started.wait()
        a.cancel()
        release.set()
        assert await b == 40
        with pytest.raises(asyncio.CancelledError):
            await a

    asyncio.run(main())


def test_sync_function_runs_in_the_executor_and_loop_keeps_running():
    entered = threading.Event()
    release = threading.Event()

    @tcache.acache
    def blocking(x):
        entered.set()
        release.wait()
        return -x

    async def main():
        task = asyncio.ensure_future(blocking(3))
        ticks = 0
        while not entered.is_set():
            await asyncio.sleep(0.001)
        for _ in range(10):  # the loop runs while the function blocks its thread
            await asyncio.sleep(0)
            ticks += 1
        release.set()
        assert await task == -3
        assert await blocking(3) == -3
        return ticks

    assert asyncio.run(main()) == 10
    assert blocking.cache_info()["hits"] >= 1


def test_file_backend_persists_and_waits_on_another_holder_without_blocking(tmp_cache_dir):
    """A lease held by another (a thread with the blocking API) is awaited, not blocked on."""
    path = str(tmp_cache_dir / "async.tcache")
    runs = []

    @tcache.acache(name="acache.file", backend="file", path=path)
    async def compute(x):
        runs.append(x)
        return x + 100

    holder = tcache.ucache(name="acache.file", backend="file", path=path)
    holding = threading.Event()
    release = threading.Event()

    def held(x):
        holding.set()
        release.wait()
        return x + 100

    held_wrapper = holder(held)
    thread = threading.Thread(target=held_wrapper, args=(5,))
    thread.start()
    holding.wait()

    async def main():
        task = asyncio.ensure_future(compute(5))
        for _ in range(20):  # the loop is free while the lease is held elsewhere
            await asyncio.sleep(0.001)
        assert not task.done()
        release.set()
        return await task

    assert asyncio.run(main()) == 105
    thread.join()
    assert runs == []  # the holder's value was taken, not recomputed
    assert "file" in compute.cache_info()["backend"]


def test_methods_and_bare_called_forms():
    class Client:
        def __init__(self, base):
            self.base = base

        @tcache.acache(ignore=("self",))
        async def get(self, path):
            return self.base + path

    async def main():
        return await Client("a/").get("b"), await Client("x/").get("b")

    assert asyncio.run(main()) == ("a/b", "a/b")  # self ignored: one key
