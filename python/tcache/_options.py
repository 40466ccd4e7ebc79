"""Checking decorator and config options before anything is opened.

Every decorator, ``create_cache_config`` and ``CacheContext`` validate their
keyword options here, so a bad one raises ``ConfigurationError`` (also a
``ValueError``) naming the option and saying what it accepts, when the
decorator is made rather than at the first call. The extension checks the
persistent options again with the C++ messages; this module adds the
Python-side ones (types, ``policy``, ``serializer``, ``preferred_engine``).

Thread safety: pure functions.
"""

from __future__ import annotations

import os
from typing import Any

POLICIES = ("lru", "lfu", "fifo")

# Every option a decorator or create_cache_config accepts.
KNOWN = frozenset({
    "name", "version", "maxsize", "ttl", "policy", "folder_name", "path", "remote",
    "preferred_engine", "backend", "compress", "secure", "serializer", "lease_timeout",
    "key", "ignore", "capacity_bytes",
})


def configuration_error(message: str) -> Exception:
    """A ``tcache.ConfigurationError`` (code invalid_option) with ``message``."""
    from .errors import ConfigurationError
    return ConfigurationError("tcache: " + message)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(option: str, value: Any, *, positive: bool = False) -> float | None:
    """``value`` as float seconds (None stays None); rejects negatives, NaN, non-numbers."""
    if value is None:
        return None
    if not _is_number(value) or value != value:
        raise configuration_error(f"option '{option}' must be a number of seconds (a float "
                                  f"or int) or None, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise configuration_error(f"option '{option}' must be "
                                  f"{'positive' if positive else 'zero or positive'}, "
                                  f"not {value!r}")
    return float(value)


def positive_int(option: str, value: Any, unit: str) -> int | None:
    """A positive int count of ``unit`` (not a bool), or None."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise configuration_error(f"option '{option}' must be a positive number of {unit} or "
                                  f"None, not {value!r}")
    return value


def policy(value: Any) -> str:
    if value not in POLICIES:
        raise configuration_error(f"option 'policy' must be one of {', '.join(POLICIES)}, "
                                  f"not {value!r}")
    return value


def version(value: Any) -> str:
    """The version as C++ takes it: a string; an int becomes its decimal string."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise configuration_error(f"option 'version' must be a str or an int, not {value!r}")
    return str(value)


def text(option: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise configuration_error(f"option '{option}' must be a non-empty str or None, "
                                  f"not {value!r}")
    return value


def path(option: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise configuration_error(f"option '{option}' must be a path (str or os.PathLike) "
                                  f"or None, not {value!r}")
    return os.fspath(value)


def flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise configuration_error(f"option '{option}' must be True or False, not {value!r}")
    return value


def backend(preferred_engine: Any, backend_: Any) -> str | None:
    """ucache/acache's backend spec from ``backend=`` or the original's ``preferred_engine=``.

    ``preferred_engine`` takes "memory", "file" (or "disk") or a URI;
    ``backend`` takes what C++ takes ("memory", "file", "file:///abs",
    "file:rel", "redis://host:port/db", "redis+unix:///path").
    """
    if preferred_engine is not None and backend_ is not None:
        raise configuration_error("options 'preferred_engine' and 'backend' both name a "
                                  "backend; give one of them")
    if preferred_engine is not None:
        engine = text("preferred_engine", preferred_engine)
        if engine == "disk":
            return "file"
        if engine == "redis":
            raise configuration_error("option 'preferred_engine': 'redis' needs the server: "
                                      "give its URI, e.g. 'redis://127.0.0.1:6379/0'")
        return engine
    return text("backend", backend_)


def serializer(value: Any) -> Any:
    """None, "pickle", or an object with ``dumps`` and ``loads``."""
    if value is None or value == "pickle":
        return value
    if callable(getattr(value, "dumps", None)) and callable(getattr(value, "loads", None)):
        return value
    raise configuration_error(f"option 'serializer' must be None, 'pickle' or an object with "
                              f"dumps() and loads(), not {value!r}")


def check(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """The validated, normalised copy of ``options`` for decorator ``kind``.

    Unknown names raise ConfigurationError listing the known ones.
    """
    unknown = sorted(set(options) - KNOWN)
    if unknown:
        raise configuration_error(f"{kind}: unknown option(s) {unknown}; known: "
                                  f"{sorted(KNOWN)}")
    out = dict(options)
    if "name" in out:
        out["name"] = text("name", out["name"])
    if "version" in out:
        out["version"] = version(out["version"])
    if "maxsize" in out:
        out["maxsize"] = positive_int("maxsize", out["maxsize"], "entries")
    if "capacity_bytes" in out:
        # the extension checks the range: 1 MiB to 1 TiB
        out["capacity_bytes"] = positive_int("capacity_bytes", out["capacity_bytes"], "bytes")
    if "ttl" in out:
        out["ttl"] = seconds("ttl", out["ttl"])
    if "lease_timeout" in out:
        out["lease_timeout"] = seconds("lease_timeout", out["lease_timeout"], positive=True)
    if "policy" in out:
        out["policy"] = policy(out["policy"])
    for option in ("folder_name", "path"):
        if option in out:
            out[option] = path(option, out[option])
    if "remote" in out:
        out["remote"] = text("remote", out["remote"])
    if "preferred_engine" in out or "backend" in out:
        out["backend"] = backend(out.pop("preferred_engine", None), out.get("backend"))
    for option in ("compress", "secure"):
        if option in out:
            out[option] = flag(option, out[option])
    if "serializer" in out:
        out["serializer"] = serializer(out["serializer"])
    if out.get("key") is not None and not callable(out["key"]):
        raise configuration_error(f"option 'key' must be a function of the call's arguments, "
                                  f"not {out['key']!r}")
    if "ignore" in out:
        ignore = out["ignore"]
        ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore or ())
        if not all(isinstance(n, str) for n in ignore):
            raise configuration_error(f"option 'ignore' must be argument names (str), "
                                      f"not {out['ignore']!r}")
        out["ignore"] = ignore
    return out
