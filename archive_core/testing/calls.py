"""Calling a driver directly, as the core would, and holding each call to the contract's shape.

Through the Portal face the core repairs what a driver returns: a missing outcome becomes a
failure, a repeated or unknown one is dropped, a failure without a reason gets one, a raise
fails the whole batch. The checks that use these helpers call the driver themselves, so none
of those repairs can hide a fault.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from archive_core.model import ArchiveItem, FileOutcome
from archive_core.testing.harness import KIT_POLICY, KIT_TARGET
from archive_core.testing.verdict import ContractViolation, expect

#: The job id of every request the kit makes itself.
KIT_JOB = "kit-direct"


def archive_item(file_set: Any, key: str) -> ArchiveItem:
    """The item the core would hand a driver for Portal's `file_set`."""
    from archive_core.naming import archive_name

    sha1 = file_set.sha1.lower() if file_set.sha1 else None
    return ArchiveItem(
        key=key,
        sources=file_set.files,
        name=archive_name(file_set.files[0], item_id=file_set.item_id, sha1=sha1),
        item_id=file_set.item_id,
        sha1=sha1,
    )


def request(kind: type, items: Iterable[Any]) -> Any:
    """A request of `kind` (ArchiveRequest, StatRequest ...) for the kit's policy and target."""
    return kind(policy=KIT_POLICY, target=KIT_TARGET, job_id=KIT_JOB, items=tuple(items))


def outcomes(what: str, operation: Callable[[Any], Iterable[Any]], sent: Any) -> dict[str, Any]:
    """Every outcome of `operation(sent)` by key, once each has been held to the contract.

    Exactly one `FileOutcome` per item of the request: none missing, none repeated, none for a
    key the request does not hold, and no exception instead of a file's failure.
    """
    wanted = [item.key for item in sent.items]
    seen: dict[str, Any] = {}
    try:
        for outcome in operation(sent):
            expect(
                isinstance(outcome, FileOutcome),
                f"{what}() yielded a {type(outcome).__name__}, not a FileOutcome",
            )
            expect(
                outcome.key in wanted,
                f"{what}() reported key {outcome.key!r}, which is not in its request (its keys: "
                f"{', '.join(map(repr, wanted))}): an outcome carries the key of its item",
            )
            expect(
                outcome.key not in seen,
                f"{what}() reported key {outcome.key!r} twice: exactly one outcome per item",
            )
            seen[outcome.key] = outcome
    except ContractViolation:
        raise
    except Exception as exc:
        raise ContractViolation(
            f"{what}() raised {type(exc).__name__} ({exc}) for a request holding "
            f"{len(wanted)} items: a file's problem is that file's failure outcome, never an "
            "exception, or the core fails every file of the batch with it"
        ) from None
    missing = [key for key in wanted if key not in seen]
    expect(
        not missing,
        f"{what}() reported nothing for {len(missing)} of {len(wanted)} items (keys "
        f"{', '.join(map(repr, missing))}): exactly one outcome per item",
    )
    return seen


def answer_within(seconds: float, call: Callable[[], Any]) -> tuple[bool, Any]:
    """`(True, result)` when `call()` returned within `seconds`, `(False, None)` when not.

    The call runs in a daemon thread, so one that hangs for ever is left behind rather than
    holding the kit (or the interpreter at exit). What it raises is raised here.
    """
    done = threading.Event()
    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(call())
        except BaseException as exc:
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="archive-core-kit-answer", daemon=True).start()
    if not done.wait(seconds):
        return False, None
    if failure:
        raise failure[0]
    return True, result[0]


__all__ = ["KIT_JOB", "answer_within", "archive_item", "outcomes", "request"]
