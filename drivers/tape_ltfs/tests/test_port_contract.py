"""The port contract: every test runs on both backends, the simulator's port and the real port
over the simulator's tools (`library` in conftest.py), and both must behave the same.

A test reaches into the simulated environment only through `library.sim` (faults, a process
that dies); where a backend cannot express a behaviour, the test says why at that line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import SimulatedCartridge, SimulatorSettings
from archive_core_tape_ltfs.model import (
    ALERT_CLEANING_REQUIRED,
    LOCK_PHYSICAL_WP,
    CheckMode,
    CheckRequest,
    DriveState,
    FormatRequest,
    LoadRequest,
    MountRequest,
    ReadOnlyReason,
    SlotKind,
    TapeAlerts,
    TransferRequest,
    UnloadRequest,
    media_type_for,
)
from archive_core_tape_ltfs.parse import sg
from archive_core_tape_ltfs.runner import Command
from archive_core_tape_ltfs.sim.tools import SimulatedTools, sg_node


def settings_for(tmp_path, *, generation: int = 9, cartridges=()) -> SimulatorSettings:
    return SimulatorSettings(
        state_dir=tmp_path / "library",
        slots=10,
        import_export=2,
        drives=2,
        generation=generation,
        capacity_bytes=64 * 2**20,
        cartridges=cartridges
        or (
            SimulatedCartridge(barcode="AAA001L9", slot=1),
            SimulatedCartridge(barcode="AAA002L9", slot=2),
            SimulatedCartridge(barcode="AAA003L9", slot=3, formatted=True, new=False),
            SimulatedCartridge(barcode="WRM004LZ", slot=4, new=False),
            SimulatedCartridge(barcode="CLN001CU", slot=10, uses=5),
        ),
    )


@pytest.fixture
def sim_settings(tmp_path) -> SimulatorSettings:
    return settings_for(tmp_path)


def loaded(library, slot: int, barcode: str, drive: int = 0) -> None:
    library.changer.load(LoadRequest(slot=slot, drive=drive, barcode=barcode))
    library.drive(drive).wait_ready(new_cartridge=True)


def formatted_mount(library, slot=1, barcode="AAA001L9", drive=0, **mount):
    loaded(library, slot, barcode, drive)
    library.ltfs.format(FormatRequest(drive=drive, barcode=barcode))
    return library.ltfs.mount(MountRequest(drive=drive, barcode=barcode, **mount))


def write(mount, path: str, data: bytes) -> None:
    with mount.open_write(path) as fh:
        fh.write(data)


# --- the changer, drives, LTFS basics ------------------------------------------------------


def test_inventory_shows_slots_barcodes_cleaning_and_import_export(library):
    inventory = library.changer.inventory()
    assert [d.index for d in inventory.drives] == [0, 1]
    assert [s.number for s in inventory.slots] == list(range(1, 13))
    assert inventory.slot(11).kind is SlotKind.IMPORT_EXPORT
    assert inventory.data_barcodes() == ("AAA001L9", "AAA002L9", "AAA003L9", "WRM004LZ")
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
        library.changer.load(LoadRequest(slot=5, drive=0))
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


# --- live volume state ----------------------------------------------------------------------


def test_a_fresh_volume_takes_writes_and_says_so(library):
    mount = formatted_mount(library)
    state = mount.state()
    assert not state.read_only and not mount.read_only and state.reasons == frozenset()
    library.ltfs.unmount(mount)


def test_a_permanent_write_error_shows_in_the_live_state_at_once(library):
    mount = formatted_mount(library)
    library.sim.inject(kind="write_error", barcode="AAA001L9", at_bytes=100)
    with pytest.raises(errors.MediaError), mount.open_write("a.bin") as fh:
        fh.write(b"a" * 1000)
    assert mount.read_only
    assert ReadOnlyReason.WRITE_ERROR in mount.state().reasons
    assert mount.state().lock_state != 0
    library.ltfs.unmount(mount)


def test_a_write_protected_cartridge_and_a_read_only_mount_say_why(library):
    loaded(library, 3, "AAA003L9")
    library.sim.inject(kind="write_protect", barcode="AAA003L9")
    mount = library.ltfs.mount(MountRequest(drive=0))
    assert mount.state().reasons == {ReadOnlyReason.WRITE_PROTECTED}
    assert mount.state().lock_state & LOCK_PHYSICAL_WP  # LTFS reports the tab in the lock state
    library.ltfs.unmount(mount)
    loaded(library, 1, "AAA001L9", drive=1)
    library.ltfs.format(FormatRequest(drive=1, barcode="AAA001L9"))
    mount = library.ltfs.mount(MountRequest(drive=1, read_only=True))
    assert mount.read_only and ReadOnlyReason.MOUNTED_READ_ONLY in mount.state().reasons
    with pytest.raises(errors.ReadOnlyVolume):
        mount.open_write("x")
    library.ltfs.unmount(mount)


def test_a_volume_past_early_warning_is_full(library):
    mount = formatted_mount(library)
    with pytest.raises(errors.NoSpace), mount.open_write("big.bin") as fh:
        for _ in range(80):
            fh.write(b"x" * 2**20)
    assert mount.read_only and ReadOnlyReason.FULL in mount.state().reasons
    library.ltfs.unmount(mount)


def test_a_worm_cartridge_takes_new_files_but_never_removes_or_rewrites_one(library):
    mount = formatted_mount(library, slot=4, barcode="WRM004LZ")
    assert library.drive(0).status().media == media_type_for("WRM004LZ")
    assert library.drive(0).status().media.worm
    write(mount, "kept.bin", b"k" * 100)
    state = mount.state()
    assert state.reasons == {ReadOnlyReason.WORM} and not state.read_only
    with pytest.raises(errors.ReadOnlyVolume, match="WORM"):
        mount.remove("kept.bin")
    with pytest.raises(errors.ReadOnlyVolume, match="WORM"):
        mount.open_write("kept.bin")
    assert [p for p, _ in mount.files()] == ["kept.bin"]
    library.ltfs.unmount(mount)
    with pytest.raises(errors.AlreadyFormatted):
        library.ltfs.format(FormatRequest(drive=0, barcode="WRM004LZ", force=True))


def test_an_older_generation_cartridge_is_read_but_not_written(open_library, tmp_path):
    library = open_library(
        settings_for(
            tmp_path,
            generation=7,
            cartridges=(SimulatedCartridge(barcode="OLD001L5", slot=1, formatted=True),),
        )
    )
    loaded(library, 1, "OLD001L5")
    assert library.drive(0).status().media.generation == 5
    mount = library.ltfs.mount(MountRequest(drive=0, barcode="OLD001L5"))
    assert mount.read_only and ReadOnlyReason.OLDER_GENERATION in mount.state().reasons
    with pytest.raises(errors.ReadOnlyVolume):
        mount.open_write("x")
    library.ltfs.unmount(mount)


# --- indexes ---------------------------------------------------------------------------------


def test_unmount_returns_the_index_with_every_file_and_all_its_extents(library):
    mount = formatted_mount(library)
    write(mount, "one.bin", b"1" * 3_000_000)
    write(mount, "empty.txt", b"")
    # An index sync in the middle of a file: its bytes lie on both sides of that index.
    with mount.open_write("split.bin") as fh:
        fh.write(b"s" * 1_500_000)
        mount.sync()
        fh.write(b"t" * 1_500_000)
    locations = {p: mount.location(p) for p in ("one.bin", "split.bin")}
    volume = mount.volume()
    index = library.ltfs.unmount(mount)
    assert index is not None and index.volume_uuid == volume.uuid
    assert index.generation > volume.generation
    assert sorted(f.path for f in index.files) == ["empty.txt", "one.bin", "split.bin"]
    split = index.file("split.bin")
    assert len(split.extents) == 2 and split.size == 3_000_000
    assert sum(e.byte_count for e in split.extents) == split.size
    assert [e.file_offset for e in split.extents] == [0, 1_500_000]
    first, second = split.extents
    assert second.startblock > first.startblock + first.byte_count // 524288  # the index between
    assert index.file("empty.txt").extents == () and index.file("empty.txt").location is None
    for path, location in locations.items():
        assert index.file(path).location == location


def test_the_index_of_an_unmounted_volume_is_read_from_tape(library):
    mount = formatted_mount(library)
    write(mount, "a.bin", b"a" * 1000)
    with pytest.raises(errors.DriveHeldByLtfs):
        library.ltfs.read_index(0)
    captured = library.ltfs.unmount(mount)
    read = library.ltfs.read_index(0)
    assert read.volume_uuid == captured.volume_uuid
    assert [(f.path, f.size, f.extents) for f in read.files] == [
        (f.path, f.size, f.extents) for f in captured.files
    ]


def test_the_volume_names_its_barcode_and_uuid(library):
    mount = formatted_mount(library)
    volume = mount.volume()
    assert volume.mam_barcode == "AAA001L9" and volume.serial == "AAA001"
    assert len(volume.uuid) == 36
    library.ltfs.unmount(mount)


def test_a_mount_for_another_volume_uuid_is_refused_and_leaves_nothing_mounted(library):
    mount = formatted_mount(library)
    uuid = mount.volume().uuid
    library.ltfs.unmount(mount)
    wanted = "00000000-0000-4000-8000-000000000000"
    with pytest.raises(errors.WrongCartridge) as raised:
        library.ltfs.mount(MountRequest(drive=0, volume_uuid=wanted))
    assert wanted in raised.value.message and uuid in raised.value.message
    assert library.ltfs.mounts() == ()
    library.ltfs.unmount(library.ltfs.mount(MountRequest(drive=0, volume_uuid=uuid)))


# --- TapeAlert -------------------------------------------------------------------------------


def read_log_page_0x2e(library, drive: int) -> TapeAlerts:
    """What another reader of log page 0x2E on this host sees (LTFS answering
    `user.ltfs.mediaStorageAlert`, a monitoring agent): the drive clears the flags it reports,
    as many drives do."""
    done = SimulatedTools(library.sim).run(
        Command(argv=("sg_logs", "-p", "0x2e", sg_node(drive)), timeout=60)
    )
    return sg.parse_tape_alerts(done.stdout)


def test_a_cleaning_request_read_by_tape_status_is_still_there_for_the_cleaning_decision(
    library,
):
    loaded(library, 3, "AAA003L9")
    library.sim.inject(kind="needs_cleaning", drive=0)
    assert ALERT_CLEANING_REQUIRED in library.drive(0).alerts().flags  # `tape status`
    assert library.drive(0).alerts().needs_cleaning  # the driver's cleaning decision, later
    assert ALERT_CLEANING_REQUIRED in library.drive(0).alerts().flags
    if library is not library.sim:
        assert not any("0x2e" in argv for argv in library.tools.commands)


def test_a_reader_of_log_page_0x2e_takes_the_cleaning_request_from_everyone_after_it(library):
    """Why the port never reads page 0x2E: the test above would fail if it did."""
    library.sim.inject(kind="needs_cleaning", drive=0)
    assert read_log_page_0x2e(library, 0).needs_cleaning
    assert not library.drive(0).alerts().needs_cleaning
    assert not read_log_page_0x2e(library, 0).flags


# --- busy drives -------------------------------------------------------------------------------


def tells_time_left(library, state: DriveState) -> bool:
    """Whether the backend knows how long a busy state has still to run. The simulator's model
    always does; a real drive only while it is becoming ready (loading, calibrating): only
    sense 04/01 carries an estimate in its INFO field (T10 20-061r2), and sg_turs prints it for
    that code alone (check_for_lu_becoming). Cleaning and unloading tell progress, not time."""
    return library is library.sim or state in (DriveState.LOADING, DriveState.CALIBRATING)


def test_another_caller_sees_a_drive_unloading_until_it_is_done(library):
    loaded(library, 3, "AAA003L9")
    operator = library.worker("operator")
    operator.changer.unload(UnloadRequest(drive=0))
    library.clock.sleep(5)
    status = library.drive(0).status()
    assert status.state is DriveState.UNLOADING
    if tells_time_left(library, status.state):
        assert 0 < status.seconds_left < 300
    else:
        assert status.seconds_left is None
    library.clock.sleep((status.seconds_left or 300) + 1)
    assert library.drive(0).status().state is DriveState.EMPTY


def test_a_new_lto9_cartridge_is_calibrating_and_cannot_be_unloaded_meanwhile(library):
    library.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    assert library.drive(0).status().state is DriveState.LOADING
    library.clock.sleep(60)
    status = library.drive(0).status()
    assert status.state is DriveState.CALIBRATING and status.seconds_left > 10 * 60
    with pytest.raises(errors.DriveBusy) as raised:
        library.changer.unload(UnloadRequest(drive=0))
    assert raised.value.drive == 0 and "AAA001L9" in raised.value.message
    with pytest.raises(errors.DriveBusy):
        library.drive(0).eject()
    assert library.drive(0).wait_ready(new_cartridge=True).state is DriveState.READY
    assert library.changer.unload(UnloadRequest(drive=0)) == 1


def test_a_cleaning_cartridge_shows_the_drive_cleaning(library):
    library.changer.load(LoadRequest(slot=10, drive=1, barcode="CLN001CU"))
    library.clock.sleep(30)
    status = library.drive(1).status()
    assert status.state is DriveState.CLEANING
    if tells_time_left(library, status.state):
        assert status.seconds_left > 0
    else:
        assert status.seconds_left is None and "Cleaning cartridge installed" in status.detail
    library.drive(1).wait_ready()
    library.changer.unload(UnloadRequest(drive=1))


def test_a_dead_drive_is_out_of_service_and_refuses_every_command(library):
    library.sim.inject(kind="drive_dead", drive=1)
    assert library.drive(1).status().state is DriveState.OUT_OF_SERVICE
    for command in (
        lambda: library.changer.load(LoadRequest(slot=3, drive=1)),
        lambda: library.drive(1).identity(),
        lambda: library.drive(1).alerts(),
        lambda: library.drive(1).wait_ready(),
    ):
        with pytest.raises(errors.DriveError, match="out of service") as raised:
            command()
        assert raised.value.drive == 1
    assert library.changer.inventory().slot(3).full  # nothing moved


# --- mounts across processes ----------------------------------------------------------------

# Another process of the host (caller "job-7") mounts a volume on the test's backend and exits,
# leaving its ltfs running: the simulator's port, or the real port over the simulator's tools.
_MOUNT_AND_EXIT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from archive_core_tape_ltfs.config import SimulatorSettings
    from archive_core_tape_ltfs.model import MountRequest
    from archive_core_tape_ltfs.sim.library import SimLibrary

    state_dir, drive, backend = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    library = SimLibrary.open(SimulatorSettings(state_dir=state_dir), caller="job-7")
    if backend == "real":
        from archive_core_tape_ltfs.real.library import RealLibrary
        from archive_core_tape_ltfs.sim.tools import SimulatedTools, real_config

        tools = SimulatedTools(library)
        library = RealLibrary(
            real_config(library), runner=tools, clock=library.clock, fs=tools, caller="job-7"
        )
    library.ltfs.mount(MountRequest(drive=drive))
    """
)


def mount_in_a_process_that_exits(library, drive: int) -> None:
    backend = "simulator" if library is library.sim else "real"
    subprocess.run(
        [
            sys.executable,
            "-c",
            _MOUNT_AND_EXIT,
            str(library.settings.state_dir),
            str(drive),
            backend,
        ],
        check=True,
        env=os.environ,
        timeout=120,
    )


def test_mounts_lists_every_mount_with_its_owner(library):
    mount = formatted_mount(library)
    (record,) = library.ltfs.mounts()
    assert record.drive == 0 and record.barcode == "AAA001L9"
    assert record.owner_pid == os.getpid() and record.owner_alive and record.ltfs_alive
    assert not record.orphaned and record.owner_name == "main"
    library.ltfs.unmount(mount)
    assert library.ltfs.mounts() == ()


def test_a_mount_is_read_through_a_view_that_refuses_changes(library):
    mount = formatted_mount(library)
    with mount.open_write("clip.mov") as fh:
        fh.write(b"x" * 1000)
    view = library.ltfs.view(0)
    assert view.volume().uuid == mount.volume().uuid
    assert view.capacity().files == mount.capacity().files
    assert not view.state().read_only
    for change in (view.sync, lambda: view.open_write("new.mov"), lambda: view.remove("clip.mov")):
        with pytest.raises(errors.DriveHeldByLtfs, match="only the process that owns it"):
            change()
    assert [path for path, _size in mount.files()] == ["clip.mov"]
    with pytest.raises(errors.SourceEmpty, match="Drive 1 has no LTFS mount"):
        library.ltfs.view(1)


def test_a_live_owners_mount_cannot_be_adopted(library):
    formatted_mount(library)
    with pytest.raises(errors.DriveHeldByLtfs) as raised:
        library.ltfs.adopt(0)
    assert str(os.getpid()) in raised.value.message


def test_the_mount_of_a_process_that_died_is_orphaned_and_can_be_adopted(library):
    loaded(library, 3, "AAA003L9", drive=1)
    mount_in_a_process_that_exits(library, 1)
    (record,) = library.ltfs.mounts()
    assert record.drive == 1 and record.orphaned and not record.owner_alive
    assert record.owner_name == "job-7"
    mount = library.ltfs.adopt(1)
    write(mount, "after-adoption.bin", b"x" * 10)
    (record,) = library.ltfs.mounts()
    assert record.owner_pid == os.getpid() and not record.orphaned
    index = library.ltfs.unmount(mount)
    assert [f.path for f in index.files] == ["after-adoption.bin"]
    assert library.ltfs.mounts() == ()


def test_a_crashed_ltfs_leaves_a_dead_mount_until_released(library):
    formatted_mount(library)
    library.sim.inject(kind="crash", drive=0)
    (record,) = library.ltfs.mounts()
    assert record.dead and not record.orphaned
    library.ltfs.release(0)
    assert library.ltfs.mounts() == ()


# --- the library's own places and callers -------------------------------------------------


def test_the_work_directory_exists(library):
    assert library.work_directory.is_dir()


def test_a_worker_starts_at_its_creators_time_and_keeps_its_own(library):
    library.clock.sleep(100)
    worker = library.worker("restore-1")
    assert worker.clock.now() == library.clock.now()
    worker.clock.sleep(50)
    assert worker.clock.now() == library.clock.now() + 50


def test_two_workers_on_two_drives_overlap(library):
    start = library.clock.now()
    one, two = library.worker("drive-0"), library.worker("drive-1")
    loaded(one, 3, "AAA003L9", drive=0)
    loaded(two, 1, "AAA001L9", drive=1)
    one_took = one.clock.now() - start
    two_took = two.clock.now() - start
    # The robot moved both cartridges one after the other; the drives then worked at once.
    assert max(one_took, two_took) < one_took + two_took - 10
