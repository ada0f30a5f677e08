"""The one root error of archive-core and its kinds, each carrying structured fields.

Portal shows an exception's message to the admin as is, so every message here is a complete
sentence that names what went wrong and where (policy, driver, file) without secrets.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Sequence

from archive_core.workers import WorkerId


class ArchiveCoreError(Exception):
    """Root of every error archive-core raises on purpose."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        driver: str | None = None,
        policy: str | None = None,
        target: str | None = None,
        paths: Sequence[str] = (),
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.driver = driver
        self.policy = policy
        self.target = target
        self.paths = tuple(paths)
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message


class ConfigError(ArchiveCoreError):
    """The admin's configuration is wrong; `problems` holds every `path: message` line at once."""

    def __init__(
        self,
        problems: Iterable[str],
        *,
        source: str | None = None,
        from_catalog: bool = False,
        **fields,
    ) -> None:
        self.problems = tuple(problems)
        # The configuration is in the catalog, which could not be read: trying again later
        # may succeed without anything being changed.
        self.from_catalog = from_catalog
        where = f" in {source}" if source else ""
        count = len(self.problems)
        head = f"archive-core configuration{where} has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]), **fields)


class PolicyNotFound(ArchiveCoreError):
    """Portal named a policy uuid that the configuration does not define."""


class PolicyDisabled(ArchiveCoreError):
    """An admin disabled the policy or one of its targets: new archives are refused."""


class ConfigConflict(ArchiveCoreError):
    """A configuration was saved on top of a version that is no longer the latest."""

    def __init__(self, message: str, *, based_on: int, latest: int) -> None:
        super().__init__(message)
        self.based_on = based_on
        self.latest = latest


class DriverUnavailable(ArchiveCoreError):
    """A driver could not be found, imported or configured; `reason` says why."""

    def __init__(self, message: str, *, reason: str, **fields) -> None:
        super().__init__(message, **fields)
        self.reason = reason


class DuplicateDriver(ArchiveCoreError):
    """Two installed distributions register the same driver name."""

    def __init__(self, name: str, distributions: Sequence[str]) -> None:
        self.name = name
        self.distributions = tuple(distributions)
        super().__init__(
            f"Driver name {name!r} is registered by more than one installed distribution: "
            f"{', '.join(self.distributions)}. Uninstall one of them, or deny one with "
            f"ARCHIVE_CORE_DISABLE_DRIVERS.",
            driver=name,
        )


class CapabilityNotDeclared(ArchiveCoreError):
    """The core refused an operation the policy's driver does not declare."""

    def __init__(self, *, driver: str, policy: str, capability: str) -> None:
        self.capability = capability
        super().__init__(
            f"Policy {policy!r} uses driver {driver!r}, which does not support {capability!r}.",
            driver=driver,
            policy=policy,
        )


class NotReady(ArchiveCoreError):
    """The policy's target cannot take work right now (readiness said no)."""

    retryable = True


class UnsafeName(ArchiveCoreError):
    """A name or locator would leave the archive target (.., absolute, symlink, NUL, too long)."""


class FixityMismatch(ArchiveCoreError):
    """The bytes that moved do not hash to the expected sha1, so they were not published.

    `path` is what was read. `destination`, where they were going, lets the message say
    what it means there: with `replacing` (a restore into a file of Portal's) that file was
    not written and is left as it was; without it (an archive copy) nothing was stored.
    """

    def __init__(
        self,
        *,
        path: str,
        expected: str,
        actual: str,
        destination: str | None = None,
        replacing: bool = False,
        **fields,
    ) -> None:
        self.expected = expected
        self.actual = actual
        self.destination = destination
        if destination is None:
            consequence = "Nothing was stored."
        elif replacing:
            consequence = f"{destination} was not written; a file already there is left as it was."
        else:
            consequence = f"Nothing was stored under {destination}."
        super().__init__(
            f"Checksum mismatch for {path}: expected sha1 {expected}, the bytes read hash to "
            f"{actual}. {consequence}",
            paths=(path,),
            **fields,
        )


class CopyNotFound(ArchiveCoreError):
    """The archived copy an external id points to does not exist (any more)."""


class TransferFailed(ArchiveCoreError):
    """Bytes could not be read, written or published."""


class RestoreFailed(ArchiveCoreError):
    """One or more files of a restore failed; `failures` pairs each path with its reason."""

    def __init__(self, failures: Sequence[tuple[str, str]], *, policy: str | None = None) -> None:
        self.failures = tuple(failures)
        count = len(self.failures)
        lines = [f"{path}: {reason}" for path, reason in self.failures]
        super().__init__(
            f"Restore failed for {count} file{'s' if count != 1 else ''}"
            + (f" (policy {policy})" if policy else "")
            + ":\n"
            + "\n".join(lines),
            policy=policy,
            paths=[p for p, _ in self.failures],
        )


class CatalogFault(enum.StrEnum):
    """What is wrong with a catalog database, for code that acts on it (the message says it
    to the admin)."""

    LOCKED = "locked"  # another program or session held a lock longer than the lock wait
    CONFLICT = "conflict"  # lost one lock conflict with other workers after another
    READ_ONLY = "read-only"
    FULL = "full"  # its disk (or quota, or tablespace) has no space left
    UNREACHABLE = "unreachable"  # cannot be opened, connected to or logged into
    DAMAGED = "damaged"  # not a database, or its pages are corrupt
    FAILED = "failed"  # any other database error


class CatalogError(ArchiveCoreError):
    """The catalog database could not be reached or holds something unexpected.

    `catalog` names it as messages do (the URL, its password masked); `fault` says what is
    wrong when a database error was behind it (None: archive-core's own refusal, such as a
    schema version it cannot use).
    """

    def __init__(
        self,
        message: str,
        *,
        catalog: str | None = None,
        fault: CatalogFault | None = None,
        **fields,
    ) -> None:
        super().__init__(message, **fields)
        self.catalog = catalog
        self.fault = fault


class LeaseTimeout(ArchiveCoreError):
    """A lease was not had within the caller's wait bound, `wait` seconds (0: a try-acquire);
    `waited` is how long the caller did wait.

    `holder` (with `purpose`) holds the resource until `expires`; or the resource is free but
    `ahead` workers asked for it first (`next_holder` is the first of them). Retryable: the
    resource is busy, not broken.
    """

    retryable = True

    def __init__(
        self,
        *,
        resource: str,
        wait: float,
        waited: float,
        holder: str | None = None,
        purpose: str | None = None,
        expires: dt.datetime | None = None,
        ahead: int = 0,
        next_holder: str | None = None,
    ) -> None:
        self.resource = resource
        self.wait = wait
        self.waited = waited
        self.holder = holder
        self.purpose = purpose
        self.expires = expires
        self.ahead = ahead
        self.next_holder = next_holder
        if wait > 0:
            head = f"Gave up waiting for {resource} after {waited:.1f} s"
        else:
            head = f"{resource} is not free"
        if holder is not None:
            why = f"{describe_holder(holder, purpose)} holds it until {when(expires)}"
            if ahead:
                why += (
                    f", and {_workers(ahead)} {'waits' if ahead == 1 else 'wait'} before this one"
                )
        else:
            why = f"it is free, but {_workers(ahead)} asked for it first"
            if next_holder is not None:
                why += f" ({describe_holder(next_holder)} is next)"
        super().__init__(f"{head}: {why}.", retryable=True)


class LeaseLost(ArchiveCoreError):
    """A lease the caller held is not surely its own any more: its renew or release (`action`
    "renewed", "released") found another token and changed nothing, or, with `reason`, it
    could not be renewed before it ran out (`action` "kept": `HeldLease.check()`).

    `expires` is when the caller's lease ran out as the caller last knew it. `holder` (with
    `since`) is who holds the resource now: another worker took it over after that expiry;
    None when nobody holds it now (released already, or taken over and released since) or
    when that could not be asked (`reason` then says why). Retryable: the work done under
    the lease should be done again, under a new one.
    """

    retryable = True

    def __init__(
        self,
        *,
        resource: str,
        action: str,
        expires: dt.datetime,
        holder: str | None = None,
        purpose: str | None = None,
        since: dt.datetime | None = None,
        reason: str | None = None,
    ) -> None:
        self.resource = resource
        self.action = action
        self.expires = expires
        self.holder = holder
        self.purpose = purpose
        self.since = since
        self.reason = reason
        head = f"The lease on {resource} could not be {action}"
        if reason is not None:
            why = (
                f"{reason}; it expired at {when(expires)} as far as this worker knows, so "
                "another worker may hold it now"
            )
        elif holder is not None:
            why = (
                f"it expired at {when(expires)} without being renewed in time, and "
                f"{describe_holder(holder, purpose)} has held it since {when(since)}"
            )
        else:
            why = (
                "this worker does not hold it any more: it was released already, or it "
                f"expired at {when(expires)} and another worker has held it since"
            )
        super().__init__(
            f"{head}: {why}. This worker must stop using {resource}; what it did with it after "
            f"{when(expires)} was not protected by the lease.",
            retryable=True,
        )


class LeaseHolderAlive(ArchiveCoreError):
    """A lease was not broken (`Leases.break_dead`): its holder may still be running, or that
    cannot be told from this host. `holder` (with `purpose`) holds `resource`."""

    def __init__(self, *, resource: str, holder: str, purpose: str | None, why: str) -> None:
        super().__init__(
            f"{resource} is held by {describe_holder(holder, purpose)}, and its lease was not "
            f"broken: {why}"
        )
        self.resource = resource
        self.holder = holder
        self.purpose = purpose


def describe_holder(holder: str, purpose: str | None = None) -> str:
    """A lease holder as an admin reads it: `worker 1234 on host-a (archive job VX-12)`.

    Holders are `WorkerId` texts (host, pid, pid space, start); the pid space and start tell
    processes apart but mean nothing to a reader, so only host and pid are shown.
    """
    parsed = WorkerId.parse(holder)
    who = holder if parsed is None else f"worker {parsed.pid} on {parsed.host}"
    return f"{who} ({purpose})" if purpose else who


def when(moment: dt.datetime | None) -> str:
    """A lease time as messages show it: UTC, to the millisecond (leases last seconds)."""
    if moment is None:
        return "an unknown time"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _workers(count: int) -> str:
    return f"{count} other worker{'s' if count != 1 else ''}"
