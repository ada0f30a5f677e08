"""Leases in the catalog on SQLite and PostgreSQL: acquire, renew, release and take-over, the
wait bound, waiters served in arrival order, and real processes racing for one resource
(tests/lease_worker.py): never two holders at once, a SIGKILLed holder taken over after its
expiry and not before, a dead waiter holding nobody up for longer than its place lasts.

In-process tests run expiry and waits on a fake clock; the processes use short real ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from archive_core import schema
from archive_core.catalog import Catalog
from archive_core.errors import CatalogError, LeaseHolderAlive, LeaseLost, LeaseTimeout
from archive_core.leases import PRIORITY_ARCHIVE, PRIORITY_RESTORE, Leases
from archive_core.workers import WorkerId

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("lease_worker.py")
RESOURCE = "drive:lib1/0"
T0 = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
HOST_A = WorkerId(host="host-a", pid=101)
HOST_B = WorkerId(host="host-b", pid=202)
HOST_C = WorkerId(host="host-c", pid=303)
#: How long the racing processes' waiters keep their place without asking (`--waiter-ttl`).
PROCESS_WAITER_TTL = 1.0
#: A waiting process asks every 0.02 s; what it is given once it may be must come well within
#: this, even on a busy machine.
PROMPTLY = dt.timedelta(seconds=2)


class FakeTime:
    """One fake time for expiry (UTC datetimes) and for waits (monotonic seconds); a sleep
    advances both, so a test waits out a bound without waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        with self._lock:
            return T0 + dt.timedelta(seconds=self._elapsed)

    def monotonic(self) -> float:
        with self._lock:
            return 1000.0 + self._elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._elapsed += seconds


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


@pytest.fixture
def catalogs(catalog_url: str) -> Iterator[Callable[..., Catalog]]:
    """Catalog objects on the test's database, one per pretended worker; closed afterwards."""
    made: list[Catalog] = []

    def new(worker: WorkerId | None = None) -> Catalog:
        catalog = Catalog(catalog_url, worker=worker)
        made.append(catalog)
        return catalog

    yield new
    for catalog in made:
        catalog.close()


@pytest.fixture
def on_fake_time(catalogs: Callable[..., Catalog], fake: FakeTime) -> Callable[..., Leases]:
    """Leases of a pretended worker, on the fake time."""

    def new(worker: WorkerId, **options: Any) -> Leases:
        options.setdefault("sleep", fake.sleep)
        return Leases(catalogs(worker), clock=fake.now, monotonic=fake.monotonic, **options)

    return new


def _eventually(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Wait for something another thread or process does (not for a clock to pass)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.01)


# --- one process, fake time ------------------------------------------------------------------


def test_a_lease_is_acquired_renewed_and_released_and_the_resource_is_free_again(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    leases = on_fake_time(HOST_A)
    lease = leases.acquire(RESOURCE, ttl=30, purpose="archive job VX-1")
    assert lease.holder == str(HOST_A) and lease.purpose == "archive job VX-1"
    assert (lease.granted, lease.expires) == (T0, T0 + dt.timedelta(seconds=30))
    assert lease.taken_over_from is None
    assert leases.current(RESOURCE) == lease

    fake.advance(20)
    renewed = leases.renew(lease)
    assert renewed.token == lease.token and renewed.granted == T0
    assert renewed.expires == T0 + dt.timedelta(seconds=50)
    assert leases.current(RESOURCE) == renewed
    shorter = leases.renew(renewed, ttl=5)
    assert shorter.expires == T0 + dt.timedelta(seconds=25) and shorter.ttl == 5

    leases.release(shorter)
    assert leases.current(RESOURCE) is None
    again = on_fake_time(HOST_B).acquire(RESOURCE, ttl=30)
    assert again.token != lease.token and again.taken_over_from is None


def test_a_try_acquire_of_a_held_resource_fails_at_once_naming_resource_and_holder(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    held = on_fake_time(HOST_A).acquire(RESOURCE, ttl=30, purpose="archive job VX-1")
    other = on_fake_time(HOST_B)
    with pytest.raises(LeaseTimeout) as busy:
        other.acquire(RESOURCE, ttl=30)
    error = busy.value
    assert (error.resource, error.holder, error.expires) == (RESOURCE, str(HOST_A), held.expires)
    assert error.wait == 0 and error.retryable
    assert error.message == (
        "drive:lib1/0 is not free: worker 101 on host-a (archive job VX-1) holds it until "
        "2026-03-04 05:06:37.000 UTC."
    )
    assert fake.sleeps == []  # a try does not wait
    assert other.waiting(RESOURCE) == ()  # and leaves no place in the queue
    assert on_fake_time(HOST_C).current(RESOURCE) == held


def test_acquire_waits_no_longer_than_its_bound_asking_every_poll_interval(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    on_fake_time(HOST_A).acquire(RESOURCE, ttl=60)
    waiter = on_fake_time(HOST_B, poll=0.25)
    with pytest.raises(LeaseTimeout) as timed_out:
        waiter.acquire(RESOURCE, ttl=30, wait=5)
    assert timed_out.value.waited == 5.0 and timed_out.value.wait == 5.0
    assert "Gave up waiting for drive:lib1/0 after 5.0 s: worker 101 on host-a holds it" in (
        timed_out.value.message
    )
    assert fake.sleeps == [0.25] * 20  # asked every interval, never spinning
    assert waiter.waiting(RESOURCE) == ()  # a waiter that gave up leaves the queue


def test_a_resource_released_during_the_wait_goes_to_the_waiter_at_its_next_ask(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    holder = on_fake_time(HOST_A)
    first = holder.acquire(RESOURCE, ttl=60)
    asks = 0

    def sleep(seconds: float) -> None:
        nonlocal asks
        asks += 1
        assert [w.holder for w in waiter.waiting(RESOURCE)] == [str(HOST_B)]
        if asks == 4:
            holder.release(first)
        fake.sleep(seconds)

    waiter = on_fake_time(HOST_B, poll=0.5, sleep=sleep)
    lease = waiter.acquire(RESOURCE, ttl=30, wait=60)
    assert lease.holder == str(HOST_B) and lease.granted == T0 + dt.timedelta(seconds=2)
    assert waiter.waiting(RESOURCE) == ()


def test_an_expired_lease_is_taken_over_after_its_expiry_and_not_before(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    first = on_fake_time(HOST_A).acquire(RESOURCE, ttl=10, purpose="restore job VX-7")
    other = on_fake_time(HOST_B)
    fake.advance(9.999)
    with pytest.raises(LeaseTimeout) as busy:
        other.acquire(RESOURCE, ttl=10)
    assert busy.value.holder == str(HOST_A)
    fake.advance(0.001)  # at its expiry it is over
    taken = other.acquire(RESOURCE, ttl=10)
    assert taken.holder == str(HOST_B) and taken.granted == first.expires
    assert taken.taken_over_from == str(HOST_A)
    assert other.current(RESOURCE) == taken


def test_after_a_takeover_the_old_holders_renew_and_release_raise_lease_lost_and_change_nothing(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    old = on_fake_time(HOST_A)
    first = old.acquire(RESOURCE, ttl=10)
    fake.advance(11)
    taken = on_fake_time(HOST_B).acquire(RESOURCE, ttl=10, purpose="archive job VX-2")
    for attempt, action in ((old.renew, "renewed"), (old.release, "released")):
        with pytest.raises(LeaseLost) as lost:
            attempt(first)
        error = lost.value
        assert (error.resource, error.action, error.expires) == (RESOURCE, action, first.expires)
        assert (error.holder, error.since) == (str(HOST_B), taken.granted)
        assert error.message.startswith(
            f"The lease on drive:lib1/0 could not be {action}: it expired at "
            "2026-03-04 05:06:17.000 UTC without being renewed in time, and worker 202 on "
            "host-b (archive job VX-2) has held it since 2026-03-04 05:06:18.000 UTC. This "
            "worker must stop using drive:lib1/0"
        )
        assert old.current(RESOURCE) == taken
    on_fake_time(HOST_B).release(taken)
    with pytest.raises(LeaseLost, match="does not hold it any more"):
        old.release(first)


def test_a_late_renewal_succeeds_while_nobody_has_taken_the_resource_over(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    leases = on_fake_time(HOST_A)
    lease = leases.acquire(RESOURCE, ttl=10)
    fake.advance(12)  # expired, but nobody asked: nobody else has held it
    renewed = leases.renew(lease)
    assert renewed.expires == T0 + dt.timedelta(seconds=22)
    with pytest.raises(LeaseTimeout):
        on_fake_time(HOST_B).acquire(RESOURCE, ttl=10)


class _Woken(BaseException):
    """A hung waiter's end (as a KeyboardInterrupt would end it)."""


@contextlib.contextmanager
def _hung_waiter(
    on_fake_time: Callable[..., Leases], worker: WorkerId, *, options: Any = None, **ask: Any
) -> Iterator[list[BaseException]]:
    """A waiter in a thread that takes its place in RESOURCE's queue, then hangs (asks no
    more) until the block ends; yields the list that gets what ended its acquire (`_Woken`)."""
    asleep, wake = threading.Event(), threading.Event()

    def hang(_seconds: float) -> None:
        asleep.set()
        wake.wait(30)
        raise _Woken

    hung = on_fake_time(worker, sleep=hang, **(options or {}))
    ended: list[BaseException] = []

    def wait_for_it() -> None:
        try:
            hung.acquire(RESOURCE, ttl=60, wait=600, **ask)
        except BaseException as exc:
            ended.append(exc)

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    try:
        assert asleep.wait(30), "the waiter did not take its place"
        yield ended
    finally:
        wake.set()
        thread.join(30)


def test_a_waiter_that_stopped_asking_loses_its_place_and_holds_up_nobody_after_that(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    holder = on_fake_time(HOST_A)
    first = holder.acquire(RESOURCE, ttl=60)
    with _hung_waiter(on_fake_time, HOST_B, options={"waiter_ttl": 10}) as ended:
        holder.release(first)
        other = on_fake_time(HOST_C)
        with pytest.raises(LeaseTimeout) as queued:  # free, but a try never jumps the queue
            other.acquire(RESOURCE, ttl=60)
        assert (queued.value.holder, queued.value.ahead) == (None, 1)
        assert queued.value.next_holder == str(HOST_B)
        assert "it is free, but 1 other worker asked for it first (worker 202 on host-b " in (
            queued.value.message
        )
        fake.advance(10)  # its place lasts to its expiry ...
        with pytest.raises(LeaseTimeout):
            other.acquire(RESOURCE, ttl=60)
        fake.advance(0.001)  # ... and not past it
        taken = other.acquire(RESOURCE, ttl=60)
        assert taken.holder == str(HOST_C)
        assert other.waiting(RESOURCE) == ()
    assert len(ended) == 1 and isinstance(ended[0], _Woken)


def test_waiters_in_threads_are_served_in_their_arrival_order(
    catalogs: Callable[..., Catalog],
) -> None:
    holder = Leases(catalogs(HOST_A), poll=0.01)
    first = holder.acquire(RESOURCE, ttl=60)
    served: list[int] = []
    threads = []
    for n in range(4):
        who = WorkerId(host=f"waiter-{n}", pid=1000 + n)
        waiter = Leases(catalogs(who), poll=0.01)

        def take(waiter: Leases = waiter, n: int = n) -> None:
            lease = waiter.acquire(RESOURCE, ttl=60, wait=60)
            served.append(n)
            waiter.release(lease)

        threads.append(threading.Thread(target=take))
        threads[-1].start()
        expected = [str(WorkerId(host=f"waiter-{m}", pid=1000 + m)) for m in range(n + 1)]
        _eventually(
            lambda expected=expected: _queued(holder) == expected,
            f"waiter {n} queued behind the others",
        )
    holder.release(first)
    for thread in threads:
        thread.join(60)
    assert served == [0, 1, 2, 3]
    assert holder.current(RESOURCE) is None and holder.waiting(RESOURCE) == ()


def test_a_restore_waiting_for_a_drive_is_served_before_archives_that_came_earlier(
    catalogs: Callable[..., Catalog],
) -> None:
    holder = Leases(catalogs(HOST_A), poll=0.01)
    first = holder.acquire(RESOURCE, ttl=60)
    served: list[str] = []
    threads = []
    asks = [
        ("archive-1", PRIORITY_ARCHIVE),
        ("archive-2", PRIORITY_ARCHIVE),
        ("restore-1", PRIORITY_RESTORE),
        ("restore-2", PRIORITY_RESTORE),
    ]
    for n, (name, priority) in enumerate(asks):
        waiter = Leases(catalogs(WorkerId(host=name, pid=2000 + n)), poll=0.01)

        def take(waiter: Leases = waiter, name: str = name, priority: int = priority) -> None:
            lease = waiter.acquire(RESOURCE, ttl=60, wait=60, priority=priority)
            served.append(name)
            waiter.release(lease)

        threads.append(threading.Thread(target=take))
        threads[-1].start()
        _eventually(
            lambda n=n: len(holder.waiting(RESOURCE)) == n + 1, f"{name} queued behind the others"
        )
    queue = holder.waiting(RESOURCE)
    assert [WorkerId.parse(w.holder).host for w in queue] == [  # type: ignore[union-attr]
        "restore-1",
        "restore-2",
        "archive-1",
        "archive-2",
    ]
    assert [w.priority for w in queue] == [10, 10, 0, 0]
    holder.release(first)
    for thread in threads:
        thread.join(60)
    assert served == ["restore-1", "restore-2", "archive-1", "archive-2"]


def test_a_try_acquire_goes_before_less_urgent_waiters_but_never_before_as_urgent_ones(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    holder = on_fake_time(HOST_A)
    first = holder.acquire(RESOURCE, ttl=60)
    with _hung_waiter(on_fake_time, HOST_B, priority=PRIORITY_ARCHIVE):  # an archive waits
        holder.release(first)
        same = on_fake_time(HOST_C)
        with pytest.raises(LeaseTimeout) as behind:  # as urgent: it must wait its turn
            same.acquire(RESOURCE, ttl=60, priority=PRIORITY_ARCHIVE)
        assert behind.value.ahead == 1
        urgent = on_fake_time(WorkerId(host="host-d", pid=404))
        lease = urgent.acquire(RESOURCE, ttl=60, priority=PRIORITY_RESTORE)
        assert lease.holder == str(WorkerId(host="host-d", pid=404))
        urgent.release(lease)


def _catalog_at(catalog_url: str, revision: str, *statements: Any) -> None:
    """A catalog as an older release left it: its schema at `revision`, then `statements`."""
    import sqlalchemy as sa
    from alembic import command

    engine = sa.create_engine(catalog_url)
    try:
        with engine.begin() as conn:
            command.upgrade(schema._config(conn), revision)
            for statement in statements:
                conn.execute(statement)
    finally:
        engine.dispose()


def test_waiters_queued_before_the_upgrade_to_priorities_keep_their_place_at_priority_0(
    catalog_url: str,
) -> None:
    import sqlalchemy as sa

    before = "0004"  # the revision before 0005 gave waiters a priority
    _catalog_at(
        catalog_url,
        before,
        sa.text(
            "INSERT INTO archive_core_lease_waiters "
            "(resource, token, holder, purpose, arrived, expires) "
            "VALUES (:r, 'tok', 'host-b:202', 'archive job 7', :t, :t)"
        ).bindparams(r=RESOURCE, t=T0),
    )
    catalog = Catalog(catalog_url)
    try:
        was, now = catalog.upgrade()
        assert was.version == before and now.current
        (kept,) = catalog.leases.waiting(RESOURCE)
        assert (kept.holder, kept.purpose, kept.priority) == ("host-b:202", "archive job 7", 0)
    finally:
        catalog.close()


def test_hold_renews_in_the_background_and_releases_on_exit(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    leases = on_fake_time(HOST_A)
    other = on_fake_time(HOST_B)
    with leases.hold(RESOURCE, ttl=30, renew_every=0.01, purpose="format A00001L8") as held:
        assert held.lease.expires == T0 + dt.timedelta(seconds=30)
        fake.advance(20)
        renewed_to = T0 + dt.timedelta(seconds=50)
        _eventually(lambda: held.lease.expires == renewed_to, "the hold renewed its lease")
        assert leases.current(RESOURCE) == held.lease
        fake.advance(20)  # past the first expiry, within the renewed one
        with pytest.raises(LeaseTimeout):
            other.acquire(RESOURCE, ttl=30)
        held.check()
        assert held.lost is None
    assert leases.current(RESOURCE) is None


def test_hold_reports_a_lease_it_could_not_keep_and_exit_raises_lease_lost_after_a_takeover(
    on_fake_time: Callable[..., Leases], fake: FakeTime
) -> None:
    leases = on_fake_time(HOST_A)
    other = on_fake_time(HOST_B)
    with (
        pytest.raises(LeaseLost) as lost_on_exit,
        leases.hold(RESOURCE, ttl=10, renew_every=9) as held,
    ):
        held.check()
        fake.advance(10)  # no renewal came in time (the next is 9 real seconds away)
        with pytest.raises(LeaseLost, match="could not be renewed in time") as lost:
            held.check()
        assert held.lost is lost.value
        taken = other.acquire(RESOURCE, ttl=10)
    assert lost_on_exit.value.holder == str(HOST_B)
    assert lost_on_exit.value.action == "released"
    assert other.current(RESOURCE) == taken


class _Unreachable(Catalog):
    """A catalog that can be cut off, as a database host behind a broken network is."""

    down = False
    refused = 0

    def _run(self, work: Callable[[Any, Any], Any], *, write: bool) -> Any:
        if self.down:
            self.refused += 1
            raise CatalogError("Catalog operation failed: connection refused", retryable=True)
        return super()._run(work, write=write)


def test_hold_that_cannot_reach_the_catalog_reports_its_lease_lost_once_it_would_expire(
    catalog_url: str, fake: FakeTime
) -> None:
    catalog = _Unreachable(catalog_url, worker=HOST_A)
    leases = Leases(catalog, clock=fake.now, monotonic=fake.monotonic, sleep=fake.sleep)
    try:
        with (
            pytest.raises(LeaseLost) as lost_on_exit,
            leases.hold(RESOURCE, ttl=30, renew_every=0.01) as held,
        ):
            catalog.down = True
            _eventually(lambda: catalog.refused >= 3, "the hold tried to renew")
            fake.advance(29.9)
            held.check()  # renewals failing, but the lease surely holds yet
            fake.advance(0.1)
            with pytest.raises(LeaseLost) as lost:
                held.check()
        assert lost_on_exit.value is lost.value
        assert lost.value.reason == (
            "it could not be renewed in time (Catalog operation failed: connection refused)"
        )
        assert "so another worker may hold it now" in lost.value.message
        catalog.down = False
        assert leases.current(RESOURCE) == held.lease  # left to expire, as it has
    finally:
        catalog.close()


def test_hold_releases_when_its_body_raises_and_lets_the_bodys_error_through(
    on_fake_time: Callable[..., Leases],
) -> None:
    leases = on_fake_time(HOST_A)

    class TapeJammed(Exception):
        pass

    with pytest.raises(TapeJammed), leases.hold(RESOURCE, ttl=30):
        raise TapeJammed
    assert leases.current(RESOURCE) is None


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        ({"resource": "", "ttl": 10}, "resource must be a non-empty string"),
        ({"resource": "d" * 256, "ttl": 10}, "at most 255 characters"),
        ({"resource": RESOURCE, "ttl": 0}, "ttl must be more than 0 seconds"),
        ({"resource": RESOURCE, "ttl": 10, "wait": -1}, "wait must be 0 or more seconds"),
        ({"resource": RESOURCE, "ttl": 10, "purpose": "p" * 256}, "at most 255 characters"),
    ],
)
def test_bad_lease_arguments_are_refused_before_any_transaction(
    tmp_path: Path, arguments: dict[str, Any], complaint: str
) -> None:
    catalog = Catalog(f"sqlite:///{tmp_path / 'never' / 'made.sqlite'}")
    with pytest.raises(ValueError, match=complaint):
        catalog.leases.acquire(**arguments)
    with pytest.raises(ValueError, match=complaint), catalog.leases.hold(**arguments):
        pass
    assert not (tmp_path / "never").exists()


def test_a_catalog_from_before_leases_gets_their_tables_from_catalog_upgrade(
    catalog_url: str,
) -> None:
    before_leases = "0002"  # the revision before 0003 made the lease tables
    _catalog_at(catalog_url, before_leases)
    catalog = Catalog(catalog_url)
    try:
        with pytest.raises(CatalogError, match="archive-core catalog upgrade"):
            catalog.leases.acquire(RESOURCE, ttl=10)
        was, now = catalog.upgrade()
        assert was.version == before_leases and now.current
        lease = catalog.leases.acquire(RESOURCE, ttl=10)
        assert catalog.leases.current(RESOURCE) == lease
    finally:
        catalog.close()


def test_a_driver_built_by_the_site_reaches_the_site_catalogs_leases(tmp_path: Path) -> None:
    from archive_core.policies import load_config
    from archive_core.site import Site
    from tests.sites import filesys_site

    config, _ = filesys_site(tmp_path)
    site = Site(load_config(config))
    try:
        leases = site.target("disk0").instance.context.leases
        assert leases is site.catalog.leases
        assert not (tmp_path / "catalog.sqlite").exists()  # nothing opened until asked
        with leases.hold("drive:disk0/0", ttl=30) as held:
            assert site.catalog.leases.current("drive:disk0/0") == held.lease
    finally:
        site.close()


# --- real processes, real time ---------------------------------------------------------------


class _Process:
    """A tests/lease_worker.py process and what it says on stdout, one JSON line an event."""

    def __init__(self, directory: Path, mode: str, url: str, log: Path, *options: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
        self._stderr = directory / f"{mode}-{time.monotonic_ns()}.err"
        with open(self._stderr, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(WORKER), mode, url, RESOURCE, str(log), *options],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                cwd=REPO,
            )
        self.pid = self.popen.pid
        self._buffer = b""
        self.holder = self.expect("ready")["holder"]

    def expect(self, event: str, timeout: float = 30.0) -> dict[str, Any]:
        assert self.popen.stdout is not None
        fd = self.popen.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                said = json.loads(line)
                assert said["event"] != "crashed", f"worker {self.pid}: {said['traceback']}"
                if said["event"] == event:
                    return said
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"worker {self.pid} did not say {event!r}: {self.stderr()}"
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                assert chunk, f"worker {self.pid} exited before {event!r}: {self.stderr()}"
                self._buffer += chunk

    def go(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(b"go\n")
        self.popen.stdin.flush()

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stderr(self) -> str:
        return self._stderr.read_text(errors="replace")[-2000:]

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(30)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., _Process]]:
    started: list[_Process] = []

    def new(mode: str, url: str, log: Path, *options: str) -> _Process:
        process = _Process(
            tmp_path, mode, url, log, "--waiter-ttl", str(PROCESS_WAITER_TTL), *options
        )
        started.append(process)
        return process

    yield new
    for process in started:
        process.close()


def _database_now(catalog: Catalog) -> dt.datetime:
    """Now on the clock the catalog's leases keep: the server's on PostgreSQL."""
    import sqlalchemy as sa

    def work(conn: Any, _tables: Any) -> dt.datetime:
        if conn.dialect.name == "postgresql":
            return conn.execute(sa.select(sa.func.clock_timestamp())).scalar_one()
        return dt.datetime.now(dt.UTC)

    return catalog._run(work, write=False).astimezone(dt.UTC)


def _queued(leases: Leases) -> list[str]:
    return [w.holder for w in leases.waiting(RESOURCE)]


@pytest.mark.slow
def test_processes_racing_for_one_lease_never_hold_it_at_the_same_time(
    catalogs: Callable[..., Catalog],
    catalog_url: str,
    spawn: Callable[..., _Process],
    tmp_path: Path,
) -> None:
    Leases(catalogs()).current(RESOURCE)  # the tables exist: the race is between leases
    log = tmp_path / "intervals"
    workers, rounds = 5, 10
    racing = [spawn("race", catalog_url, log, "--rounds", str(rounds)) for _ in range(workers)]
    for process in racing:
        process.go()
    for process in racing:
        process.expect("done", timeout=60)
    intervals = sorted(
        (float(enter), float(leave), int(pid))
        for pid, enter, leave in (line.split() for line in log.read_text().splitlines())
    )
    assert len(intervals) == workers * rounds
    assert {pid for _, _, pid in intervals} == {p.pid for p in racing}
    overlaps = [
        (before, after) for before, after in itertools.pairwise(intervals) if after[0] < before[1]
    ]
    assert not overlaps, f"two holders at once: {overlaps[:3]}"


@pytest.mark.slow
def test_a_sigkilled_holders_lease_is_taken_over_after_its_expiry_and_not_before(
    catalogs: Callable[..., Catalog],
    catalog_url: str,
    spawn: Callable[..., _Process],
    tmp_path: Path,
) -> None:
    catalog = catalogs()
    ours = Leases(catalog, poll=0.02)
    ours.current(RESOURCE)
    holder = spawn("hold", catalog_url, tmp_path / "log", "--ttl", "1.5", "--renew-every", "0.25")
    first = dt.datetime.fromisoformat(holder.expect("held")["expires"])

    def renewed() -> bool:
        lease = ours.current(RESOURCE)
        return lease is not None and lease.expires > first

    _eventually(renewed, "the holder's hold renewed its lease from its own thread")
    holder.kill()
    last = ours.current(RESOURCE)
    assert last is not None and last.holder == holder.holder
    expiry = last.expires  # on the database's clock, as every grant is

    asked = _database_now(catalog)
    with pytest.raises(LeaseTimeout) as busy:
        ours.acquire(RESOURCE, ttl=5)
    answered = _database_now(catalog)
    assert answered < expiry, f"the try came too late to prove anything ({asked} .. {answered})"
    assert busy.value.holder == holder.holder
    assert f"worker {holder.pid} on " in busy.value.message

    taken = ours.acquire(RESOURCE, ttl=5, wait=10)
    assert taken.taken_over_from == holder.holder
    assert taken.granted >= expiry, "taken over before the killed holder's lease expired"
    late = taken.granted - expiry
    assert late < PROMPTLY, f"taken over {late} after the expiry"


@pytest.mark.slow
def test_waiters_in_other_processes_are_served_in_their_arrival_order(
    catalogs: Callable[..., Catalog],
    catalog_url: str,
    spawn: Callable[..., _Process],
    tmp_path: Path,
) -> None:
    ours = Leases(catalogs(), poll=0.02)
    first = ours.acquire(RESOURCE, ttl=30)
    log = tmp_path / "granted"
    waiters: list[_Process] = []
    for _ in range(4):
        waiter = spawn("wait", catalog_url, log, "--keep", "0.05")
        arrived = [w.holder for w in waiters] + [waiter.holder]
        _eventually(lambda arrived=arrived: _queued(ours) == arrived, "the waiter queued last")
        waiters.append(waiter)
    ours.release(first)
    for waiter in waiters:
        waiter.expect("done")
    served = [int(line.split()[0]) for line in log.read_text().splitlines()]
    assert served == [w.pid for w in waiters]
    assert ours.waiting(RESOURCE) == () and ours.current(RESOURCE) is None


@pytest.mark.slow
def test_a_sigkilled_waiter_holds_up_those_behind_it_only_until_its_place_expires(
    catalogs: Callable[..., Catalog],
    catalog_url: str,
    spawn: Callable[..., _Process],
    tmp_path: Path,
) -> None:
    ours = Leases(catalogs(), poll=0.02)
    first = ours.acquire(RESOURCE, ttl=30)
    log = tmp_path / "granted"
    dead = spawn("wait", catalog_url, log)
    _eventually(lambda: _queued(ours) == [dead.holder], "the first waiter queued")
    behind = spawn("wait", catalog_url, log)
    _eventually(lambda: _queued(ours) == [dead.holder, behind.holder], "the second queued")
    dead.kill()
    places = ours.waiting(RESOURCE)
    assert [p.holder for p in places] == [dead.holder, behind.holder], "read too late"
    place = places[0]
    ours.release(first)
    behind.expect("done")
    pid, _, granted = log.read_text().split()
    assert int(pid) == behind.pid
    granted_at = dt.datetime.fromisoformat(granted)
    assert granted_at >= place.expires, "the dead waiter's place was skipped before it expired"
    assert granted_at - place.expires < PROMPTLY
    assert ours.waiting(RESOURCE) == ()


def test_a_sigkilled_holders_lease_is_broken_at_once_by_an_operator_with_proof(
    catalogs: Callable[..., Catalog],
    catalog_url: str,
    spawn: Callable[..., _Process],
    tmp_path: Path,
) -> None:
    ours = Leases(catalogs(), poll=0.02)
    holder = spawn("hold", catalog_url, tmp_path / "log", "--ttl", "600")
    holder.expect("held")
    with pytest.raises(LeaseHolderAlive) as alive:
        ours.break_dead(RESOURCE, proof="no mount of the drive is left")
    assert (
        f"worker {holder.pid} on " in alive.value.message and "still running" in alive.value.message
    )
    assert ours.current(RESOURCE).holder == holder.holder  # changed nothing
    holder.kill()
    broken = ours.break_dead(RESOURCE, proof="no mount of the drive is left")
    assert broken is not None and broken.holder == holder.holder
    assert ours.current(RESOURCE) is None
    assert ours.acquire(RESOURCE, ttl=5).taken_over_from is None  # free, long before expiry
    assert ours.break_dead("drive:nobody/0", proof="nothing") is None


def test_a_lease_held_from_another_host_is_not_broken_from_this_one(
    on_fake_time: Callable[..., Leases],
) -> None:
    on_fake_time(HOST_A).acquire(RESOURCE, ttl=30, purpose="archive job VX-1")
    with pytest.raises(LeaseHolderAlive) as refused:
        on_fake_time(HOST_B).break_dead(RESOURCE, proof="no mount left")
    assert "worker 101 on host-a (archive job VX-1)" in refused.value.message
    assert "cannot be told" in refused.value.message and "2026-03-04" in refused.value.message
    assert on_fake_time(HOST_C).current(RESOURCE) is not None
