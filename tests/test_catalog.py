"""The catalog and journal on every backend: SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading
from pathlib import Path
from typing import Any

import attrs
import pytest

from archive_core import workers
from archive_core.catalog import (
    HEARTBEAT_STALE,
    Catalog,
    CopyRecord,
    JournalEntry,
    JournalResult,
)
from archive_core.errors import CatalogError
from archive_core.portal import ArchiveCorePlugin
from archive_core.workers import WorkerId
from tests.sites import POLICY, filesys_site, media

SHA1 = "a" * 40


def _copy(locator: str = "x_VX-1_" + SHA1 + ".mov", *, sha1: str = SHA1) -> CopyRecord:
    return CopyRecord(
        policy="p",
        target="t",
        external_id=f"filesys://t/{locator}",
        locator=locator,
        name=locator,
        item_id="VX-1",
        sha1=sha1,
        sha256="b" * 64,
        size=10,
        created=dt.datetime.now(dt.UTC),
    )


def _archive_one(catalog: Catalog, copy: CopyRecord, *, job: str = "j") -> None:
    batch = catalog.begin(
        job_id=job,
        policy="p",
        target=copy.target,
        operation="archive",
        entries=[JournalEntry(key="0", name=copy.name)],
    )
    catalog.finish(batch.id, [JournalResult(key="0", ok=True, copy=copy)])


def _delete_one(catalog: Catalog, copy: CopyRecord) -> None:
    batch = catalog.begin(
        job_id="d",
        policy="p",
        target=copy.target,
        operation="delete",
        entries=[JournalEntry(key="0", name=copy.locator)],
    )
    catalog.finish(batch.id, [JournalResult(key="0", ok=True, removed=copy.external_id)])


def test_recorded_copy_is_found_only_with_its_own_sha1(catalog_url):
    catalog = Catalog(catalog_url)
    copy = _copy()
    _archive_one(catalog, copy)
    assert catalog.find_copies("t", [(copy.name, SHA1)]) == {
        copy.name: catalog.copy(copy.external_id)
    }
    assert catalog.find_copies("t", [(copy.name, "c" * 40)]) == {}
    assert catalog.find_copies("other", [(copy.name, SHA1)]) == {}
    [record] = catalog.copies(policy="p")
    assert (record.size, record.sha256, record.created.tzinfo) == (10, "b" * 64, dt.UTC)
    catalog.close()


def test_recording_the_same_copy_twice_keeps_one_row(catalog_url):
    catalog = Catalog(catalog_url)
    _archive_one(catalog, _copy(), job="a")
    _archive_one(catalog, _copy(), job="b")
    assert len(catalog.copies()) == 1
    assert [r.state for r in catalog.journal()] == ["done", "done"]
    catalog.close()


def _process(*, alive: bool) -> tuple[WorkerId, subprocess.Popen]:
    """A worker id of a real process of this host: still running, or gone."""
    child = subprocess.Popen(["sleep", "60" if alive else "0"])
    worker = workers.of_process(child.pid)
    if not alive:
        child.wait()
    return worker, child


def _intent(catalog: Catalog, job: str, name: str = "n.mov"):
    entry = JournalEntry(key="0", name=name)
    return catalog.begin(job_id=job, policy="p", target="t", operation="archive", entries=[entry])


def _other_workers_intent(catalog_url: str, job: str, **worker: Any) -> None:
    """An intent left open by another worker (Catalog(**worker)). That worker's catalog object
    is closed at once: nothing in this process may keep beating its heartbeat (a thread that
    would, with the test's clock, after the test's server is gone)."""
    other = Catalog(catalog_url, **worker)
    _intent(other, job)
    other.close()


def test_a_dead_workers_intent_is_unfinished_until_a_rerun_abandons_it(catalog_url):
    dead, _ = _process(alive=False)
    _other_workers_intent(catalog_url, "dead", worker=dead)
    catalog = Catalog(catalog_url)
    [open_intent] = catalog.unfinished()
    assert (open_intent.job_id, open_intent.state) == ("dead", "intent")
    rerun = _intent(catalog, "again")
    assert rerun.abandoned == {"n.mov": (str(dead),)}
    assert [(r.job_id, r.state) for r in catalog.journal()] == [
        ("dead", "abandoned"),
        ("again", "intent"),
    ]
    catalog.finish(rerun.id, [JournalResult(key="0", ok=False, error="disk full")])
    assert catalog.unfinished() == []
    assert catalog.journal(job_id="again")[0].error == "disk full"
    catalog.close()


def test_a_live_workers_intent_is_never_taken_for_abandoned(catalog_url):
    live, child = _process(alive=True)
    try:
        _other_workers_intent(catalog_url, "live", worker=live)
        catalog = Catalog(catalog_url)
        assert _intent(catalog, "second").abandoned == {}
        assert {r.job_id for r in catalog.unfinished()} == {"live", "second"}
    finally:
        child.kill()
        child.wait()
    # Once that process is gone, its intent is dead work.
    assert _intent(catalog, "third").abandoned == {"n.mov": (str(live),)}
    catalog.close()


def test_another_hosts_intent_is_live_while_its_heartbeat_is_fresh(catalog_url):
    now = [dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)]
    elsewhere = WorkerId(host="portal-worker-2", pid=4242, pid_space="b00t-1", start=99)
    _other_workers_intent(catalog_url, "remote", worker=elsewhere, clock=lambda: now[0])
    catalog = Catalog(catalog_url, clock=lambda: now[0])
    now[0] += HEARTBEAT_STALE - dt.timedelta(seconds=1)
    assert _intent(catalog, "early").abandoned == {}
    now[0] += dt.timedelta(seconds=2)  # its heartbeat is now stale: that worker is gone
    assert _intent(catalog, "late").abandoned == {"n.mov": (str(elsewhere),)}
    catalog.close()


def test_this_processes_own_intent_is_live_until_its_batch_ends(catalog_url):
    catalog = Catalog(catalog_url)
    first = _intent(catalog, "thread-1")  # another thread of this worker still runs it
    assert _intent(catalog, "thread-2").abandoned == {}
    catalog.end(first.id)  # that batch stopped without a result for its file
    assert _intent(catalog, "thread-3").abandoned == {"n.mov": (str(catalog.worker),)}
    catalog.close()


def test_deleted_copy_leaves_the_catalog_and_verified_copy_gets_a_date(catalog_url):
    catalog = Catalog(catalog_url)
    keep, drop = _copy("keep.mov"), _copy("drop.mov")
    _archive_one(catalog, keep)
    _archive_one(catalog, drop)
    catalog.mark_verified([keep.external_id])
    assert catalog.copy(keep.external_id).last_verified is not None
    _delete_one(catalog, drop)
    assert [c.locator for c in catalog.copies()] == ["keep.mov"]
    catalog.close()


def test_copies_are_found_verified_and_deleted_by_the_external_ids_portal_holds(catalog_url):
    from archive_core.externalid import ExternalId

    def on(target: str, locator: str) -> CopyRecord:
        text = str(ExternalId(scheme="filesys", target=target, locator=locator))
        return attrs.evolve(_copy(locator), target=target, external_id=text)

    catalog = Catalog(catalog_url)
    odd = on("t", "2026/a b#c?d/caf\u00e9 100%.mov")  # quoted in its external id
    same_place_elsewhere = on("t2", odd.locator)
    for copy in (odd, same_place_elsewhere):
        _archive_one(catalog, copy)
    assert catalog.copy(odd.external_id).target == "t"
    assert catalog.copy(same_place_elsewhere.external_id).target == "t2"
    for stranger in (
        odd.external_id.replace("filesys://", "sftp://", 1),  # same place, another driver
        "not an external id",
        "filesys://t/elsewhere.mov",
    ):
        assert catalog.copy(stranger) is None
    catalog.mark_verified([odd.external_id, "filesys://t/elsewhere.mov"])
    verified = {c.target: c.last_verified for c in catalog.copies()}
    assert verified["t"] is not None and verified["t2"] is None
    _delete_one(catalog, odd)
    assert [c.target for c in catalog.copies()] == ["t2"]
    catalog.close()


def test_a_copy_is_looked_up_by_external_id_through_the_location_index(tmp_path):
    import sqlalchemy as sa

    from archive_core.catalog import _located, _schema

    copies = _schema(sa).copies
    url = f"sqlite:///{tmp_path / 'c.sqlite3'}"
    made = Catalog(url)
    assert made.copies() == []  # the first use makes the schema
    made.close()
    engine = sa.create_engine(url)
    query = copies.select().where(next(_located(copies, ["filesys://t/a/b.mov"])))
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as conn:
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    engine.dispose()
    assert "USING INDEX sqlite_autoindex_archive_core_copies" in plan, plan


def test_workers_recording_the_same_copy_at_once_leave_one_row(catalog_url):
    """Several Portal workers (here threads, each with its own connection) race on one copy."""
    catalogs = [Catalog(catalog_url) for _ in range(4)]
    catalogs[0].copies()  # create the schema once, as a deployed site already has it
    errors: list[BaseException] = []

    def work(catalog: Catalog) -> None:
        try:
            for _ in range(10):
                _archive_one(catalog, _copy())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in catalogs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(catalogs[0].copies()) == 1
    assert len(catalogs[0].journal()) == 40
    for c in catalogs:
        c.close()


def test_unreachable_database_is_a_retryable_error_without_the_password():
    catalog = Catalog("postgresql+psycopg://archive:hunter2@127.0.0.1:1/none")
    with pytest.raises(CatalogError) as caught:
        catalog.copies()
    assert caught.value.retryable
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(catalog)


def test_archive_and_restore_through_portal_with_the_catalog_on_each_backend(
    tmp_path: Path, catalog_url
):
    config, _ = filesys_site(tmp_path, catalog_url=catalog_url)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "pg.mov", b"shared catalog")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    Path(fs.files[0]).unlink()
    plugin.restore([archived], POLICY)
    assert Path(fs.files[0]).read_bytes() == b"shared catalog"
    assert [c.external_id for c in plugin.site().catalog.copies()] == list(archived.external_ids)
    plugin.site().close()


# --- the journal by batch ----------------------------------------------------------------------


def _dead_worker() -> WorkerId:
    return WorkerId(host="portal-worker-9", pid=1, pid_space="a-boot-long-gone", start=1)


def _stale(catalog_url: str) -> Catalog:
    """A catalog as a worker on another host used it, long enough ago to be taken for dead."""
    then = dt.datetime.now(dt.UTC) - HEARTBEAT_STALE - dt.timedelta(seconds=5)
    return Catalog(catalog_url, worker=_dead_worker(), clock=lambda: then)


def test_a_rerun_takes_over_only_its_own_files_from_a_dead_batch_and_the_rest_stay_open(
    catalog_url,
):
    names = [f"clip{n}.mov" for n in range(4)]
    dead = _stale(catalog_url)
    killed = dead.begin(
        job_id="killed",
        policy="p",
        target="t",
        operation="archive",
        entries=[JournalEntry(key=str(n), name=name) for n, name in enumerate(names)],
    )
    # clip0's result was recorded before the worker died; clip1..3 were in flight.
    dead.finish(killed.id, [JournalResult(key="0", ok=True, copy=_copy(names[0]))])
    dead.close()
    catalog = Catalog(catalog_url)
    assert sorted(r.name for r in catalog.unfinished()) == names[1:]

    rerun = catalog.begin(
        job_id="again",
        policy="p",
        target="t",
        operation="archive",
        entries=[JournalEntry(key="0", name=names[0]), JournalEntry(key="1", name=names[1])],
    )
    # clip0 had its result: nothing of the dead worker's to clear for it.
    assert rerun.abandoned == {names[1]: (str(_dead_worker()),)}
    open_ = {(r.job_id, r.name) for r in catalog.unfinished()}
    assert open_ == {
        ("killed", names[2]),
        ("killed", names[3]),
        ("again", names[0]),
        ("again", names[1]),
    }
    catalog.finish(rerun.id, [JournalResult(key=k, ok=True) for k in ("0", "1")])
    catalog.end(rerun.id)

    last = catalog.begin(
        job_id="last",
        policy="p",
        target="t",
        operation="archive",
        entries=[JournalEntry(key="0", name=n) for n in names[2:3]]
        + [JournalEntry(key="1", name=names[3])],
    )
    assert set(last.abandoned) == {names[2], names[3]}
    catalog.finish(last.id, [JournalResult(key=k, ok=True) for k in ("0", "1")])
    catalog.end(last.id)
    assert catalog.unfinished() == []
    states = sorted((r.job_id, r.name, r.state) for r in catalog.journal())
    assert states == [
        ("again", names[0], "done"),
        ("again", names[1], "done"),
        ("killed", names[0], "done"),
        ("killed", names[1], "abandoned"),
        ("killed", names[2], "abandoned"),
        ("killed", names[3], "abandoned"),
        ("last", names[2], "done"),
        ("last", names[3], "done"),
    ]
    catalog.close()


def test_a_batch_stopped_short_stays_open_until_a_rerun_takes_its_files_over(catalog_url):
    catalog = Catalog(catalog_url)
    entries = [JournalEntry(key=str(n), name=f"f{n}") for n in range(3)]
    spec = {"policy": "p", "target": "t", "operation": "archive"}
    stopped = catalog.begin(job_id="stopped", **spec, entries=entries)
    catalog.finish(stopped.id, [JournalResult(key="0", ok=False, error="disk full")])
    catalog.end(stopped.id)  # the catalog refused the rest: no result for f1, f2
    assert sorted(r.name for r in catalog.unfinished()) == ["f1", "f2"]
    rerun = catalog.begin(job_id="rerun", **spec, entries=entries)
    # This very worker ran it: its batch is over, so its leftovers may go.
    assert rerun.abandoned == {"f1": (str(catalog.worker),), "f2": (str(catalog.worker),)}
    catalog.finish(rerun.id, [JournalResult(key=e.key, ok=True) for e in entries])
    assert catalog.unfinished() == []
    [failure] = [r for r in catalog.journal(job_id="stopped") if r.state == "failed"]
    assert (failure.name, failure.error) == ("f0", "disk full")
    catalog.close()


def _statements(catalog: Catalog) -> tuple[list[tuple[str, int]], Any]:
    """Every statement the catalog's engine runs from now on, with its number of rows of
    parameters (an executemany's rows each cost the database a statement)."""
    import sqlalchemy as sa

    seen: list[tuple[str, int]] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append((statement, len(parameters) if executemany else 1))

    catalog.copies()  # the engine exists
    engine = catalog._engine
    sa.event.listen(engine, "before_cursor_execute", count)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", count)


@pytest.mark.parametrize("operation", ["archive", "verify", "restore", "delete"])
def test_a_batch_costs_a_bounded_number_of_statements_whatever_its_size(
    tmp_path: Path, catalog_url, operation
):
    """No statement per file, on either backend: a batch costs a few statements per group of
    results and per chunk of lookups, never one per file."""
    from tests.sites import MemoryDriver, plugin_with_drivers

    plugin = plugin_with_drivers(
        tmp_path,
        {"memory": MemoryDriver},
        policies={"p": {"targets": ["m"]}},
        targets={"m": {"driver": "memory"}},
        catalog_url=catalog_url,
    )
    for n, size in enumerate((1000, 3000)):
        sets = [
            media(tmp_path / f"online{n}", f"f{i}.bin", f"{n}-{i}".encode(), item_id=f"VX-{i}")
            for i in range(size)
        ]
        archived, *_ = plugin.archive(sets, "p", f"warm-{n}") if operation != "archive" else (sets,)
        if operation == "restore":
            archived = [fs._replace(files=[fs.files[0] + ".back"]) for fs in archived]
        seen, stop = _statements(plugin.site().catalog)
        try:
            getattr(plugin, operation)(archived, "p", f"job-{n}")
        finally:
            stop()
        # A group of results (256 files) costs ~5 statements, a lookup one per 500 files; a
        # statement per file would be 1,000 and 3,000.
        assert len(seen) <= 10 + size / 30, f"{operation} of {size} files: {len(seen)} statements"
        # ...and the journal is written per batch and per group, not per file.
        journal = sum(rows for text, rows in seen if "archive_core_journal" in text)
        journal += sum(rows for text, rows in seen if "archive_core_batch" in text)
        assert journal <= 10 + size / 30, f"{operation} of {size} files: {journal} journal rows"
    plugin.site().close()


# --- placement ---------------------------------------------------------------------------------


def test_placement_is_kept_with_its_copy_and_not_lost_when_recorded_again_without(catalog_url):
    catalog = Catalog(catalog_url)
    where = {"barcode": "A00001L9", "partition": "b", "block": 4711}
    placed = attrs.evolve(_copy(), placement=where)
    _archive_one(catalog, placed, job="first")
    assert catalog.copy(placed.external_id).placement == where
    _archive_one(catalog, _copy(), job="again")  # a driver that did not say it this time
    assert catalog.copy(placed.external_id).placement == where
    assert catalog.placements([placed.external_id, "filesys://t/other"]) == {
        placed.external_id: where
    }
    moved = {"barcode": "A00002L9", "partition": "b", "block": 12}
    _archive_one(catalog, attrs.evolve(_copy(), placement=moved), job="rewritten")
    assert catalog.copy(placed.external_id).placement == moved
    catalog.close()
