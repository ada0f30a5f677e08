"""Cleaning a drive (the operator's `tape clean`, the driver's automatic cleaning), on both
backends: when TapeAlert asks, from a cleaning cartridge with uses left, put back after."""

from __future__ import annotations

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cleaning import clean_drive, needs_cleaning
from archive_core_tape_ltfs.config import SimulatedCartridge
from archive_core_tape_ltfs.model import LoadRequest, MountRequest


def test_a_drive_that_asks_is_cleaned_and_the_cleaning_cartridge_goes_back(library):
    library.sim.inject(kind="needs_cleaning", drive=1)
    assert needs_cleaning(library, 1) and needs_cleaning(library, 1)  # reading keeps it
    done = clean_drive(library, 1)
    assert done.cleaned and done.cleaned_with == "CLN001CU" and done.slot == 10
    assert not needs_cleaning(library, 1)
    inventory = library.changer.inventory()
    assert inventory.slot(10).barcode == "CLN001CU" and not inventory.drive(1).full
    assert library.sim.cartridge("CLN001CU").uses_left == 1


def test_the_data_cartridge_is_taken_out_first_and_a_mounted_one_is_never(library):
    library.changer.load(LoadRequest(slot=3, drive=0, barcode="AAA003L9"))
    library.drive(0).wait_ready()
    done = clean_drive(library, 0)
    assert (done.unloaded, done.unloaded_to) == ("AAA003L9", 3)
    library.changer.load(LoadRequest(slot=3, drive=0, barcode="AAA003L9"))
    library.drive(0).wait_ready()
    mount = library.ltfs.mount(MountRequest(drive=0, barcode="AAA003L9"))
    with pytest.raises((errors.UnloadRefused, errors.DriveHeldByLtfs)):
        clean_drive(library, 0)
    assert library.changer.inventory().drive(0).barcode == "AAA003L9"
    library.ltfs.unmount(mount)


def test_a_used_up_cleaning_cartridge_is_retired_and_the_next_one_cleans(library):
    library.sim.insert(SimulatedCartridge(barcode="CLN000CU", slot=9, uses=0))
    library.sim.inject(kind="needs_cleaning", drive=0)
    done = clean_drive(library, 0)
    assert done.retired == ("CLN000CU",) and done.cleaned_with == "CLN001CU"
    inventory = library.changer.inventory()
    assert inventory.slot(11).barcode == "CLN000CU"  # an import/export slot, to take away
    assert not needs_cleaning(library, 0)


def test_without_a_usable_cleaning_cartridge_the_operator_is_told_to_insert_one(library):
    library.sim.take_out(10)
    with pytest.raises(errors.CleaningMediaExpired, match="no cleaning cartridge"):
        clean_drive(library, 0)
    assert not library.changer.inventory().drive(0).full
