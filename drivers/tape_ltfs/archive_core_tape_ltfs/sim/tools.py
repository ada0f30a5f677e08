"""The simulated library behind the real tools' command lines: Runner, MountFs, ProcessTable.

The real backend talks to it exactly as to the hardware: it builds `mtx`, `mt`, `sg_*`,
`mkltfs`, `ltfs`, `umount` and `ltfsck` command lines, and reads back text in the tools'
formats (rendered from the simulator's state) with its own parsers, and files as LTFS writes
them (captured indexes); the host beneath (`host.py`) answers its file-system and process
queries. So one contract suite runs against both backends, and the real one's command
building, parsing and error mapping are exercised on every step.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import DriveBinding, LibraryConfig, Timeouts
from archive_core_tape_ltfs.model import (
    CheckMode,
    CheckRequest,
    DriveStatus,
    FormatRequest,
    LoadRequest,
    MountRequest,
    ReadOnlyReason,
    TransferRequest,
    UnloadRequest,
)
from archive_core_tape_ltfs.port import Clock
from archive_core_tape_ltfs.runner import Command, CommandResult
from archive_core_tape_ltfs.sim import index_xml, mechanics, render, scsi
from archive_core_tape_ltfs.sim.drive import (
    drive_status,
    read_tape_alert_page,
    read_tape_alert_response_page,
)
from archive_core_tape_ltfs.sim.engine import Step
from archive_core_tape_ltfs.sim.host import LtfsProcess, SimulatedHost
from archive_core_tape_ltfs.sim.library import SimLibrary
from archive_core_tape_ltfs.sim.ltfs import MOUNT_ROOT
from archive_core_tape_ltfs.sim.state import SimDrive, SimState


def sg_node(index: int) -> str:
    return f"/dev/sim/sg{10 + index}"


def nst_node(index: int) -> str:
    return f"/dev/sim/nst{index}"


def real_config(library: SimLibrary) -> LibraryConfig:
    """The config a real backend needs to drive this simulated library through these tools:
    its changer, its drives bound by serial, and the simulated host's mount root and work
    directory (where the simulator's own mounts are too)."""
    state = library.snapshot()
    return LibraryConfig(
        backend="real",
        changer=state.changer_name,
        drives=tuple(
            DriveBinding(index=d.index, serial=d.serial, sg=sg_node(d.index), nst=nst_node(d.index))
            for d in state.drives
        ),
        mount_root=library.engine.root / MOUNT_ROOT,
        work_directory=library.work_directory,
        # Polls cost virtual time only; a coarse interval keeps the command log short.
        timeouts=Timeouts(poll_interval=60.0),
    )


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

# What ltfs prints at mount when the medium takes no (more) file data (src/main.c), the ids the
# real adapter reads (parse/ltfs.py); 14019I for a write-protected tab and a write-perm alike.
_AT_MOUNT = (
    (ReadOnlyReason.WRITE_PROTECTED, "LTFS14019I Medium is write protected. Mounting read-only.\n"),
    (ReadOnlyReason.WRITE_ERROR, "LTFS14019I Medium is write protected. Mounting read-only.\n"),
    (
        ReadOnlyReason.OLDER_GENERATION,
        "LTFS14078I Medium is an older generation. Mounting read-only.\n",
    ),
    (ReadOnlyReason.FULL, "LTFS14071I Medium is beyond programmable early warning.\n"),
)
# Reasons for which ltfs mounts read-only by itself (past early warning it mounts read-write).
_FORCED_READ_ONLY = frozenset(
    {ReadOnlyReason.WRITE_PROTECTED, ReadOnlyReason.WRITE_ERROR, ReadOnlyReason.OLDER_GENERATION}
)


def _ltfs_text(error: errors.TapeError) -> str:
    for cls, text in _LTFS_MESSAGE:
        if isinstance(error, cls):
            return text + "\n"
    return f"LTFS99999E {error.message}\n"


class SimulatedTools(SimulatedHost):
    """A Runner, MountFs and ProcessTable answering as the tools and the host would on this
    simulated library, for one caller of it (`worker` gives another, on its own timeline)."""

    def __init__(
        self, library: SimLibrary, *, commands: list[tuple[str, ...]] | None = None
    ) -> None:
        super().__init__(library)
        # Every command line run on this host, in order (shared with the workers' tools).
        self.commands: list[tuple[str, ...]] = [] if commands is None else commands
        self._processes: dict[int, LtfsProcess] = {}

    @property
    def clock(self) -> Clock:
        return self.library.clock

    def worker(self, name: str) -> SimulatedTools:
        """The same host's tools for another caller, whose timeline starts at this one's."""
        return SimulatedTools(self.library.worker(name), commands=self.commands)

    # --- Runner ----------------------------------------------------------------------------

    def _drive_index(self, state: SimState, device: str) -> int:
        for drive in state.drives:
            if device in (drive.serial, sg_node(drive.index), nst_node(drive.index)):
                return drive.index
        raise LookupError(device)

    def _drive_of(self, device: str) -> int:
        with self.library.transaction() as state:
            return self._drive_index(state, device)

    @contextlib.contextmanager
    def _at(self, device: str) -> Iterator[tuple[Step, SimDrive, DriveStatus]]:
        """The drive behind `device` and what it reports at this caller's time."""
        with self.library.engine.transaction(self.library.caller) as step:
            drive = mechanics.drive_row(step, self._drive_index(step.state, device))
            yield step, drive, drive_status(step, drive)

    def run(self, command: Command) -> CommandResult:
        argv = command.argv
        self.commands.append(argv)
        tool = Path(argv[0]).name
        try:
            handler = getattr(self, f"_{tool}")
        except AttributeError:
            return CommandResult(command=command, exit_code=127, stderr=f"{tool}: not found\n")
        code, out, err = handler(list(argv[1:]), command.cwd)
        return CommandResult(command=command, exit_code=code, stdout=out, stderr=err)

    def spawn(self, command: Command, log_path: Path) -> LtfsProcess:
        """`ltfs -f MOUNTPOINT -o ...`: the simulated LTFS mounts the volume; its FUSE mount and
        what it was asked to capture go into the host's mount table (the library's rows)."""
        self.commands.append(command.argv)
        args = list(command.argv[1:])
        mountpoint = next(a for a in args if not a.startswith("-") and "=" not in a)
        options: dict[str, str] = {}
        for flag, option in itertools.pairwise(args):
            if flag == "-o":
                key, _, value = option.partition("=")
                options[key] = value
        drive = self._drive_of(options["devname"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            mount = self.library.ltfs.mount(MountRequest(drive=drive, read_only="ro" in options))
        except errors.TapeError as exc:
            log_path.write_text(_ltfs_text(exc) + "LTFS14013E Cannot mount the volume.\n")
            return LtfsProcess(pid=0, log_path=log_path, exit_code=1)
        with self.library.engine.transaction(self.library.caller) as step:
            row = mechanics.drive_row(step, drive)
            cartridge = step.state.cartridges[row.cartridge or ""]
            volume = cartridge.volume
            assert volume is not None and row.ltfs is not None
            reasons = mechanics.volume_state(row, cartridge, volume).reasons
            log = "".join(text for reason, text in _AT_MOUNT if reason in reasons)
            log += (
                f"LTFS11031I Volume mounted successfully. {cartridge.label or 'NO_BARCODE'} : "
                f"Gen = {volume.generation} / (b, {volume.append_block}) -> (a, 6) / "
                f"{volume.serial}.\n"
            )
            # ltfs adds `ro` itself when the medium takes no file data at mount.
            forced = bool(reasons & _FORCED_READ_ONLY)
            row.ltfs.mountpoint = mountpoint
            row.ltfs.options = ("ro" if "ro" in options or forced else "rw", "default_permissions")
            if "capture_index" in options:
                row.ltfs.capture_to = options.get("work_directory", "")
        log_path.write_text(log)
        process = LtfsProcess(pid=mount.pid, log_path=log_path, library=self.library, drive=drive)
        self._processes[process.pid] = process
        return process

    def _mtx(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
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

    def _mt(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        device, command = args[1], args[2]
        if command == "status":
            with self._at(device) as (step, drive, _status):
                return 0, render.mt_status(step.state, drive, step.now), ""
        if command == "offline":
            try:
                self.library.drive(self._drive_of(device)).eject()
            except errors.DriveNotReady:
                return 2, "", f"{device}: No medium found\n"
            except errors.TapeError:
                # The st driver's answer to a drive that refuses to unload: EIO.
                return 2, "", f"{device}: Input/output error\n"
            return 0, "", ""
        return 1, "", f'mt: unknown command "{command}"\n'

    def _sg_inq(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        with self._at(args[-1]) as (_step, drive, _status):
            if drive.dead:
                return scsi.refused("inquiry")
            return 0, render.sg_inq(drive), ""

    def _sg_logs(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        page = args[args.index("-p") + 1].lower() if "-p" in args else ""
        with self._at(args[-1]) as (_step, drive, status):
            if drive.dead:
                return scsi.refused("log sense")
            if page in ("0x2e", "2e"):
                return 0, read_tape_alert_page(drive), ""
            if page in ("0x12", "12"):
                return 0, read_tape_alert_response_page(drive), ""
            if page in ("0x11", "11"):
                return 0, scsi.device_status_page(drive, status), ""
        return 1, "", f"sg_logs: log page {page or '(none)'} is not simulated\n"

    def _sg_turs(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        with self._at(args[-1]) as (step, drive, status):
            phase = mechanics.phase_at(drive, step.now)
            progress = (
                (step.now - phase.start) / (phase.end - phase.start)
                if phase is not None and phase.end > phase.start
                else None
            )
            return scsi.unit_ready(status, progress=progress)

    def _sg_read_attr(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        with self._at(args[-1]) as (step, drive, _status):
            if drive.dead:
                return scsi.refused("read attribute")
            if drive.cartridge is None:
                return scsi.refused("read attribute", scsi.MEDIUM_NOT_PRESENT)
            return 0, scsi.read_attributes(step.state.cartridges[drive.cartridge]), ""

    def _tapeinfo(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        with self._at(args[-1]) as (step, drive, _status):
            return 0, render.tapeinfo(step.state, drive, step.now), ""

    def _mkltfs(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
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

    def _ltfs(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        options = [args[i + 1] for i, a in enumerate(args) if a == "-o"]
        if "device_list" in options:
            with self.library.transaction() as state:
                sg_of = {d.index: sg_node(d.index) for d in state.drives}
                return 0, render.ltfs_device_list(state, sg_of), ""
        if "release_device" in options:
            device = next(o.split("=", 1)[1] for o in options if o.startswith("devname="))
            try:
                self.library.ltfs.release(self._drive_of(device))
            except errors.TapeError as exc:
                return 1, "", _ltfs_text(exc)
            return 0, "", ""
        return 16, "", "ltfs: use spawn for a mount\n"

    def _umount(self, args: list[str], _cwd: Path | None) -> tuple[int, str, str]:
        mountpoint = Path(args[-1])
        found = self.mounted(mountpoint)
        if found is None:
            return 32, "", f"umount: {mountpoint}: not mounted.\n"
        if not found.alive:
            # The dead ltfs's FUSE mount leaves the mount table; its reservation stays.
            with self.library.transaction() as state:
                stale = state.drives[found.drive].stale
                assert stale is not None
                stale.options = ()
            return 0, "", ""
        try:
            # ltfs writes the final index (and its capture) and exits; umount returns at once
            # when the `unmount_returns_early` fault says so, and ltfs finishes later.
            self.library.ltfs.unmount(self.served(found))
        except errors.TapeError as exc:
            process = self._processes.get(found.ltfs.pid)
            if process is not None:
                process.fail(_ltfs_text(exc))
        return 0, "", ""

    def _ltfsck(self, args: list[str], cwd: Path | None) -> tuple[int, str, str]:
        drive = self._drive_of(args[-1])
        if "--capture-index" in args:
            return self._capture_index(drive, cwd or Path.cwd())
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

    def _capture_index(self, drive: int, cwd: Path) -> tuple[int, str, str]:
        """`ltfsck --capture-index`: the latest index read from tape, written to the current
        directory as `<volser>-<generation>.schema` (ltfs_save_index_to_disk)."""
        try:
            index = self.library.ltfs.read_index(drive)
        except errors.TapeError as exc:
            return 8, "", _ltfs_text(exc)
        with self.library.transaction() as state:
            volume = state.cartridges[state.drives[drive].cartridge or ""].volume
            assert volume is not None
            name, serial = volume.name, volume.serial.strip() or volume.uuid
        index_xml.write_index(
            cwd / f"{serial}-{index.generation}.schema",
            index,
            volume_name=name,
            when=self.library.clock.now(),
        )
        return 0, "LTFS16022I Volume is consistent.\n", ""
