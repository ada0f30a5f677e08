"""The real adapter's command lines, and the Debian binaries' own view of them and of our text."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import DriveBinding, LibraryConfig, structure_library
from archive_core_tape_ltfs.model import FormatRequest, LoadRequest, MountRequest, UnloadRequest
from archive_core_tape_ltfs.parse import sg
from archive_core_tape_ltfs.real.library import RealLibrary
from archive_core_tape_ltfs.runner import Command, CommandResult
from archive_core_tape_ltfs.sim import render

from .conftest import decoded_by, golden, real_over


class ReplayRunner:
    """Answers each command with recorded output, in order; remembers what it was asked."""

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        self.answers = list(answers)
        self.commands: list[tuple[str, ...]] = []

    def run(self, command: Command) -> CommandResult:
        self.commands.append(command.argv)
        code, out, err = self.answers.pop(0)
        return CommandResult(command=command, exit_code=code, stdout=out, stderr=err)

    def spawn(self, command, log_path):  # pragma: no cover - not used by these tests
        raise AssertionError("no mount in a replay")


class ZeroClock:
    def __init__(self) -> None:
        self.slept = 0.0

    def now(self) -> float:
        return self.slept

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


def replayed(*answers) -> tuple[RealLibrary, ReplayRunner, ZeroClock]:
    runner, clock = ReplayRunner(*answers), ZeroClock()
    config = LibraryConfig(
        changer="/dev/sg5",
        drives=(DriveBinding(index=0, serial="HU1246T99F", sg="/dev/sg4", nst="/dev/nst0"),),
    )
    return RealLibrary(config, runner=runner, clock=clock), runner, clock


def test_recorded_status_after_a_unit_attention_is_read_once_the_noise_is_retried():
    library, runner, clock = replayed(
        (1, "", golden("mtx_status_tandberg_unit_attention.stderr")),
        (
            0,
            golden("mtx_status_tandberg_unit_attention.stdout"),
            golden("mtx_status_tandberg_unit_attention.stderr"),
        ),
    )
    inventory = library.changer.inventory()
    assert [s.barcode for s in inventory.slots] == ["000711L4", "A00008L5"]
    assert runner.commands == [("mtx", "-f", "/dev/sg5", "status")] * 2
    assert clock.slept > 0


def test_recorded_offline_library_is_library_offline():
    library, _, _ = replayed((1, "", golden("mtx_status_offline.stderr")))
    with pytest.raises(errors.LibraryOffline) as raised:
        library.changer.inventory()
    assert raised.value.device == "/dev/sg5"


def test_load_reads_status_first_asks_the_drive_then_moves_by_slot_and_drive_numbers():
    status = golden("mtx_status_tandberg_unit_attention.stdout")
    library, runner, _ = replayed(
        (0, status, ""),
        (2, golden("sg_turs_no_medium.stdout"), golden("sg_turs_no_medium.stderr")),
        (0, golden("sg_logs_dt_device_status_idle.stdout"), ""),
        (0, "Loading media from Storage Element 2 into drive 0...done\n", ""),
    )
    library.changer.load(LoadRequest(slot=2, drive=0, barcode="A00008L5"))
    assert runner.commands == [
        ("mtx", "-f", "/dev/sg5", "status"),
        ("sg_turs", "-v", "/dev/sg4"),
        ("sg_logs", "-p", "0x11", "/dev/sg4"),  # an empty drive may still be unloading
        ("mtx", "-f", "/dev/sg5", "load", "2", "0"),
    ]


def test_a_drive_out_of_service_is_never_loaded():
    status = golden("mtx_status_tandberg_unit_attention.stdout")
    library, runner, _ = replayed(
        (0, status, ""),
        (
            2,
            golden("sg_turs_manual_intervention.stdout"),
            golden("sg_turs_manual_intervention.stderr"),
        ),
    )
    with pytest.raises(errors.DriveError, match="drive 0: the drive is out of service") as raised:
        library.changer.load(LoadRequest(slot=2, drive=0))
    assert raised.value.drive == 0 and not raised.value.retryable
    assert not any("load" in argv for argv in runner.commands)


def test_recorded_removal_prevented_on_unload_is_unload_refused():
    library, runner, _ = replayed(
        (0, "", ""),  # sg_turs: the drive is ready, nothing keeps the cartridge in it
        (0, golden("mtx_status_ibm_padded_ie.stdout"), ""),
        (
            1,
            "Unloading drive 0 into Storage Element 2...",
            golden("mtx_unload_removal_prevented.stderr"),
        ),
    )
    with pytest.raises(errors.UnloadRefused):
        library.changer.unload(UnloadRequest(drive=0))
    assert [argv[0] for argv in runner.commands] == ["sg_turs", "mtx", "mtx"]


def test_drive_queries_use_the_nst_and_sg_nodes_and_check_the_serial():
    library, runner, _ = replayed(
        (0, golden("mt_status_bot_lto5.stdout"), ""),
        (0, golden("sg_read_attr_data_lto8.stdout"), ""),
        (
            0,
            golden("tapeinfo_tandberg_lto5.stdout").replace("SerialNumber", "Unit serial number"),
            "",
        ),
        (0, golden("sg_logs_tapealert_response_cleaning.stdout"), ""),
    )
    drive = library.drive(0)
    status = drive.wait_ready()
    assert status.at_bot and status.media.code == "L5"  # density 0x58; the MAM says data
    with pytest.raises(errors.DriveError, match="renumbered"):
        drive.identity()
    assert drive.alerts().needs_cleaning
    assert runner.commands == [
        ("mt", "-f", "/dev/nst0", "status"),
        ("sg_read_attr", "/dev/sg4"),
        ("sg_inq", "/dev/sg4"),
        ("sg_logs", "-p", "0x12", "/dev/sg4"),
    ]


def test_recorded_mkltfs_refusal_is_already_formatted():
    library, runner, _ = replayed((8, "", golden("mkltfs_already_formatted.stderr")))
    with pytest.raises(errors.AlreadyFormatted):
        library.ltfs.format(FormatRequest(drive=0, barcode="ABC123L9"))
    assert runner.commands == [("mkltfs", "-d", "HU1246T99F", "-s", "ABC123")]


def test_a_barcode_without_a_valid_serial_is_never_formatted():
    library, runner, _ = replayed()
    with pytest.raises(errors.BarcodeUnreadable):
        library.ltfs.format(FormatRequest(drive=0, barcode="ab-1"))
    assert runner.commands == []


def test_the_config_never_accepts_a_rewinding_tape_node():
    with pytest.raises(errors.ArchiveCoreError, match="rewinding"):
        structure_library(
            {"changer": "/dev/sg5", "drives": [{"index": 0, "serial": "X", "nst": "/dev/st0"}]}
        )


def test_the_real_port_over_the_simulator_never_opens_the_tape_node_while_ltfs_holds_it(
    sim, tmp_path
):
    real = real_over(sim)
    real.changer.load(LoadRequest(slot=3, drive=0))
    real.drive(0).wait_ready()
    mount = real.ltfs.mount(MountRequest(drive=0))
    real.drive(0).status()
    real.ltfs.unmount(mount)
    held = real.tools.commands[
        real.tools.commands.index(
            next(c for c in real.tools.commands if c[0] == "ltfs" and "-f" in c)
        ) :
    ]
    until_umount = held[: next(i for i, c in enumerate(held) if c[0] == "umount")]
    assert not any(c[0] == "mt" for c in until_umount)
    assert ("sg_turs", "-v", "/dev/sim/sg10") in until_umount
    spawn = held[0]
    assert "devname=SIM0900000" in spawn and "sync_type=unmount" in spawn


# --- the real binaries ------------------------------------------------------------------------

_DRIVE_TOOLS = ("mt", "sg_inq", "sg_logs", "sg_turs", "sg_read_attr")

needs = pytest.mark.skipif(
    not all(shutil.which(t) for t in _DRIVE_TOOLS),
    reason="mt-st and sg3-utils are not installed (scripts/setup-system installs them)",
)


def _argv_of_every_drive_command(sim, tmp_path) -> list[tuple[str, ...]]:
    real = real_over(sim)
    real.changer.load(LoadRequest(slot=3, drive=0))
    drive = real.drive(0)
    drive.status()  # still loading: the sense data and the device activity are asked for
    drive.wait_ready()
    drive.identity()
    drive.alerts()
    mount = real.ltfs.mount(MountRequest(drive=0))
    drive.status()
    real.ltfs.unmount(mount)
    drive.eject()
    return [c for c in real.tools.commands if c[0] in _DRIVE_TOOLS]


@needs
def test_mt_and_sg3_utils_accept_the_command_lines_the_adapter_builds(sim, tmp_path):
    commands = _argv_of_every_drive_command(sim, tmp_path)
    assert {c[0] for c in commands} == set(_DRIVE_TOOLS)
    for argv in commands:
        # /dev/null opens but is no tape: a usage error (exit 1 with usage text) would show
        # before the device is touched; an accepted command line fails at the ioctl instead.
        args = ["/dev/null" if a.startswith("/dev/sim/") else a for a in argv]
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
        assert "usage" not in done.stderr.lower() and "unknown command" not in done.stderr
        assert done.returncode not in (0, 1), argv


@needs
def test_mt_rejects_a_command_it_does_not_know():
    done = subprocess.run(
        ["mt", "-f", "/dev/null", "bogus"], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1 and "unknown command" in done.stderr


@needs
def test_the_real_sg_logs_decodes_the_simulators_tape_alert_page_to_the_same_flags(sim, tmp_path):
    real_text = decoded_by(
        ["sg_logs", "--pdt=1"], render.tape_alert_page_hex({4, 20, 21, 33}), tmp_path
    )
    with sim.transaction() as state:
        state.drives[0].alerts = [4, 20, 21, 33]
        ours = render.sg_logs_tape_alerts(state.drives[0])
    assert sg.parse_tape_alerts(real_text).flags == {4, 20, 21, 33}
    assert sg.parse_tape_alerts(ours).flags == {4, 20, 21, 33}
    assert ours.splitlines()[1:] == real_text.splitlines()


@needs
def test_the_real_sg_inq_decodes_the_simulators_inquiry_to_the_same_identity(sim, tmp_path):
    with sim.transaction() as state:
        drive = state.drives[1]
        inquiry = tmp_path / "inq.hex"
        inquiry.write_text(render.inquiry_hex(drive))
        ours = sg.parse_inquiry(render.sg_inq(drive))
    done = subprocess.run(
        ["sg_inq", f"--inhex={inquiry}"], capture_output=True, text=True, timeout=30, check=True
    )
    theirs = sg.parse_inquiry(done.stdout)
    assert (theirs.vendor, theirs.model, theirs.revision) == (
        ours.vendor,
        ours.model,
        ours.revision,
    )
