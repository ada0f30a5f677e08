"""Checks that call the driver itself with request objects, where the core cannot repair it.

Each builds the requests the core would build (`archive_core.model`), calls the driver's
operation on an instance of its own and reads every outcome as the driver yielded it. They
are registered into `CHECKS` when `archive_core.testing` is imported.
"""

from __future__ import annotations

import os
from typing import Any

from archive_core.driver import Capability
from archive_core.model import (
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)
from archive_core.testing.calls import archive_item, outcomes, request
from archive_core.testing.checks import TRANSIENT_FILE_SIZE, check, part_span
from archive_core.testing.harness import Harness
from archive_core.testing.verdict import ContractViolation, expect

#: Keys of the direct batch's items that must fail, and why (for the messages).
_MUST_FAIL = {
    "missing": "a source that does not exist",
    "wrong": "bytes that do not hash to the item's sha1",
    "nowhere": "a copy that was never archived",
}


def _operations(h: Harness, driver: Any) -> list[tuple[str, dict[str, FileOutcome]]]:
    """Every declared operation called once on a batch where some items must fail.

    Archive gets two good files, a missing one and one whose bytes are not what its sha1
    says; stat, restore, verify and delete then get the two copies and one never made.
    """
    good = [h.media(f"direct{i}.bin", os.urandom(2000 + i)) for i in range(2)]
    missing = h.media("missing.bin", b"removed before the archive")
    os.unlink(missing.files[0])
    wrong = h.media("wrong.bin", b"not what Portal hashed")._replace(sha1="0" * 40)
    items = [archive_item(fs, f"good{i}") for i, fs in enumerate(good)]
    items += [archive_item(missing, "missing"), archive_item(wrong, "wrong")]
    archived = outcomes("archive", driver.archive, request(ArchiveRequest, items))
    done: list[tuple[str, dict[str, FileOutcome]]] = [("archive", archived)]
    copies = []
    for i, fs in enumerate(good):
        outcome = archived[f"good{i}"]
        expect(outcome.ok, f"archive() failed a good file ({fs.files[0]}): {outcome.error}")
        copies.append(CopyRef(key=f"good{i}", locator=outcome.locator, sha1=fs.sha1))
    never = CopyRef(key="nowhere", locator=f"never-archived_VX-0_{'0' * 40}.bin")
    refs = [*copies, never]
    done.append(("stat", outcomes("stat", driver.stat, request(StatRequest, refs))))
    if h.supports(Capability.RESTORE):
        wanted = [
            RestoreItem(
                key=ref.key,
                locator=ref.locator,
                destination=str(h.restored / f"direct-{ref.key}" / "restored.bin"),
                sha1=ref.sha1,
            )
            for ref in refs
        ]
        done.append(
            ("restore", outcomes("restore", driver.restore, request(RestoreRequest, wanted)))
        )
    if h.supports(Capability.VERIFY):
        done.append(("verify", outcomes("verify", driver.verify, request(VerifyRequest, refs))))
    if h.supports(Capability.DELETE):
        done.append(("delete", outcomes("delete", driver.delete, request(DeleteRequest, refs))))
    return done


@check(Capability.ARCHIVE)
def each_operation_yields_exactly_one_outcome_per_item(h: Harness) -> None:
    """Called directly, each operation yields one outcome per item: none missing, repeated or
    unknown, and no raise for a file's problem."""
    with h.driver() as driver:
        _operations(h, driver)  # `outcomes` holds every call to the rule


@check(Capability.ARCHIVE)
def a_failure_says_why_in_its_outcome(h: Harness) -> None:
    """Called directly, a file that cannot be archived, found or restored is a failure outcome
    whose error says why, in words for the admin."""
    with h.driver() as driver:
        done = _operations(h, driver)
    for what, by_key in done:
        for key, outcome in by_key.items():
            if key in _MUST_FAIL and what != "delete":  # deleting what is absent succeeds
                expect(
                    not outcome.ok,
                    f"{what}() reported success for {_MUST_FAIL[key]} (item {key!r})",
                )
            if outcome.ok:
                continue
            error = (outcome.error or "").strip()
            expect(
                error,
                f"{what}() reported item {key!r} failed without an error text: Portal shows "
                "the admin FileOutcome.error, and the core can only say the driver gave none",
            )
            expect("Traceback" not in error, f"{what}() put a traceback in an error: {error!r}")


@check(Capability.ARCHIVE, uses="read_seam")
def a_transient_read_error_is_retried_or_reported_retryable(h: Harness) -> None:
    """A connection reset while reading a source is retried, or fails that file with a reason
    and `retryable` set, so that Portal tries it again."""
    from archive_core.testing import faults

    owner, attribute = h.subject.read_seam  # type: ignore[misc]
    victim = h.media("flaky.bin", os.urandom(TRANSIENT_FILE_SIZE + part_span(h)))
    item = archive_item(victim, "flaky")
    with h.driver() as driver:
        with faults.injected(owner, attribute, faults.transient(failures=1)) as fault:
            [outcome] = outcomes(
                "archive", driver.archive, request(ArchiveRequest, [item])
            ).values()
        expect(fault.calls, f"the read seam {attribute} was never called: is it the right one?")
        if not outcome.ok:
            expect((outcome.error or "").strip(), "the failure outcome has no error text")
            expect(
                outcome.retryable,
                f"a connection reset while reading the source failed the file without "
                f"retryable=True ({outcome.error!r}): raise TransferFailed(retryable=True) or "
                "let the OSError out, and the core reports it so that Portal tries again",
            )
            return
        expect(outcome.sha1 == victim.sha1, f"archive() reported sha1 {outcome.sha1}, not Portal's")
        if h.supports(Capability.RESTORE):
            back = RestoreItem(
                key="back",
                locator=outcome.locator,
                destination=str(h.restored / "direct-flaky" / "flaky.bin"),
                sha1=victim.sha1,
            )
            [restored] = outcomes(
                "restore", driver.restore, request(RestoreRequest, [back])
            ).values()
            expect(
                restored.ok, f"the copy made despite the reset cannot be restored: {restored.error}"
            )


def _object_store(h: Harness) -> str | None:
    from archive_core.objectstore import ObjectStoreDriver

    if issubclass(h.driver_class, ObjectStoreDriver):
        return None
    return f"driver {h.driver_name!r} is not an ObjectStoreDriver: the kit cannot see its put()"


class _WatchedStream:
    """The stream `put()` gets, passed through, remembering what reading it raised."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.raised: BaseException | None = None

    def read(self, count: int = -1) -> bytes:
        return self._watch(self._stream.read, count)

    def readinto(self, view: Any) -> int:
        return self._watch(self._stream.readinto, view)

    def _watch(self, call: Any, argument: Any) -> Any:
        try:
            return call(argument)
        except BaseException as exc:
            self.raised = self.raised or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@check(Capability.ARCHIVE, uses="read_seam", gate=_object_store)
def put_lets_out_what_its_stream_raised(h: Harness) -> None:
    """put() never returns normally once reading its stream raised (a sha1 mismatch, a read
    error): an upload that completes anyway can publish wrong bytes."""
    from archive_core.testing import faults

    owner, attribute = h.subject.read_seam  # type: ignore[misc]
    span = part_span(h)
    wrong = h.media("mismatch.bin", os.urandom(5000 + span))._replace(sha1="0" * 40)
    broken = h.media("unreadable.bin", os.urandom(3 * 1024 * 1024 + span))
    swallowed: list[str] = []
    with h.driver() as driver:
        put = driver.put

        def watched_put(key: str, stream: Any, size: int | None) -> None:
            watched = _WatchedStream(stream)
            put(key, watched, size)
            if watched.raised is not None:
                raised = watched.raised
                swallowed.append(f"{type(raised).__name__}: {raised}")

        driver.put = watched_put
        try:
            archived = outcomes(
                "archive", driver.archive, request(ArchiveRequest, [archive_item(wrong, "wrong")])
            )
            with faults.injected(owner, attribute, faults.fail_on_call(2)):
                archived |= outcomes(
                    "archive",
                    driver.archive,
                    request(ArchiveRequest, [archive_item(broken, "unreadable")]),
                )
        finally:
            del driver.put
    if swallowed:
        raise ContractViolation(
            f"put() returned normally after reading its stream raised ({swallowed[0][:300]}): "
            "it must let that error out and store nothing, or an upload of wrong or missing "
            "bytes can complete"
        )
    for key, outcome in archived.items():
        expect(not outcome.ok, f"archive() reported item {key!r} archived, though its read failed")
