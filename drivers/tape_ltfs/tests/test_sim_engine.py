"""The simulator as a discrete-event model: callers with their own timelines, drives and the
robot as resources, a timeline per resource, feed and sink rates measured on the clock, and a
store that several processes share and a kill cannot tear."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import textwrap

import pytest
from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings
from archive_core_tape_ltfs.cost import MB, timing_for
from archive_core_tape_ltfs.model import LoadRequest, MountRequest, UnloadRequest
from archive_core_tape_ltfs.sim.library import ROBOT, SimLibrary, SyntheticContent, makespan


def four_drive_settings(tmp_path, *, seed: int = 0, name: str = "library") -> SimulatorSettings:
    return SimulatorSettings(
        state_dir=tmp_path / name,
        slots=12,
        import_export=0,
        drives=4,
        seed=seed,
        cartridges=tuple(
            SimulatedCartridge(barcode=f"DAT00{n}L9", slot=n, new=n > 4, formatted=True)
            for n in range(1, 7)
        ),
    )


@pytest.fixture
def lib4(tmp_path) -> SimLibrary:
    return SimLibrary.open(four_drive_settings(tmp_path))


def load_all(library: SimLibrary, drives: int = 4) -> None:
    for n in range(drives):
        library.changer.load(LoadRequest(slot=n + 1, drive=n))
    for n in range(drives):
        library.drive(n).wait_ready()


def test_four_parallel_unloads_take_one_unload_plus_the_robots_moves(lib4):
    load_all(lib4)
    alone = lib4.worker("alone")
    started = alone.clock.now()
    alone.changer.unload(UnloadRequest(drive=0))
    one_unload = alone.clock.now() - started
    lib4.clock.sleep(one_unload + 60)
    lib4.changer.load(LoadRequest(slot=1, drive=0))
    lib4.drive(0).wait_ready()

    start = lib4.clock.now()
    workers = [lib4.worker(f"unloader-{n}") for n in range(4)]
    for n, worker in enumerate(workers):
        worker.changer.unload(UnloadRequest(drive=n))
    parallel = max(w.clock.now() for w in workers) - start

    move = timing_for(9).robot_move()
    expected = one_unload + 3 * move
    assert parallel == pytest.approx(expected, rel=0.10)
    assert parallel < 2 * one_unload  # the drives' rewinds overlapped
    robot = [e for e in lib4.timeline(ROBOT) if e.start >= start]
    assert len(robot) == 4
    assert all(a.end <= b.start for a, b in itertools.pairwise(robot))


def test_a_worker_that_runs_later_in_real_time_still_gets_the_robot_when_it_was_free(lib4):
    # Worker threads race: the first can finish a whole exchange before the second starts.
    # The second's moves must still go where the robot was idle on the virtual clock, not
    # queue behind every move the first booked.
    first, second = lib4.worker("first"), lib4.worker("second")
    started = first.clock.now()
    first.changer.load(LoadRequest(slot=1, drive=0))
    first.drive(0).wait_ready()
    first.clock.sleep(3600)  # an hour of reading
    first.changer.unload(UnloadRequest(drive=0))
    second.changer.load(LoadRequest(slot=2, drive=1))
    second.drive(1).wait_ready()
    move = timing_for(9).robot_move()
    assert second.clock.now() - started < 3 * move + 60  # not after the first's hour
    robot = sorted(lib4.timeline(ROBOT), key=lambda e: e.start)
    assert [e.caller for e in robot] == ["first", "second", "first"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(robot))


def test_every_drive_and_the_robot_keep_a_timeline_of_who_did_what(lib4):
    load_all(lib4, drives=2)
    worker = lib4.worker("restore-7")
    mount = worker.ltfs.mount(MountRequest(drive=1))
    mount.write_synthetic("clip.mxf", 4 * 10**9, seed=3)
    with mount.open_read("clip.mxf") as fh:
        assert fh.drain() == 4 * 10**9
    worker.ltfs.unmount(mount)
    drive1 = lib4.timeline("drive1")
    operations = [e.operation for e in drive1 if e.caller == "restore-7"]
    assert operations == ["mount", "write", "read", "unmount"]
    read = next(e for e in drive1 if e.operation == "read")
    assert read.bytes == 4 * 10**9 and read.cartridge == "DAT002L9" and read.locates == 1
    assert read.seconds >= timing_for(9).stream(4 * 10**9)[0]
    for resource in ("drive0", "drive1", ROBOT):
        entries = lib4.timeline(resource)
        assert all(a.end <= b.start + 1e-9 for a, b in itertools.pairwise(entries))
    assert makespan(lib4.timeline()) == pytest.approx(
        max(e.end for e in lib4.timeline()) - min(e.start for e in lib4.timeline())
    )


def test_the_same_seed_and_calls_replay_the_same_timeline(tmp_path):
    def run(seed: int, name: str) -> tuple:
        library = SimLibrary.open(four_drive_settings(tmp_path, seed=seed, name=name))
        workers = [library.worker(f"w{n}") for n in range(2)]
        for n, worker in enumerate(workers):
            # Slots 5 and 6 hold new cartridges: their media optimisation is drawn.
            worker.changer.load(LoadRequest(slot=5 + n, drive=n))
        for n, worker in enumerate(workers):
            worker.drive(n).wait_ready(new_cartridge=True)
            worker.changer.unload(UnloadRequest(drive=n))
        return tuple(
            (e.resource, e.operation, e.caller, e.start, e.end) for e in library.timeline()
        )

    first, again, other = run(1, "a"), run(1, "b"), run(2, "c")
    assert first == again
    assert first != other


def test_a_fault_at_a_time_fires_for_the_caller_that_has_got_there(lib4):
    from archive_core_tape_ltfs import errors

    lib4.inject(kind="library_offline", at_time=lib4.clock.now() + 3600)
    ahead = lib4.worker("ahead")
    ahead.clock.sleep(7200)
    lib4.changer.inventory()  # this caller has not got there yet
    with pytest.raises(errors.LibraryOffline):
        ahead.changer.inventory()


def test_an_exchange_costs_what_the_cost_model_says(lib4):
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    mount.write_synthetic("a", 2 * 10**9, seed=1)
    model = timing_for(9)
    drive = lib4.snapshot().drive(0)
    volume = lib4.cartridge("DAT001L9").volume
    predicted = model.exchange(
        files_out=volume.file_count,
        dirty=volume.dirty,
        head=model_head(drive),
        append_block=volume.append_block,
        activity_bytes=drive.activity_bytes,
        files_in=0,
    )
    start = lib4.clock.now()
    lib4.ltfs.unmount(mount)
    lib4.changer.unload(UnloadRequest(drive=0))
    lib4.changer.load(LoadRequest(slot=2, drive=0))
    lib4.drive(0).wait_ready()
    lib4.ltfs.unmount(lib4.ltfs.mount(MountRequest(drive=0)))
    clean_unmount = model.library.clean_unmount_seconds
    assert lib4.clock.now() - start - clean_unmount == pytest.approx(predicted.seconds)


def model_head(drive):
    from archive_core_tape_ltfs.cost import Position

    return Position(partition=drive.partition, block=drive.block)


def test_a_slow_source_makes_the_drive_back_hitch_and_a_fast_one_streams(lib4):
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    mount.write_synthetic("first", 1, seed=0)  # the head is at the end of data from now on
    chunk = b"x" * MB
    for name, source_rate in (("fast", None), ("slow", 50 * MB)):
        with mount.open_write(name) as fh:
            for _ in range(20):
                fh.write(chunk)
                if source_rate:
                    lib4.clock.sleep(len(chunk) / source_rate)  # reading the source takes time
    _, fast, slow = [e for e in lib4.timeline("drive0") if e.operation == "write"]
    assert fast.backhitches == 0 and slow.backhitches > 0
    assert slow.seconds > 20 * MB / (50 * MB)  # as slow as the source, plus the back-hitches
    assert fast.seconds < 20 * MB / (300 * MB) + 1


def test_a_pause_between_files_is_part_of_the_feed_the_drive_sees(lib4):
    """A host that writes each file at full speed but pauses between files (opening the next
    source) feeds the drive no faster on average: a long pause stops it, a short one does
    not, and a sync in between starts a new stream."""
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    mount.write_synthetic("first", 1, seed=0)
    mount.sync()
    size = 100 * MB
    for n, pause in enumerate((0.0, 0.05, 5.0)):
        lib4.clock.sleep(pause)  # the host opens its next source
        mount.write_synthetic(f"file{n}", size, seed=n)
    mount.sync()
    lib4.clock.sleep(5.0)
    mount.write_synthetic("after-sync", size, seed=9)
    writes = [e for e in lib4.timeline("drive0") if e.operation == "write"][1:]
    together, short, long, after_sync = writes
    assert together.backhitches == 0 and short.backhitches == 0
    assert long.backhitches > 0 and long.start == short.end
    assert after_sync.backhitches == 0


def test_a_slow_reader_stretches_the_read_and_back_hitches(lib4):
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    mount.write_synthetic("big", 200 * MB, seed=9)
    with mount.open_read("big") as fh:
        while data := fh.read(10 * MB):
            lib4.clock.sleep(len(data) / (20 * MB))  # the sink takes 20 MB/s
    read = next(e for e in lib4.timeline("drive0") if e.operation == "read")
    assert read.backhitches > 0 and read.seconds >= 200 / 20
    assert lib4.clock.now() >= read.end


def test_synthetic_content_reads_back_the_same_bytes_and_drains_without_them(lib4):
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    content = SyntheticContent(size=300_001, seed=42)
    mount.write_synthetic("s.bin", content.size, seed=content.seed)
    with mount.open_read("s.bin") as fh:
        assert fh.content == content
        data = b"".join(iter(lambda: fh.read(65_000), b""))
    assert hashlib.sha256(data).hexdigest() == content.sha256()
    assert data[1000:2000] == content.read(1000, 1000)
    with mount.open_read("s.bin") as fh:
        assert fh.drain() == content.size and fh.read() == b""
    assert SyntheticContent(size=10**13, seed=1).fingerprint != content.fingerprint


def test_written_bytes_round_trip_and_are_read_in_pieces(lib4):
    load_all(lib4, drives=1)
    mount = lib4.ltfs.mount(MountRequest(drive=0))
    payload = os.urandom(1_000_000)
    with mount.open_write("real.bin") as fh:
        fh.write(payload)
    with mount.open_read("real.bin") as fh:
        parts = [fh.read(4096) for _ in range(3)]
        assert all(len(p) == 4096 for p in parts)
        rest = fh.read()
    assert b"".join(parts) + rest == payload


_KILLED_MID_STEP = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from archive_core_tape_ltfs.config import SimulatorSettings
    from archive_core_tape_ltfs.model import MountRequest
    from archive_core_tape_ltfs.sim.library import SimLibrary

    library = SimLibrary.open(SimulatorSettings(state_dir=Path(sys.argv[1])))
    mount = library.ltfs.adopt(0)
    for n in range(20):
        mount.write_synthetic(f"before/{n}", 10**6, seed=n)
    with library.batch():
        for n in range(20):
            mount.write_synthetic(f"during/{n}", 10**6, seed=n)
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_process_killed_in_the_middle_of_a_step_leaves_the_library_as_before_it(lib4, tmp_path):
    load_all(lib4, drives=1)
    lib4.ltfs.mount(MountRequest(drive=0))
    # The mount is adopted by the child, so this process must not look alive to it.
    lib4.engine.connection.execute(
        "UPDATE drives SET body = json_set(body, '$.ltfs.owner_pid', 1 << 22) WHERE idx = 0"
    )
    lib4.engine.close()
    done = subprocess.run(
        [sys.executable, "-c", _KILLED_MID_STEP, str(tmp_path / "library")],
        env=os.environ,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9
    again = SimLibrary.open(four_drive_settings(tmp_path))
    assert len(again.ltfs.mounts()) == 1
    mount = again.ltfs.adopt(0)
    paths = [p for p, _ in mount.files()]
    assert paths == sorted(f"before/{n}" for n in range(20))
    assert mount.capacity().files == 20
    mount.write_synthetic("after", 10, seed=1)
    assert again.ltfs.unmount(mount).file("after") is not None
