"""Every failure of tape-facts §6 can be injected into the simulator and surfaces typed."""

from __future__ import annotations

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import (
    CheckMode,
    CheckRequest,
    FormatRequest,
    LoadRequest,
    MountRequest,
    TransferRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.sim.library import SimLibrary

from .conftest import real_over


def mounted(sim, slot=1, barcode="AAA001L9"):
    sim.changer.load(LoadRequest(slot=slot, drive=0, barcode=barcode))
    sim.drive(0).wait_ready(new_cartridge=True)
    sim.ltfs.format(FormatRequest(drive=0, barcode=barcode))
    return sim.ltfs.mount(MountRequest(drive=0, barcode=barcode))


@pytest.mark.parametrize(
    ("kind", "step", "error"),
    [
        ("library_offline", "inventory", errors.LibraryOffline),
        ("move_failure", "load", errors.ChangerHardwareError),
        ("source_empty", "load", errors.SourceEmpty),
        ("destination_full", "transfer", errors.DestinationFull),
    ],
)
def test_changer_faults_surface_as_their_typed_error(sim, tmp_path, kind, step, error):
    steps = {
        "inventory": lambda lib: lib.changer.inventory(),
        "load": lambda lib: lib.changer.load(LoadRequest(slot=1, drive=0)),
        "transfer": lambda lib: lib.changer.transfer(TransferRequest(source=1, destination=4)),
    }
    for library in (sim, real_over(sim)):
        sim.inject(kind=kind)
        with pytest.raises(error):
            steps[step](library)


def test_a_load_that_hangs_times_out_as_drive_not_ready(sim):
    sim.inject(kind="load_hang", drive=0)
    sim.changer.load(LoadRequest(slot=3, drive=0))
    with pytest.raises(errors.DriveNotReady) as raised:
        sim.drive(0).wait_ready()
    assert raised.value.drive == 0 and raised.value.retryable
    assert sim.changer.unload(UnloadRequest(drive=0)) == 3


def test_a_stale_reservation_refuses_the_mount_until_released(sim):
    sim.changer.load(LoadRequest(slot=3, drive=0))
    sim.drive(0).wait_ready()
    sim.inject(kind="stale_reservation", drive=0, count=5)
    with pytest.raises(errors.DriveBusy):
        sim.ltfs.mount(MountRequest(drive=0))
    sim.ltfs.release(0)
    sim.ltfs.unmount(sim.ltfs.mount(MountRequest(drive=0)))


def test_a_read_error_on_one_file_is_a_media_error_and_the_others_still_read(sim):
    mount = mounted(sim)
    for name in ("good", "bad"):
        with mount.open_write(name) as fh:
            fh.write(name.encode())
    sim.inject(kind="read_error", barcode="AAA001L9", path="bad")
    with pytest.raises(errors.MediaError) as raised:
        mount.open_read("bad")
    assert raised.value.paths == ("bad",)
    assert mount.open_read("good").read() == b"good"


def test_end_of_medium_during_the_final_index_keeps_the_previous_generation(sim):
    mount = mounted(sim)
    with mount.open_write("synced") as fh:
        fh.write(b"s")
    generation = mount.sync()
    with mount.open_write("unsynced") as fh:
        fh.write(b"u")
    sim.inject(kind="eom_on_index", drive=0)
    with pytest.raises(errors.NoSpace):
        sim.ltfs.unmount(mount)
    again = sim.ltfs.mount(MountRequest(drive=0))
    assert again.read_only and again.volume().generation == generation
    assert [p for p, _ in again.files()] == ["synced"]


def test_a_drive_that_needs_cleaning_says_so_and_ruins_a_write_that_ignores_it(sim):
    mount = mounted(sim)
    sim.inject(kind="needs_cleaning", drive=0)
    alerts = sim.drive(0).alerts()
    assert alerts.needs_cleaning and 20 in alerts.flags
    with pytest.raises(errors.NeedsCleaning), mount.open_write("x") as fh:
        fh.write(b"x")
    with pytest.raises(errors.ReadOnlyVolume):
        mount.open_write("y")
    sim.ltfs.unmount(mount)
    sim.changer.unload(UnloadRequest(drive=0))
    sim.changer.load(LoadRequest(slot=10, drive=0, barcode="CLN001CU"))
    sim.drive(0).wait_ready()
    assert not sim.drive(0).alerts().needs_cleaning
    assert 11 in sim.drive(0).alerts().flags  # cleaning media loaded
    sim.changer.unload(UnloadRequest(drive=0))
    assert sim.cartridge("CLN001CU").uses_left == 1


def test_a_used_up_cleaning_cartridge_is_cleaning_media_expired(sim):
    for _ in range(2):
        sim.changer.load(LoadRequest(slot=10, drive=0))
        sim.drive(0).wait_ready()
        sim.changer.unload(UnloadRequest(drive=0))
    with pytest.raises(errors.CleaningMediaExpired):
        sim.changer.load(LoadRequest(slot=10, drive=0, barcode="CLN001CU"))
    assert 22 in sim.drive(0).alerts().flags
    assert sim.changer.unload(UnloadRequest(drive=0)) == 10


def test_an_unreadable_barcode_shows_as_full_without_a_tag(sim, tmp_path):
    sim.inject(kind="barcode_unreadable", barcode="AAA002L9")
    for library in (sim, real_over(sim)):
        slot = library.changer.inventory().slot(2)
        assert slot.full and slot.barcode is None
        with pytest.raises(errors.BarcodeUnreadable):
            library.changer.load(LoadRequest(slot=2, drive=0, barcode="AAA002L9"))


def test_swapped_cartridges_are_caught_by_barcode_and_by_volume_serial(sim):
    sim.inject(kind="swap", slot=1, other_slot=3)
    with pytest.raises(errors.WrongCartridge):
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    # A relabelled cartridge: the barcode says AAA001, the volume on it says AAA003.
    sim.inject(kind="mislabel", barcode="AAA003L9", label="AAA001L9")
    sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    sim.drive(0).wait_ready()
    with pytest.raises(errors.WrongCartridge):
        sim.ltfs.mount(MountRequest(drive=0, barcode="AAA001L9"))


def test_a_vaulted_cartridge_is_offline(sim):
    sim.inject(kind="vault", barcode="AAA002L9")
    assert sim.changer.inventory().locate("AAA002L9") is None
    with pytest.raises(errors.CartridgeOffline) as raised:
        sim.changer.load(LoadRequest(slot=2, drive=0, barcode="AAA002L9"))
    assert "not in the library" in raised.value.message


@pytest.mark.parametrize("kind", ["unformatted", "foreign"])
def test_a_blank_or_foreign_cartridge_is_an_unformatted_tape(sim, kind):
    sim.inject(kind=kind, barcode="AAA003L9")
    sim.changer.load(LoadRequest(slot=3, drive=0))
    sim.drive(0).wait_ready()
    with pytest.raises(errors.UnformattedTape):
        sim.ltfs.mount(MountRequest(drive=0))


def test_a_corrupt_index_needs_a_check_and_a_missing_eod_a_deep_one(sim):
    sim.changer.load(LoadRequest(slot=3, drive=0))
    sim.drive(0).wait_ready()
    sim.inject(kind="corrupt_index", barcode="AAA003L9")
    with pytest.raises(errors.InconsistentIndex):
        sim.ltfs.mount(MountRequest(drive=0))
    assert sim.ltfs.check(CheckRequest(drive=0)).corrected
    sim.inject(kind="missing_eod", barcode="AAA003L9")
    assert sim.ltfs.check(CheckRequest(drive=0)).uncorrected
    assert sim.ltfs.check(CheckRequest(drive=0, mode=CheckMode.DEEP)).corrected
    sim.ltfs.unmount(sim.ltfs.mount(MountRequest(drive=0)))


def test_a_crash_loses_only_what_was_not_synced_and_salvage_keeps_it(sim):
    mount = mounted(sim)
    with mount.open_write("after-sync") as fh:
        fh.write(b"a")
    sim.inject(kind="crash", drive=0)
    with pytest.raises(errors.ToolFailed):
        mount.open_write("more")
    sim.ltfs.release(0)
    with pytest.raises(errors.InconsistentIndex):
        sim.ltfs.mount(MountRequest(drive=0))
    assert sim.ltfs.check(CheckRequest(drive=0, mode=CheckMode.SALVAGE)).corrected
    again = sim.ltfs.mount(MountRequest(drive=0))
    assert [p for p, _ in again.files()] == ["_ltfs_lostandfound/after-sync"]


def test_unload_before_ltfs_exits_corrupts_the_simulated_volume(sim):
    mount = mounted(sim)
    with mount.open_write("f") as fh:
        fh.write(b"f")
    sim.inject(kind="unmount_returns_early", drive=0)
    sim.ltfs.unmount(mount)  # returns as soon as umount does
    sim.changer.unload(UnloadRequest(drive=0))  # LTFS is still writing the index
    assert sim.cartridge("AAA001L9").volume.consistency == "corrupt"
    sim.changer.load(LoadRequest(slot=1, drive=0))
    sim.drive(0).wait_ready()
    with pytest.raises(errors.InconsistentIndex):
        sim.ltfs.mount(MountRequest(drive=0))


def test_waiting_for_ltfs_to_exit_keeps_the_volume_consistent(sim):
    mount = mounted(sim)
    with mount.open_write("f") as fh:
        fh.write(b"f")
    sim.inject(kind="unmount_returns_early", drive=0)
    sim.ltfs.unmount(mount)
    sim.clock.sleep(600)  # the index write finishes on the virtual clock
    sim.changer.unload(UnloadRequest(drive=0))
    assert sim.cartridge("AAA001L9").volume.consistency == "clean"


def test_a_fault_scheduled_for_a_time_fires_only_then(sim):
    sim.inject(kind="library_offline", at_time=sim.clock.now() + 3600)
    sim.changer.inventory()
    sim.clock.sleep(3600)
    with pytest.raises(errors.LibraryOffline):
        sim.changer.inventory()
    sim.changer.inventory()


def test_random_faults_replay_the_same_way_for_the_same_seed(sim_settings, tmp_path):
    runs = iter(range(10))

    def run(seed: int) -> list[str]:
        import attrs

        fresh = tmp_path / f"run{next(runs)}"
        library = SimLibrary.open(attrs.evolve(sim_settings, state_dir=fresh))
        library.set_random_faults({"library_offline": 0.3}, seed=seed)
        seen = []
        for _ in range(30):
            try:
                library.changer.inventory()
                seen.append("ok")
            except errors.LibraryOffline:
                seen.append("offline")
        return seen

    first, again, other = run(1), run(1), run(2)
    assert first == again and "offline" in first and "ok" in first
    assert first != other


def test_the_library_state_is_shared_by_separate_openers(sim, sim_settings):
    sim.changer.load(LoadRequest(slot=1, drive=1))
    other = SimLibrary.open(sim_settings)
    # A new opener is a caller of its own, starting at the library's present.
    assert other.clock.now() == sim.clock.now()
    assert other.changer.inventory().drive(1).barcode == "AAA001L9"


def test_unknown_fault_kinds_are_refused_with_the_known_ones(sim):
    with pytest.raises(errors.TapeError, match="unit_attention"):
        sim.inject(kind="gremlins")


# --- the faults the driver's tests need ---------------------------------------------------------


def test_a_mislabelled_cartridge_shows_its_new_label_and_fails_the_serial_check(sim):
    sim.inject(kind="mislabel", barcode="AAA003L9", label="ZZZ009L9")
    assert sim.changer.inventory().slot(3).barcode == "ZZZ009L9"
    sim.changer.load(LoadRequest(slot=3, drive=0, barcode="ZZZ009L9"))
    sim.drive(0).wait_ready()
    with pytest.raises(errors.WrongCartridge, match="serial AAA003"):
        sim.ltfs.mount(MountRequest(drive=0, barcode="ZZZ009L9"))


def test_a_cartridge_stuck_in_the_picker_fails_every_move_until_cleared(sim):
    sim.inject(kind="stuck_in_picker", barcode="AAA002L9")
    with pytest.raises(errors.ChangerHardwareError, match="AAA002L9") as raised:
        sim.changer.load(LoadRequest(slot=2, drive=0, barcode="AAA002L9"))
    assert raised.value.barcode == "AAA002L9"
    with pytest.raises(errors.ChangerHardwareError, match="picker still holds cartridge AAA002L9"):
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    assert not sim.changer.inventory().slot(2).full  # the robot has it
    assert [(f.kind, f.barcode) for f in sim.faults()] == [("stuck_in_picker", "AAA002L9")]
    assert sim.clear_faults("stuck_in_picker") == 1
    assert sim.changer.inventory().slot(2).barcode == "AAA002L9"
    sim.changer.load(LoadRequest(slot=2, drive=0, barcode="AAA002L9"))


def test_the_library_is_offline_for_its_window_only(sim):
    sim.inject(kind="library_offline", seconds=600)
    with pytest.raises(errors.LibraryOffline, match="offline for another"):
        sim.changer.inventory()
    sim.clock.sleep(600)
    assert sim.changer.inventory().slot(1).full
    assert sim.faults() == ()


def test_after_the_door_was_open_barcodes_must_be_read_again(sim):
    sim.inject(kind="door_open")
    with pytest.raises(errors.UnitAttention, match="door"):
        sim.changer.inventory_once()
    slot = sim.changer.inventory().slot(1)
    assert slot.full and slot.barcode is None  # not scanned since the door closed
    with pytest.raises(errors.BarcodeUnreadable):
        sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))
    assert sim.changer.inventory(rescan=True).slot(1).barcode == "AAA001L9"
    sim.changer.load(LoadRequest(slot=1, drive=0, barcode="AAA001L9"))


def test_the_operator_at_the_import_export_station_raises_a_unit_attention(sim):
    sim.inject(kind="ie_open", slot=11, barcode="NEW001L9")
    with pytest.raises(errors.UnitAttention, match="import/export"):
        sim.changer.inventory_once()
    assert sim.changer.inventory().slot(11).barcode == "NEW001L9"
    sim.inject(kind="ie_open", slot=11)  # and takes it out again
    assert not sim.changer.inventory().slot(11).full


def test_scheduled_faults_are_listed_and_cleared_by_kind(sim):
    sim.inject(kind="unit_attention", count=3)
    sim.inject(kind="read_error", path="x", barcode="AAA001L9")
    sim.inject(kind="drive_dead", drive=1)
    assert sorted(f.kind for f in sim.faults()) == ["drive_dead", "read_error", "unit_attention"]
    assert sim.clear_faults("unit_attention") == 1
    assert sorted(f.kind for f in sim.faults()) == ["drive_dead", "read_error"]
    assert sim.clear_faults() == 2
    assert sim.faults() == ()
    assert sim.drive(1).status().state.value == "empty"


# --- TapeAlert: page 0x2E clears on read, page 0x12 does not ----------------------------------


def test_reading_log_page_0x2e_clears_the_flags_but_the_port_and_page_0x12_do_not(sim):
    from archive_core_tape_ltfs.parse import sg
    from archive_core_tape_ltfs.runner import Command
    from archive_core_tape_ltfs.sim.tools import SimulatedTools, sg_node

    tools = SimulatedTools(sim)
    sim.inject(kind="needs_cleaning", drive=0)
    assert sim.drive(0).alerts().needs_cleaning and sim.drive(0).alerts().needs_cleaning
    response = tools.run(Command(argv=("sg_logs", "-p", "0x12", sg_node(0)), timeout=5))
    assert "TapeAlert response page" in response.stdout and "14h: 1" in response.stdout
    assert sim.drive(0).alerts().needs_cleaning
    page = tools.run(Command(argv=("sg_logs", "-p", "0x2e", sg_node(0)), timeout=5))
    assert sg.parse_tape_alerts(page.stdout).needs_cleaning
    assert not sim.drive(0).alerts().needs_cleaning  # stolen by whoever read page 0x2E
    again = tools.run(Command(argv=("sg_logs", "-p", "0x2e", sg_node(0)), timeout=5))
    assert not sg.parse_tape_alerts(again.stdout).flags


def test_the_drive_reports_a_cleaning_need_again_at_the_next_load(sim):
    from archive_core_tape_ltfs.runner import Command
    from archive_core_tape_ltfs.sim.tools import SimulatedTools, sg_node

    sim.inject(kind="needs_cleaning", drive=0)
    SimulatedTools(sim).run(Command(argv=("sg_logs", "-p", "0x2e", sg_node(0)), timeout=5))
    sim.changer.load(LoadRequest(slot=3, drive=0))
    assert sim.drive(0).alerts().needs_cleaning


def test_a_simulated_library_of_an_earlier_release_is_refused_not_replaced(sim_settings):
    sim_settings.state_dir.mkdir(parents=True)
    (sim_settings.state_dir / "library.json").write_text("{}")
    with pytest.raises(errors.TapeError, match="earlier release"):
        SimLibrary.open(sim_settings)
    assert not (sim_settings.state_dir / "library.db").exists()
