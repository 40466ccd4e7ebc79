"""The compiled extension ``_tcache``, imported on first use.

The pure-Python parts of the package (``mcache``, signature binding, the
memory ``CacheContext``) work without it; everything persistent (``Store``,
``bcache``, ``fcache``, ``ucache``, ``acache``, ``config``) needs it. A
missing extension is reported once, when first needed, with how to build it.

Thread safety: ``native()`` may be called from any thread (the import lock
serialises the first import).
"""

from __future__ import annotations

import importlib
import types

_module: types.ModuleType | None = None


def native() -> types.ModuleType:
    """Returns the ``tcache._tcache`` extension module.

    Raises ImportError saying how to build it when it is not there.
    """
    global _module
    if _module is None:
        try:
            _module = importlib.import_module("tcache._tcache")
        except ImportError as e:
            raise ImportError(
                "tcache: the compiled extension tcache._tcache cannot be imported "
                f"({e}); build it with `cmake --build build` and set "
                "PYTHONPATH=build/python, or `pip install --no-build-isolation ./python`, "
                "and use /usr/bin/python3 (the interpreter it is built for)"
            ) from e
    return _module

