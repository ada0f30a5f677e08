"""The simulated library behind the real tools' command lines: a Runner and a MountFs for tests.

The real backend talks to it exactly as to the hardware: it builds `mtx`, `mt`, `sg_*`,
`mkltfs`, `ltfs`, `umount` and `ltfsck` command lines, and reads back text in the tools'
formats (rendered from the simulator's state) with its own parsers. So one contract suite runs
against both backends, and the real one's command building, parsing and error mapping are
exercised on every step.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import attrs
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
from archive_core_tape_ltfs.runner import Command, CommandResult
from archive_core_tape_ltfs.sim import render
from archive_core_tape_ltfs.sim.drive import read_tape_alert_page, read_tape_alert_response_page
from archive_core_tape_ltfs.sim.library import SimLibrary
from archive_core_tape_ltfs.sim.ltfs import SimMount


def sg_node(index: int) -> str:
    return f"/dev/sim/sg{10 + index}"


def nst_node(index: int) -> str:
    return f"/dev/sim/nst{index}"


_LTFS_MESSAGE = (
    (
        errors.AlreadyFormatted,
        "LTFS15047E Medium is already formatted (1).\n"
        "LTFS15048I Need to specify -f or --force option to format this medium.",
    ),
    (errors.WriteProtected, "LTFS11095E Cannot format: the medium is write protected."),
    (errors.UnformattedTape, "LTFS11009E Cannot read volume: failed to read partition labels."),
    (
        errors.InconsistentIndex,
        "LTFS11220E Medium check failed: extra blocks detected. Run ltfsck.",
    ),
    (errors.MediaError, "LTFS11299E Cannot format: unsupported medium."),
    (errors.DriveBusy, "LTFS12012E reservation conflict"),
    (errors.DriveNotReady, "LTFS11006E Cannot mount volume: failed to load the tape."),
    (errors.NoSpace, "LTFS12064E Cannot write block: no space left on device."),
    (errors.ReadOnlyVolume, "LTFS12047E Dropping to read-only mode."),
)

_ERRNO = (
    (errors.NoSpace, errno.ENOSPC),
    (errors.WriteProtected, errno.EROFS),
    (errors.ReadOnlyVolume, errno.EROFS),
    (errors.MediaError, errno.EIO),
    (errors.NeedsCleaning, getattr(errno, "EUCLEAN", 117)),
    (errors.DriveNotReady, getattr(errno, "ENOMEDIUM", 123)),
)


def _ltfs_text(error: errors.TapeError) -> str:
    for cls, text in _LTFS_MESSAGE:
        if isinstance(error, cls):
            return text + "\n"
    return f"LTFS99999E {error.message}\n"


def as_oserror(error: Exception) -> OSError:
    from archive_core import CopyNotFound

    if isinstance(error, CopyNotFound):
        return FileNotFoundError(errno.ENOENT, "No such file or directory")
    for cls, code in _ERRNO:
        if isinstance(error, cls):
            return OSError(code, os.strerror(code))
    return OSError(errno.EIO, str(error))


@attrs.define
class _LtfsProcess:
    """The `ltfs -f` child: alive while the simulated drive's LTFS process has its pid."""

    pid: int
    log: str
    library: SimLibrary | None = None
    drive: int = 0
    exit_code: int | None = None

    def poll(self) -> int | None:
        if self.exit_code is not None or self.library is None:
            return self.exit_code
        now = self.library.clock.now()
        with self.library.transaction() as state:
            drive = state.drives[self.drive]
            ltfs = drive.ltfs
            if ltfs is not None and ltfs.pid == self.pid:
                # umount returned early: the process exits when its index write is done.
                return 0 if ltfs.exit_at is not None and ltfs.exit_at <= now else None
            # Gone without an unmount finishing it: killed (the drive keeps its reservation).
            return 1 if drive.reserved else 0

    def wait(self, timeout: float) -> int:
        assert self.library is not None
        clock = self.library.clock
        with self.library.transaction() as state:
            ltfs = state.drives[self.drive].ltfs
            pending = ltfs is not None and ltfs.pid == self.pid and ltfs.exit_at is not None
        # Blocking in wait() is what lets the caller's time pass until ltfs exits.
        if pending and ltfs.exit_at - clock.now() <= timeout:
            clock.sleep(ltfs.exit_at - clock.now())
        code = self.poll()
        if code is None:
            raise errors.ToolTimeout(f"ltfs (pid {self.pid}) is still running.")
        return code

    def stderr_text(self) -> str:
        return self.log


@attrs.define
class _Statvfs:
    f_frsize: int
    f_bsize: int
    f_blocks: int
    f_bavail: int
    f_bfree: int
    f_files: int
    f_ffree: int


class SimulatedTools:
    """A Runner and MountFs answering as the tools would on this simulated library."""

    def __init__(self, library: SimLibrary) -> None:
        self.library = library
        self.commands: list[tuple[str, ...]] = []
        self._mounts: dict[str, tuple[SimMount, _LtfsProcess]] = {}
        self._processes: dict[int, _LtfsProcess] = {}

    # --- Runner ----------------------------------------------------------------------------

    def _drive_of(self, device: str) -> int:
        with self.library.transaction() as state:
            for drive in state.drives:
                if device in (drive.serial, sg_node(drive.index), nst_node(drive.index)):
                    return drive.index
        raise LookupError(device)

    def run(self, command: Command) -> CommandResult:
        argv = command.argv
        self.commands.append(argv)
        tool = Path(argv[0]).name
        try:
            handler = getattr(self, f"_{tool}")
        except AttributeError:
            return CommandResult(command=command, exit_code=127, stderr=f"{tool}: not found\n")
        code, out, err = handler(list(argv[1:]))
        return CommandResult(command=command, exit_code=code, stdout=out, stderr=err)

    def spawn(self, command: Command, log_path: Path) -> _LtfsProcess:
        self.commands.append(command.argv)
        args = list(command.argv[1:])
        mountpoint = next(a for a in args if not a.startswith("-") and "=" not in a)
        options = [args[i + 1] for i, a in enumerate(args) if a == "-o"]
        device = next(o.split("=", 1)[1] for o in options if o.startswith("devname="))
        drive = self._drive_of(device)
        try:
            mount = self.library.ltfs.mount(MountRequest(drive=drive, read_only="ro" in options))
        except errors.TapeError as exc:
            return _LtfsProcess(
                pid=0, log=_ltfs_text(exc) + "LTFS14013E Cannot mount the volume.\n", exit_code=1
            )
        log = ""
        with self.library.transaction() as state:
            cartridge = state.cartridges[state.drives[drive].cartridge or ""]
            if cartridge.write_protected:
                log += "LTFS14019I Medium is write protected. Mounting read-only.\n"
            label = cartridge.label or "NO_BARCODE"
            volume = cartridge.volume
            assert volume is not None
            log += (
                f"LTFS11031I Volume mounted successfully. {label} : Gen = "
                f"{volume.generation} / (b, {volume.append_block}) -> (a, 6) / "
                f"{volume.serial}.\n"
            )
        process = _LtfsProcess(pid=mount.pid, log=log, library=self.library, drive=drive)
        self._mounts[str(mountpoint)] = (mount, process)
        self._processes[process.pid] = process
        return process

    # --- ProcessTable: the real adapter asks which pids live; these ltfs are not OS processes

    def start_time(self, pid: int) -> float | None:
        process = self._processes.get(pid)
        if process is not None:
            return 0.0 if process.poll() is None else None
        return 0.0 if pid == os.getpid() else None

    def this_process(self) -> tuple[int, float]:
        return os.getpid(), 0.0

    def _mtx(self, args: list[str]) -> tuple[int, str, str]:
        assert args[:1] == ["-f"], "the adapter always names the changer device"
        command, rest = args[2], [int(a) for a in args[3:]]
        changer = self.library.changer
        try:
            if command == "status":
                with self.library.transaction() as state:
                    changer.inventory_once()
                    return 0, render.mtx_status(state), ""
            if command == "inventory":
                changer.inventory_once(rescan=True)
                return 0, "", ""
            if command == "load":
                changer.load_once(LoadRequest(slot=rest[0], drive=rest[1]))
                return (
                    0,
                    f"Loading media from Storage Element {rest[0]} into drive {rest[1]}...done\n",
                    "",
                )
            if command == "unload":
                changer.unload_once(UnloadRequest(slot=rest[0], drive=rest[1]))
                return 0, f"Unloading drive {rest[1]} into Storage Element {rest[0]}...done\n", ""
            if command == "transfer":
                changer.transfer_once(TransferRequest(source=rest[0], destination=rest[1]))
                return 0, "", ""
        except errors.TapeError as exc:
            return 1, "", render.mtx_failure_stderr(exc, command=command, status_first=False)
        return 1, "", f"mtx: No such command {command}\n"

    def _mt(self, args: list[str]) -> tuple[int, str, str]:
        device, command = args[1], args[2]
        drive = self._drive_of(device)
        if command == "status":
            with self.library.transaction() as state:
                return 0, render.mt_status(state, state.drives[drive], self.library.clock.now()), ""
        if command == "offline":
            try:
                self.library.drive(drive).eject()
            except errors.DriveNotReady:
                return 2, "", f"{device}: No medium found\n"
            return 0, "", ""
        return 1, "", f'mt: unknown command "{command}"\n'

    def _sg_inq(self, args: list[str]) -> tuple[int, str, str]:
        with self.library.transaction() as state:
            return 0, render.sg_inq(state.drives[self._drive_of(args[-1])]), ""

    def _sg_logs(self, args: list[str]) -> tuple[int, str, str]:
        page = args[args.index("-p") + 1].lower() if "-p" in args else ""
        with self.library.transaction() as state:
            drive = state.drives[self._drive_of(args[-1])]
            if page in ("0x2e", "2e"):
                return 0, read_tape_alert_page(drive), ""
            if page in ("0x12", "12"):
                return 0, read_tape_alert_response_page(drive), ""
        return 1, "", f"sg_logs: log page {page or '(none)'} is not simulated\n"

    def _sg_turs(self, args: list[str]) -> tuple[int, str, str]:
        now = self.library.clock.now()
        with self.library.transaction() as state:
            drive = state.drives[self._drive_of(args[-1])]
            ready = drive.ltfs is not None or (
                drive.threaded and now >= drive.ready_at and not drive.hung
            )
        return (0, "", "") if ready else (2, "", "device not ready\n")

    def _tapeinfo(self, args: list[str]) -> tuple[int, str, str]:
        now = self.library.clock.now()
        with self.library.transaction() as state:
            return 0, render.tapeinfo(state, state.drives[self._drive_of(args[-1])], now), ""

    def _mkltfs(self, args: list[str]) -> tuple[int, str, str]:
        def value(flag: str) -> str | None:
            return args[args.index(flag) + 1] if flag in args else None

        drive = self._drive_of(value("-d") or "")
        with self.library.transaction() as state:
            key = state.drives[drive].cartridge
            label = state.cartridges[key].label if key else None
        serial = value("-s") or ""
        if len(serial) != 6:
            return 16, "", "LTFS15029E Tape serial must be 6 characters.\n"
        try:
            volume = self.library.ltfs.format(
                FormatRequest(
                    drive=drive,
                    barcode=label if label and label[:6] == serial else serial + "L9",
                    name=value("-n") or "",
                    force="-f" in args,
                )
            )
        except errors.TapeError as exc:
            return 8, "", _ltfs_text(exc) + "LTFS15023I Formatting failed.\n"
        return (
            0,
            "",
            (
                f"LTFS15013I Volume UUID is: {volume.uuid}.\n"
                "LTFS15024I Medium formatted successfully.\n"
            ),
        )

    def _ltfs(self, args: list[str]) -> tuple[int, str, str]:
        options = [args[i + 1] for i, a in enumerate(args) if a == "-o"]
        if "device_list" in options:
            with self.library.transaction() as state:
                sg_of = {d.index: sg_node(d.index) for d in state.drives}
                return 0, render.ltfs_device_list(state, sg_of), ""
        if "release_device" in options:
            device = next(o.split("=", 1)[1] for o in options if o.startswith("devname="))
            self.library.ltfs.release(self._drive_of(device))
            return 0, "", ""
        return 16, "", "ltfs: use spawn for a mount\n"

    def _umount(self, args: list[str]) -> tuple[int, str, str]:
        entry = self._mounts.pop(args[-1], None)
        if entry is None:
            return 32, "", f"umount: {args[-1]}: not mounted.\n"
        mount, process = entry
        try:
            self.library.ltfs.unmount(mount)
        except errors.TapeError as exc:
            process.exit_code = 1
            process.log += _ltfs_text(exc)
        return 0, "", ""

    def _ltfsck(self, args: list[str]) -> tuple[int, str, str]:
        drive = self._drive_of(args[-1])
        if "-l" in args:
            mode, generation = CheckMode.LIST_ROLLBACK, None
        elif "-r" in args:
            mode, generation = CheckMode.ROLLBACK, int(args[args.index("-g") + 1])
        elif "-z" in args:
            mode, generation = CheckMode.DEEP, None
        elif "-f" in args:
            mode, generation = CheckMode.SALVAGE, None
        else:
            mode, generation = CheckMode.VERIFY, None
        try:
            result = self.library.ltfs.check(
                CheckRequest(drive=drive, mode=mode, generation=generation)
            )
        except errors.TapeError as exc:
            return 8, "", _ltfs_text(exc)
        return result.exit_code, result.output + "\n", ""

    # --- MountFs --------------------------------------------------------------------------

    def _mount_at(self, path: Path) -> tuple[SimMount, str]:
        for mountpoint, (mount, _process) in self._mounts.items():
            if path == Path(mountpoint) or Path(mountpoint) in path.parents:
                return mount, str(path.relative_to(mountpoint))
        raise OSError(errno.ENOENT, "not on a simulated mount", str(path))

    def mount_options(self, mountpoint: Path) -> list[str] | None:
        entry = self._mounts.get(str(mountpoint))
        if entry is None:
            return None
        try:
            read_only = entry[0].read_only
        except errors.TapeError:
            read_only = False  # a dead ltfs leaves its FUSE mount behind, options as they were
        return ["ro" if read_only else "rw", "default_permissions"]

    def statvfs(self, path: Path) -> Any:
        mount, _ = self._mount_at(path)
        capacity = mount.capacity()
        blocks = capacity.total_bytes // capacity.block_size
        free = capacity.free_bytes // capacity.block_size
        return _Statvfs(
            f_frsize=capacity.block_size,
            f_bsize=capacity.block_size,
            f_blocks=blocks,
            f_bavail=free,
            f_bfree=free,
            f_files=2**64 - 1,
            f_ffree=2**64 - 1 - capacity.files,
        )

    def getxattr(self, path: Path, name: str) -> bytes:
        mount, relative = self._mount_at(path)
        key = name.removeprefix("user.ltfs.")
        try:
            if relative == ".":
                volume = mount.volume()
                values = {
                    "volumeSerial": volume.serial,
                    "volumeUUID": volume.uuid,
                    "indexGeneration": str(volume.generation),
                    "volumeLockState": f"0x{volume.lock_state:08x}",
                    "volumeName": volume.name,
                    "mamBarcode": volume.mam_barcode,
                    "volumeBlocksize": str(volume.block_size),
                }
            else:
                location = mount.location(relative)
                if location is None:
                    raise OSError(errno.ENODATA, "No data available")
                values = {"partition": location.partition, "startblock": str(location.startblock)}
        except errors.TapeError as exc:
            raise as_oserror(exc) from exc
        if key not in values:
            raise OSError(errno.ENODATA, "No data available")
        return values[key].encode()

    def setxattr(self, path: Path, name: str, value: bytes) -> None:
        mount, relative = self._mount_at(path)
        if name == "user.ltfs.sync" and relative == ".":
            mount.sync()
            return
        raise OSError(errno.EACCES, "Permission denied")

    def open(self, path: Path, mode: str) -> Any:
        mount, relative = self._mount_at(path)
        try:
            if "r" in mode:
                return _OsFile(mount.open_read(relative))
            return _OsFile(mount.open_write(relative))
        except Exception as exc:
            raise as_oserror(exc) from exc

    def remove(self, path: Path) -> None:
        mount, relative = self._mount_at(path)
        try:
            mount.remove(relative)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def walk(self, root: Path):
        mount, _ = self._mount_at(root)
        for relative, size in mount.files():
            yield root / relative, size


class _OsFile:
    """A simulated file whose typed errors come out as the OSErrors LTFS would return."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return self._inner.readable()

    def writable(self) -> bool:
        return self._inner.writable()

    def readinto(self, buffer: Any) -> int:
        try:
            return self._inner.readinto(buffer)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def write(self, data: Any) -> int:
        try:
            return self._inner.write(data)
        except Exception as exc:
            raise as_oserror(exc) from exc

    def close(self) -> None:
        try:
            self._inner.close()
        except Exception as exc:
            raise as_oserror(exc) from exc
