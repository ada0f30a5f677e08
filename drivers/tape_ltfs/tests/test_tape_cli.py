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


def test_status_shows_the_library_map_with_drives_and_barcodes(library_file):
    result = tape(library_file, "status", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
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
    assert again.exit_code == 2 and "already holds an LTFS volume" in again.output
    assert "into slot 1" in tape(library_file, "unload", "--drive", "1").output
    assert "slot 9" in tape(library_file, "export", "SIM002L9").output
    imported = tape(library_file, "import")
    assert imported.exit_code == 0 and "SIM002L9 from slot 9 into slot 2" in imported.output


def test_clean_uses_the_cleaning_cartridge_and_clears_the_alert(library_file):
    assert tape(library_file, "sim", "fault", "needs_cleaning", "--drive", "0").exit_code == 0
    status = json.loads(tape(library_file, "status", "--json").output)
    assert 20 in status["drives"][0]["alerts"]
    cleaned = tape(library_file, "clean", "--drive", "0")
    assert cleaned.exit_code == 0 and "CLN001CU" in cleaned.output
    status = json.loads(tape(library_file, "status", "--json").output)
    assert status["drives"][0]["alerts"] == [] and status["drives"][0]["full"] is False


def test_errors_are_one_admin_readable_line_and_exit_2(library_file):
    result = tape(library_file, "load", "NOPE01L9")
    assert result.exit_code == 2
    assert "Cartridge NOPE01L9 is not in the library" in result.output


def test_a_bad_library_config_lists_every_problem(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[library]\nbackend = "robot"\ntimeouts = { ready = "soon" }\n')
    result = CliRunner().invoke(main, ["tape", "--library", str(path), "status"])
    assert result.exit_code == 2
    assert "library.backend" in result.output and "library.timeouts.ready" in result.output


def test_separate_processes_see_the_same_simulated_library(library_file):
    cli = [sys.executable, "-m", "archive_core.cli", "tape", "--library", str(library_file)]
    subprocess.run([*cli, "load", "SIM002L9", "--drive", "0"], check=True, capture_output=True)
    shown = subprocess.run(
        [*cli, "inventory", "--json"], check=True, capture_output=True, text=True
    )
    assert json.loads(shown.stdout)["drives"][0]["barcode"] == "SIM002L9"
