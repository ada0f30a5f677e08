"""Leases in the catalog: a named resource (a tape drive, a cartridge) held by one worker at a time.

A lease is a row per resource: who holds it, the holder's token and until when. Waiters queue in
a table of their own, ordered by priority (higher first) and then by arrival (their ids); a free
resource goes to the first live waiter only, so among waiters of one priority those that came
first are served first, a more urgent waiter (a restore) goes before less urgent ones (an
archive), and a try-acquire never jumps ahead of a waiter as urgent as itself. Every decision
about a resource is one catalog transaction that serialises per resource: SQLite's write lock
(BEGIN IMMEDIATE) on one machine, a transaction-level advisory lock keyed by the resource on
PostgreSQL, for workers on several machines.

Time: a holder that stops renewing (it died, it hangs, it lost the network) loses the lease
once it expires, and not before. On PostgreSQL every grant and expiry is stamped and compared
with the database server's own `clock_timestamp()`, so the machines' clocks need not agree; on
SQLite (one machine) the process's UTC clock serves. A caller's wait bound is its own, measured
on its monotonic clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from archive_core.catalog import as_utc
from archive_core.errors import (
    ArchiveCoreError,
    CatalogError,
    LeaseHolderAlive,
    LeaseLost,
    LeaseTimeout,
    describe_holder,
    when,
)
from archive_core.workers import WorkerId

if TYPE_CHECKING:
    from archive_core.catalog import Catalog

log = logging.getLogger(__name__)

#: How often a waiter asks again whether its turn has come. A release is noticed within this,
#: and a waiter costs one short transaction per interval.
POLL_SECONDS = 0.25
#: A waiter's place in the queue lasts this long after its last ask: a waiter that died or
#: hangs holds up those behind it at most this long once the resource is free.
WAITER_TTL_SECONDS = 10.0
#: After a renewal failed (the catalog unreachable), the holder tries again this often, until
#: the lease would have run out.
RENEW_RETRY_SECONDS = 1.0
#: Priorities of lease waiters (higher is served first): a restore someone waits on outranks
#: bulk archive work for the same drive or cartridge.
PRIORITY_ARCHIVE = 0
PRIORITY_RESTORE = 10

#: The longest resource name, holder and purpose the tables keep.
NAME_LENGTH = 255

#: The first key of PostgreSQL's two-key advisory locks taken for leases ("leas"); the two-key
#: space is apart from the one-key space the schema lock uses.
_LOCK_SPACE = 0x6C656173


@attrs.frozen(kw_only=True)
class Lease:
    """One grant of a resource to one holder, as the catalog records it.

    `token` is this grant's own: renew and release succeed only while it is still the one
    recorded, which tells apart two grants to one worker and a holder that was taken over.
    `expires` is on the database's clock (PostgreSQL) or this machine's (SQLite).
    `taken_over_from` names the holder whose expired lease this grant replaced: that holder
    stopped renewing mid-use, so the resource may be in the state it left (a tape loaded).
    """

    resource: str
    token: str
    holder: str  # a WorkerId text
    purpose: str | None
    granted: dt.datetime
    expires: dt.datetime
    ttl: float  # seconds each grant and renewal holds for
    taken_over_from: str | None = None


@attrs.frozen(kw_only=True)
class LeaseWaiter:
    """A worker waiting for a resource; a queue lists them in arrival order."""

    resource: str
    token: str
    holder: str
    purpose: str | None
    arrived: dt.datetime
    expires: dt.datetime  # the place is lost unless the waiter asks again before this
    priority: int = PRIORITY_ARCHIVE


def _name(_instance: Any, attribute: Any, value: str | None) -> None:
    if value is None and attribute.name == "purpose":
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"lease {attribute.name} must be a non-empty string, not {value!r}")
    if len(value) > NAME_LENGTH:
        raise ValueError(f"lease {attribute.name} must be at most {NAME_LENGTH} characters")


def _positive(_instance: Any, attribute: Any, value: float) -> None:
    if not value > 0:
        raise ValueError(f"lease {attribute.name} must be more than 0 seconds, not {value!r}")


def _not_negative(_instance: Any, attribute: Any, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"lease {attribute.name} must be 0 or more seconds, not {value!r}")


@attrs.frozen(kw_only=True)
class _Ask:
    """What one acquire asks for, checked once before any transaction."""

    resource: str = attrs.field(validator=_name)
    ttl: float = attrs.field(converter=float, validator=_positive)
    wait: float = attrs.field(converter=float, validator=_not_negative)
    purpose: str | None = attrs.field(default=None, validator=_name)
    priority: int = attrs.field(
        default=PRIORITY_ARCHIVE, validator=attrs.validators.instance_of(int)
    )


@attrs.frozen(kw_only=True)
class _Busy:
    """Why an attempt got no lease: who holds the resource, or who waits first."""

    holder: str | None
    purpose: str | None
    expires: dt.datetime | None
    ahead: int
    next_holder: str | None


class Leases:
    """Acquire, renew and release leases in one catalog; `Catalog.leases` gives its own.

    `clock` (UTC datetimes) replaces the database's and the machine's clock for expiry, and
    `monotonic` and `sleep` the wait bound's, so that tests run expiry and waits without
    waiting. `poll` is how often a waiter asks; `waiter_ttl` how long a silent waiter keeps
    its place. Works on SQLite and PostgreSQL catalogs; another backend is refused, for its
    transactions are not known here to serialise per resource.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        poll: float = POLL_SECONDS,
        waiter_ttl: float = WAITER_TTL_SECONDS,
        clock: Callable[[], dt.datetime] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not poll > 0:
            raise ValueError(f"lease poll must be more than 0 seconds, not {poll!r}")
        if not waiter_ttl >= 4 * poll:
            # A waiter asking every `poll` must not lose its place to one slow transaction.
            raise ValueError(f"waiter_ttl ({waiter_ttl!r} s) must be at least 4 times poll")
        self._catalog = catalog
        self._poll = poll
        self._waiter_ttl = dt.timedelta(seconds=waiter_ttl)
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<Leases in {self._catalog.safe_url()}>"

    # --- the operations ----------------------------------------------------------------------

    def acquire(
        self,
        resource: str,
        *,
        ttl: float,
        wait: float = 0.0,
        purpose: str | None = None,
        priority: int = PRIORITY_ARCHIVE,
    ) -> Lease:
        """The lease on `resource` for `ttl` seconds, waiting up to `wait` seconds for it.

        `wait=0` tries once. A waiter takes its place behind those of its `priority` or a
        higher one that came before it, and before those of a lower priority; it gets the
        resource only when it is free (released, or expired) and nobody before it waits.
        LeaseTimeout when the wait is over, naming who holds the resource or who is first in
        line. `purpose` is shown to admins beside the holder ("archive job VX-12").
        Leases are not re-entrant: a worker asking again for what it holds waits for itself.
        """
        ask = _Ask(resource=resource, ttl=ttl, wait=wait, purpose=purpose, priority=priority)
        return self._acquire(ask)[0]

    def renew(self, lease: Lease, *, ttl: float | None = None) -> Lease:
        """The lease again, now expiring `ttl` (default: its own) seconds from now.

        Succeeds while `lease.token` is still the one recorded, even a little past expiry if
        nobody has taken the resource over meanwhile (then nobody else has held it). After a
        takeover it raises LeaseLost, naming the new holder, and changes nothing.
        """
        seconds = float(lease.ttl if ttl is None else ttl)
        if not seconds > 0:
            raise ValueError(f"lease ttl must be more than 0 seconds, not {seconds!r}")

        def work(conn: Any, t: Any) -> Lease:
            now = self._begin(conn, lease.resource)
            row = _lease_row(conn, t, lease.resource)
            if row is None or row["token"] != lease.token:
                raise _lost(lease, row, "renewed")
            expires = now + dt.timedelta(seconds=seconds)
            conn.execute(
                t.leases.update()
                .where(t.leases.c.resource == lease.resource, t.leases.c.token == lease.token)
                .values(expires=expires, ttl=seconds)
            )
            return attrs.evolve(lease, expires=expires, ttl=seconds)

        return self._catalog._run(work, write=True)

    def release(self, lease: Lease) -> None:
        """Give the resource up; the first waiter gets it at its next ask.

        LeaseLost, changing nothing, when `lease.token` does not hold it any more (taken over
        after expiry, or released already).
        """

        def work(conn: Any, t: Any) -> None:
            self._begin(conn, lease.resource)
            row = _lease_row(conn, t, lease.resource)
            if row is None or row["token"] != lease.token:
                raise _lost(lease, row, "released")
            conn.execute(
                t.leases.delete().where(
                    t.leases.c.resource == lease.resource, t.leases.c.token == lease.token
                )
            )

        self._catalog._run(work, write=True)

    def break_dead(self, resource: str, *, proof: str) -> Lease | None:
        """Remove the lease on `resource` of a holder proven dead: the caller has checked
        that nothing the holder left uses the resource any more (`proof`, in words, is
        logged), and the holder's process is checked here not to run. Returns the lease
        broken, None when nobody held it. LeaseHolderAlive, changing nothing, when the holder
        runs or that cannot be told from this host (another host: break it there, or wait for
        the lease to expire)."""

        def work(conn: Any, t: Any) -> Lease | None:
            self._begin(conn, resource)
            row = _lease_row(conn, t, resource)
            if row is None:
                return None
            holder = WorkerId.parse(row["holder"])
            alive = None if holder is None else holder.is_alive()
            if alive is not False:
                why = (
                    "that process is still running; stop it first"
                    if alive
                    else "from this host it cannot be told whether that process still runs; "
                    f"break it on its own host, or wait until it expires at "
                    f"{when(as_utc(row['expires']))}"
                )
                raise LeaseHolderAlive(
                    resource=resource, holder=row["holder"], purpose=row["purpose"], why=why
                )
            conn.execute(
                t.leases.delete().where(
                    t.leases.c.resource == resource, t.leases.c.token == row["token"]
                )
            )
            return _lease(row)

        broken = self._catalog._run(work, write=True)
        if broken is not None:
            log.warning(
                "lease on %s of dead %s broken: %s",
                resource,
                describe_holder(broken.holder, broken.purpose),
                proof,
            )
        return broken

    @contextlib.contextmanager
    def hold(
        self,
        resource: str,
        *,
        ttl: float,
        wait: float = 0.0,
        purpose: str | None = None,
        renew_every: float | None = None,
        priority: int = PRIORITY_ARCHIVE,
    ) -> Iterator[HeldLease]:
        """Acquire `resource` (as `acquire`), keep it renewed from a daemon thread every
        `renew_every` seconds (default a third of `ttl`, so two renewals may fail before it
        runs out), release it on exit.

        The body calls `held.check()` before each step that needs the resource, which raises
        LeaseLost once the lease is lost or could not be renewed in time. On exit the release
        gives the verdict: LeaseLost if another worker took the resource over meanwhile (the
        body's own exception, if any, goes on instead and the loss is logged).
        """
        ask = _Ask(resource=resource, ttl=ttl, wait=wait, purpose=purpose, priority=priority)
        every = ttl / 3 if renew_every is None else renew_every
        if not 0 < every < ttl:
            raise ValueError(f"renew_every ({every!r} s) must be more than 0 and less than ttl")
        lease, asked = self._acquire(ask)
        held = HeldLease(self, lease, confirmed_until=asked + lease.ttl, renew_every=every)
        try:
            yield held
        except BaseException:
            held._finish(quiet=True)
            raise
        held._finish(quiet=False)

    # --- what the catalog holds ----------------------------------------------------------------

    def current(self, resource: str) -> Lease | None:
        """The lease recorded on `resource`, None when free. Its `expires` may be past: an
        expired lease stays recorded until someone takes the resource or its holder releases."""

        def work(conn: Any, t: Any) -> Lease | None:
            row = _lease_row(conn, t, resource)
            return None if row is None else _lease(row)

        return self._catalog._run(work, write=False)

    def waiting(self, resource: str) -> tuple[LeaseWaiter, ...]:
        """The workers waiting for `resource` in the order they will be served (priority,
        then arrival); a place past its `expires` is dropped by the next worker that asks."""

        def work(conn: Any, t: Any) -> tuple[LeaseWaiter, ...]:
            return tuple(
                LeaseWaiter(
                    resource=row["resource"],
                    token=row["token"],
                    holder=row["holder"],
                    purpose=row["purpose"],
                    arrived=as_utc(row["arrived"]),
                    expires=as_utc(row["expires"]),
                    priority=row["priority"],
                )
                for row in _queue(conn, t, resource)
            )

        return self._catalog._run(work, write=False)

    # --- inside -----------------------------------------------------------------------------

    def _acquire(self, ask: _Ask) -> tuple[Lease, float]:
        """The lease, and the monotonic time its granting transaction began: the holder's
        own, conservative start of the ttl, whatever clock the database keeps."""
        token = uuid.uuid4().hex
        holder = str(self._catalog.worker)
        started = self._monotonic()
        deadline = started + ask.wait
        queued = False
        try:
            while True:
                asked = self._monotonic()
                last = asked >= deadline
                outcome = self._catalog._run(
                    functools.partial(
                        self._attempt, ask=ask, token=token, holder=holder, queue=not last
                    ),
                    write=True,
                )
                if isinstance(outcome, Lease):
                    queued = False  # the granting transaction removed the place
                    if outcome.taken_over_from is not None:
                        log.warning(
                            "lease on %s: %s stopped renewing it; taken over by %s",
                            ask.resource,
                            describe_holder(outcome.taken_over_from),
                            describe_holder(holder, ask.purpose),
                        )
                    return outcome, asked
                queued = not last
                if last:
                    raise LeaseTimeout(
                        resource=ask.resource,
                        wait=ask.wait,
                        waited=self._monotonic() - started,
                        holder=outcome.holder,
                        purpose=outcome.purpose,
                        expires=outcome.expires,
                        ahead=outcome.ahead,
                        next_holder=outcome.next_holder,
                    )
                self._sleep(max(0.0, min(self._poll, deadline - self._monotonic())))
        finally:
            if queued:  # interrupted while waiting: give the place up now, not at its expiry
                self._leave(ask.resource, token)

    def _attempt(
        self, conn: Any, t: Any, *, ask: _Ask, token: str, holder: str, queue: bool
    ) -> Lease | _Busy:
        """One look at the resource, in the caller's transaction under the resource's lock:
        the lease if it is free and nobody waits before this caller; otherwise the caller's
        place in the queue taken or kept (`queue`) or given up, and why it must wait."""
        now = self._begin(conn, ask.resource)
        w = t.lease_waiters
        # Waiters that stopped asking (died, hang) lose their place; the caller keeps its own
        # even if it was late to ask, as long as nobody dropped it meanwhile.
        conn.execute(
            w.delete().where(w.c.resource == ask.resource, w.c.expires < now, w.c.token != token)
        )
        queue_rows = _queue(conn, t, ask.resource)
        mine = next((i for i, row in enumerate(queue_rows) if row["token"] == token), None)
        # Not queued yet: it would take its place behind every waiter as urgent or more.
        ahead = (
            [row for row in queue_rows if row["priority"] >= ask.priority]
            if mine is None
            else queue_rows[:mine]
        )
        row = _lease_row(conn, t, ask.resource)
        held = row is not None and as_utc(row["expires"]) > now
        if not held and not ahead:
            lease = Lease(
                resource=ask.resource,
                token=token,
                holder=holder,
                purpose=ask.purpose,
                granted=now,
                expires=now + dt.timedelta(seconds=ask.ttl),
                ttl=ask.ttl,
                taken_over_from=None if row is None else row["holder"],
            )
            values = attrs.asdict(lease)
            if row is None:
                conn.execute(t.leases.insert().values(values))
            else:
                conn.execute(
                    t.leases.update().where(t.leases.c.resource == ask.resource).values(values)
                )
            if mine is not None:
                conn.execute(w.delete().where(w.c.token == token))
            return lease
        if not queue:
            if mine is not None:
                conn.execute(w.delete().where(w.c.token == token))
        elif mine is None:
            conn.execute(
                w.insert().values(
                    resource=ask.resource,
                    token=token,
                    holder=holder,
                    purpose=ask.purpose,
                    arrived=now,
                    expires=now + self._waiter_ttl,
                    priority=ask.priority,
                )
            )
        else:
            conn.execute(
                w.update().where(w.c.token == token).values(expires=now + self._waiter_ttl)
            )
        return _Busy(
            holder=row["holder"] if held else None,
            purpose=row["purpose"] if held else None,
            expires=as_utc(row["expires"]) if held else None,
            ahead=len(ahead),
            next_holder=None if held else ahead[0]["holder"],
        )

    def _leave(self, resource: str, token: str) -> None:
        """Give up a place in the queue; if the catalog cannot be reached the place expires
        by itself after `waiter_ttl`, which is what it is there for."""

        def work(conn: Any, t: Any) -> None:
            self._begin(conn, resource)
            conn.execute(t.lease_waiters.delete().where(t.lease_waiters.c.token == token))

        try:
            self._catalog._run(work, write=True)
        except CatalogError as exc:
            log.warning(
                "lease on %s: could not leave the queue (%s); the place expires by itself",
                resource,
                exc.message,
            )

    def _begin(self, conn: Any, resource: str) -> dt.datetime:
        """Serialise this transaction with every other one on `resource`; its `now`.

        SQLite's write transactions are serialised already (BEGIN IMMEDIATE). On PostgreSQL
        the advisory lock is taken first: at the default READ COMMITTED each later statement
        sees what the transactions before it committed, and the time is read after the wait.
        """
        import sqlalchemy as sa

        backend = conn.dialect.name
        if backend == "postgresql":
            conn.execute(
                sa.text(
                    "SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:key AS integer))"
                ),
                {"space": _LOCK_SPACE, "key": _lock_key(resource)},
            )
        elif backend != "sqlite":
            raise CatalogError(
                f"Leases need a SQLite or PostgreSQL catalog; {self._catalog.safe_url()} is "
                f"{backend}."
            )
        if self._clock is not None:
            return self._clock()
        if backend == "postgresql":
            return as_utc(conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one())
        return dt.datetime.now(dt.UTC)


class HeldLease:
    """A lease this process holds and a daemon thread keeps renewed; `Leases.hold` gives one.

    The thread renews every `renew_every` seconds. A renewal the catalog refuses (taken over)
    ends the hold; one that cannot reach the catalog is tried again every
    RENEW_RETRY_SECONDS until the lease would have run out, which ends it too. The end is
    final: `check()` raises from then on, and the thread renews no more. A daemon thread, so
    a process that dies takes it along and its lease expires, which is what frees the resource.
    """

    def __init__(
        self, leases: Leases, lease: Lease, *, confirmed_until: float, renew_every: float
    ) -> None:
        self._leases = leases
        self._lease = lease
        # The monotonic time before which the lease is surely held: the start of the last
        # transaction that granted or renewed it, plus its ttl. The database stamped a later
        # `now`, so its expiry is no earlier than this.
        self._confirmed_until = confirmed_until
        self._every = renew_every
        self._lost: LeaseLost | None = None
        self._last_error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._renew, name=f"archive-core-lease-{lease.resource}", daemon=True
        )
        self._thread.start()

    def __repr__(self) -> str:
        return f"<HeldLease {self._lease.resource} until {self._lease.expires.isoformat()}>"

    @property
    def lease(self) -> Lease:
        """The lease as last granted or renewed."""
        with self._lock:
            return self._lease

    @property
    def resource(self) -> str:
        return self._lease.resource

    @property
    def lost(self) -> LeaseLost | None:
        """Why the lease is not surely held any more; None while it is."""
        with self._lock:
            if self._lost is None and self._leases._monotonic() >= self._confirmed_until:
                self._lost = self._unconfirmed()
            return self._lost

    def check(self) -> None:
        """Raise LeaseLost unless the lease is surely still held: call before each step that
        needs the resource (a write, a load, a format)."""
        lost = self.lost
        if lost is not None:
            raise lost

    def _unconfirmed(self) -> LeaseLost:
        return LeaseLost(
            resource=self._lease.resource,
            action="kept",
            expires=self._lease.expires,
            reason=f"it could not be renewed in time ({self._last_error or 'no answer yet'})",
        )

    def _renew(self) -> None:
        pause = self._every
        while not self._stop.wait(pause):
            asked = self._leases._monotonic()
            try:
                lease = self._leases.renew(self.lease)
            except LeaseLost as exc:
                with self._lock:
                    self._lost = self._lost or exc
                log.warning("%s", exc.message)
                return
            except Exception as exc:  # the catalog unreachable, or worse: try again in time
                reason = exc.message if isinstance(exc, ArchiveCoreError) else repr(exc)
                with self._lock:
                    self._last_error = reason
                if self.lost is not None:
                    log.warning("%s", self.lost.message)
                    return
                log.warning("lease on %s: renewal failed (%s); trying again", self.resource, reason)
                pause = min(self._every, RENEW_RETRY_SECONDS)
                continue
            with self._lock:
                if self._lost is not None:
                    return
                self._lease = lease
                self._confirmed_until = asked + lease.ttl
            pause = self._every

    def _finish(self, *, quiet: bool) -> None:
        """Stop renewing and release. Raises LeaseLost (unless `quiet`: the body raised) when
        the release shows another worker took the resource, or cannot be made and the lease
        was not surely held to the end."""
        self._stop.set()
        self._thread.join()
        lost = self.lost
        try:
            self._leases.release(self.lease)
        except LeaseLost as exc:
            if quiet:
                log.warning("%s", exc.message)
                return
            raise
        except CatalogError as exc:
            if lost is None:
                log.warning(
                    "lease on %s: could not release it (%s); it expires by itself at %s",
                    self.resource,
                    exc.message,
                    self.lease.expires.isoformat(),
                )
                return
            if quiet:
                log.warning("%s", lost.message)
                return
            raise lost from None


def _lease_row(conn: Any, t: Any, resource: str) -> Mapping[str, Any] | None:
    return conn.execute(t.leases.select().where(t.leases.c.resource == resource)).mappings().first()


def _queue(conn: Any, t: Any, resource: str) -> list[Mapping[str, Any]]:
    w = t.lease_waiters
    query = w.select().where(w.c.resource == resource).order_by(w.c.priority.desc(), w.c.id)
    return list(conn.execute(query).mappings())


def _lease(row: Mapping[str, Any]) -> Lease:
    return Lease(
        resource=row["resource"],
        token=row["token"],
        holder=row["holder"],
        purpose=row["purpose"],
        granted=as_utc(row["granted"]),
        expires=as_utc(row["expires"]),
        ttl=row["ttl"],
        taken_over_from=row["taken_over_from"],
    )


def _lost(lease: Lease, row: Mapping[str, Any] | None, action: str) -> LeaseLost:
    """Why `lease` is not its holder's any more: `row` is what the catalog records now."""
    if row is None:
        return LeaseLost(resource=lease.resource, action=action, expires=lease.expires)
    return LeaseLost(
        resource=lease.resource,
        action=action,
        expires=lease.expires,
        holder=row["holder"],
        purpose=row["purpose"],
        since=as_utc(row["granted"]),
    )


def _lock_key(resource: str) -> int:
    """The second advisory-lock key of a resource: 32 bits of its hash. Two resources that
    share one only wait for each other's short transactions; nothing else is shared."""
    return int.from_bytes(hashlib.sha256(resource.encode()).digest()[:4], "big", signed=True)
