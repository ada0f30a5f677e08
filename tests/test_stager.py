"""The core's stager: one outcome per item, every mode, durable chunks, workers dead or stopped."""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from archive_core import transfer
from archive_core.transfer.stager import (
    Mode,
    Plan,
    Staged,
    Stager,
    _chunks,
    _processes,
    _stager,
    _threads,
    _worker,
    choose_mode,
)
from tests.stager_tasks import stage_copy, sweep_root

MODES = ["inline", "threads", "processes"]


@attrs.frozen(kw_only=True)
class Item:
    key: str
    source: str
    name: str
    size: int | None = None


class Clock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def small_chunks_and_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks and several worker tasks out of a few dozen files."""
    monkeypatch.setattr(_chunks, "CHUNK_FILES", 8)
    monkeypatch.setattr(_processes, "TASK_FILES", 5)


@pytest.fixture
def stager() -> Iterator[Stager]:
    made = Stager(name="test-stager", workers=2)
    try:
        yield made
    finally:
        made.close()


def sources(
    tmp_path: Path, count: int, *, prefix: str = "f"
) -> tuple[list[Item], dict[str, bytes]]:
    folder = tmp_path / "online"
    folder.mkdir(exist_ok=True)
    items, datas = [], {}
    for n in range(count):
        data = os.urandom(100 + n)
        path = folder / f"{prefix}{n:03d}.bin"
        path.write_bytes(data)
        items.append(Item(key=str(n), source=str(path), name=f"copy{n:03d}.bin", size=len(data)))
        datas[f"copy{n:03d}.bin"] = data
    return items, datas


def plan_for(root: Path) -> Plan[Item, Any]:
    return Plan(
        prepare=lambda item: (item.key, item.source, transfer.check_name(item.name)),
        stage=functools.partial(stage_copy, root=str(root)),
        describe=lambda item: f"copying {item.name}",
        abandon=functools.partial(sweep_root, root=str(root)),
    )


def temporaries(root: Path) -> list[str]:
    return [name for name in os.listdir(root) if name.endswith(".partial")]


def published(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if not p.name.endswith(".partial")}


def child_processes() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.add(int(entry))
    return found


# --- one outcome per item ------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_yields_exactly_one_outcome_per_item_and_publishes_whole_copies(
    tmp_path: Path, stager: Stager, mode: str, small_chunks_and_tasks: None
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, datas = sources(tmp_path, 40)
    os.unlink(items[3].source)  # fails while staged, with the core's own error
    items[7] = attrs.evolve(items[7], name="../escape.bin")  # refused while prepared
    for n, kind in ((11, "denied"), (12, "bug")):  # fail while staged, as the OS or a fault
        path = tmp_path / "online" / f"{kind}.bin"
        path.write_bytes(b"x")
        items[n] = attrs.evolve(items[n], source=str(path))
    progressed: list[int] = []
    outcomes = list(stager.run(items, plan_for(root), mode=mode, progress=progressed.append))
    assert sorted(o.key for o in outcomes) == sorted(i.key for i in items)
    failed = {o.key: o for o in outcomes if not o.ok}
    assert set(failed) == {"3", "7", "11", "12"}
    assert failed["3"].error.startswith("Could not read") and "f003.bin" in failed["3"].error
    assert "'../escape.bin'" in failed["7"].error
    # Worded alike in every mode, a worker process's too: what the work was, then why.
    assert failed["11"].error == (
        f"copying copy011.bin failed: Permission denied ({tmp_path / 'online' / 'denied.bin'})"
    )
    assert failed["11"].retryable
    assert failed["12"].error == "copying copy012.bin failed: ValueError: a bug in the stage step"
    assert not failed["12"].retryable
    for name in ("copy003.bin", "copy007.bin", "copy011.bin", "copy012.bin"):
        del datas[name]
    assert published(root) == datas
    assert temporaries(root) == [] and not (tmp_path / "escape.bin").exists()
    for outcome in outcomes:
        if outcome.ok:
            assert outcome.sha1 == hashlib.sha1(datas[outcome.locator]).hexdigest()
    assert sum(progressed) == sum(len(d) for d in datas.values())


def test_threads_mode_copies_in_worker_threads_and_stops_them(
    tmp_path: Path, stager: Stager
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, _ = sources(tmp_path, 30)
    seen: set[str] = set()
    plan = plan_for(root)
    real_prepare = plan.prepare

    def prepare(item: Item) -> Any:
        seen.add(threading.current_thread().name)
        return real_prepare(item)

    outcomes = list(stager.run(items, attrs.evolve(plan, prepare=prepare), mode="threads"))
    assert all(o.ok for o in outcomes) and len(outcomes) == 30
    assert seen <= {"test-stager-0", "test-stager-1"} and seen
    assert not [t for t in threading.enumerate() if t.name.startswith("test-stager")]


# --- durable chunks ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["inline", "threads"])
def test_staged_copies_are_published_in_chunks_each_made_durable_before_it_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(_chunks, "CHUNK_FILES", 10)
    synced: list[set[str]] = []  # the destinations each sync made durable
    real_sync = transfer.sync_staged

    def sync_staged(staged: Any) -> Any:
        synced.append({os.path.basename(s.destination) for s in staged})
        return real_sync(staged)

    monkeypatch.setattr(transfer.publish, "sync_staged", sync_staged)
    root = tmp_path / "root"
    root.mkdir()
    items, _ = sources(tmp_path, 35)
    stager = Stager(name="test-stager", workers=3, clock=Clock())  # chunks due by count only
    for outcome in stager.run(items, plan_for(root), mode=mode):
        assert outcome.ok
        assert (root / outcome.locator).exists()  # published before it is reported
        assert any(outcome.locator in chunk for chunk in synced)  # and synced before that
    # One sync a chunk, a chunk at least 10 files but the last: inline exactly 10 + 10 + 10 + 5,
    # threads as their groups of results arrive (possibly all 35 at once).
    assert all(len(chunk) >= 10 for chunk in synced[:-1])
    if mode == "inline":
        assert [len(chunk) for chunk in synced] == [10, 10, 10, 5]
    else:
        assert 1 <= len(synced) <= 4 and sum(len(chunk) for chunk in synced) == 35


def test_a_chunk_falls_due_by_its_age_on_the_stagers_clock() -> None:
    clock = Clock()
    chunk = _chunks.Chunk(clock)
    staged = transfer.stage_file(io.BytesIO(b"x"), "/tmp/never-published", replace=False)
    try:
        chunk.add(Staged(key="k", locator="l", staged=staged))
        assert not chunk.due()
        assert chunk.wait(5.0) == _chunks.CHUNK_SECONDS
        clock.now += _chunks.CHUNK_SECONDS
        assert chunk.due() and chunk.wait(5.0) == 0.0
    finally:
        staged.discard()


def test_publishing_without_syncs_is_the_plans_choice(tmp_path: Path, monkeypatch) -> None:
    syncs: list[str] = []
    monkeypatch.setattr(transfer.durability, "sync_filesystem", syncs.append)
    monkeypatch.setattr(transfer.durability, "fsync_directory", syncs.append)
    root = tmp_path / "root"
    root.mkdir()
    items, datas = sources(tmp_path, 12)
    plan = attrs.evolve(
        plan_for(root), publish=functools.partial(transfer.publish_staged, sync=False)
    )
    assert all(o.ok for o in Stager(name="s", workers=1).run(items, plan, mode="inline"))
    assert syncs == [] and published(root) == datas


# --- worker processes ----------------------------------------------------------------------


def test_worker_processes_are_fresh_interpreters_running_the_stagers_worker(
    tmp_path: Path, stager: Stager
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, _ = sources(tmp_path, 6)
    others = child_processes()
    assert all(o.ok for o in stager.run(items, plan_for(root), mode="processes"))
    started = child_processes() - others
    assert started
    for pid in started:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert command[1] == b"-c"  # never a fork of this process
        assert b"archive_core.transfer.stager._worker" in command[2]
    stager.close()
    assert child_processes() == others


def test_a_dead_worker_process_fails_only_its_own_tasks_retryably(
    tmp_path: Path, stager: Stager, small_chunks_and_tasks: None
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, datas = sources(tmp_path, 40)
    poison = tmp_path / "online" / "poison.bin"
    poison.write_bytes(b"kills its worker")
    items[7] = attrs.evolve(items[7], source=str(poison))  # in the second task (5-9)
    outcomes = list(stager.run(items, plan_for(root), mode="processes"))
    assert sorted(o.key for o in outcomes) == sorted(i.key for i in items)
    lost = {int(o.key) for o in outcomes if not o.ok}
    tasks = [set(range(start, start + 5)) for start in range(0, 40, 5)]
    assert set(range(5, 10)) <= lost
    assert lost == set().union(*[t for t in tasks if t <= lost])  # whole tasks only
    for outcome in outcomes:
        if not outcome.ok:
            assert outcome.retryable and "stopped unexpectedly" in outcome.error
            assert "killed by signal 9" in outcome.error
    assert temporaries(root) == []  # the dead worker's half copy was removed
    copies = published(root)
    for name, data in copies.items():
        assert data == datas[name]  # whole, checked copies only
    assert {o.locator for o in outcomes if o.ok} <= set(copies)
    # A worker killed after publishing a task, before its answer left, had its task failed
    # too: a re-run reports those copies reused and makes the others.
    again = list(
        stager.run(
            [i for i in items if int(i.key) in lost and i.key != "7"],
            plan_for(root),
            mode="processes",
        )
    )
    assert all(o.ok for o in again)
    assert {o.locator for o in again if o.reused} == set(copies) - {
        o.locator for o in outcomes if o.ok
    }


def test_when_every_worker_dies_the_rest_of_the_batch_still_gets_one_outcome_each(
    tmp_path: Path, small_chunks_and_tasks: None
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, _ = sources(tmp_path, 30)
    poison = tmp_path / "online" / "poison.bin"
    poison.write_bytes(b"kills its worker")
    items = [attrs.evolve(i, source=str(poison)) if int(i.key) % 5 == 0 else i for i in items]
    stager = Stager(name="test-stager", workers=1)  # one worker, replaced as each dies
    try:
        outcomes = list(stager.run(items, plan_for(root), mode="processes"))
    finally:
        stager.close()
    assert sorted(o.key for o in outcomes) == sorted(i.key for i in items)
    assert not any(o.ok for o in outcomes)  # every task held a poisoned file
    assert temporaries(root) == []


@pytest.mark.parametrize("mode", MODES)
def test_an_early_stopped_batch_leaves_only_whole_copies_and_no_temporaries(
    tmp_path: Path,
    stager: Stager,
    mode: str,
    small_chunks_and_tasks: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What bounds the copies made before the close is the stager's window of results out at
    # once (threads) or of tasks queued ahead (processes), not time: one file per hand-off
    # keeps the threads' window (two chunks and a hand-off per thread) well under the batch.
    monkeypatch.setattr(_threads, "HANDOFF_FILES", 1)
    root = tmp_path / "root"
    root.mkdir()
    items, datas = sources(tmp_path, 60)
    others = child_processes()
    stream = stager.run(items, plan_for(root), mode=mode)
    first = next(stream)
    stream.close()
    assert first.ok
    assert temporaries(root) == []
    copies = published(root)
    assert 0 < len(copies) < 60
    for name, data in copies.items():
        assert data == datas[name]  # every copy there is complete and checked
    assert not [t for t in threading.enumerate() if t.name.startswith("test-stager")]
    if mode == "processes":
        assert child_processes() == others  # the busy workers were killed


def test_a_worker_told_to_stop_drops_what_it_staged_and_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from archive_core.transfer import _unnamed

    monkeypatch.setattr(_unnamed, "O_TMPFILE", 0)  # named temporary files: visible if left
    root = tmp_path / "root"
    root.mkdir()
    items, _ = sources(tmp_path, 6)
    entries = [(i.key, (i.key, i.source, i.name)) for i in items]
    stage = functools.partial(stage_copy, root=str(root))
    for stop_at in (3, 6):  # between two files; before the first name is published
        asked = iter(range(100))

        def stop(asked: Iterator[int] = asked, stop_at: int = stop_at) -> bool:
            return next(asked) >= stop_at

        with pytest.raises(_worker.Abandoned):
            _worker.run_task(stage, transfer.publish_staged, entries, stop=stop)
        assert os.listdir(root) == []


# --- choosing a mode ---------------------------------------------------------------------------


def test_auto_picks_processes_only_for_big_batches_of_mostly_small_files() -> None:
    small = [Item(key=str(n), source="s", name="n", size=4096) for n in range(2_000)]
    unknown = [attrs.evolve(i, size=None) for i in small]
    large = [attrs.evolve(i, size=_stager.SMALL_FILE) for i in small]
    assert choose_mode(small, threads=4, processes=2) is Mode.PROCESSES
    assert choose_mode(unknown, threads=4, processes=2) is Mode.PROCESSES
    assert choose_mode(small[:1_999], threads=4, processes=2) is Mode.INLINE
    assert choose_mode(small, threads=4, processes=1) is Mode.INLINE
    assert choose_mode(large, threads=4, processes=2) is Mode.INLINE
    assert choose_mode(small[:10], threads=4, processes=2, remote=True) is Mode.THREADS
    assert choose_mode(small, threads=4, processes=2, remote=True) is Mode.THREADS
    assert choose_mode(small[:10], threads=1, processes=1, remote=True) is Mode.INLINE


def test_a_plan_another_interpreter_cannot_run_stages_inline_and_says_why(
    tmp_path: Path, stager: Stager, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    items, datas = sources(tmp_path, 5)
    plan = attrs.evolve(
        plan_for(root), stage=lambda task, progress: stage_copy(task, progress, root=str(root))
    )
    others = child_processes()
    with caplog.at_level(logging.WARNING):
        outcomes = list(stager.run(items, plan, mode="processes"))
    assert all(o.ok for o in outcomes) and published(root) == datas
    assert child_processes() == others
    assert "cannot be run by another interpreter" in caplog.text


def test_threads_with_one_worker_allowed_run_inline() -> None:
    stager = Stager(name="s", workers=1)
    assert stager.mode_for([], plan_for(Path("/")), "threads", remote=False) is Mode.INLINE
    assert [m.value for m in Mode] == ["auto", "inline", "threads", "processes"]


def test_results_a_driver_staged_itself_are_published_in_chunks_or_dropped_when_stopped(
    tmp_path: Path, small_chunks_and_tasks: None
) -> None:
    from archive_core.transfer.stager import publish_results

    items, datas = sources(tmp_path, 20)

    def run(root: Path) -> Iterator[Any]:
        root.mkdir()
        plan = plan_for(root)
        groups = ([plan.stage(plan.prepare(item), None)] for item in items)  # one per group
        return publish_results(
            groups, plan.publish, name="t", clock=Clock(), taken=lambda count: None
        )

    whole = tmp_path / "whole"
    outcomes = list(run(whole))
    assert [o.key for o in outcomes] == [i.key for i in items]
    assert all(o.ok for o in outcomes)
    assert published(whole) == datas

    stopped = tmp_path / "stopped"
    stream = run(stopped)
    assert next(stream).ok  # the first chunk's first outcome: a later chunk is staged
    stream.close()
    assert temporaries(stopped) == []
    copies = published(stopped)
    assert 0 < len(copies) < 20
    for name, data in copies.items():
        assert data == datas[name]  # every copy there is complete and checked
