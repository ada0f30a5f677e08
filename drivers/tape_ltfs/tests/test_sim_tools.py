"""The simulated tools speak the real tools' formats: the same text as the golden samples, the
same text as the Debian sg3-utils binaries decoding the response bytes the simulator renders,
and LTFS index XML the real adapter's parser reads back file for file, extent for extent."""

from __future__ import annotations

import shutil

import attrs
import pytest
from archive_core_tape_ltfs.model import DriveState, DriveStatus, Extent, IndexedFile
from archive_core_tape_ltfs.parse import mam, sg, turs
from archive_core_tape_ltfs.parse.index import parse_index
from archive_core_tape_ltfs.sim import render, scsi
from archive_core_tape_ltfs.sim.index_xml import write_index

from .conftest import GOLDEN, decoded_by, golden

needs_sg3_utils = pytest.mark.skipif(
    not (shutil.which("sg_logs") and shutil.which("sg_read_attr")),
    reason="sg3-utils is not installed (scripts/setup-system installs it)",
)


# --- TEST UNIT READY --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "progress", "sample"),
    [
        (DriveStatus(state=DriveState.EMPTY), None, "no_medium"),
        (DriveStatus(state=DriveState.LOADING, seconds_left=95.0), None, "becoming_ready_estimate"),
        # sg3-utils prints the 16-bit field as value*100/65536 with two truncated decimals:
        # 37.50% is a field of 24582..24616 (37.5% exactly, 24576, prints 37.49%).
        (DriveStatus(state=DriveState.CALIBRATING), 0.3751, "becoming_ready_progress"),
        (DriveStatus(state=DriveState.CLEANING), None, "cleaning_cartridge"),
        (DriveStatus(state=DriveState.OUT_OF_SERVICE), None, "manual_intervention"),
    ],
)
def test_sg_turs_answers_each_drive_state_as_the_golden_sample(status, progress, sample):
    code, stdout, stderr = scsi.unit_ready(status, progress=progress)
    assert code == 2
    assert stdout == golden(f"sg_turs_{sample}.stdout")
    assert stderr == golden(f"sg_turs_{sample}.stderr")


def test_sg_turs_of_a_calibrating_drive_gives_time_left_and_progress_the_adapter_reads():
    status = DriveStatus(state=DriveState.CALIBRATING, seconds_left=2400.0)
    answer = turs.parse_turs(*scsi.unit_ready(status, progress=0.5))
    assert answer.code == turs.BECOMING_READY and answer.seconds_left == 2400.0
    assert answer.progress == 50.0
    assert scsi.unit_ready(DriveStatus(state=DriveState.READY), progress=None) == (0, "", "")


# --- LOG SENSE page 0x11 and READ ATTRIBUTE, against the binaries --------------------------------


@needs_sg3_utils
@pytest.mark.parametrize(
    "state",
    [
        DriveState.READY,
        DriveState.LOADING,
        DriveState.CALIBRATING,
        DriveState.CLEANING,
        DriveState.UNLOADING,
        DriveState.EMPTY,
    ],
)
def test_the_real_sg_logs_decodes_the_simulators_device_status_page_to_the_same_text(
    sim, tmp_path, state
):
    with sim.transaction() as library:
        drive = library.drives[0]
        drive.cartridge = None if state in (DriveState.EMPTY, DriveState.UNLOADING) else "X"
        drive.threaded = drive.cartridge is not None
        drive.alerts = [20]
        status = DriveStatus(state=state, write_protected=state is DriveState.READY)
        ours = scsi.device_status_page(drive, status)
        theirs = decoded_by(["sg_logs", "--pdt=1"], scsi.device_status_hex(drive, status), tmp_path)
    assert ours.splitlines()[1:] == theirs.splitlines()
    busy, _words = sg.parse_device_activity(ours)
    assert busy is (state if state.busy else None)


def test_the_device_status_page_of_a_calibrating_drive_is_the_golden_samples_activity(sim):
    with sim.transaction() as library:
        ours = scsi.device_status_page(library.drives[0], DriveStatus(state=DriveState.CALIBRATING))
    sample = golden("sg_logs_dt_device_status_calibrating.stdout")
    assert sg.parse_device_activity(ours) == sg.parse_device_activity(sample)


@needs_sg3_utils
@pytest.mark.parametrize("barcode", ["AAA003L9", "WRM004LZ", "CLN001CU"])
def test_the_real_sg_read_attr_decodes_the_simulators_cartridge_memory_to_the_same_text(
    sim, tmp_path, barcode
):
    from archive_core_tape_ltfs.config import SimulatedCartridge
    from archive_core_tape_ltfs.sim import mechanics

    cartridge = mechanics.new_cartridge(
        SimulatedCartridge(barcode=barcode, slot=1, formatted=True),
        default_generation=9,
        default_capacity=None,
    )
    ours = scsi.read_attributes(cartridge)
    assert ours == decoded_by(["sg_read_attr"], scsi.read_attributes_hex(cartridge), tmp_path)
    memory = mam.parse_attributes(ours)
    assert memory.worm is (barcode == "WRM004LZ")
    if not cartridge.cleaning:
        assert (memory.density_code, memory.barcode) == (0x60, barcode)


# --- the LTFS index -----------------------------------------------------------------------------


def _by_path(index):
    return sorted(index.files, key=lambda f: f.path)


def test_the_golden_index_written_again_reads_back_the_same(tmp_path):
    index = parse_index(GOLDEN / "ltfs_index_nested.schema", origin="golden")
    write_index(tmp_path / "again.schema", index, volume_name="pool-a", when=1714990272.5)
    again = parse_index(tmp_path / "again.schema", origin="rewritten")
    assert _by_path(again) == _by_path(index)
    assert (again.volume_uuid, again.generation, again.location) == (
        index.volume_uuid,
        index.generation,
        index.location,
    )


def test_names_ltfs_cannot_store_verbatim_are_percent_encoded_and_read_back(tmp_path):
    extent = Extent(partition="b", startblock=7, byte_offset=0, byte_count=3, file_offset=0)
    names = ["a:b.txt", "50% & <more>.mov", "tab\there", "deep/er/still:here"]
    index = parse_index(GOLDEN / "ltfs_index_nested.schema", origin="golden")
    index = attrs.evolve(
        index,
        files=tuple(
            IndexedFile(path=f"clips/{name}", size=3, fileuid=20 + n, extents=(extent,))
            for n, name in enumerate(names)
        ),
    )
    path = tmp_path / "names.schema"
    write_index(path, index, volume_name="v", when=0.0)
    text = path.read_text()
    assert '<name percentencoded="true">a%3Ab.txt</name>' in text
    assert "<name>50% &amp; &lt;more&gt;.mov</name>" in text  # no `:`: verbatim, XML-escaped
    assert '<name percentencoded="true">tab%09here</name>' in text
    assert _by_path(parse_index(path, origin="names")) == _by_path(index)


@needs_sg3_utils
def test_the_real_sg_logs_decodes_the_simulators_tape_alert_response_page(sim, tmp_path):
    hex_text = render.tape_alert_response_hex({1, 20, 21, 52, 64})
    decoded = decoded_by(["sg_logs", "--pdt=1"], hex_text, tmp_path)
    with sim.transaction() as state:
        state.drives[0].alerts = [1, 20, 21, 52, 64]
        ours = render.sg_logs_tape_alert_response(state.drives[0])
    assert ours.splitlines()[1:] == decoded.splitlines()
