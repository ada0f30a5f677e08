"""The parsers read every real output sample of the design notes (golden files)."""

from __future__ import annotations

import io
import tracemalloc
import xml.etree.ElementTree as ET

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import DriveState, ReadOnlyReason, SlotKind
from archive_core_tape_ltfs.parse import ltfs, mam, mt, mtx, sense, sg, tapeinfo, turs
from archive_core_tape_ltfs.parse.index import parse_index
from hypothesis import given
from hypothesis import strategies as st

from .conftest import GOLDEN, golden

GOLDEN_INDEX = GOLDEN / "ltfs_index_nested.schema"


def test_mtx_status_of_a_24_slot_library_with_cleaning_tape_and_short_tag():
    inventory = mtx.parse_status(golden("mtx_status_pbs_24slots.stdout"))
    assert inventory.changer == "/dev/tape/by-id/scsi-387408F60F0000"
    assert [d.index for d in inventory.drives] == [0, 1]
    assert not any(d.full for d in inventory.drives)
    assert [(s.number, s.barcode) for s in inventory.slots if s.full] == [
        (1, "CLN002CU"),
        (2, "test22L1"),
        (5, "test1"),
    ]
    assert [s.number for s in inventory.cleaning_slots()] == [1]
    assert inventory.slot(21).kind is SlotKind.IMPORT_EXPORT and not inventory.slot(21).full
    assert inventory.data_barcodes() == ("test22L1", "test1")


def test_mtx_status_strips_padded_tags_and_reads_ie_slot_without_barcode():
    inventory = mtx.parse_status(golden("mtx_status_ibm_padded_ie.stdout"))
    drive = inventory.drive(0)
    assert drive.full and drive.barcode == "LT1000L3" and drive.source_slot == 2
    assert inventory.slot(1).barcode == "LT1001L3"
    assert inventory.slot(5).is_import_export and inventory.slot(5).barcode == "LT1002L3"
    no_label = inventory.slot(33)
    assert no_label.full and no_label.barcode is None and no_label.is_import_export
    assert inventory.locate("LT1000L3") == drive


def test_mtx_status_after_unit_attention_reads_stdout_and_leaves_sense_noise_on_stderr():
    inventory = mtx.parse_status(golden("mtx_status_tandberg_unit_attention.stdout"))
    assert [s.barcode for s in inventory.slots] == ["000711L4", "A00008L5"]
    noise = sense.parse_sense(golden("mtx_status_tandberg_unit_attention.stderr"))
    assert noise.key == "Unit Attention" and noise.code == (0x28, 0x00)


def test_mtx_status_of_drives_loaded_from_high_slots_without_header():
    inventory = mtx.parse_status(golden("mtx_status_lto6_loaded.stdout"))
    assert inventory.changer == ""
    assert [(d.index, d.barcode, d.source_slot) for d in inventory.drives] == [
        (1, None, None),
        (2, "073220L6", 82),
        (3, "073221L6", 81),
    ]


def test_mtx_status_header_alone_is_not_an_inventory():
    with pytest.raises(errors.ToolFailed):
        mtx.parse_status(golden("mtx_status_l80_header.stdout"))


def test_alternate_volume_tags_never_bleed_into_the_barcode():
    inventory = mtx.parse_status(golden("mtx_status_alternate_unknown_source.stdout"))
    unknown = inventory.drive(0)
    assert unknown.barcode == "ABC100L9" and unknown.source_slot is None
    untagged = inventory.drive(1)
    assert untagged.full and untagged.barcode is None and untagged.source_slot == 3
    assert inventory.slot(1).barcode == "ABC101L9"
    assert inventory.slot(2).full and inventory.slot(2).barcode is None
    assert inventory.slot(4).holds_cleaning and inventory.cleaning_slots() == ()


def test_mtx_inquiry_of_changer_and_drive():
    changer = mtx.parse_inquiry(golden("mtx_inquiry_dell_pv124t.stdout"))
    assert changer == {
        "Product Type": "Medium Changer",
        "Vendor ID": "DELL",
        "Product ID": "PV-124T",
        "Revision": "0085",
    }
    drive = mtx.parse_inquiry(golden("mtx_inquiry_hp_drive.stdout"))
    assert drive["Product ID"] == "Ultrium 5-SCSI" and drive["Vendor ID"] == "HP"


@pytest.mark.parametrize(
    ("sample", "error"),
    [
        ("mtx_status_offline.stderr", errors.LibraryOffline),
        ("mtx_unload_removal_prevented.stderr", errors.UnloadRefused),
        ("mtx_load_hardware_error.stderr", errors.ChangerHardwareError),
        ("mtx_status_tandberg_unit_attention.stderr", errors.UnitAttention),
    ],
)
def test_mtx_sense_dumps_become_typed_errors(sample, error):
    failure = mtx.failure(golden(sample), device="/dev/sg5", what="read status")
    assert type(failure) is error
    assert failure.device == "/dev/sg5" and failure.message.startswith("Cannot read status")


@pytest.mark.parametrize(
    ("stderr", "error", "field", "value"),
    [
        ("mtx: Drive 0 Full (Storage Element 3 loaded)", errors.DestinationFull, "drive", 0),
        ("Data Transfer Element 1 is Empty", errors.SourceEmpty, "drive", 1),
        ("Storage Element 7 is Already Full", errors.DestinationFull, "slot", 7),
        ("Source Element Address 4097 is Empty", errors.SourceEmpty, None, None),
        ("Destination Element Address 4100 is Already Full", errors.DestinationFull, None, None),
        ("Cleaning Cartridge Installed and Ejected", errors.CleaningMediaExpired, None, None),
        ("Drive needs offline before move", errors.UnloadRefused, None, None),
        ("No Source for tape in drive 0!", errors.ChangerError, None, None),
        ("cannot open SCSI device '/dev/sg9' - No such file", errors.ToolFailed, None, None),
    ],
)
def test_mtx_messages_become_typed_errors(stderr, error, field, value):
    failure = mtx.failure(stderr, device="/dev/sg9", what="move")
    assert type(failure) is error
    if field:
        assert getattr(failure, field) == value


def test_bare_move_medium_failure_is_a_changer_error_naming_the_message():
    failure = mtx.failure(golden("mtx_move_failed_bare.stderr"), device="d", what="load")
    assert type(failure) is errors.ChangerError
    assert "MOVE MEDIUM from Element Address 257 to 4097 Failed" in failure.message


def test_becoming_ready_is_its_own_retryable_kind_of_offline():
    dump = golden("mtx_status_offline.stderr").replace("= 12", "= 01")
    failure = mtx.failure(dump, device="d", what="read status")
    assert isinstance(failure, errors.LibraryBecomingReady) and failure.retryable


@pytest.mark.parametrize(
    ("sample", "state", "bot", "protected", "density"),
    [
        ("mt_status_empty.stdout", "empty", False, False, 0),
        ("mt_status_bot_lto5.stdout", "ready", True, False, 0x58),
        ("mt_status_after_filemark.stdout", "ready", False, False, 0x58),
        ("mt_status_write_protected.stdout", "ready", True, True, 0x58),
    ],
)
def test_mt_status_samples(sample, state, bot, protected, density):
    status = mt.parse_status(golden(sample))
    assert status.state.value == state
    assert status.at_bot is bot and status.write_protected is protected
    assert status.density_code == density


def test_mt_status_position_of_an_empty_drive_is_unknown():
    status = mt.parse_status(golden("mt_status_empty.stdout"))
    assert status.file_number is None and status.block_number is None
    assert mt.parse_status(golden("mt_status_after_filemark.stdout")).file_number == 1


def test_gnu_cpio_mt_output_is_refused_with_a_hint():
    with pytest.raises(errors.ToolFailed, match="mt-st"):
        mt.parse_status("drive status = 1\nsense key error = 0\n")


@pytest.mark.parametrize(
    ("stderr", "error"),
    [
        ("/dev/nst0: No medium found", errors.DriveNotReady),
        ("/dev/nst0: Input/output error\nmt: The tape is write-protected.", errors.WriteProtected),
        ("/dev/nst0: Input/output error", errors.MediaError),
        ("/dev/nst0: Device or resource busy", errors.DriveBusy),
    ],
)
def test_mt_failures_become_typed_errors(stderr, error):
    assert type(mt.failure(stderr, device="/dev/nst0", drive=0, what="eject")) is error


def test_tapeinfo_identity_alerts_and_readiness():
    text = golden("tapeinfo_tandberg_lto5.stdout")
    identity = tapeinfo.parse_identity(text)
    assert (identity.vendor, identity.model, identity.serial) == (
        "TANDBERG",
        "LTO-5 HH",
        "HU1246T99F",
    )
    assert identity.generation == 5 and identity.revision == "Y629"
    alerts = tapeinfo.parse_alerts(text)
    assert alerts.flags == {20, 21} and alerts.needs_cleaning
    assert tapeinfo.is_ready(text)
    empty = golden("tapeinfo_not_loaded.stdout")
    assert not tapeinfo.is_ready(empty)
    assert tapeinfo.parse_alerts(empty).flags == {11}


def test_sg_inq_identity_with_unit_serial_number():
    identity = sg.parse_inquiry(golden("sg_inq_ibm_hh9.stdout"))
    assert identity.vendor == "IBM" and identity.model == "ULTRIUM-HH9"
    assert identity.revision == "N9M1" and identity.serial == "10WT123456"
    assert identity.generation == 9


def test_sg_logs_tape_alert_page_flags_by_name():
    alerts = sg.parse_tape_alerts(golden("sg_logs_tapealert_cleaning.stdout"))
    assert alerts.flags == {20, 21} and alerts.needs_cleaning and not alerts.critical


def test_sg_logs_names_cover_all_64_flags_once():
    assert len(sg.TAPE_ALERT_NAMES) == 64 == len(set(sg.TAPE_ALERT_NAMES))
    assert sg.TAPE_ALERT_NAMES[19] == "Cleaning required"


def test_ltfs_device_list_in_both_spellings():
    listed = ltfs.parse_device_list(golden("ltfs_device_list.stdout"))
    assert [(d.device, d.vendor, d.product, d.serial, d.hctl) for d in listed] == [
        ("/dev/sg43", "IBM", "ULTRIUM-TD5", "9A700L0077", None),
        ("/dev/sg1", "HP", "Ultrium 5-SCSI", "HUJ011CW59", "0.0.0.0"),
    ]


def test_mkltfs_success_gives_the_volume_uuid():
    assert ltfs.volume_uuid(golden("mkltfs_formatted.stderr")) == (
        "8d1e5a4c-3f0b-4a53-9a5e-2b7c6d9e0f11"
    )


@pytest.mark.parametrize(
    ("sample", "what", "error"),
    [
        ("mkltfs_already_formatted.stderr", "format ABC123L9", errors.AlreadyFormatted),
        ("mkltfs_write_protected.stderr", "format ABC123L9", errors.WriteProtected),
        ("ltfs_mount_unformatted.stderr", "mount", errors.UnformattedTape),
        ("ltfs_mount_not_partitioned.stderr", "mount", errors.UnformattedTape),
        ("ltfs_mount_extra_blocks.stderr", "mount", errors.InconsistentIndex),
        ("ltfs_mount_consistency_failed.stderr", "mount", errors.InconsistentIndex),
        ("ltfs_unmount_read_only.stderr", "unmount", errors.ReadOnlyVolume),
    ],
)
def test_ltfs_messages_become_typed_errors(sample, what, error):
    failure = ltfs.failure(golden(sample), what=what, drive=1, device="9A700L0077")
    assert type(failure) is error and failure.drive == 1


def test_ltfs_mount_success_line_gives_the_generation():
    assert ltfs.mounted_generation(golden("ltfs_mount_ok.stderr")) == 637


_TAG = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)


@given(tags=st.lists(st.one_of(st.none(), _TAG), min_size=1, max_size=8), pad=st.integers(0, 30))
def test_any_slot_map_survives_a_round_trip_through_mtx_status_text(tags, pad):
    lines = [f"  Storage Changer /dev/sgX:1 Drives, {len(tags)} Slots ( 0 Import/Export )"]
    lines.append("Data Transfer Element 0:Empty")
    for number, tag in enumerate(tags, start=1):
        tail = "" if tag is None else f":VolumeTag={tag}{' ' * pad}"
        lines.append(f"      Storage Element {number}:Full {tail}")
    inventory = mtx.parse_status("\n".join(lines))
    assert [s.barcode for s in inventory.slots] == tags


# --- TapeAlert response, device activity, TEST UNIT READY, cartridge memory ------------------


def test_tape_alert_response_page_flags_are_read_by_number():
    alerts = sg.parse_tape_alert_response(golden("sg_logs_tapealert_response_cleaning.stdout"))
    assert alerts.flags == {4, 20, 21}
    assert alerts.needs_cleaning and alerts.critical == {4}


def test_tape_alert_response_in_the_named_layout_gives_the_same_flags():
    text = golden("sg_logs_tapealert_cleaning.stdout")
    assert sg.parse_tape_alert_response(text) == sg.parse_tape_alerts(text)


def test_output_without_a_tape_alert_page_is_a_tool_failure():
    with pytest.raises(errors.ToolFailed, match="0x12"):
        sg.parse_tape_alert_response("No ascii information for page = 0x12, here is hex:\n")


@pytest.mark.parametrize(
    ("sample", "state", "words"),
    [
        ("calibrating", DriveState.CALIBRATING, "Calibrating"),
        ("cleaning", DriveState.CLEANING, "Cleaning operation in progress"),
        ("unloading", DriveState.UNLOADING, "Volume is being unloaded"),
        ("idle", None, "No DT device activity"),
    ],
)
def test_dt_device_activity_names_the_busy_state(sample, state, words):
    text = golden(f"sg_logs_dt_device_status_{sample}.stdout")
    assert sg.parse_device_activity(text) == (state, words)


@pytest.mark.parametrize(
    ("sample", "state", "code"),
    [
        ("becoming_ready_progress", DriveState.LOADING, (0x04, 0x01)),
        ("becoming_ready_estimate", DriveState.LOADING, (0x04, 0x01)),
        ("cleaning_cartridge", DriveState.CLEANING, (0x30, 0x03)),
        ("manual_intervention", DriveState.OUT_OF_SERVICE, (0x04, 0x03)),
        ("offline", DriveState.OUT_OF_SERVICE, (0x04, 0x12)),
        ("no_medium", DriveState.EMPTY, (0x3A, 0x00)),
    ],
)
def test_test_unit_ready_sense_data_gives_the_drive_state(sample, state, code):
    answer = turs.parse_turs(
        2, golden(f"sg_turs_{sample}.stdout"), golden(f"sg_turs_{sample}.stderr")
    )
    assert not answer.ready and answer.sense_key == "Not Ready" and answer.code == code
    assert turs.state_of(answer) is state


def test_test_unit_ready_progress_and_estimate_are_kept():
    progress = turs.parse_turs(
        2,
        golden("sg_turs_becoming_ready_progress.stdout"),
        golden("sg_turs_becoming_ready_progress.stderr"),
    )
    assert progress.progress == 37.5 and progress.seconds_left is None
    assert progress.detail == (
        "Not Ready: Logical unit is in process of becoming ready (37.50% done)"
    )
    estimate = turs.parse_turs(
        2,
        golden("sg_turs_becoming_ready_estimate.stdout"),
        golden("sg_turs_becoming_ready_estimate.stderr"),
    )
    assert estimate.seconds_left == 95.0


def test_a_ready_unit_has_no_sense():
    assert turs.state_of(turs.parse_turs(0, "", "")) is DriveState.READY


def test_cartridge_memory_of_a_worm_and_a_data_cartridge():
    worm = mam.parse_attributes(golden("sg_read_attr_worm_lto9.stdout"))
    assert (worm.medium_type, worm.density_code, worm.barcode) == (0x80, 0x60, "WRM001LZ")
    assert worm.worm
    data = mam.parse_attributes(golden("sg_read_attr_data_lto8.stdout"))
    assert (data.worm, data.density_code, data.barcode) == (False, 0x5E, "ABC123L8")
    assert mam.parse_attributes("").worm is None


def test_mount_messages_say_why_ltfs_mounted_read_only():
    assert ltfs.read_only_at_mount(golden("ltfs_mount_ok.stderr")) == {
        ReadOnlyReason.WRITE_PROTECTED
    }
    assert ltfs.read_only_at_mount("LTFS14078I Medium is Read-Only in this device.\n") == {
        ReadOnlyReason.OLDER_GENERATION
    }


# --- the LTFS index ---------------------------------------------------------------------------


def test_the_index_gives_every_file_with_its_path_and_all_extents():
    index = parse_index(GOLDEN_INDEX, origin="golden")
    assert (index.volume_uuid, index.generation) == ("4a6f1c3e-9b2d-4e8f-a1c7-0d5e3b2a9f10", 12)
    assert index.location == "b:1046"
    assert [f.path for f in index.files] == [
        "clips/2024/one.mov",
        "clips/2024/two.mov",
        "proxy/thumb.jpg",
        "empty.txt",
        "a:b.txt",
    ]
    one = index.file("clips/2024/one.mov")
    assert one.size == 3146728 and one.fileuid == 5
    assert [
        (e.file_offset, e.partition, e.startblock, e.byte_offset, e.byte_count) for e in one.extents
    ] == [
        (0, "b", 1024, 0, 3145728),
        (3145728, "b", 1040, 0, 1000),
    ]
    assert index.file("proxy/thumb.jpg").location.partition == "a"
    assert index.file("empty.txt").extents == () and index.file("empty.txt").location is None


def test_a_cut_index_is_an_inconsistent_index():
    text = golden("ltfs_index_nested.schema")
    with pytest.raises(errors.InconsistentIndex, match="golden"):
        parse_index(io.BytesIO(text[: len(text) // 2].encode()), origin="golden")


def _big_index(files: int) -> bytes:
    head = golden("ltfs_index_nested.schema").split("<directory>", 1)[0]
    entry = (
        "<file><name>f{n}.mxf</name><length>1000</length><readonly>false</readonly>"
        "<fileuid>{n}</fileuid><extentinfo><extent><fileoffset>0</fileoffset>"
        "<partition>b</partition><startblock>{n}</startblock><byteoffset>0</byteoffset>"
        "<bytecount>1000</bytecount></extent></extentinfo></file>\n"
    )
    body = "".join(entry.format(n=n) for n in range(files))
    return (
        f"{head}<directory><name>v</name><contents><directory><name>d</name><contents>"
        f"{body}</contents></directory></contents></directory></ltfsindex>\n"
    ).encode()


def _peak(work) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_index_is_streamed_not_held_as_a_document():
    data = _big_index(5_000)
    streamed = _peak(lambda: parse_index(io.BytesIO(data), origin="big"))
    document = _peak(lambda: ET.parse(io.BytesIO(data)))
    index = parse_index(io.BytesIO(data), origin="big")
    assert len(index.files) == 5_000 and index.files[-1].path == "d/f4999.mxf"
    # The element tree alone costs more than every file parsed the streaming way.
    assert streamed < document / 2
