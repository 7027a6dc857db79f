"""`wait_until`: the one way the suites wait for something to happen."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    what: str | Callable[[], str],
    *,
    interval: float = 0.5,
    details: Callable[[], str] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Calls `predicate()` every `interval` seconds until it returns something truthy, and returns that.

    After `timeout` seconds the test fails naming `what` (a string, or a callable giving one, e.g. with the
    last value seen), followed by `details()` (e.g. the processes' logs). Exceptions of `retry_on` count as
    "not yet" (the last one is named on failure); any other exception, and every AssertionError (a check
    the predicate makes on the way), fails at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except AssertionError:
            raise
        except retry_on as error:
            last_error = error
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    message = f"{what() if callable(what) else what}: not within {timeout:g}s"
    if last_error is not None:
        message += f" (last error: {last_error})"
    if details is not None:
        message += f"\n{details()}"
    raise AssertionError(message)
