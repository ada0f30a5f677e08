"""The tape_ltfs driver on a simulated library, through the Portal face as Portal calls it."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
from archive_core_tape_ltfs.config import SimulatedCartridge, structure_library
from archive_core_tape_ltfs.driver import TapeLtfsDriver
from archive_core_tape_ltfs.driver.media import CartridgeState, MediaStore
from archive_core_tape_ltfs.driver.pools import policy_uuid
from archive_core_tape_ltfs.driver.wear import note_failure
from archive_core_tape_ltfs.health import MediaFailure
from archive_core_tape_ltfs.model import TransferRequest
from archive_core_tape_ltfs.sim.library import SimLibrary, SimMount

from archive_core import PRIORITY_ARCHIVE, PRIORITY_RESTORE, ArchiveCoreError
from archive_core.model import CopyRef, DeleteRequest, StatRequest
from archive_core.policies import structure
from archive_core.testing import KIT_POLICY, KIT_TARGET, DriverUnderTest, Harness

from .conftest import real_over

MiB = 2**20
CAPACITY = 16 * MiB


def _cartridges(prefix: str, media: str, count: int, first_slot: int) -> list[dict[str, Any]]:
    return [
        {"barcode": f"{prefix}{n:05d}{media}", "slot": first_slot + n, "new": False}
        for n in range(count)
    ]


def settings_for(state_dir: Path, **extra: Any) -> dict[str, Any]:
    """Two pools of four cartridges (A... data, W... WORM), a pool set keeping a copy on A
    and on B, a pre-formatted cartridge nobody knows in slot 20."""
    cartridges = (
        _cartridges("A", "L9", 4, 1)
        + _cartridges("B", "L9", 4, 5)
        + _cartridges("W", "LZ", 2, 9)
        + [{"barcode": "A00009L9", "slot": 20, "new": False, "formatted": True}]
    )
    return {
        "library": {
            "backend": "simulator",
            "simulator": {
                "state_dir": str(state_dir),
                "slots": 20,
                "import_export": 2,
                "drives": 2,
                "capacity_bytes": CAPACITY,
                "cartridges": cartridges,
            },
        },
        "pools": {
            "a": {
                "media": "L9",
                "barcodes": ["A00000L9-A00009L9"],
                "scratch": ["A00000L9-A00003L9"],
            },
            "b": {
                "media": "L9",
                "barcodes": ["B00000L9-B00009L9"],
                "scratch": ["B00000L9-B00009L9"],
            },
            "worm": {
                "media": "LZ",
                "barcodes": ["W00000LZ-W00009LZ"],
                "scratch": ["W00000LZ-W00009LZ"],
            },
        },
        "pool_sets": {"pair": {"pools": ["a", "b"]}},
        "default_policy": "a",
        "headroom_bytes": 0,
        **extra,
    }


@pytest.fixture
def library_dir(tmp_path: Path) -> Path:
    return tmp_path / "library"


@pytest.fixture
def kit(tmp_path: Path, library_dir: Path):
    harness = Harness(
        DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings_for(library_dir)),
        tmp_path / "kit",
    )
    yield harness
    harness.close()


@pytest.fixture
def sim(kit: Harness, library_dir: Path) -> SimLibrary:
    """The simulated library the target uses, for the environment's faults."""
    return SimLibrary.open(structure_library(settings_for(library_dir)["library"]).simulator)


def store_of(kit: Harness) -> MediaStore:
    return kit.site().target(KIT_TARGET).instance._store


def files_on(sim: SimLibrary, barcode: str, *, manifests: bool = False) -> list[tuple[str, int]]:
    """The copies on a cartridge's volume (with `manifests`, the core's manifests instead)."""
    from archive_core_tape_ltfs.model import MANIFEST_PREFIX

    with sim.engine.transaction(sim.caller) as step:
        volume = step.state.cartridges[barcode].volume
        listed = step.files().listing(volume.uuid) if volume else []
    return [(p, n) for p, n in listed if p.startswith(MANIFEST_PREFIX) is manifests]


def placements(kit: Harness) -> dict[str, Any]:
    return {r.locator: r.placement for r in kit.site().catalog.copies(target=KIT_TARGET)}


def archive(kit: Harness, file_sets: list[Any], policy: str = KIT_POLICY) -> list[Any]:
    archived, not_archived, error, _extra = kit.plugin.archive(file_sets, policy, "job-1")
    assert not not_archived, error
    return archived


def barcode_of(file_set: Any) -> str:
    return file_set.external_ids[0].split("/")[3]


def put_back(sim: SimLibrary) -> None:
    """Unload the cartridges jobs left parked in the drives, as an operator would."""
    from archive_core_tape_ltfs.model import UnloadRequest

    for bay in sim.changer.inventory().drives:
        if bay.full:
            sim.changer.unload(UnloadRequest(drive=bay.index))


# --- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "pools": {
                    "a": {"media": "L9", "barcodes": ["A00000L9-A00099L9"]},
                    "c": {"media": "L9", "barcodes": ["A00050L9-A00150L9"]},
                }
            },
            "pools.c.barcodes: A00050L9-A00150L9 overlaps A00000L9-A00099L9 of pool a",
        ),
        (
            {"pools": {"a": {"media": "L9", "barcodes": ["W00000LZ-W00009LZ"]}}},
            "pools.a.barcodes: W00000LZ-W00009LZ are LTO-9 WORM (LZ) cartridges, but the pool "
            "holds LTO-9 data (L9)",
        ),
        (
            {"pools": {"a": {"media": "L4", "barcodes": ["A00000L4"]}}},
            "pools.a.media: 'L4' is not an LTO media type",
        ),
        (
            {"pool_sets": {"pair": {"pools": ["a", "nowhere"]}}},
            "pool_sets.pair.pools: no pool named 'nowhere'",
        ),
        (
            {
                "pools": {
                    "a": {"media": "L9", "barcodes": ["A00000L9-A00009L9"], "scratch": ["A00050L9"]}
                }
            },
            "pools.a.scratch: A00050L9 is not within the pool's barcodes",
        ),
    ],
)
def test_config_refuses_inconsistent_pools_with_their_path(tmp_path, change, message):
    raw = {**settings_for(tmp_path), "pool_sets": {}, **change}
    config, problems = structure(TapeLtfsDriver.Config, raw, path="targets.tape.settings")
    assert config is None
    joined = "; ".join(problems)
    assert "targets.tape.settings" in joined
    assert message in joined


def test_every_pool_and_pool_set_is_a_bulk_policy_with_limits(kit):
    offered = {p["uuid"]: p for p in kit.plugin.get_policies()}
    for key in ("a", "b", "worm", "pair"):
        assert offered[policy_uuid(KIT_TARGET, key, None)]["bulk_support"] is True
    limits = {c["uuid"]: c for c in kit.plugin.get_policy_constrains()}
    assert limits[policy_uuid(KIT_TARGET, "pair", None)]["max_files"] == 1000


# --- archive ---------------------------------------------------------------------------------


def test_an_archived_copy_carries_its_cartridge_volume_and_position(kit, sim):
    [archived] = archive(kit, [kit.media("clip.mov", os.urandom(5000))])
    [placement] = placements(kit).values()
    assert placement["barcode"] == barcode_of(archived) == "A00000L9"
    assert placement["volume"] == sim.cartridge("A00000L9").volume.uuid
    assert placement["partition"] == "b" and isinstance(placement["block"], int)
    cartridge = store_of(kit).cartridge("A00000L9")
    assert cartridge.state is CartridgeState.APPENDABLE and cartridge.generation >= 1
    assert archived.external_ids[0].startswith("ltfs://kit/A00000L9/clip_")


def test_two_copies_spill_to_the_next_cartridge_on_early_warning(kit, sim, monkeypatch):
    # The drive's remaining-capacity report is an estimate (compression, the index reserve):
    # here it promises more than fits, so the writes meet early warning (ENOSPC).
    honest = SimMount.capacity

    def optimistic(self):
        found = honest(self)
        return type(found)(
            block_size=found.block_size,
            total_bytes=found.total_bytes,
            free_bytes=found.free_bytes + 8 * MiB,
            files=found.files,
        )

    monkeypatch.setattr(SimMount, "capacity", optimistic)
    originals = [kit.media(f"big{i}.mxf", os.urandom(6 * MiB)) for i in range(3)]
    archived = archive(kit, originals, policy_uuid(KIT_TARGET, "pair", None))
    by_file = placements(kit)
    for placement in by_file.values():
        first, second = placement["copies"]
        assert first["barcode"].startswith("A") and second["barcode"].startswith("B")
    used = {c["barcode"] for p in by_file.values() for c in p["copies"]}
    assert {"A00000L9", "A00001L9", "B00000L9", "B00001L9"} <= used
    store = store_of(kit)
    assert store.cartridge("A00000L9").state is CartridgeState.FULL
    # The partial file was removed from the full cartridge's index.
    names = {os.path.basename(fs.files[0]) for fs in archived}
    on_first = {path for path, _size in files_on(sim, "A00000L9")}
    assert len(on_first) == 2 and all(p.split("_")[0] + ".mxf" in names for p in on_first)
    restored = [kit.elsewhere(fs) for fs in archived]
    kit.plugin.restore(restored, policy_uuid(KIT_TARGET, "pair", None))
    for original, back in zip(originals, restored, strict=True):
        assert kit.bytes_of(back) == kit.bytes_of(original)


@pytest.mark.parametrize(("readers", "back_hitches"), [(0, True), (4, False)])
def test_read_ahead_keeps_the_drive_streaming_from_a_slow_source(tmp_path, readers, back_hitches):
    """A source of 120 MB/s per stream that takes 100 ms per open (an HDD array): read as the
    file is written, the LTO-9 drive (floor 177 MB/s) back-hitches; read ahead on four
    streams, it streams, and what is archived is what the source held."""
    from archive_core_tape_ltfs.sim.sources import PacedOpener

    settings = settings_for(
        tmp_path / "library",
        read_ahead={"readers": readers, "memory_bytes": 32 * MiB, "segment_bytes": MiB},
    )
    settings["library"]["simulator"]["capacity_bytes"] = 512 * MiB
    harness = Harness(DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings), tmp_path)
    try:
        driver = harness.site().target(KIT_TARGET).instance
        driver.source_opener = PacedOpener(rate=120e6, open_seconds=0.1)
        originals = [harness.media(f"clip{n}.mxf", os.urandom(8 * MiB)) for n in range(6)]
        archived = archive(harness, originals)
        library = SimLibrary.open(structure_library(settings["library"]).simulator)
        writes = [
            e
            for d in (0, 1)
            for e in library.timeline(f"drive{d}")
            if e.operation == "write" and e.bytes >= MiB  # the clips, not the manifest
        ]
        assert sum(e.bytes for e in writes) == 6 * 8 * MiB
        assert (sum(e.backhitches for e in writes) > 0) is back_hitches
        restored = [harness.elsewhere(fs) for fs in archived]
        harness.plugin.restore(restored, KIT_POLICY)
        for original, back in zip(originals, restored, strict=True):
            assert harness.bytes_of(back) == harness.bytes_of(original)
    finally:
        harness.close()


def test_a_drive_that_asks_for_cleaning_is_cleaned_before_it_writes(kit, sim):
    sim.insert(SimulatedCartridge(barcode="CLN001CU", slot=19, uses=5))
    for drive in (0, 1):
        sim.inject(kind="needs_cleaning", drive=drive)
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    moves = [e.cartridge for e in sorted(sim.timeline("robot"), key=lambda e: e.start)]
    assert moves[:2] == ["CLN001CU", "CLN001CU"]  # in and out before the data cartridge
    assert moves[2] == barcode_of(first)
    assert sim.cartridge("CLN001CU").uses_left == 4


def test_without_a_cleaning_cartridge_a_dirty_drive_writes_nothing(kit, sim):
    for drive in (0, 1):
        sim.inject(kind="needs_cleaning", drive=drive)
    archived, not_archived, error, _extra = kit.plugin.archive(
        [kit.media("first.bin", os.urandom(3000))], KIT_POLICY, "job-1"
    )
    assert not archived and not_archived
    assert "asks to be cleaned" in str(error) or "asks to be cleaned" in str(not_archived)
    assert not any(e.operation == "write" for e in sim.timeline())


def test_a_drive_failing_with_several_cartridges_is_left_alone(kit, sim):
    store, now = store_of(kit), sim.clock.now()
    for n in range(3):
        store.record_failure(MediaFailure(drive=0, barcode=f"X0000{n}L9", at=now, kind="read"))
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    assert barcode_of(first) == "A00000L9"
    used = {
        e.resource for e in sim.timeline() if e.cartridge == "A00000L9" and e.resource != "robot"
    }
    assert used == {"drive1"}


def test_a_cartridge_failing_in_several_drives_is_marked_damaged(kit, sim):
    archive(kit, [kit.media("first.bin", os.urandom(3000))])
    store = store_of(kit)
    for drive in range(3):
        failure = MediaFailure(drive=drive, barcode="A00000L9", at=drive, kind="read error")
        note_failure(store, failure, context="test")
    cartridge = store.cartridge("A00000L9")
    assert cartridge.state is CartridgeState.DAMAGED
    assert "in 3 different drives" in cartridge.reason
    [second] = archive(kit, [kit.media("second.bin", os.urandom(3000))])
    assert barcode_of(second) == "A00001L9"  # never written again


def test_a_permanent_write_error_sends_the_file_to_another_cartridge(kit, sim):
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    assert barcode_of(first) == "A00000L9"
    sim.inject(kind="write_error", barcode="A00000L9", at_bytes=1000)
    original = kit.media("second.bin", os.urandom(3000))
    [second] = archive(kit, [original])
    assert barcode_of(second) == "A00001L9"
    assert store_of(kit).cartridge("A00000L9").state is CartridgeState.READ_ONLY
    wanted = kit.elsewhere(second)
    kit.plugin.restore([wanted], KIT_POLICY)
    assert kit.bytes_of(wanted) == kit.bytes_of(original)


def test_a_cartridge_stays_in_its_drive_for_the_next_batch_and_the_restore_after(kit, sim):
    """Portal hands a pool batch after batch: the cartridge one job wrote is unmounted (its
    index written) but left in the drive, so the next batch and a restore of both mount it
    where it is, with no robot move and no unload with rewind in between."""
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    moves = len(sim.timeline("robot"))
    assert sim.ltfs.mounts() == ()  # unmounted: LTFS wrote its index
    [parked] = [bay for bay in sim.changer.inventory().drives if bay.full]
    assert parked.barcode == "A00000L9"
    [second] = archive(kit, [kit.media("second.bin", os.urandom(3000))])
    assert barcode_of(second) == "A00000L9"
    wanted = [kit.elsewhere(fs) for fs in (first, second)]
    kit.plugin.restore(wanted, KIT_POLICY)
    assert [kit.bytes_of(w) for w in wanted] == [
        kit.bytes_of(kit.elsewhere(fs)._replace(files=fs.files)) for fs in (first, second)
    ]
    assert len(sim.timeline("robot")) == moves
    assert not [e for e in sim.timeline(f"drive{parked.index}") if e.operation == "unload"]


def disk_and_tape(tmp_path: Path, policy: str, **settings: Any):
    """A site whose policy keeps a copy on a filesys target and one on the tape library
    (`settings`: more of the policy's), and a file to archive: (plugin, FileSet, its bytes,
    the library's state directory)."""
    import hashlib

    from archive_core.portal import ArchiveCorePlugin
    from archive_core.testing.fileset import FileSet
    from archive_core.testing.siteconfig import write_config

    disk, library = tmp_path / "disk", tmp_path / "library"
    disk.mkdir()
    config = write_config(
        tmp_path / "archive-core.toml",
        targets={
            "disk": {"driver": "filesys", "settings": {"root": str(disk), "min_free_bytes": 0}},
            "tape": {"driver": "tape_ltfs", "settings": settings_for(library)},
        },
        policies={policy: {"targets": ["disk", "tape"], **settings}},
    )
    online = tmp_path / "online" / "clip.mxf"
    online.parent.mkdir()
    content = os.urandom(6000)
    online.write_bytes(content)
    original = FileSet(
        files=[str(online)],
        external_ids=[],
        item_id="VX-1",
        sha1=hashlib.sha1(content).hexdigest(),
        shape_id="VX-2",
        component_id="VX-3",
    )
    return ArchiveCorePlugin(config), original, content, library


def test_a_policy_with_a_disk_copy_and_a_tape_copy_reports_archived_once_both_read_back(
    tmp_path,
):
    """The purge interlock across drivers: `verified_copies = 2` on a policy writing to a
    filesys target and to the tape library; the tape copy is read back from the cartridge
    before Portal is told the file is archived."""
    policy = "0c0ffee0-4b1d-4c0d-9e57-0000000000d2"
    plugin, original, content, library = disk_and_tape(tmp_path, policy, verified_copies=2)
    archived, not_archived, error, _ = plugin.archive([original], policy, "job-1")
    assert archived and not not_archived, error
    copies = plugin.site().catalog.copies(policy=policy)
    assert sorted(c.target for c in copies) == ["disk", "tape"]
    assert all(c.last_verified is not None for c in copies)
    sim = SimLibrary.open(structure_library(settings_for(library)["library"]).simulator)
    reads = [e for d in (0, 1) for e in sim.timeline(f"drive{d}") if e.operation == "read"]
    assert len(reads) == 1 and reads[0].bytes == len(content)  # the tape copy, read back


def test_each_cartridge_keeps_the_manifest_of_its_copies_and_a_lost_catalog_comes_back(kit, sim):

    from archive_core.rebuild import rebuild

    originals = [kit.media(f"m{n}.mxf", os.urandom(3000 + n)) for n in range(3)]
    archived = archive(kit, originals)
    barcode = barcode_of(archived[0])
    kept = [path for path, _size in files_on(sim, barcode, manifests=True)]
    assert len(kept) == 1 and kept[0].endswith(".manifest.jsonl")  # one batch, one manifest
    # The manifest is no drift: a scan of the cartridge finds it agrees with the store.
    config = _site_config(kit)
    scanned = _operator(config, "scan", barcode, "--json")
    assert json.loads(scanned.output)["cartridges"][0]["agrees"], scanned.output
    site = kit.site()
    before = {c.external_id: c for c in site.catalog.copies(target=KIT_TARGET)}
    site.catalog.replace_copies(KIT_TARGET, [])  # the catalog's rows are lost
    report = rebuild(site, KIT_TARGET, actor="test")
    assert (report.from_manifests, report.from_names, report.refused) == (3, 0, ())
    after = {c.external_id: c for c in site.catalog.copies(target=KIT_TARGET)}
    assert set(after) == set(before)
    assert all(after[e].placement == before[e].placement for e in before)
    wanted = [kit.elsewhere(fs) for fs in archived]
    kit.plugin.restore(wanted, KIT_POLICY)
    for original, back in zip(originals, wanted, strict=True):
        assert kit.bytes_of(back) == kit.bytes_of(original)


def test_a_scrub_reads_the_tape_copies_back_and_finds_a_bad_one(kit, sim):
    from archive_core.scrub import ScrubBudget, scrub

    originals = [kit.media(f"s{n}.mxf", os.urandom(2000 + n)) for n in range(3)]
    archived = archive(kit, originals)
    [first] = scrub(kit.plugin, budget=ScrubBudget())
    assert (first.verified, first.bad, first.stopped) == (3, (), None)
    path = archived[1].external_ids[0].split("/", 4)[4]
    sim.inject(kind="read_error", barcode=barcode_of(archived[1]), path=path)
    [second] = scrub(kit.plugin, budget=ScrubBudget())
    assert second.verified == 2 and [b.external_id for b in second.bad] == [
        archived[1].external_ids[0]
    ], second
    assert kit.site().catalog.copy(archived[1].external_ids[0]).failure


def test_a_bad_tape_copy_is_repaired_from_the_disk_copy(tmp_path):
    """A policy keeping a disk and a tape copy with `repair = true`: a tape copy that reads
    back wrong is written to tape again from the disk copy, and reads back right after."""
    from archive_core.scrub import ScrubBudget, scrub

    policy = "0c0ffee0-4b1d-4c0d-9e57-0000000000d3"
    plugin, original, content, library = disk_and_tape(tmp_path, policy, repair=True)
    [archived], _, _, _ = plugin.archive([original], policy, "job-1")
    tape_id = next(e for e in archived.external_ids if e.startswith("ltfs://"))
    sim = SimLibrary.open(structure_library(settings_for(library)["library"]).simulator)
    sim.inject(kind="read_error", barcode=tape_id.split("/")[3], path=tape_id.split("/", 4)[4])
    [done] = scrub(plugin, budget=ScrubBudget(), targets=["tape"])
    [bad] = done.bad
    assert bad.external_id == tape_id and bad.repaired, bad
    [record] = plugin.site().catalog.copies(target="tape")
    assert record.failure is None and record.last_verified is not None
    back = tmp_path / "back.mxf"
    plugin.restore([archived._replace(files=[str(back)], external_ids=[bad.repaired])], policy)
    assert back.read_bytes() == content


@pytest.mark.parametrize("offline", ["vaulted", "in an import/export slot"])
def test_an_offline_cartridge_is_never_chosen_for_writing(kit, sim, offline):
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    assert barcode_of(first) == "A00000L9"
    put_back(sim)
    if offline == "vaulted":
        sim.inject(kind="vault", barcode="A00000L9")
    else:
        sim.changer.transfer(TransferRequest(source=1, destination=21, barcode="A00000L9"))
    [second] = archive(kit, [kit.media("second.bin", os.urandom(3000))])
    assert barcode_of(second) == "A00001L9"
    assert store_of(kit).cartridge("A00000L9").state is CartridgeState.APPENDABLE
    moved = [e for e in sim.timeline("robot") if e.cartridge == "A00000L9"]
    assert len(moved) == (2 if offline == "vaulted" else 3)  # never loaded again


def test_cartridges_are_found_by_barcode_after_an_operator_swapped_slots(kit, sim):
    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    sim.inject(kind="swap", slot=1, other_slot=4)
    [second] = archive(kit, [kit.media("second.bin", os.urandom(3000))])
    assert barcode_of(first) == barcode_of(second) == "A00000L9"


def test_a_mislabelled_cartridge_is_refused_before_anything_is_written(kit, sim):
    archive(kit, [kit.media("first.bin", os.urandom(3000))])
    before = files_on(sim, "A00009L9")
    # The real A00000L9 goes to the vault; the unknown volume in slot 20 gets its label.
    sim.inject(kind="vault", barcode="A00000L9")
    sim.inject(kind="mislabel", barcode="A00009L9", label="A00000L9")
    original = kit.media("second.bin", os.urandom(3000))
    archived, not_archived, error, _ = kit.plugin.archive([original], KIT_POLICY, "job-2")
    assert not archived and not_archived == [original]
    assert "A00000L9" in error and "A00009" in error, error  # expected, and found
    assert files_on(sim, "A00009L9") == before
    assert all(not bay.full for bay in sim.changer.inventory().drives)  # unloaded again


# --- restore, verify, delete, stat -----------------------------------------------------------


def test_restore_reads_the_other_copy_when_one_fails(kit, sim):
    pair = policy_uuid(KIT_TARGET, "pair", None)
    original = kit.media("clip.mov", os.urandom(20_000))
    [archived] = archive(kit, [original], pair)
    [placement] = placements(kit).values()
    path = archived.external_ids[0].split("/", 4)[4]
    sim.inject(kind="read_error", barcode=placement["copies"][0]["barcode"], path=path)
    wanted = kit.elsewhere(archived)
    kit.plugin.restore([wanted], pair)
    assert kit.bytes_of(wanted) == kit.bytes_of(
        kit.elsewhere(archived)._replace(files=archived.files)
    )


def test_restore_loads_each_cartridge_once_and_reads_in_tape_order(kit, sim):
    originals = [kit.media(f"f{i}.bin", os.urandom(4000 + i)) for i in range(5)]
    archived = archive(kit, originals)
    put_back(sim)
    moves_before = len(sim.timeline("robot"))
    restored = [kit.elsewhere(fs) for fs in reversed(archived)]
    kit.plugin.restore(restored, KIT_POLICY)
    assert len(sim.timeline("robot")) - moves_before == 1  # one load (it stays parked)
    reads = [e for e in sim.timeline("drive0") + sim.timeline("drive1") if e.operation == "read"]
    assert len(reads) == 5 and sum(e.locates for e in reads) <= 1  # in order, one locate


def _on_two_cartridges(kit) -> list[Any]:
    """One file on pool a's first cartridge, one on pool b's."""
    first = archive(kit, [kit.media("on-a.bin", os.urandom(6000))])
    second = archive(
        kit, [kit.media("on-b.bin", os.urandom(7000))], policy_uuid(KIT_TARGET, "b", None)
    )
    assert [barcode_of(f) for f in first + second] == ["A00000L9", "B00000L9"]
    return first + second


def test_a_restore_of_two_cartridges_reads_them_on_the_two_drives_side_by_side(kit, sim):
    archived = _on_two_cartridges(kit)
    wanted = [kit.elsewhere(fs) for fs in archived]
    kit.plugin.restore(wanted, KIT_POLICY)
    for got, original in zip(wanted, archived, strict=True):
        assert kit.bytes_of(got) == kit.bytes_of(
            kit.elsewhere(original)._replace(files=original.files)
        )
    reads = {
        n: [e for e in sim.timeline(f"drive{n}") if e.operation == "read" and "restore" in e.caller]
        for n in (0, 1)
    }
    assert {e.cartridge for e in reads[0] + reads[1]} == {"A00000L9", "B00000L9"}
    # One worker per drive (each its own caller of the library), one cartridge each.
    assert len(reads[0]) == len(reads[1]) == 1
    assert all(e.caller.endswith(f"drive {n}") for n in (0, 1) for e in reads[n])


def test_a_restore_needing_a_vaulted_cartridge_names_it_before_any_tape_moves(kit, sim):
    archived = _on_two_cartridges(kit)
    sim.inject(kind="vault", barcode="B00000L9")
    moves = len(sim.timeline("robot"))
    with pytest.raises(ArchiveCoreError) as raised:
        kit.plugin.restore([kit.elsewhere(fs) for fs in archived], KIT_POLICY)
    assert "insert B00000L9" in raised.value.message, raised.value.message
    assert "Nothing was moved" in raised.value.message
    assert len(sim.timeline("robot")) == moves


def test_plan_restore_prints_each_drive_s_cartridges_and_moves_nothing(kit, sim):
    from click.testing import CliRunner

    from archive_core.cli import main

    archived = _on_two_cartridges(kit)
    put_back(sim)
    [config] = kit.workdir.glob("site-*/archive-core.toml")
    ids = [fs.external_ids[0] for fs in archived]
    moves = len(sim.timeline("robot"))
    result = CliRunner().invoke(
        main, ["--config", str(config), "tape", "plan", "restore", *ids, "--json"]
    )
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output)
    cartridges = [c for d in planned["drives"] for c in d["cartridges"]]
    assert sorted(c["barcode"] for c in cartridges) == ["A00000L9", "B00000L9"]
    assert len([d for d in planned["drives"] if d["cartridges"]]) == 2  # one each, in parallel
    assert planned["files"] == 2 and planned["exchanges"] == 2
    assert planned["estimated_seconds"] >= planned["lower_bound_seconds"] > 0
    text = CliRunner().invoke(main, ["--config", str(config), "tape", "plan", "restore", *ids])
    assert "drive 0:" in text.output and "A00000L9" in text.output, text.output
    assert len(sim.timeline("robot")) == moves


def test_verify_reads_every_copy_back(kit, sim):
    pair = policy_uuid(KIT_TARGET, "pair", None)
    archived = archive(kit, [kit.media("v.bin", os.urandom(3000))], pair)
    verified, failed, error = kit.plugin.verify(archived, pair)
    assert verified == archived and not failed, error
    reads = [e for e in sim.timeline("drive0") + sim.timeline("drive1") if e.operation == "read"]
    assert {e.cartridge for e in reads} == {"A00000L9", "B00000L9"}


def test_delete_only_forgets_the_copy_and_leaves_its_bytes_on_tape(kit, sim):
    [archived] = archive(kit, [kit.media("doomed.bin", os.urandom(3000))])
    assert kit.plugin.delete([archived], KIT_POLICY) == [archived]
    assert len(files_on(sim, "A00000L9")) == 1  # LTFS frees nothing: the bytes stay
    with pytest.raises(ArchiveCoreError):
        kit.plugin.restore([kit.elsewhere(archived)], KIT_POLICY)


def test_a_worm_pool_refuses_delete(kit, sim):
    worm = policy_uuid(KIT_TARGET, "worm", None)
    [archived] = archive(kit, [kit.media("kept.bin", os.urandom(3000))], worm)
    assert barcode_of(archived) == "W00000LZ"
    assert kit.plugin.delete([archived], worm) == []
    driver = kit.site().target(KIT_TARGET).instance
    locator = archived.external_ids[0].split("/", 3)[3]
    request = DeleteRequest(
        policy=worm, target=KIT_TARGET, job_id="j", items=[CopyRef(key="0", locator=locator)]
    )
    [outcome] = driver.delete(request)
    assert not outcome.ok and "WORM" in outcome.error
    wanted = kit.elsewhere(archived)
    kit.plugin.restore([wanted], worm)


def test_stat_answers_from_the_media_store_without_loading_a_cartridge(kit, sim):
    [archived] = archive(kit, [kit.media("s.bin", os.urandom(3000))])
    moves = len(sim.timeline("robot"))
    driver = kit.site().target(KIT_TARGET).instance
    locator = archived.external_ids[0].split("/", 3)[3]
    [there] = driver.stat(
        StatRequest(
            policy=KIT_POLICY,
            target=KIT_TARGET,
            job_id="j",
            items=[CopyRef(key="0", locator=locator)],
        )
    )
    assert there.ok and there.size == 3000
    assert len(sim.timeline("robot")) == moves


def test_a_rerun_after_a_crash_writes_again_exactly_the_unsynced_files(kit, library_dir, tmp_path):
    from archive_core.driver import DriverContext
    from archive_core.model import ArchiveItem, ArchiveRequest

    config, problems = structure(
        TapeLtfsDriver.Config, settings_for(library_dir, sync_every_files=2), path="settings"
    )
    assert config is not None, problems
    sources = [kit.media(f"c{i}.bin", os.urandom(2000 + i)) for i in range(5)]
    items = [
        ArchiveItem(key=str(i), sources=fs.files, name=f"c{i}_{fs.sha1}.bin", sha1=fs.sha1)
        for i, fs in enumerate(sources)
    ]
    request = ArchiveRequest(policy="any", target="tape", job_id="crash", items=items)
    context = DriverContext(target="tape", state_dir=tmp_path / "state")
    # The worker dies after its first sync: two files durable, the others never synced.
    crashed = TapeLtfsDriver(config, context).archive(request)
    first = [next(crashed), next(crashed)]
    assert all(o.ok for o in first)
    rerun = {o.key: o for o in TapeLtfsDriver(config, context).archive(request)}
    assert all(o.ok for o in rerun.values())
    assert [k for k, o in sorted(rerun.items()) if o.reused] == ["0", "1"]
    assert rerun["0"].locator == first[0].locator


def test_restore_names_every_copy_it_tried_when_none_can_be_read(kit, sim):
    pair = policy_uuid(KIT_TARGET, "pair", None)
    [archived] = archive(kit, [kit.media("clip.mov", os.urandom(20_000))], pair)
    [placement] = placements(kit).values()
    path = archived.external_ids[0].split("/", 4)[4]
    for copy in placement["copies"]:
        sim.inject(kind="read_error", barcode=copy["barcode"], path=path)
    with pytest.raises(ArchiveCoreError) as raised:
        kit.plugin.restore([kit.elsewhere(archived)], pair)
    assert "A00000L9" in raised.value.message and "B00000L9" in raised.value.message


_MOUNT_AND_EXIT = """
import sys
from pathlib import Path
from archive_core_tape_ltfs.config import SimulatorSettings
from archive_core_tape_ltfs.model import LoadRequest, MountRequest
from archive_core_tape_ltfs.sim.library import SimLibrary

library = SimLibrary.open(SimulatorSettings(state_dir=Path(sys.argv[1])), caller="job-7")
if library.changer.inventory().drive(0).barcode != "A00000L9":  # not parked there
    library.changer.load(LoadRequest(slot=1, drive=0, barcode="A00000L9"))
library.drive(0).wait_ready()
library.ltfs.mount(MountRequest(drive=0, barcode="A00000L9"))
"""


def test_a_mount_left_by_a_dead_worker_is_taken_over_and_its_cartridge_written(kit, sim):
    import subprocess
    import sys

    [first] = archive(kit, [kit.media("first.bin", os.urandom(3000))])
    assert barcode_of(first) == "A00000L9"
    subprocess.run(
        [sys.executable, "-c", _MOUNT_AND_EXIT, str(sim.engine.root)],
        check=True,
        env=os.environ,
        timeout=120,
    )
    [record] = sim.ltfs.mounts()
    assert record.orphaned
    [second] = archive(kit, [kit.media("second.bin", os.urandom(3000))])
    assert barcode_of(second) == "A00000L9"
    assert sim.ltfs.mounts() == ()


def test_a_copy_on_tape_the_store_lost_is_read_back_and_kept(kit, sim):
    original = kit.media("kept.bin", os.urandom(3000))
    [first] = archive(kit, [original])
    path = first.external_ids[0].split("/", 4)[4]
    store_of(kit).drop("A00000L9", path)  # the record of its sync is lost
    [again] = archive(kit, [original])
    assert again.external_ids == first.external_ids
    assert [p for p, _size in files_on(sim, "A00000L9")] == [path]  # not written twice
    reads = [e for e in sim.timeline("drive0") + sim.timeline("drive1") if e.operation == "read"]
    assert len(reads) == 1  # read back to prove it holds the same bytes


def test_a_volume_the_driver_did_not_write_is_never_taken_into_a_pool(kit, sim):
    # A00009L9 is in pool a's barcodes but holds a volume of other software; with every
    # scratch cartridge gone, it is looked at and refused, never written.
    for slot in (1, 2, 3, 4):
        sim.take_out(slot)
    _archived, not_archived, error, _ = kit.plugin.archive(
        [kit.media("x.bin", os.urandom(100))], KIT_POLICY, "job-3"
    )
    assert not_archived and "No cartridge of pool a" in error
    assert files_on(sim, "A00009L9") == []
    assert store_of(kit).cartridge("A00009L9") is None


def test_a_file_larger_than_a_cartridge_fails_without_using_up_the_scratch_cartridges(kit, sim):
    big = kit.media("huge.mxf", size=CAPACITY + MiB)
    _archived, not_archived, error, _ = kit.plugin.archive([big], KIT_POLICY, "job-4")
    assert not_archived == [big] and "larger than what a whole cartridge" in error
    assert [c.barcode for c in store_of(kit).cartridges("a")] == ["A00000L9"]


def test_a_pool_without_scratch_offers_no_more_bytes_per_call_than_its_cartridges_hold(tmp_path):
    from archive_core_tape_ltfs.driver.media import Cartridge

    from archive_core.driver import DriverContext

    raw = settings_for(tmp_path / "library")
    raw["pools"]["b"] = {"media": "L9", "barcodes": ["B00000L9-B00009L9"], "max_bytes": 10**12}
    config, problems = structure(TapeLtfsDriver.Config, raw, path="settings")
    assert config is not None, problems
    driver = TapeLtfsDriver(config, DriverContext(target="tape", state_dir=tmp_path / "state"))
    for barcode, free in (("B00000L9", 5 * 10**9), ("B00001L9", 3 * 10**9)):
        driver._store.save(
            Cartridge(
                barcode=barcode,
                pool="b",
                state=CartridgeState.APPENDABLE,
                volume_serial=barcode[:6],
                volume_uuid=f"uuid-{barcode}",
                generation=2,
                free_bytes=free,
                total_bytes=100 * 10**9,
                files=0,
                worm=False,
            )
        )
    offered = {p.uuid: p for p in driver.policies()}
    # Each cartridge keeps 1% of 100 GB free: 4 GB + 2 GB of room.
    assert offered[policy_uuid("tape", "b", None)].max_bytes == 6 * 10**9
    assert offered[policy_uuid("tape", "a", None)].max_bytes is None  # a can format more


def test_a_drive_leased_by_another_worker_is_not_touched_and_the_files_wait_for_later(
    tmp_path, library_dir
):
    settings = settings_for(library_dir, drive_wait_seconds=0)
    kit = Harness(DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings), tmp_path / "k")
    try:
        leases = kit.site().catalog.leases
        for drive in (0, 1):
            leases.acquire(f"tape_ltfs:{KIT_TARGET}/drive{drive}", ttl=60, purpose="other job")
        original = kit.media("waits.bin", os.urandom(1000))
        archived, not_archived, error, _ = kit.plugin.archive([original], KIT_POLICY, "job-5")
        assert not archived and not_archived == [original]
        assert "drive0 is not free" in error and "(other job) holds it" in error
    finally:
        kit.close()


def test_a_job_takes_the_drive_no_other_worker_holds(kit):
    kit.site().catalog.leases.acquire(f"tape_ltfs:{KIT_TARGET}/drive0", ttl=60, purpose="other")
    archive(kit, [kit.media("free-drive.bin", os.urandom(1000))])


def test_a_restore_waiting_for_a_drive_is_served_before_an_archive_that_waited_longer(
    tmp_path, library_dir
):
    settings = settings_for(library_dir, drive_wait_seconds=120)
    kit = Harness(DriverUnderTest(driver_class=TapeLtfsDriver, settings=settings), tmp_path / "k")
    try:
        [archived] = archive(kit, [kit.media("wanted.bin", os.urandom(5000))])
        leases = kit.site().catalog.leases
        drives = [f"tape_ltfs:{KIT_TARGET}/drive{n}" for n in (0, 1)]
        held = [leases.acquire(d, ttl=600, purpose="operator") for d in drives]
        later = kit.media("later.bin", os.urandom(5000))
        wanted = kit.elsewhere(archived)
        results: dict[str, Any] = {}

        def run(name: str, call: Any) -> None:
            results[name] = call()

        def queued(jobs: int) -> bool:
            return len(leases.waiting(drives[0])) == jobs

        archiving = threading.Thread(
            target=run, args=("archive", lambda: kit.plugin.archive([later], KIT_POLICY, "a-9"))
        )
        archiving.start()
        _eventually(lambda: queued(1), "the archive job waits for a drive")
        restoring = threading.Thread(
            target=run, args=("restore", lambda: kit.plugin.restore([wanted], KIT_POLICY))
        )
        restoring.start()
        try:
            _eventually(lambda: queued(2), "the restore job waits for a drive")
            order = leases.waiting(drives[0])
        finally:  # the jobs go on either way, so that no thread is left waiting
            for lease in held:
                leases.release(lease)
            archiving.join(120)
            restoring.join(120)
        assert [w.priority for w in order] == [PRIORITY_RESTORE, PRIORITY_ARCHIVE]
        assert order[0].purpose.startswith("restore job") and order[1].purpose.startswith(
            "archive job a-9"
        )
        assert kit.bytes_of(wanted) == kit.bytes_of(
            kit.elsewhere(archived)._replace(files=archived.files)
        )
        assert results["archive"][0] and not results["archive"][1]
    finally:
        kit.close()


def test_an_archive_hands_its_mounted_cartridge_to_a_restore_after_its_current_file(
    kit, sim, library_dir
):
    from archive_core.model import ArchiveItem, ArchiveRequest

    [wanted_set] = archive(kit, [kit.media("wanted.bin", os.urandom(5000))])
    assert barcode_of(wanted_set) == "A00000L9"
    sources = [kit.media(f"batch{i}.bin", os.urandom(3000 + i)) for i in range(3)]
    items = [
        ArchiveItem(key=str(i), sources=fs.files, name=f"batch{i}_{fs.sha1}.bin", sha1=fs.sha1)
        for i, fs in enumerate(sources)
    ]
    driver = kit.site().target(KIT_TARGET).instance
    driver.config = attrs.evolve(driver.config, sync_every_files=1)
    request = ArchiveRequest(policy=KIT_POLICY, target=KIT_TARGET, job_id="big", items=items)
    writing = driver.archive(request)
    first = next(writing)  # the job now has A00000L9 mounted, between two files
    assert first.ok and first.locator.startswith("A00000L9/")
    cartridge = f"tape_ltfs:{KIT_TARGET}/cartridge/A00000L9"
    leases = kit.site().catalog.leases
    wanted = kit.elsewhere(wanted_set)
    restoring = threading.Thread(target=lambda: kit.plugin.restore([wanted], KIT_POLICY))
    restoring.start()
    try:
        _eventually(lambda: len(leases.waiting(cartridge)) == 1, "the restore waits")
        [waiter] = leases.waiting(cartridge)
        assert waiter.priority == PRIORITY_RESTORE
    finally:
        rest = list(writing)  # the archive goes on, on another cartridge
        restoring.join(120)
    assert kit.bytes_of(wanted) == kit.bytes_of(
        kit.elsewhere(wanted_set)._replace(files=wanted_set.files)
    )
    assert all(o.ok for o in rest)
    assert {o.locator.split("/")[0] for o in rest} == {"A00001L9"}
    # What the archive wrote on A00000L9 before handing it over was synced and recorded.
    assert store_of(kit).file("A00000L9", first.locator.split("/", 1)[1]) is not None


def _eventually(condition: Any, what: str, timeout: float = 60.0) -> None:
    """Wait for something another thread does (not for a clock to pass)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.02)


def test_archive_restore_and_a_spill_on_the_real_port_over_the_simulated_tools(
    kit, sim, monkeypatch
):
    real = real_over(sim)
    monkeypatch.setattr(TapeLtfsDriver, "_port", lambda self: real)
    originals = [kit.media(f"r{i}.bin", os.urandom(3000 + i)) for i in range(3)]
    archived = archive(kit, originals)
    sim.inject(kind="write_error", barcode="A00000L9", at_bytes=100)
    [spilled] = archive(kit, [kit.media("spilled.bin", os.urandom(3000))])
    assert {barcode_of(fs) for fs in archived} == {"A00000L9"}
    assert barcode_of(spilled) == "A00001L9"
    assert store_of(kit).cartridge("A00000L9").state is CartridgeState.READ_ONLY
    restored = [kit.elsewhere(fs) for fs in archived]
    kit.plugin.restore(restored, KIT_POLICY)
    for original, back in zip(originals, restored, strict=True):
        assert kit.bytes_of(back) == kit.bytes_of(original)


# --- the operator CLI on the site's target ---------------------------------------------------


def _operator(config: Path, *args: str) -> Any:
    from click.testing import CliRunner

    from archive_core.cli import main

    return CliRunner().invoke(
        main, ["--config", str(config), "tape", "--target", KIT_TARGET, *args]
    )


def _site_config(kit: Harness) -> Path:
    kit.site()  # the plugin's site is made on first use
    [config] = kit.workdir.glob("site-*/archive-core.toml")
    return config


def test_the_operator_cli_is_refused_a_drive_a_job_holds_and_names_the_holder(kit, sim):
    config = _site_config(kit)
    drive0 = f"tape_ltfs:{KIT_TARGET}/drive0"
    kit.site().catalog.leases.acquire(drive0, ttl=600, purpose="archive job VX-7")
    moves = len(sim.timeline("robot"))
    refused = _operator(config, "load", "A00000L9", "--drive", "0", "--json")
    assert refused.exit_code == 4, refused.output
    error = json.loads(refused.output)["error"]
    assert "archive job VX-7" in error["message"] and "drive0" in error["message"]
    alive = _operator(config, "--force", "load", "A00000L9", "--drive", "0")
    assert alive.exit_code != 0 and "still running" in alive.output, alive.output
    assert len(sim.timeline("robot")) == moves  # nothing moved
    done = _operator(config, "load", "A00000L9", "--drive", "1", "--json")
    assert done.exit_code == 0, done.output  # another drive is free
    assert kit.site().catalog.leases.current(f"tape_ltfs:{KIT_TARGET}/drive1") is None  # let go


def test_force_breaks_the_drive_lease_of_a_holder_that_died_once_no_mount_is_left(kit, sim):
    import subprocess
    import sys

    config = _site_config(kit)
    drive0 = f"tape_ltfs:{KIT_TARGET}/drive0"
    assert kit.site().catalog.leases.current(drive0) is None  # the catalog is made
    catalog = config.parent / "catalog.sqlite"
    # A worker that took the drive and died without releasing it: its lease runs for 10 min.
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from archive_core.catalog import Catalog; "
            "Catalog(sys.argv[1]).leases.acquire(sys.argv[2], ttl=600, purpose='archive job X')",
            f"sqlite:///{catalog}",
            drive0,
        ],
        check=True,
    )
    assert kit.site().catalog.leases.current(drive0) is not None
    assert _operator(config, "load", "A00000L9", "--drive", "0").exit_code == 4
    done = _operator(config, "--force", "load", "A00000L9", "--drive", "0", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["barcode"] == "A00000L9"
    assert kit.site().catalog.leases.current(drive0) is None


def test_a_retired_cartridge_is_shown_so_still_read_and_never_written_again(kit, sim):
    config = _site_config(kit)
    [kept] = archive(kit, [kit.media("old.bin", os.urandom(4000))])
    assert barcode_of(kept) == "A00000L9"
    retired = _operator(config, "retire", "A00000L9", "--reason", "worn out", "--json")
    assert retired.exit_code == 0, retired.output
    listed = json.loads(_operator(config, "volumes", "--json").output)["volumes"]
    [row] = [r for r in listed if r["barcode"] == "A00000L9"]
    assert (row["state"], row["reason"], row["pool"]) == ("retired", "worn out", "a")
    status = json.loads(_operator(config, "status", "--json").output)
    [where] = [s for s in status["slots"] + status["drives"] if s.get("barcode") == "A00000L9"]
    assert where["cartridge_state"] == "retired"
    assert "pool a, retired (worn out)" in _operator(config, "status").output
    [later] = archive(kit, [kit.media("new.bin", os.urandom(4000))])
    assert barcode_of(later) != "A00000L9"
    wanted = kit.elsewhere(kept)
    kit.plugin.restore([wanted], KIT_POLICY)
    assert kit.bytes_of(wanted) == kit.bytes_of(kit.elsewhere(kept)._replace(files=kept.files))


def test_scan_finds_a_file_written_behind_the_drivers_back_and_stops_writes_to_it(kit, sim):
    from archive_core_tape_ltfs.model import LoadRequest, MountRequest, UnloadRequest

    config = _site_config(kit)
    archive(kit, [kit.media(f"s{i}.bin", os.urandom(3000 + i)) for i in range(2)])
    agrees = _operator(config, "scan", "A00000L9", "--json")
    assert agrees.exit_code == 0, agrees.output
    assert json.loads(agrees.output)["cartridges"][0]["agrees"]
    # Someone mounts the cartridge by hand and adds a file.
    put_back(sim)
    slot = sim.changer.inventory().locate("A00000L9").number
    sim.changer.load(LoadRequest(slot=slot, drive=0, barcode="A00000L9"))
    sim.drive(0).wait_ready()
    mount = sim.ltfs.mount(MountRequest(drive=0, barcode="A00000L9"))
    with mount.open_write("stray.bin") as out:
        out.write(b"not archived by us")
    sim.ltfs.unmount(mount)
    sim.changer.unload(UnloadRequest(drive=0))
    drifted = _operator(config, "scan", "--all", "--json")
    assert drifted.exit_code == 3, drifted.output
    [found] = [c for c in json.loads(drifted.output)["cartridges"] if c["barcode"] == "A00000L9"]
    assert found["unknown"] == ["stray.bin"] and not found["agrees"]
    assert store_of(kit).cartridge("A00000L9").state is CartridgeState.READ_ONLY
    [later] = archive(kit, [kit.media("after.bin", os.urandom(3000))])
    assert barcode_of(later) != "A00000L9"


def test_exporting_a_pool_moves_its_cartridges_out_until_the_slots_are_full(kit, sim):
    config = _site_config(kit)
    # Pool a gets three recorded cartridges: one file each, a cartridge retired in between.
    for n in range(3):
        archive(kit, [kit.media(f"p{n}.bin", os.urandom(2000 + n))])
        _operator(config, "retire", f"A0000{n}L9", "--reason", "filled for the test")
    cartridge = f"tape_ltfs:{KIT_TARGET}/cartridge/A00001L9"
    held = kit.site().catalog.leases.acquire(cartridge, ttl=600, purpose="restore job R-1")
    refused = _operator(config, "export", "--pool", "a", "--json")
    assert refused.exit_code == 4, refused.output  # A00000L9 went out; A00001L9 is a job's
    assert "restore job R-1" in json.loads(refused.output)["error"]["message"]
    kit.site().catalog.leases.release(held)
    full = _operator(config, "export", "--pool", "a", "--json")
    assert full.exit_code == 3, full.output  # two I/E slots: one was left for A00002L9
    said = json.loads(full.output)
    assert [m["barcode"] for m in said["exported"]] == ["A00001L9"]
    assert said["left"] == ["A00002L9"]
    inventory = sim.changer.inventory()
    waiting = {s.barcode for s in inventory.import_export_slots() if s.full}
    assert waiting == {"A00000L9", "A00001L9"}
