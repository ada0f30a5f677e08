"""The port contract: both backends (simulator; real tools answered by the simulator) agree."""

from __future__ import annotations

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    CheckMode,
    CheckRequest,
    DriveState,
    FormatRequest,
    LoadRequest,
    MountRequest,
    SlotKind,
    TransferRequest,
    UnloadRequest,
)


def loaded(library, slot: int, barcode: str, drive: int = 0):
    library.changer.load(LoadRequest(slot=slot, drive=drive, barcode=barcode))
    library.drive(drive).wait_ready(new_cartridge=True)


def formatted_mount(library, slot=1, barcode="AAA001L9", drive=0):
    loaded(library, slot, barcode, drive)
    library.ltfs.format(FormatRequest(drive=drive, barcode=barcode))
    return library.ltfs.mount(MountRequest(drive=drive, barcode=barcode))


def test_inventory_shows_slots_barcodes_cleaning_and_import_export(library):
    inventory = library.changer.inventory()
    assert [d.index for d in inventory.drives] == [0, 1]
    assert [s.number for s in inventory.slots] == list(range(1, 13))
    assert inventory.slot(11).kind is SlotKind.IMPORT_EXPORT
    assert inventory.data_barcodes() == ("AAA001L9", "AAA002L9", "AAA003L9")
    assert [s.barcode for s in inventory.cleaning_slots()] == ["CLN001CU"]


def test_load_wait_ready_identity_and_unload_back_to_its_slot(library):
    loaded(library, 2, "AAA002L9", drive=1)
    bay = library.changer.inventory().drive(1)
    assert bay.barcode == "AAA002L9" and bay.source_slot == 2
    assert library.drive(1).status().state is DriveState.READY
    identity = library.drive(1).identity()
    assert identity.serial == "SIM0900001" and identity.generation == 9
    assert library.drive(1).alerts().flags == frozenset()
    assert library.changer.unload(UnloadRequest(drive=1)) == 2
    assert library.changer.inventory().slot(2).barcode == "AAA002L9"


def test_moves_are_checked_against_a_fresh_inventory(library):
    with pytest.raises(errors.SourceEmpty):
        library.changer.load(LoadRequest(slot=4, drive=0))
    with pytest.raises(errors.WrongCartridge):
        library.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA002L9"))
    library.changer.load(LoadRequest(slot=1, drive=0))
    with pytest.raises(errors.DestinationFull):
        library.changer.load(LoadRequest(slot=2, drive=0))
    with pytest.raises(errors.DestinationFull):
        library.changer.unload(UnloadRequest(drive=0, slot=2))
    with pytest.raises(errors.SourceEmpty):
        library.changer.unload(UnloadRequest(drive=1))


def test_transfer_to_import_export_and_back(library):
    library.changer.transfer(TransferRequest(source=2, destination=11, barcode="AAA002L9"))
    inventory = library.changer.inventory()
    assert inventory.slot(11).barcode == "AAA002L9" and not inventory.slot(2).full
    assert "AAA002L9" not in inventory.data_barcodes()
    with pytest.raises(errors.CartridgeOffline):
        library.changer.load(LoadRequest(slot=2, drive=0, barcode="AAA002L9"))
    library.changer.transfer(TransferRequest(source=11, destination=2))
    assert library.changer.inventory().slot(2).barcode == "AAA002L9"


def test_format_writes_the_serial_from_the_barcode_and_refuses_to_overwrite(library):
    loaded(library, 1, "AAA001L9")
    volume = library.ltfs.format(FormatRequest(drive=0, barcode="AAA001L9", name="pool-a"))
    assert volume.serial == "AAA001" and len(volume.uuid) == 36
    with pytest.raises(errors.AlreadyFormatted):
        library.ltfs.format(FormatRequest(drive=0, barcode="AAA001L9"))
    again = library.ltfs.format(FormatRequest(drive=0, barcode="AAA001L9", force=True))
    assert again.uuid != volume.uuid


def test_files_written_are_read_back_with_locations_in_write_order(library):
    mount = formatted_mount(library)
    with mount.open_write("clips/one.mov") as fh:
        fh.write(b"1" * 3_000_000)
    with mount.open_write("clips/two.mov") as fh:
        fh.write(b"2" * 1000)
    with mount.open_write("empty.txt"):
        pass
    first, second = mount.location("clips/one.mov"), mount.location("clips/two.mov")
    assert first.partition == second.partition == "b"
    assert second.startblock > first.startblock
    assert mount.location("empty.txt") is None
    assert sorted(mount.files()) == [
        ("clips/one.mov", 3_000_000),
        ("clips/two.mov", 1000),
        ("empty.txt", 0),
    ]
    with mount.open_read("clips/two.mov") as fh:
        assert fh.read() == b"2" * 1000
    capacity = mount.capacity()
    assert 0 < capacity.free_bytes < capacity.total_bytes and capacity.block_size == 524288
    volume = mount.volume()
    assert volume.serial == "AAA001" and volume.lock_state == 0
    assert mount.sync() == volume.generation + 1
    library.ltfs.unmount(mount)
    again = library.ltfs.mount(MountRequest(drive=0, barcode="AAA001L9"))
    assert again.location("clips/two.mov") == second
    assert again.volume().uuid == volume.uuid
    library.ltfs.unmount(again)


def test_nothing_moves_or_touches_the_tape_while_ltfs_holds_the_drive(library):
    mount = formatted_mount(library)
    with pytest.raises(errors.UnloadRefused):
        library.changer.unload(UnloadRequest(drive=0))
    with pytest.raises(errors.DriveHeldByLtfs):
        library.drive(0).eject()
    with pytest.raises(errors.DriveHeldByLtfs):
        library.ltfs.format(FormatRequest(drive=0, barcode="AAA001L9", force=True))
    assert library.drive(0).status().state is DriveState.READY
    library.ltfs.unmount(mount, eject=True)
    assert library.changer.unload(UnloadRequest(drive=0)) == 1


def test_mounting_a_blank_cartridge_is_an_unformatted_tape(library):
    loaded(library, 2, "AAA002L9")
    with pytest.raises(errors.UnformattedTape):
        library.ltfs.mount(MountRequest(drive=0))


def test_mounting_with_the_wrong_barcode_is_refused(library):
    loaded(library, 3, "AAA003L9")
    with pytest.raises(errors.WrongCartridge):
        library.ltfs.mount(MountRequest(drive=0, barcode="BBB003L9"))
    assert library.changer.unload(UnloadRequest(drive=0)) == 3


def test_a_full_cartridge_refuses_file_data_with_no_space(library):
    mount = formatted_mount(library)
    with pytest.raises(errors.NoSpace) as raised, mount.open_write("big.bin") as fh:
        for _ in range(80):
            fh.write(b"x" * 2**20)
    assert raised.value.drive == 0
    assert mount.capacity().free_bytes == 0
    library.ltfs.unmount(mount)


def test_a_write_protected_cartridge_mounts_read_only(library):
    loaded(library, 3, "AAA003L9")
    library.sim.inject(kind="write_protect", barcode="AAA003L9")
    mount = library.ltfs.mount(MountRequest(drive=0, barcode="AAA003L9"))
    assert mount.read_only
    with pytest.raises(errors.WriteProtected):
        mount.open_write("x.bin")
    library.ltfs.unmount(mount)
    with pytest.raises(errors.WriteProtected):
        library.ltfs.format(FormatRequest(drive=0, barcode="AAA003L9", force=True))


def test_a_permanent_write_error_fails_the_file_and_leaves_the_volume_read_only(library):
    mount = formatted_mount(library)
    library.sim.inject(kind="write_error", barcode="AAA001L9", at_bytes=1000)
    with pytest.raises(errors.MediaError), mount.open_write("a.bin") as fh:
        fh.write(b"a" * 5000)
    with pytest.raises(errors.ReadOnlyVolume):
        mount.open_write("b.bin")
    assert mount.volume().write_perm_error
    library.ltfs.unmount(mount)
    again = library.ltfs.mount(MountRequest(drive=0))
    assert again.read_only
    library.ltfs.unmount(again)


def test_after_a_crash_the_drive_is_released_checked_and_mounts_again(library):
    mount = formatted_mount(library)
    with mount.open_write("kept.bin") as fh:
        fh.write(b"k" * 100)
    mount.sync()
    with mount.open_write("lost.bin") as fh:
        fh.write(b"l" * 100)
    library.sim.inject(kind="crash", drive=0)
    with pytest.raises(errors.UnloadRefused):
        library.changer.unload(UnloadRequest(drive=0))
    with pytest.raises(errors.DriveBusy):
        library.ltfs.mount(MountRequest(drive=0))
    library.ltfs.release(0)
    with pytest.raises(errors.InconsistentIndex):
        library.ltfs.mount(MountRequest(drive=0))
    result = library.ltfs.check(CheckRequest(drive=0))
    assert result.corrected and not result.uncorrected
    again = library.ltfs.mount(MountRequest(drive=0, barcode="AAA001L9"))
    assert [p for p, _ in again.files()] == ["kept.bin"]
    library.ltfs.unmount(again)


def test_check_lists_generations_and_rolls_back(library):
    mount = formatted_mount(library)
    for name in ("a", "b"):
        with mount.open_write(name) as fh:
            fh.write(name.encode() * 10)
        mount.sync()
    library.ltfs.unmount(mount)
    listed = library.ltfs.check(CheckRequest(drive=0, mode=CheckMode.LIST_ROLLBACK))
    assert listed.clean and listed.generations[:3] == (1, 2, 3)
    rolled = library.ltfs.check(CheckRequest(drive=0, mode=CheckMode.ROLLBACK, generation=2))
    assert rolled.corrected
    again = library.ltfs.mount(MountRequest(drive=0))
    assert [p for p, _ in again.files()] == ["a"]
    library.ltfs.unmount(again)


def test_a_new_lto9_cartridge_is_not_ready_within_the_normal_timeout(library):
    library.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    with pytest.raises(errors.DriveNotReady):
        library.drive(0).wait_ready(timeout=600)
    assert library.drive(0).wait_ready(new_cartridge=True).state is DriveState.READY


def test_unit_attention_is_retried_and_the_inventory_read_again(library):
    library.sim.inject(kind="unit_attention", count=2)
    assert library.changer.inventory().slot(1).barcode == "AAA001L9"
    library.sim.inject(kind="unit_attention", count=10)
    with pytest.raises(errors.UnitAttention):
        library.changer.inventory()


def test_the_library_becoming_ready_is_waited_for(library):
    library.sim.inject(kind="becoming_ready", seconds=120)
    before = library.clock.now()
    assert library.changer.inventory().slot(1).full
    assert library.clock.now() - before >= 120


def test_the_real_port_waits_for_ltfs_to_exit_before_the_tape_moves(library):
    """With an unmount that returns before ltfs exits (as umount does), only a port that waits
    for the process keeps the volume consistent."""
    mount = formatted_mount(library)
    with mount.open_write("f.bin") as fh:
        fh.write(b"f" * 100)
    library.sim.inject(kind="unmount_returns_early", drive=0)
    library.ltfs.unmount(mount)
    library.changer.unload(UnloadRequest(drive=0))
    loaded(library, 1, "AAA001L9")
    if library is library.sim:
        # The simulator's port honoured the fault as a port that does not wait would.
        with pytest.raises(errors.InconsistentIndex):
            library.ltfs.mount(MountRequest(drive=0))
    else:
        again = library.ltfs.mount(MountRequest(drive=0))
        assert [p for p, _ in again.files()] == ["f.bin"]
        library.ltfs.unmount(again)
