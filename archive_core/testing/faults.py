"""Fault wrappers a driver author applies to their own driver's I/O seam.

A seam is any callable the driver goes through for its I/O: a method of its client class,
`os.write`, a file object's `write`. Wrap it to see what the driver does when storage
misbehaves, with `injected` (a context manager, usable with or without pytest):

    from archive_core.testing import faults

    with faults.injected(MyClient, "upload_part", faults.fail_on_call(2)):
        ...  # the second upload_part raises OSError(EIO); the file must fail alone

    with faults.injected(MyClient, "read", faults.truncate(after=1000)):
        ...  # reads end after 1000 bytes; the sha1 check must catch it

    answer = threading.Event()
    with faults.injected(driver, "check_ready", faults.stall(until=answer)):
        ...  # check_ready() hangs until answer.set(): storage that stopped answering

Every wrapper counts calls across threads; `calls` tells how often the seam was used.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any


class Fault:
    """A wrapper factory: `fault(original)` returns the misbehaving callable."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def _count(self) -> int:
        with self._lock:
            self.calls += 1
            return self.calls

    def __call__(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            return self.call(original, self._count(), args, kwargs)

        return wrapped

    def call(self, original: Callable[..., Any], number: int, args: Any, kwargs: Any) -> Any:
        raise NotImplementedError


class _FailOnCall(Fault):
    def __init__(self, number: int, error: BaseException | None) -> None:
        super().__init__()
        if number < 1:
            raise ValueError("calls are counted from 1")
        self.number = number
        self.error = error

    def call(self, original: Callable[..., Any], number: int, args: Any, kwargs: Any) -> Any:
        if number == self.number:
            raise self.error or OSError(errno.EIO, "Input/output error (injected by the kit)")
        return original(*args, **kwargs)


def fail_on_call(number: int, error: BaseException | None = None) -> Fault:
    """The `number`-th call (from 1) raises `error` (default: OSError EIO); others pass through."""
    return _FailOnCall(number, error)


class _Transient(Fault):
    def __init__(self, failures: int, error: BaseException | None) -> None:
        super().__init__()
        self.failures = failures
        self.error = error

    def call(self, original: Callable[..., Any], number: int, args: Any, kwargs: Any) -> Any:
        if number <= self.failures:
            raise self.error or ConnectionResetError(
                errno.ECONNRESET, "Connection reset by peer (injected by the kit)"
            )
        return original(*args, **kwargs)


def transient(failures: int = 1, error: BaseException | None = None) -> Fault:
    """The first `failures` calls raise a network error (default ECONNRESET), then all pass.

    What a driver with retries must survive, and one without must report as retryable.
    """
    return _Transient(failures, error)


class _Truncate(Fault):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after = after
        self.passed = 0

    def call(self, original: Callable[..., Any], number: int, args: Any, kwargs: Any) -> Any:
        with self._lock:
            room = max(self.after - self.passed, 0)
        if room == 0:
            return 0 if _is_readinto(original, args) else b""
        result = original(*args, **kwargs)
        if isinstance(result, int):  # readinto-like: bytes beyond `room` are not reported
            count = min(result, room)
        elif isinstance(result, bytes | bytearray | memoryview):
            result = bytes(result)[:room]
            count = len(result)
        else:
            return result
        with self._lock:
            self.passed += count
        return count if isinstance(result, int) else result


def _is_readinto(original: Callable[..., Any], args: Any) -> bool:
    name = getattr(original, "__name__", "")
    return "readinto" in name or (bool(args) and isinstance(args[-1], memoryview | bytearray))


def truncate(after: int) -> Fault:
    """Reads (`read` or `readinto`) end after `after` bytes in all, as a cut-off file would."""
    return _Truncate(after)


class _Stall(Fault):
    def __init__(self, until: threading.Event) -> None:
        super().__init__()
        self.until = until

    def call(self, original: Callable[..., Any], number: int, args: Any, kwargs: Any) -> Any:
        self.until.wait()  # released by the test, never by a clock
        return original(*args, **kwargs)


def stall(until: threading.Event) -> Fault:
    """Every call waits until `until` is set, then passes through: storage that hangs.

    Set the event before the test ends (in a `finally`), or the calls wait for ever.
    """
    return _Stall(until)


@contextlib.contextmanager
def injected(owner: Any, attribute: str, fault: Fault) -> Iterator[Fault]:
    """Replace `owner.attribute` by `fault(original)` for the duration; yields the fault.

    `owner` may be a class (the fault then applies to every instance's method), a module, or
    one object; afterwards it is exactly as before, inherited attributes included.
    """
    original = getattr(owner, attribute)
    own = attribute in getattr(owner, "__dict__", {attribute: None})
    raw = owner.__dict__.get(attribute) if isinstance(owner, type) else None
    wrapped: Any = fault(original)
    if isinstance(raw, staticmethod | classmethod):
        wrapped = staticmethod(wrapped)  # `original` is already bound (or needs no binding)
    setattr(owner, attribute, wrapped)
    try:
        yield fault
    finally:
        if not own:
            delattr(owner, attribute)
        else:
            setattr(owner, attribute, raw if raw is not None else original)
