"""Archive scale: a hundred thousand files and terabytes, simulated in seconds, verified."""

from __future__ import annotations

from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings
from archive_core_tape_ltfs.cost import TB, timing_for
from archive_core_tape_ltfs.model import FormatRequest, LoadRequest, MountRequest
from archive_core_tape_ltfs.sim.library import SimLibrary, SyntheticContent, makespan

FILES = 100_000
FILE_BYTES = 30_000_000  # 100,000 x 30 MB = 3 TB
DRIVES = 2


def test_a_hundred_thousand_files_and_three_terabytes_archive_and_restore_verified(tmp_path):
    library = SimLibrary.open(
        SimulatorSettings(
            state_dir=tmp_path / "library",
            slots=4,
            import_export=0,
            drives=DRIVES,
            cartridges=tuple(
                SimulatedCartridge(barcode=f"BIG00{n}L9", slot=n + 1, new=False)
                for n in range(DRIVES)
            ),
        )
    )
    workers = [library.worker(f"archive-{n}") for n in range(DRIVES)]
    catalog: dict[tuple[int, str], SyntheticContent] = {}
    mounts = []
    for n, worker in enumerate(workers):
        worker.changer.load(LoadRequest(slot=n + 1, drive=n))
        worker.drive(n).wait_ready()
        worker.ltfs.format(FormatRequest(drive=n, barcode=f"BIG00{n}L9"))
        mounts.append(worker.ltfs.mount(MountRequest(drive=n)))
    for n, (worker, mount) in enumerate(zip(workers, mounts, strict=True)):
        with worker.batch():
            for i in range(n, FILES, DRIVES):
                path = f"items/{i // 1000:03d}/{i:06d}.mxf"
                content = SyntheticContent(size=FILE_BYTES + i, seed=i)
                mount.write_synthetic(path, content.size, seed=content.seed)
                catalog[(n, path)] = content
    indexes = [w.ltfs.unmount(m) for w, m in zip(workers, mounts, strict=True)]
    assert sum(len(index.files) for index in indexes) == FILES

    restored = 0
    for n, worker in enumerate(workers):
        mount = worker.ltfs.mount(MountRequest(drive=n, read_only=True))
        on_tape = sorted(
            indexes[n].files, key=lambda f: (f.location.partition, f.location.startblock)
        )
        with worker.batch():
            for file in on_tape:
                with mount.open_read(file.path) as fh:
                    expected = catalog[(n, file.path)]
                    assert fh.content.fingerprint == expected.fingerprint
                    assert fh.drain() == expected.size
                    restored += expected.size
        with mount.open_read(on_tape[0].path) as fh:  # and one of them byte for byte
            assert SyntheticContent(size=fh.size, seed=fh.content.seed).sha256() == (
                catalog[(n, on_tape[0].path)].sha256()
            )
            fh.drain()
        worker.ltfs.unmount(mount)

    assert restored > 3 * TB
    # Both drives worked at once: the library took about half the time one drive would.
    one_drive = 2 * restored / timing_for(9).profile.native_rate
    assert makespan(library.timeline()) < 0.6 * one_drive
