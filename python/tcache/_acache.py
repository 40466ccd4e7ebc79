"""``acache``: memoizes an ``async def`` (or a plain function, run in the
loop's executor) without ever blocking the event loop.

In-process, concurrent awaits of equal calls on one event loop coalesce:
the first starts one task, the others await it (shielded, so cancelling one
awaiter does not cancel the others' computation). Across processes and
threads the store's lease is taken with ``lookup_nowait``: when another
holder computes, the task sleeps (asyncio.sleep, backing off to 50 ms) and
looks again, so the loop keeps running. Exceptions propagate to every
awaiter of that call and are not cached.

The backend is resolved as C++ acache's (``_tcache.Function("acache",
...)``): ``backend=`` or TCACHE_BACKEND, else memory.

Thread safety: one wrapper may be awaited from any number of event loops
and threads; coalescing is per event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from . import _config
from ._binding import Binder, memory_key
from ._decorate import decorate, options_of
from ._persistent import _Persistent, make_function

_FIRST_BACKOFF = 0.001  # seconds between looks while another holder computes
_MAX_BACKOFF = 0.05


def _build(func: Callable[..., Any], name: str, binder: Binder,
           options: dict[str, Any]) -> tuple[_Persistent, Callable[..., Any]]:
    function = make_function("acache", func, name, options)
    cache = _Persistent(name, function, options.get("serializer"))
    dumps, loads = cache.dumps, cache.loads
    is_coroutine = inspect.iscoroutinefunction(func)
    scope = _config.SCOPE_DISABLED
    inflight: dict[Any, asyncio.Future] = {}  # (loop, memory key) -> task

    async def run(args: tuple, kwargs: dict) -> Any:
        if is_coroutine:
            return await func(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))

    async def compute(bound: tuple, args: tuple, kwargs: dict) -> Any:
        backoff = _FIRST_BACKOFF
        while True:
            found, got = function.lookup_nowait(bound)
            if found:
                return got if loads is None else loads(got)
            if got is not None:
                break
            await asyncio.sleep(backoff)  # another holder computes: look again
            backoff = min(backoff * 2, _MAX_BACKOFF)
        try:
            value = await run(args, kwargs)
        except BaseException:
            function.abandon(got)
            raise
        function.store(got, value if dumps is None else dumps(value))
        return value

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if scope[0] or function.disabled:
            return await run(args, kwargs)
        bound = binder.bind(args, kwargs)
        loop = asyncio.get_running_loop()
        key = (loop, memory_key(bound))
        task = inflight.get(key)
        if task is None:
            task = loop.create_task(compute(bound, args, kwargs))
            inflight[key] = task
            task.add_done_callback(lambda _: inflight.pop(key, None))
        return await asyncio.shield(task)

    return cache, wrapper


def acache(func: Callable[..., Any] | None = None, /, *, name: str | None = None,
           version: int | str | None = None, maxsize: int | None = None,
           ttl: float | None = None, folder_name: str | None = None,
           preferred_engine: str | None = None, backend: str | None = None,
           path: str | None = None, key: Callable[..., Any] | None = None,
           ignore: tuple[str, ...] | str = (), serializer: Any = None, secure: bool = False,
           lease_timeout: float | None = None, capacity_bytes: int | None = None) -> Any:
    """Memoizes an async function; concurrent awaits of equal calls share one run.

    Options as ucache; the backend defaults to TCACHE_BACKEND, else memory.
    """
    return decorate("acache", _build, func, options_of(locals()))
