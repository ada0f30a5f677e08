"""The restore executor on the simulated library: bytes, parallel drives, copies, estimates."""

from __future__ import annotations

import hashlib
import threading

import pytest
from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings
from archive_core_tape_ltfs.model import FormatRequest, LoadRequest, MountRequest, UnloadRequest
from archive_core_tape_ltfs.restore import (
    CartridgesOffline,
    TapeCopy,
    WantedFile,
    plan_restore,
    read_view,
    restore_files,
)
from archive_core_tape_ltfs.sim.content import SyntheticContent
from archive_core_tape_ltfs.sim.library import SimLibrary

from archive_core import FixityMismatch, TransferFailed

from .conftest import real_over

GB = 10**9
BARCODES = ("RST001L9", "RST002L9", "RST003L9", "RST004L9")
SMALL = 3  # files with real bytes per cartridge
LARGE = 4  # synthetic files per cartridge


class Archive:
    """A simulated 2-drive library whose four cartridges hold small real files and large
    synthetic ones; every file has a second copy on the next cartridge."""

    def __init__(self, tmp_path) -> None:
        self.library = SimLibrary.open(
            SimulatorSettings(
                state_dir=tmp_path / "library",
                slots=8,
                import_export=2,
                drives=2,
                cartridges=tuple(
                    SimulatedCartridge(barcode=b, slot=n, new=False)
                    for n, b in enumerate(BARCODES, start=1)
                ),
            )
        )
        self.content: dict[str, bytes | SyntheticContent] = {}
        self.copies: dict[str, list[TapeCopy]] = {}
        for n, barcode in enumerate(BARCODES):
            self._fill(n, barcode)
        self.files = [
            WantedFile(key=key, size=copies[0].size, copies=tuple(copies))
            for key, copies in sorted(self.copies.items())
        ]

    def _fill(self, n: int, barcode: str) -> None:
        library = self.library
        library.changer.load(LoadRequest(slot=n + 1, drive=0, barcode=barcode))
        library.drive(0).wait_ready()
        uuid = library.ltfs.format(FormatRequest(drive=0, barcode=barcode)).uuid
        mount = library.ltfs.mount(MountRequest(drive=0))
        # This cartridge's own files first, then the second copies of the previous one's.
        owner = BARCODES[n]
        previous = BARCODES[n - 1]
        for source in (owner, previous):
            for i in range(SMALL + LARGE):
                key = f"{source}/file{i}"
                path = f"{key}.{'bin' if i < SMALL else 'mxf'}"
                if i < SMALL:
                    data = hashlib.sha256(key.encode()).digest() * (1000 + 37 * i)
                    with mount.open_write(path) as fh:
                        fh.write(data)
                    self.content[key] = data
                    size = len(data)
                else:
                    size = (i + 1) * GB
                    seed = abs(hash(key)) % 10**6
                    self.content[key] = SyntheticContent(size=size, seed=seed)
                    mount.write_synthetic(path, size, seed=seed)
                location = mount.location(path)
                self.copies.setdefault(key, []).append(
                    TapeCopy(
                        barcode=barcode,
                        volume_uuid=uuid,
                        path=path,
                        size=size,
                        partition=location.partition,
                        startblock=location.startblock,
                    )
                )
        library.ltfs.unmount(mount)
        library.changer.unload(UnloadRequest(drive=0))

    def first_copies_only(self) -> list[WantedFile]:
        return [WantedFile(key=f.key, size=f.size, copies=f.copies[:1]) for f in self.files]

    def view(self):
        return read_view(self.library, generation=9)


@pytest.fixture
def archive(tmp_path) -> Archive:
    return Archive(tmp_path)


class Restored:
    """The driver's side of a read: keep what was read, check it against the archive."""

    def __init__(self, archive: Archive, *, corrupt: set[tuple[str, str]] = frozenset()) -> None:
        self.archive = archive
        self.corrupt = corrupt
        self.got: dict[str, bool] = {}
        self.threads: set[str] = set()

    def __call__(self, file, copy, reader) -> None:
        self.threads.add(threading.current_thread().name)
        expected = self.archive.content.get(file.key, b"")
        if isinstance(expected, SyntheticContent):
            head = reader.read(65536 + 11)
            reader.drain()
            good = head == expected.read(0, 65536 + 11)
        else:
            good = reader.read() == expected
        if copy is not None and (copy.barcode, file.key) in self.corrupt:
            good = False
        if not good:
            raise FixityMismatch(path=copy.path, expected="archived", actual="other")
        self.got[file.key] = good


def test_the_executor_restores_every_file_with_its_bytes_on_parallel_drives(archive):
    library = archive.library
    start = library.clock.now()
    files = archive.first_copies_only()
    read = Restored(archive)
    outcome = restore_files(files, library, read=read, generation=9, virtual_time=True)
    assert outcome.failed == ()
    assert set(read.got) == {f.key for f in files}
    (plan,) = outcome.plans
    assert {t for t in read.threads} == {"restore-drive0", "restore-drive1"}
    measured = library.makespan(since=start)
    serial = sum(r.end - r.start for r in plan.runs())
    assert measured < 0.75 * serial  # the two drives overlap
    loads = [e for e in library.timeline("robot") if e.start >= start and "-> drive" in e.operation]
    assert sorted(e.cartridge for e in loads) == sorted(r.barcode for r in plan.runs())


def test_the_plan_estimates_what_the_simulator_then_measures(archive):
    library = archive.library
    files = archive.first_copies_only()
    plan = plan_restore(files, archive.view())
    start = library.clock.now()
    restore_files(
        files, library, read=Restored(archive), generation=9, plan=plan, virtual_time=True
    )
    measured = library.makespan(since=start)
    assert measured == pytest.approx(plan.makespan, rel=0.02)
    for run in plan.runs():
        reads = [
            e
            for e in library.timeline(f"drive{run.drive}")
            if e.start >= start and e.operation == "read" and e.cartridge == run.barcode
        ]
        assert reads[0].start - start == pytest.approx(run.ready, abs=5.0)
        assert reads[-1].end - start == pytest.approx(run.reads[-1].end, abs=5.0)


def test_a_media_error_falls_back_to_the_second_copy(archive):
    library = archive.library
    broken = archive.files[0]
    library.inject(kind="read_error", barcode=broken.copies[0].barcode, path=broken.copies[0].path)
    read = Restored(archive)
    outcome = restore_files(archive.files, library, read=read, generation=9, virtual_time=True)
    assert outcome.failed == ()
    assert set(read.got) == {f.key for f in archive.files}
    second = [r for r in outcome.restored if r.file.key == broken.key]
    assert [r.copy for r in second] == [broken.copies[1]]
    assert len(outcome.plans) == 2
    assert [run.barcode for run in outcome.plans[1].runs()] == [broken.copies[1].barcode]


def test_a_checksum_mismatch_reported_by_the_reader_falls_back_and_is_reported(archive):
    library = archive.library
    damaged = archive.files[5]
    both = {(c.barcode, damaged.key) for c in damaged.copies}
    read = Restored(archive, corrupt=both)
    outcome = restore_files(archive.files, library, read=read, generation=9, virtual_time=True)
    (failed,) = outcome.failed
    assert failed.file == damaged
    assert len(failed.reasons) == 2
    assert all("Checksum mismatch" in r for r in failed.reasons)
    assert len(outcome.restored) == len(archive.files) - 1


def test_a_destination_that_cannot_be_written_fails_the_file_without_trying_its_other_copy(
    archive,
):
    library = archive.library
    unwritable = archive.files[0]
    read = Restored(archive)

    def read_or_refuse(file, copy, reader) -> None:
        if file.key == unwritable.key:
            raise TransferFailed(f"Could not write /restore/{file.key}: Permission denied.")
        read(file, copy, reader)

    outcome = restore_files(
        archive.files, library, read=read_or_refuse, generation=9, virtual_time=True
    )
    (failed,) = outcome.failed
    assert failed.file == unwritable and len(failed.reasons) == 1
    assert "Permission denied" in failed.reasons[0]
    assert len(outcome.plans) == 1  # no second round for a copy that was fine
    assert len(outcome.restored) == len(archive.files) - 1


def test_an_offline_cartridge_stops_the_batch_before_anything_moves(archive):
    library = archive.library
    library.take_out(1)  # RST001L9 to the vault: its files' second copies are on RST002L9
    library.take_out(2)
    start = library.clock.now()
    before = len(library.timeline())
    with pytest.raises(CartridgesOffline) as raised:
        restore_files(archive.files, library, read=Restored(archive), generation=9)
    assert "insert RST001L9" in raised.value.message
    assert "or RST002L9 for the second copy" in raised.value.message
    assert len(library.timeline()) == before
    assert library.makespan(since=start) == 0.0


def test_a_mounted_cartridge_is_read_where_it_is(archive):
    library = archive.library
    worker = library.worker("restore-drive1")
    worker.changer.load(LoadRequest(slot=3, drive=1, barcode=BARCODES[2]))
    worker.drive(1).wait_ready()
    mount = worker.ltfs.mount(MountRequest(drive=1, barcode=BARCODES[2], read_only=True))
    files = [f for f in archive.first_copies_only() if f.copies[0].barcode == BARCODES[2]]
    plan = plan_restore(files, archive.view())
    (run,) = plan.runs()
    assert (run.drive, run.mounted, plan.exchanges) == (1, True, 0)
    start = worker.clock.now()
    outcome = restore_files(
        files,
        library,
        read=Restored(archive),
        generation=9,
        plan=plan,
        mounts={1: mount},
        workers={0: library.worker("restore-drive0"), 1: worker},
        virtual_time=True,
    )
    assert len(outcome.restored) == len(files)
    assert [e for e in library.timeline("robot") if e.start >= start] == []


def test_each_cartridge_is_read_in_one_drive_only(archive):
    library = archive.library
    start = library.clock.now()
    restore_files(archive.files, library, read=Restored(archive), generation=9, virtual_time=True)
    drives_of: dict[str, set[str]] = {}
    for entry in library.timeline():
        if entry.start >= start and entry.resource.startswith("drive") and entry.cartridge:
            drives_of.setdefault(entry.cartridge, set()).add(entry.resource)
    assert drives_of and all(len(d) == 1 for d in drives_of.values())


def test_the_executor_runs_on_the_real_port_too(archive):
    real = real_over(archive.library)
    files = [f for f in archive.first_copies_only() if f.copies[0].path.endswith(".bin")]
    read = Restored(archive)
    outcome = restore_files(files, real, read=read, generation=9, virtual_time=True)
    assert outcome.failed == ()
    assert set(read.got) == {f.key for f in files}


def test_a_simulated_restore_replays_exactly(tmp_path):
    timelines = []
    for name in ("first", "second"):
        archive = Archive(tmp_path / name)
        start = archive.library.clock.now()
        restore_files(
            archive.files, archive.library, read=Restored(archive), generation=9, virtual_time=True
        )
        timelines.append(
            [
                (e.resource, e.operation, e.caller, e.cartridge, e.start - start, e.end - start)
                for e in archive.library.timeline()
                if e.start >= start
            ]
        )
    assert timelines[0] == timelines[1]
