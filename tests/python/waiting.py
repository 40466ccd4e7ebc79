"""wait_until: waiting for a time-driven event (an expiry) in the Python
tests without asserting on the machine's speed."""

from __future__ import annotations

import time
from typing import Callable

import pytest


def wait_until(predicate: Callable[[], bool], what: str, deadline: float = 30.0) -> None:
    """Polls `predicate` until it holds; fails the test after `deadline` s."""
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {deadline} s")
        time.sleep(0.005)
