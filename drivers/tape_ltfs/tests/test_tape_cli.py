"""`archive-core tape ...` through the core's CLI, on a simulated library from a config file."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from archive_core.cli import main

CONFIG = """
[library]
backend = "simulator"

[library.simulator]
state_dir = "state"
slots = 8
import_export = 2
drives = 2
"""


@pytest.fixture
def library_file(tmp_path):
    path = tmp_path / "library.toml"
    path.write_text(CONFIG)
    return path


def tape(library_file, *args: str):
    return CliRunner().invoke(main, ["tape", "--library", str(library_file), *args])


def tape_process(library_file, *args: str) -> subprocess.CompletedProcess:
    """The command in a process of its own, which has exited when this returns."""
    cli = [sys.executable, "-m", "archive_core.cli", "tape", "--library", str(library_file)]
    return subprocess.run([*cli, *args], capture_output=True, text=True)


def as_json(library_file, *args: str) -> dict:
    result = tape(library_file, *args, "--json")
    return json.loads(result.output)


def test_status_shows_the_library_map_with_drives_and_barcodes(library_file):
    result = tape(library_file, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "archive-core.tape/1" and data["command"] == "tape status"
    assert [d["drive"] for d in data["drives"]] == [0, 1]
    assert data["drives"][0]["serial"] == "SIM0900000" and data["drives"][0]["state"] == "empty"
    full = {s["slot"]: s["barcode"] for s in data["slots"] if s["full"]}
    assert full == {1: "SIM001L9", 3: "SIM002L9", 8: "CLN001CU"}
    assert [s["slot"] for s in data["slots"] if s["kind"] == "import/export"] == [9, 10]


def test_load_format_unload_export_and_import_a_cartridge(library_file):
    assert "drive 1 is ready" in tape(library_file, "load", "SIM001L9", "--drive", "1").output
    formatted = tape(library_file, "format", "--drive", "1")
    assert formatted.exit_code == 0 and "serial SIM001" in formatted.output
    again = tape(library_file, "format", "--drive", "1")
    assert again.exit_code == 3 and "already holds an LTFS volume" in again.output
    assert "into slot 1" in tape(library_file, "unload", "--drive", "1").output
    assert "slot 9" in tape(library_file, "export", "SIM002L9").output
    imported = tape(library_file, "import", "SIM002L9")
    assert imported.exit_code == 0 and "SIM002L9 from slot 9 into slot 2" in imported.output


def test_clean_uses_the_cleaning_cartridge_and_clears_the_alert(library_file):
    assert tape(library_file, "sim", "fault", "needs_cleaning", "--drive", "0").exit_code == 0
    status = json.loads(tape(library_file, "status", "--json").output)
    assert 20 in status["drives"][0]["alerts"]
    assert "Cleaning required" in status["drives"][0]["alert_names"]
    assert status["drives"][0]["needs_cleaning"] is True
    cleaned = tape(library_file, "clean", "--drive", "0")
    assert cleaned.exit_code == 0 and "CLN001CU" in cleaned.output
    status = json.loads(tape(library_file, "status", "--json").output)
    assert status["drives"][0]["alerts"] == [] and status["drives"][0]["full"] is False


def test_a_missing_cartridge_is_one_readable_line_and_asks_the_operator(library_file):
    result = tape(library_file, "load", "NOPE01L9")
    assert result.exit_code == 3
    assert "Cartridge NOPE01L9 is not in the library" in result.output


def test_with_json_an_error_is_an_object_naming_the_cartridge_and_the_remedy(library_file):
    result = tape(library_file, "load", "NOPE01L9", "--json")
    assert result.exit_code == 3
    error = json.loads(result.output)["error"]
    assert error["type"] == "CartridgeOffline" and error["barcode"] == "NOPE01L9"
    assert error["remedy"] == "operator action needed" and error["exit_status"] == 3


def test_a_wrong_command_line_exits_2_and_does_nothing(library_file):
    both = tape(library_file, "load", "SIM001L9", "--slot", "1")
    assert both.exit_code == 2 and "not both" in both.output
    assert as_json(library_file, "status")["drives"][0]["full"] is False


def test_every_command_prints_the_versioned_schema_with_json(library_file):
    for args in (
        ("inventory",),
        ("volumes",),
        ("load", "SIM001L9"),
        ("unload",),
        ("sim", "clock"),
        ("sim", "fault", "list"),
    ):
        data = as_json(library_file, *args)
        assert data["schema"] == "archive-core.tape/1", args
        assert data["command"] == "tape " + " ".join(a for a in args if a.isalpha()), args


def test_busy_exits_4_and_a_dead_drive_exits_5(library_file):
    assert tape(library_file, "load", "SIM001L9").exit_code == 0
    assert tape(library_file, "format").exit_code == 0
    assert tape(library_file, "mount").exit_code == 0
    held = tape(library_file, "unload")
    assert held.exit_code == 4, held.output
    assert tape(library_file, "sim", "fault", "drive_dead", "--drive", "1").exit_code == 0
    dead = tape(library_file, "load", "SIM002L9", "--drive", "1")
    assert dead.exit_code == 5, dead.output


def test_a_cleaning_cartridge_is_not_loaded_through_load(library_file):
    refused = tape(library_file, "load", "CLN001CU")
    assert refused.exit_code == 2 and "tape clean" in refused.output
    by_slot = tape(library_file, "load", "--slot", "8")
    assert by_slot.exit_code == 2 and "cleaning cartridge" in by_slot.output


def test_a_cartridge_without_readable_label_is_loaded_by_slot(library_file):
    assert (
        tape(library_file, "sim", "fault", "barcode_unreadable", "--barcode", "SIM002L9").exit_code
        == 0
    )
    loaded = tape(library_file, "load", "--slot", "3", "--drive", "1")
    assert loaded.exit_code == 0, loaded.output
    assert "(no readable barcode) from slot 3 into drive 1" in loaded.output


def test_import_leaves_cartridges_this_library_exported_unless_named(library_file):
    assert tape(library_file, "export", "SIM002L9").exit_code == 0
    assert tape(library_file, "sim", "insert", "NEW001L9", "--slot", "10").exit_code == 0
    plain = as_json(library_file, "import")
    assert [m["barcode"] for m in plain["imported"]] == ["NEW001L9"]
    assert plain["skipped"] == [{"barcode": "SIM002L9", "slot": 9}]
    named = as_json(library_file, "import", "SIM002L9")
    assert [m["barcode"] for m in named["imported"]] == ["SIM002L9"]
    volumes = {v["barcode"]: v["where"] for v in as_json(library_file, "volumes")["volumes"]}
    assert volumes["SIM002L9"].startswith("slot ") and volumes["NEW001L9"].startswith("slot ")


def test_a_bad_barcode_is_refused_before_waiting_for_media_optimisation(library_file):
    assert tape(library_file, "sim", "insert", "BAD-01L9", "--slot", "10").exit_code == 0
    assert tape(library_file, "import", "BAD-01L9").exit_code == 0
    assert tape(library_file, "load", "BAD-01L9", "--no-wait").exit_code == 0
    before = as_json(library_file, "sim", "clock")["seconds"]
    refused = tape(library_file, "format")
    assert refused.exit_code == 3 and "first 6" in refused.output
    assert as_json(library_file, "sim", "clock")["seconds"] - before < 60


def test_mount_shows_in_status_and_unmount_takes_it_over(library_file):
    assert tape(library_file, "load", "SIM001L9").exit_code == 0
    assert tape(library_file, "format").exit_code == 0
    mounted = tape_process(library_file, "mount")
    assert mounted.returncode == 0, mounted.stderr
    assert "it stays mounted" in mounted.stdout
    drive = as_json(library_file, "status")["drives"][0]
    # The command that mounted it has exited; the mount is there for the next one to take.
    assert drive["mount"]["state"] == "orphaned" and drive["mount"]["ltfs_alive"]
    assert drive["volume"]["serial"] == "SIM001" and drive["volume"]["read_only"] is False
    assert drive["capacity"]["free_bytes"] > 0
    unmounted = tape(library_file, "unmount")
    assert unmounted.exit_code == 0, unmounted.output
    assert as_json(library_file, "status")["drives"][0]["mount"] is None
    assert tape(library_file, "unload").exit_code == 0


def test_recover_releases_and_checks_a_drive_whose_ltfs_died(library_file):
    assert tape(library_file, "load", "SIM001L9").exit_code == 0
    assert tape(library_file, "format").exit_code == 0
    assert tape(library_file, "mount").exit_code == 0
    assert tape(library_file, "sim", "fault", "crash", "--drive", "0").exit_code == 0
    recovered = as_json(library_file, "recover")
    (drive,) = recovered["drives"]
    assert drive["drive"] == 0 and drive["result"] == "recovered", drive
    assert "released the drive" in drive["actions"]
    assert as_json(library_file, "status")["drives"][0]["mount"] is None
    assert tape(library_file, "mount").exit_code == 0


def test_scheduled_faults_are_listed_and_cleared(library_file):
    assert (
        tape(library_file, "sim", "fault", "unit_attention", "--after-ops", "1000").exit_code == 0
    )
    assert tape(library_file, "sim", "fault", "move_failure", "--after-ops", "1000").exit_code == 0
    kinds = [f["kind"] for f in as_json(library_file, "sim", "fault", "list")["faults"]]
    assert kinds == ["unit_attention", "move_failure"]
    assert as_json(library_file, "sim", "fault", "clear", "unit_attention")["cleared"] == 1
    kinds = [f["kind"] for f in as_json(library_file, "sim", "fault", "list")["faults"]]
    assert kinds == ["move_failure"]
    assert as_json(library_file, "sim", "fault", "clear")["cleared"] == 1


def test_a_bad_library_config_lists_every_problem(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[library]\nbackend = "robot"\ntimeouts = { ready = "soon" }\n')
    result = CliRunner().invoke(main, ["tape", "--library", str(path), "status"])
    assert result.exit_code == 2
    assert "library.backend" in result.output and "library.timeouts.ready" in result.output


def test_separate_processes_see_the_same_simulated_library(library_file):
    assert tape_process(library_file, "load", "SIM002L9", "--drive", "0").returncode == 0
    shown = tape_process(library_file, "inventory", "--json")
    assert json.loads(shown.stdout)["drives"][0]["barcode"] == "SIM002L9"


def test_status_names_alerts_and_the_time_a_busy_drive_has_left(library_file):
    assert tape(library_file, "sim", "fault", "needs_cleaning", "--drive", "1").exit_code == 0
    assert tape(library_file, "load", "SIM001L9", "--no-wait").exit_code == 0
    shown = tape(library_file, "status").output
    assert "TapeAlert: Cleaning required" in shown
    assert "loading (" in shown and " s left)" in shown
    drive = as_json(library_file, "status")["drives"][0]
    assert drive["state"] == "loading" and drive["seconds_left"] > 0


def test_check_repairs_a_volume_after_a_crash_and_rollback_needs_its_generation(library_file):
    assert tape(library_file, "load", "SIM001L9").exit_code == 0
    assert tape(library_file, "format").exit_code == 0
    assert tape(library_file, "mount").exit_code == 0
    assert tape(library_file, "sim", "fault", "crash", "--drive", "0").exit_code == 0
    assert tape(library_file, "release").exit_code == 0
    checked = as_json(library_file, "check")
    assert checked["exit_code"] in (0, 1) and not checked["uncorrected"]
    listed = as_json(library_file, "check", "--mode", "list-rollback")
    assert listed["generations"]
    assert tape(library_file, "check", "--mode", "rollback").exit_code == 2


def test_a_mislabelled_cartridge_is_refused_at_mount_naming_both(library_file):
    assert tape(library_file, "load", "SIM001L9").exit_code == 0
    assert tape(library_file, "format").exit_code == 0
    assert tape(library_file, "unload").exit_code == 0
    injected = tape(
        library_file, "sim", "fault", "mislabel", "--barcode", "SIM001L9", "--label", "SIM009L9"
    )
    assert injected.exit_code == 0, injected.output
    assert tape(library_file, "load", "SIM009L9").exit_code == 0
    refused = tape(library_file, "mount")
    assert refused.exit_code == 3, refused.output
    assert "SIM009L9" in refused.output and "SIM001" in refused.output


def test_prepare_formats_new_cartridges_on_idle_drives_at_the_same_time(library_file):
    from archive_core_tape_ltfs.config import load_library_config
    from archive_core_tape_ltfs.factory import open_library

    prepared = as_json(library_file, "prepare", "SIM001L9", "SIM002L9")
    results = {c["barcode"]: c["result"] for c in prepared["cartridges"]}
    assert results == {"SIM001L9": "formatted", "SIM002L9": "formatted"}
    assert {c["drive"] for c in prepared["cartridges"]} == {0, 1}
    library = open_library(load_library_config(library_file))
    spans = [
        (e.start, e.end)
        for resource in ("drive0", "drive1")
        for e in library.timeline(resource)
        if e.operation == "calibrate"
    ]
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end  # both media optimisations ran at once
    inventory = as_json(library_file, "inventory")
    assert {s["slot"]: s["barcode"] for s in inventory["slots"] if s["full"]} == {
        1: "SIM001L9",
        3: "SIM002L9",
        8: "CLN001CU",
    }
    again = as_json(library_file, "prepare", "SIM001L9")
    assert again["cartridges"][0]["result"] == "already formatted"


def test_prepare_refuses_a_bad_barcode_before_anything_moves(library_file):
    refused = tape(library_file, "prepare", "SIM001L9", "BAD-01L9")
    assert refused.exit_code == 3 and "first 6" in refused.output
    assert as_json(library_file, "status")["drives"][0]["full"] is False
