"""The real backend's newer port values over recorded tool output: a host of fakes (runner,
mount table, xattrs, process table) answers as the tools and the kernel would."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import DriveBinding, LibraryConfig
from archive_core_tape_ltfs.model import (
    LOCK_PHYSICAL_WP,
    LOCK_WRITE_PERM,
    LOCK_WRITE_PERM_DP,
    DriveState,
    FormatRequest,
    MountRequest,
    ReadOnlyReason,
    UnloadRequest,
)
from archive_core_tape_ltfs.real.library import RealLibrary
from archive_core_tape_ltfs.real.processes import ProcTable
from archive_core_tape_ltfs.runner import Command, CommandResult

from .conftest import golden

SERIAL = "HU1246T99F"
UUID = "4a6f1c3e-9b2d-4e8f-a1c7-0d5e3b2a9f10"  # the volume of the golden index
Answer = tuple[int, str, str]


class Clock:
    def __init__(self) -> None:
        self.time = 0.0
        self.sleeps: list[Callable[[], None]] = []  # things that happen while we sleep

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += seconds
        if self.sleeps:
            self.sleeps.pop(0)()


@attrs.define
class Statvfs:
    f_frsize: int = 524288
    f_bsize: int = 524288
    f_blocks: int = 1000
    f_bavail: int = 500
    f_bfree: int = 500
    f_files: int = 2**64 - 1
    f_ffree: int = 2**64 - 1


class Ltfs:
    """An `ltfs -f` process of the fake host: lives until umount; then, as ltfs does, writes
    the final index to <work_directory>/<volser>.schema and exits."""

    def __init__(self, host: Host, pid: int, work: Path, log: str) -> None:
        self.host, self.pid, self.work, self.log = host, pid, work, log
        self.exit_code: int | None = None

    def exit(self) -> None:
        capture = self.host.capture
        if capture is not None:
            (self.work / f"{self.host.xattrs['volumeSerial']}.schema").write_text(capture)
        self.host.pids.pop(self.pid, None)
        self.exit_code = 0

    def poll(self) -> int | None:
        return self.exit_code

    def wait(self, timeout: float) -> int:
        if self.exit_code is None:
            self.exit()
        return self.exit_code

    def stderr_text(self) -> str:
        return self.log


class Host:
    """Runner, MountFs and ProcessTable of one host with one drive."""

    def __init__(self, me: tuple[int, float] = (100, 1.0)) -> None:
        self.me = me
        self.pids: dict[int, float] = {me[0]: me[1]}  # the live processes and their start
        self.answers: dict[tuple[str, ...], list[Answer]] = {}
        self.commands: list[tuple[str, ...]] = []
        self.mounted: dict[str, list[str]] = {}
        self.xattrs = {
            "volumeSerial": "ABC123",
            "volumeUUID": UUID,
            "indexGeneration": "12",
            "volumeLockState": "0x00000000",
            "mamBarcode": "ABC123L9",
        }
        self.capture: str | None = golden("ltfs_index_nested.schema")
        self.mount_log = golden("ltfs_mount_ok.stderr").replace("LTFS14019I", "LTFS00000I")
        self.statvfs_result = Statvfs()
        self.open_error: OSError | None = None
        self.on_open: Callable[[], None] = lambda: None
        self.next_pid = 5000
        self.ltfs: Ltfs | None = None

    def process(self, me: tuple[int, float]) -> Host:
        """Another process on this host: same kernel (processes, mounts, LTFS), its own pid."""
        other = Host(me)
        for shared in ("pids", "answers", "mounted", "xattrs", "ltfs"):
            setattr(other, shared, getattr(self, shared))
        self.pids[me[0]] = me[1]
        return other

    # Runner
    def answer(self, *argv: str, outputs: list[Answer]) -> None:
        self.answers[argv] = list(outputs)

    def run(self, command: Command) -> CommandResult:
        argv = command.argv
        self.commands.append(argv)
        if argv[0] == "umount":
            self.mounted.pop(argv[1], None)
            return CommandResult(command=command, exit_code=0)
        if argv[0] == "ltfsck":
            for generation in (11, 12):
                (command.cwd / f"ABC123-{generation}.schema").write_text(
                    golden("ltfs_index_nested.schema").replace(
                        "<generationnumber>12<", f"<generationnumber>{generation}<"
                    )
                )
            return CommandResult(command=command, exit_code=0)
        for length in range(len(argv), 0, -1):
            outputs = self.answers.get(argv[:length])
            if outputs:
                code, out, err = outputs[0] if len(outputs) == 1 else outputs.pop(0)
                return CommandResult(command=command, exit_code=code, stdout=out, stderr=err)
        return CommandResult(command=command, exit_code=127, stderr=f"{argv[0]}: not found\n")

    def spawn(self, command: Command, log_path: Path) -> Ltfs:
        self.commands.append(command.argv)
        options = [command.argv[i + 1] for i, a in enumerate(command.argv) if a == "-o"]
        work = Path(next(o.split("=", 1)[1] for o in options if o.startswith("work_directory=")))
        self.next_pid += 1
        self.pids[self.next_pid] = 7.0
        self.mounted[command.argv[2]] = ["ro" if "ro" in options else "rw", "default_permissions"]
        self.ltfs = Ltfs(self, self.next_pid, work, self.mount_log)
        return self.ltfs

    # ProcessTable
    def start_time(self, pid: int) -> float | None:
        return self.pids.get(pid)

    def this_process(self) -> tuple[int, float]:
        return self.me

    # MountFs
    def mount_options(self, mountpoint: Path) -> list[str] | None:
        return self.mounted.get(str(mountpoint))

    def statvfs(self, path: Path) -> Statvfs:
        return self.statvfs_result

    def getxattr(self, path: Path, name: str) -> bytes:
        key = name.removeprefix("user.ltfs.")
        if key not in self.xattrs:
            raise OSError(errno.ENODATA, "No data available")
        return self.xattrs[key].encode()

    def setxattr(self, path: Path, name: str, value: bytes) -> None:
        raise OSError(errno.EACCES, "Permission denied")

    def open(self, path: Path, mode: str):
        self.on_open()
        if self.open_error is not None:
            raise self.open_error
        raise AssertionError("no file data on the fake host")


def library_on(host: Host, tmp_path: Path, *, index: int = 0, clock: Clock | None = None):
    config = LibraryConfig(
        changer="/dev/sg5",
        drives=(DriveBinding(index=index, serial=SERIAL, sg="/dev/sg4", nst="/dev/nst0"),),
        mount_root=tmp_path / "mnt",
        work_directory=tmp_path / "work",
    )
    return RealLibrary(config, runner=host, clock=clock or Clock(), fs=host, processes=host)


def mounted(host: Host, tmp_path: Path, **request):
    library = library_on(host, tmp_path)
    return library, library.ltfs.mount(MountRequest(drive=0, **request))


# --- TapeAlert ----------------------------------------------------------------------------------


class ClearingDrive(Host):
    """A drive whose TapeAlert log page 0x2E clears its flags when read, as many drives do;
    the TapeAlert response page 0x12 reports them without clearing."""

    def __init__(self) -> None:
        super().__init__()
        self.cleaning_requested = True

    def run(self, command: Command) -> CommandResult:
        if command.argv[:3] == ("sg_logs", "-p", "0x2e"):
            text = golden("sg_logs_tapealert_cleaning.stdout")
            if not self.cleaning_requested:
                text = text.replace(": 1", ": 0")
            self.cleaning_requested = False
            return CommandResult(command=command, exit_code=0, stdout=text)
        if command.argv[:3] == ("sg_logs", "-p", "0x12"):
            text = golden("sg_logs_tapealert_response_cleaning.stdout")
            return CommandResult(command=command, exit_code=0, stdout=text)
        return super().run(command)


def test_reading_the_tape_alerts_leaves_the_cleaning_request_for_the_next_reader(tmp_path):
    host = ClearingDrive()
    drive = library_on(host, tmp_path).drive(0)
    assert drive.alerts().needs_cleaning  # `tape status`
    assert drive.alerts().needs_cleaning  # the driver's cleaning decision, later
    assert not any("0x2e" in argv for argv in host.commands)


# --- drive states -------------------------------------------------------------------------------


def _turs(sample: str) -> list[Answer]:
    return [(2, golden(f"sg_turs_{sample}.stdout"), golden(f"sg_turs_{sample}.stderr"))]


def _activity(sample: str) -> list[Answer]:
    return [(0, golden(f"sg_logs_dt_device_status_{sample}.stdout"), "")]


def _not_online() -> list[Answer]:
    text = golden("mt_status_bot_lto5.stdout").replace("41000000", "40000000")
    return [(0, text.replace(" BOT ONLINE", " BOT"), "")]


@pytest.mark.parametrize(
    ("turs", "activity", "state", "seconds_left", "words"),
    [
        ("becoming_ready_progress", "calibrating", DriveState.CALIBRATING, None, "Calibrating"),
        ("becoming_ready_estimate", "idle", DriveState.LOADING, 95.0, "becoming ready"),
        ("becoming_ready_progress", "unloading", DriveState.UNLOADING, None, "unloaded"),
        ("cleaning_cartridge", "idle", DriveState.CLEANING, None, "Cleaning cartridge"),
        ("manual_intervention", "idle", DriveState.OUT_OF_SERVICE, None, "manual intervention"),
        ("offline", "idle", DriveState.OUT_OF_SERVICE, None, "offline"),
    ],
)
def test_a_drive_that_is_not_ready_says_why(tmp_path, turs, activity, state, seconds_left, words):
    host = Host()
    host.answer("mt", outputs=_not_online())
    host.answer("sg_turs", outputs=_turs(turs))
    host.answer("sg_logs", "-p", "0x11", outputs=_activity(activity))
    status = library_on(host, tmp_path).drive(0).status()
    assert status.state is state and status.seconds_left == seconds_left
    assert words in status.detail
    assert ("sg_turs", "-v", "/dev/sg4") in host.commands


def test_an_empty_drive_is_empty_even_when_mt_cannot_open_it(tmp_path):
    host = Host()
    host.answer("mt", outputs=[(2, "", "/dev/nst0: No medium found\n")])
    host.answer("sg_turs", outputs=_turs("no_medium"))
    assert library_on(host, tmp_path).drive(0).status().state is DriveState.EMPTY


def test_waiting_for_a_calibrating_drive_names_the_calibration_when_it_times_out(tmp_path):
    host = Host()
    host.answer("mt", outputs=_not_online())
    host.answer("sg_turs", outputs=_turs("becoming_ready_progress"))
    host.answer("sg_logs", "-p", "0x11", outputs=_activity("calibrating"))
    with pytest.raises(errors.DriveNotReady, match=r"calibrating: .*Calibrating"):
        library_on(host, tmp_path).drive(0).wait_ready(timeout=60)


# --- media --------------------------------------------------------------------------------------


def test_the_media_type_comes_from_the_density_code_and_the_cartridge_memory(tmp_path):
    host = Host()
    host.answer(
        "mt", outputs=[(0, golden("mt_status_bot_lto5.stdout").replace("0x58", "0x60"), "")]
    )
    host.answer("sg_read_attr", outputs=[(0, golden("sg_read_attr_worm_lto9.stdout"), "")])
    media = library_on(host, tmp_path).drive(0).status().media
    assert (media.code, media.generation, media.worm) == ("LZ", 9, True)
    assert not any(argv[0] == "mtx" for argv in host.commands)


def test_the_barcode_tells_the_media_type_when_the_drive_does_not(tmp_path):
    host = Host()
    host.answer("mt", outputs=[(0, golden("mt_status_bot_lto5.stdout").replace("0x58", "0x0"), "")])
    host.answer("sg_read_attr", outputs=[(1, "", "READ ATTRIBUTE: Illegal request\n")])
    host.answer("mtx", outputs=[(0, golden("mtx_status_lto6_loaded.stdout"), "")])
    status = library_on(host, tmp_path, index=2).drive(2).status()
    assert (status.media.code, status.media.worm) == ("L6", False)


def test_a_worm_cartridge_mounts_with_the_worm_reason(tmp_path):
    host = Host()
    host.answer("sg_read_attr", outputs=[(0, golden("sg_read_attr_worm_lto9.stdout"), "")])
    _library, mount = mounted(host, tmp_path)
    state = mount.state()
    assert state.reasons == {ReadOnlyReason.WORM} and not state.read_only


# --- live volume state --------------------------------------------------------------------------


def test_a_permanent_write_error_turns_the_mount_read_only_at_once(tmp_path):
    host = Host()
    _library, mount = mounted(host, tmp_path, barcode="ABC123L9")
    assert not mount.read_only and mount.volume().mam_barcode == "ABC123L9"

    def write_error() -> None:
        host.xattrs["volumeLockState"] = f"0x{LOCK_WRITE_PERM | LOCK_WRITE_PERM_DP:08x}"
        host.open_error = OSError(errno.EIO, "Input/output error")
        host.on_open = lambda: None

    host.on_open = write_error
    with pytest.raises(errors.MediaError):
        mount.open_write("a.bin")
    assert mount.read_only
    assert mount.state().reasons == {ReadOnlyReason.WRITE_ERROR}
    host.open_error = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(errors.ReadOnlyVolume):
        mount.open_write("b.bin")


def test_a_write_protected_cartridge_is_write_protected_not_write_failed(tmp_path):
    host = Host()
    host.mount_log = golden("ltfs_mount_ok.stderr")  # LTFS14019I: mounted read-only
    host.xattrs["volumeLockState"] = f"0x{LOCK_PHYSICAL_WP:08x}"
    host.open_error = OSError(errno.EROFS, "Read-only file system")
    _library, mount = mounted(host, tmp_path)
    assert mount.state().reasons == {ReadOnlyReason.WRITE_PROTECTED}
    with pytest.raises(errors.WriteProtected):
        mount.open_write("x.bin")


def test_a_volume_past_early_warning_is_full(tmp_path):
    host = Host()
    _library, mount = mounted(host, tmp_path)
    host.statvfs_result = Statvfs(f_bavail=0, f_bfree=0)
    assert mount.state().reasons == {ReadOnlyReason.FULL} and mount.read_only


def test_a_read_only_mount_says_so(tmp_path):
    host = Host()
    _library, mount = mounted(host, tmp_path, read_only=True)
    assert mount.state().reasons == {ReadOnlyReason.MOUNTED_READ_ONLY}
    assert "ro" in host.commands[-1]


# --- captured index -----------------------------------------------------------------------------


def test_unmount_returns_the_index_ltfs_captured(tmp_path):
    host = Host()
    library, mount = mounted(host, tmp_path)
    spawn = next(argv for argv in host.commands if argv[:2] == ("ltfs", "-f"))
    assert "capture_index" in spawn
    assert f"work_directory={tmp_path / 'work' / 'drive0'}" in spawn
    index = library.ltfs.unmount(mount)
    assert index.volume_uuid == UUID and index.generation == 12
    assert [e.startblock for e in index.file("clips/2024/one.mov").extents] == [1024, 1040]


def test_an_older_captured_index_is_never_taken_for_this_unmount(tmp_path):
    host = Host()
    library, mount = mounted(host, tmp_path)
    stale = tmp_path / "work" / "drive0" / "ABC123.schema"
    stale.write_text(golden("ltfs_index_nested.schema"))
    host.capture = None  # this ltfs exits without writing one
    assert library.ltfs.unmount(mount) is None


def test_the_latest_index_of_an_unmounted_volume_is_read_with_ltfsck(tmp_path):
    host = Host()
    index = library_on(host, tmp_path).ltfs.read_index(0)
    assert host.commands[-1] == ("ltfsck", "--capture-index", SERIAL)
    assert index.generation == 12 and len(index.files) == 5
    assert not (tmp_path / "work" / "index-drive0").exists()


def test_ltfsck_capturing_nothing_is_the_error_it_printed(tmp_path):
    host = Host()
    library = library_on(host, tmp_path)
    host.run = lambda command: CommandResult(  # type: ignore[method-assign]
        command=command, exit_code=4, stderr=golden("ltfs_mount_consistency_failed.stderr")
    )
    with pytest.raises(errors.InconsistentIndex):
        library.ltfs.read_index(0)


# --- volume UUID --------------------------------------------------------------------------------


def test_a_volume_with_another_uuid_is_unmounted_and_refused(tmp_path):
    host = Host()
    library = library_on(host, tmp_path)
    other = "0c1d2e3f-0000-4000-8000-000000000001"
    with pytest.raises(errors.WrongCartridge) as raised:
        library.ltfs.mount(MountRequest(drive=0, barcode="ABC123L9", volume_uuid=other))
    message = raised.value.message
    assert UUID in message and other in message and "ABC123L9" in message
    assert host.ltfs.poll() == 0 and not host.mounted  # ltfs exited, nothing mounted
    assert library.ltfs.mounts() == () and library.ltfs.holder(0) is None


# --- mounts across processes --------------------------------------------------------------------


def two_processes(tmp_path, clock: Clock | None = None):
    """Process 100 mounts drive 0; process 200 on the same host looks at it."""
    host = Host(me=(100, 1.0))
    owner = library_on(host, tmp_path)
    mount = owner.ltfs.mount(MountRequest(drive=0, barcode="ABC123L9"))
    other = library_on(host.process((200, 2.0)), tmp_path, clock=clock)
    return host, owner, mount, other


def test_a_mount_made_by_another_process_blocks_the_drive(tmp_path):
    host, _owner, _mount, other = two_processes(tmp_path)
    (record,) = other.ltfs.mounts()
    assert (record.owner_pid, record.ltfs_pid, record.barcode) == (100, 5001, "ABC123L9")
    assert record.owner_alive and record.ltfs_alive and not record.orphaned
    with pytest.raises(errors.DriveHeldByLtfs, match="by process 100"):
        other.drive(0).eject()
    with pytest.raises(errors.DriveHeldByLtfs, match="by process 100"):
        other.ltfs.format(FormatRequest(drive=0, barcode="ABC123L9", force=True))
    with pytest.raises(errors.UnloadRefused):
        other.changer.unload(UnloadRequest(drive=0))
    with pytest.raises(errors.DriveHeldByLtfs, match=r"process 100 .* still running"):
        other.ltfs.adopt(0)
    assert not any(argv[0] in ("mt", "mkltfs", "mtx") for argv in host.commands)


def test_another_process_reads_a_mount_through_a_view_but_cannot_change_it(tmp_path):
    _host, _owner, _mount, other = two_processes(tmp_path)
    view = other.ltfs.view(0)
    assert view.volume().uuid == UUID and view.capacity().free_bytes > 0
    assert not view.state().read_only
    for change in (view.sync, lambda: view.open_write("new.mov"), lambda: view.remove("a")):
        with pytest.raises(errors.DriveHeldByLtfs, match="only the process that owns it"):
            change()
    with pytest.raises(errors.SourceEmpty, match="Drive 1 has no LTFS mount"):
        other.ltfs.view(1)


def test_a_mount_whose_owner_died_is_adopted_and_its_unmount_waits_for_ltfs(tmp_path):
    clock = Clock()
    host, _owner, _mount, other = two_processes(tmp_path, clock=clock)
    del host.pids[100]  # the worker that mounted it was killed; its ltfs lives on
    (record,) = other.ltfs.mounts()
    assert record.orphaned
    adopted = other.ltfs.adopt(0)
    assert adopted.volume().uuid == UUID
    assert other.ltfs.mounts()[0].owner_pid == 200
    clock.sleeps.append(host.ltfs.exit)  # ltfs finishes its index while we wait
    index = other.ltfs.unmount(adopted)
    assert clock.time > 0 and 5001 not in host.pids
    assert index is not None and index.generation == 12
    assert other.ltfs.mounts() == () and other.ltfs.holder(0) is None


def test_a_mount_whose_ltfs_died_too_must_be_released_and_checked(tmp_path):
    host, _owner, _mount, other = two_processes(tmp_path)
    del host.pids[100], host.pids[5001]
    host.pids[5001] = 99.0  # the pid went to an unrelated process since
    (record,) = other.ltfs.mounts()
    assert record.dead
    with pytest.raises(errors.InconsistentIndex, match="Release the drive, then check"):
        other.ltfs.adopt(0)
    host.answer("ltfs", "-o", f"devname={SERIAL}", outputs=[(0, "", "")])
    other.ltfs.release(0)
    assert other.ltfs.mounts() == ()


def test_the_mount_registry_is_written_whole(tmp_path):
    host = Host()
    library = library_on(host, tmp_path)
    library.ltfs.mount(MountRequest(drive=0))
    assert sorted(p.name for p in (tmp_path / "work" / "mounts").iterdir()) == ["drive0.json"]


# --- the process table --------------------------------------------------------------------------


def test_proc_tells_a_live_process_from_an_exited_one():
    table = ProcTable()
    pid, started = table.this_process()
    assert pid == os.getpid() and table.start_time(pid) == started
    child = subprocess.Popen(["true"])
    child_pid = child.pid
    while table.start_time(child_pid) is not None:  # a zombie until reaped: not alive
        pass
    child.wait()
    assert table.start_time(child_pid) is None
