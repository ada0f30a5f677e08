"""Who keeps LTFS on each drive of this host: this process's own mounts, and every process's
through the shared registry, judged alive by pid and start time."""

from __future__ import annotations

import attrs

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.model import MountRecord
from archive_core_tape_ltfs.real.mount import RealMount
from archive_core_tape_ltfs.real.processes import ProcessTable
from archive_core_tape_ltfs.real.registry import MountRegistry, Registered


class Holders:
    def __init__(self, registry: MountRegistry, processes: ProcessTable) -> None:
        self.registry = registry
        self.processes = processes
        self._own: dict[int, RealMount] = {}

    def _alive(self, pid: int, started: float, host: str) -> bool:
        if host != self.registry.host:
            return True  # another host's process cannot be seen from here: assume it runs
        return self.processes.start_time(pid) == started

    def own(self, drive: int) -> RealMount | None:
        """This process's mount of `drive` while its ltfs runs."""
        mount = self._own.get(drive)
        if mount is not None and mount.process.poll() is not None:
            # Our ltfs died (crash, kill): it holds nothing now; its record stays until the
            # drive is released, so every process sees the volume needs a check.
            del self._own[drive]
            return None
        return mount

    def holder(self, drive: int) -> str | None:
        """Who keeps LTFS on `drive`, in words for an error message; None when nobody does."""
        mount = self.own(drive)
        if mount is not None:
            return f"its volume is mounted at {mount.mountpoint}"
        record = self.registry.read(drive)
        if record is None or not self._alive(record.ltfs_pid, record.ltfs_started, record.host):
            return None
        owner = f"process {record.owner_pid} on {record.host}"
        if not self._alive(record.owner_pid, record.owner_started, record.host):
            owner += ", which has exited (adopt the mount to unmount it)"
        return f"its volume is mounted at {record.mountpoint} by {owner}"

    def live(self, drive: int) -> Registered | None:
        """The record of `drive`'s mount while its ltfs runs, whoever made it."""
        record = self.registry.read(drive)
        if record is None or not self._alive(record.ltfs_pid, record.ltfs_started, record.host):
            return None
        return record

    def hold(self, mount: RealMount, *, since: float, owner_name: str) -> None:
        """Record a mount this process (its caller `owner_name`) just made."""
        owner_pid, owner_started = self.processes.this_process()
        self.registry.write(
            Registered(
                drive=mount.drive,
                mountpoint=str(mount.mountpoint),
                barcode=mount.barcode,
                owner_pid=owner_pid,
                owner_started=owner_started,
                ltfs_pid=mount.process.pid,
                ltfs_started=self.processes.start_time(mount.process.pid) or 0.0,
                host=self.registry.host,
                since=since,
                owner_name=owner_name,
            )
        )
        self._own[mount.drive] = mount

    def orphan(self, drive: int) -> Registered:
        """The record of a mount whose owner died while its ltfs lives, for adoption."""
        record = self.registry.read(drive)
        if record is None:
            raise errors.TapeError(
                f"No LTFS mount of drive {drive} is recorded on this host; there is nothing "
                f"to adopt.",
                drive=drive,
            )
        if self._alive(record.owner_pid, record.owner_started, record.host):
            raise errors.DriveHeldByLtfs(
                f"Cannot adopt the volume of drive {drive} at {record.mountpoint}: process "
                f"{record.owner_pid} on {record.host} mounted it and is still running.",
                drive=drive,
                barcode=record.barcode,
            )
        if not self._alive(record.ltfs_pid, record.ltfs_started, record.host):
            raise errors.InconsistentIndex(
                f"Cannot adopt the volume of drive {drive}: its ltfs process (pid "
                f"{record.ltfs_pid}) ended without an unmount, and so did process "
                f"{record.owner_pid} that mounted it. Release the drive, then check the "
                f"volume before mounting it again.",
                drive=drive,
                barcode=record.barcode,
            )
        return record

    def adopt(self, mount: RealMount, record: Registered, *, owner_name: str) -> None:
        owner_pid, owner_started = self.processes.this_process()
        self.registry.write(
            attrs.evolve(
                record, owner_pid=owner_pid, owner_started=owner_started, owner_name=owner_name
            )
        )
        self._own[mount.drive] = mount

    def unmounted(self, mount: RealMount, *, cleanly: bool) -> None:
        """`mount`'s ltfs has exited; a clean exit ends its record (a failed one keeps it, so
        every process sees the drive needs a release and the volume a check)."""
        self._own.pop(mount.drive, None)
        if cleanly:
            self.registry.remove(mount.drive, ltfs_pid=mount.process.pid)

    def released(self, drive: int) -> None:
        self.registry.remove(drive)

    def records(self) -> tuple[MountRecord, ...]:
        return tuple(
            MountRecord(
                drive=r.drive,
                mountpoint=r.mountpoint,
                barcode=r.barcode,
                owner_pid=r.owner_pid,
                ltfs_pid=r.ltfs_pid,
                host=r.host,
                owner_name=r.owner_name,
                owner_alive=self._alive(r.owner_pid, r.owner_started, r.host),
                ltfs_alive=self._alive(r.ltfs_pid, r.ltfs_started, r.host),
                since=r.since,
            )
            for r in self.registry.records()
        )
