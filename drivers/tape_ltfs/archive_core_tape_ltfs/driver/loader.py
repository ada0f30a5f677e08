"""Getting a cartridge mounted, its identity proven, and unmounted again afterwards.

Everything goes through the port. After every load, before anything is written or read, the
volume in the drive must be the one the media store knows for that barcode: the barcode the
robot read, the LTFS volume serial and the volume UUID (`MountRequest(volume_uuid=...)`). A
mismatch unloads the cartridge again and raises `IdentityMismatch` for an operator.

With a catalog, a job leases the drive and then the cartridge it loads. Nobody ever waits
for a cartridge while holding a drive (that is what could deadlock): a cartridge another job
holds is passed over by a writer, which takes another one, and waited for by a reader with no
drive leased; a writer between two files releases its cartridge (after a sync) when a
restore waits for it, so restores outrank archives on a cartridge too.

A cartridge unmounted at the end of a job stays loaded in its drive (parked) with no lease on
either: the next job that wants it mounts it where it is (cartridge selection prefers those),
one that needs the drive for another cartridge unloads it first.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading

import attrs

from archive_core import PRIORITY_ARCHIVE, PRIORITY_RESTORE, Leases, LeaseTimeout
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cleaning import clean_drive, needs_cleaning
from archive_core_tape_ltfs.driver.media import Cartridge, MediaStore
from archive_core_tape_ltfs.driver.wear import verdict
from archive_core_tape_ltfs.model import (
    DriveBay,
    FormatRequest,
    LoadRequest,
    MountRequest,
    Slot,
    UnloadRequest,
    VolumeInfo,
    cartridge_lease,
    drive_lease,
    volume_serial_for,
)
from archive_core_tape_ltfs.port import Library, Mount

logger = logging.getLogger(__name__)


class IdentityMismatch(errors.WrongCartridge):
    """The volume in the drive is not the one the media store knows for the barcode."""


@attrs.define
class Mounted:
    """A cartridge mounted in a drive for this job."""

    drive: int
    barcode: str
    mount: Mount
    volume: VolumeInfo
    release: contextlib.ExitStack = attrs.field(factory=contextlib.ExitStack)


class Loader:
    """Loads, identifies and mounts cartridges of one library; unmounts and unloads them.

    `in_use` are the drives this job already holds: they are never taken for another
    cartridge. A restore reading on several drives at once has one loader per drive thread,
    `sibling`s sharing `in_use`, so no two of them take the same drive. With `leases` (a
    site with a catalog), every drive used is leased first, so workers of other processes
    never touch it meanwhile; `priority` is this job's place among the jobs waiting for a
    drive (restores before archives, then arrival).
    """

    def __init__(
        self,
        library: Library,
        *,
        target: str,
        leases: Leases | None,
        lease_seconds: float,
        wait_seconds: float,
        purpose: str,
        store: MediaStore | None = None,
        priority: int = PRIORITY_ARCHIVE,
    ) -> None:
        self.library = library
        self._store = store
        self._target = target
        self._leases = leases
        self._ttl = lease_seconds
        self._wait = wait_seconds
        self._purpose = purpose
        self._priority = priority
        self.in_use: set[int] = set()
        self._choosing = threading.Lock()  # a drive is chosen and claimed by one sibling at a time

    def sibling(self, library: Library) -> Loader:
        """This job's loader for another caller of the same library (one drive's thread of a
        restore): the drives the job holds, and the choosing of them, are shared."""
        other = copy.copy(self)  # shallow: `in_use` and `_choosing` are the same objects
        other.library = library
        return other

    # --- mounting ---------------------------------------------------------------------------

    def mount(
        self,
        cartridge: Cartridge,
        *,
        read_only: bool = False,
        prefer: int | None = None,
        waits: bool | None = None,
    ) -> Mounted:
        """The known cartridge mounted, its identity checked against the media store; loaded
        into drive `prefer` when that one is free (a restore plan's drive). When another job
        holds the cartridge, a reader waits for it (`waits`, default `read_only`) and a
        writer is refused with DriveBusy."""
        drive, stack = self._into_drive(
            cartridge.barcode,
            new=False,
            prefer=prefer,
            waits=read_only if waits is None else waits,
        )
        try:
            mount = self.library.ltfs.mount(
                MountRequest(
                    drive=drive,
                    barcode=cartridge.barcode,
                    read_only=read_only,
                    volume_uuid=cartridge.volume_uuid or None,
                )
            )
        except errors.WrongCartridge as exc:
            self._give_back(drive, stack)
            raise IdentityMismatch(
                f"Cartridge {cartridge.barcode} should hold LTFS volume {cartridge.volume_uuid} "
                f"(serial {cartridge.volume_serial}), but the drive found another volume: "
                f"{exc.message} It was unloaded without being used; check the barcode labels "
                f"of the library's cartridges.",
                barcode=cartridge.barcode,
                drive=drive,
            ) from exc
        except BaseException:
            self._give_back(drive, stack)
            raise
        mounted = self._identified(drive, cartridge.barcode, mount, stack)
        if cartridge.volume_uuid and mounted.volume.uuid != cartridge.volume_uuid:
            found = mounted.volume
            self.release(mounted, unload=True)
            raise IdentityMismatch(
                f"Cartridge {cartridge.barcode} should hold LTFS volume {cartridge.volume_uuid} "
                f"(serial {cartridge.volume_serial}), but holds volume {found.uuid} (serial "
                f"{found.serial}). It was unloaded without being used.",
                barcode=cartridge.barcode,
                drive=drive,
            )
        return mounted

    def open_unrecorded(self, barcode: str, *, name: str, may_format: bool) -> Mounted:
        """A cartridge the media store has no row for, mounted: the LTFS volume on it, or,
        when it is blank and `may_format` (a scratch cartridge), a new volume named `name`.
        A failure records nothing and leaves the cartridge back in its slot."""
        drive, stack = self._into_drive(barcode, new=may_format)
        try:
            try:
                mount = self.library.ltfs.mount(MountRequest(drive=drive, barcode=barcode))
            except errors.UnformattedTape:
                if not may_format:
                    raise
                info = self.library.ltfs.format(
                    FormatRequest(drive=drive, barcode=barcode, name=name)
                )
                mount = self.library.ltfs.mount(
                    MountRequest(drive=drive, barcode=barcode, volume_uuid=info.uuid)
                )
        except errors.WrongCartridge as exc:
            self._give_back(drive, stack)
            raise IdentityMismatch(
                f"{exc.message} Cartridge {barcode} was unloaded without being used; check its "
                f"barcode label.",
                barcode=barcode,
                drive=drive,
            ) from exc
        except BaseException:
            self._give_back(drive, stack)
            raise
        return self._identified(drive, barcode, mount, stack)

    def _identified(
        self, drive: int, barcode: str, mount: Mount, stack: contextlib.ExitStack
    ) -> Mounted:
        """The mount, once its volume serial and cartridge memory agree with the barcode."""
        mounted = Mounted(
            drive=drive, barcode=barcode, mount=mount, volume=mount.volume(), release=stack
        )
        serial = volume_serial_for(barcode)
        mam = mounted.volume.mam_barcode
        if mounted.volume.serial != serial or (mam and mam != barcode):
            found = mounted.volume
            self.release(mounted, unload=True)
            raise IdentityMismatch(
                f"The cartridge labelled {barcode} holds LTFS volume serial {found.serial} "
                f"(cartridge memory: {mam or 'no barcode'}), not {serial}. It was unloaded "
                f"without being used; check its barcode label.",
                barcode=barcode,
                drive=drive,
            )
        return mounted

    def release(self, mounted: Mounted, *, unload: bool = False) -> None:
        """Unmount (waiting for LTFS to write its index) and free the drive. The cartridge
        stays loaded in it (parked), so the next job that wants it, an archive to the same
        pool or a restore, is spared the exchange; a job that needs the drive for another
        cartridge unloads it then. `unload`: put it back in its slot now (a cartridge that
        failed its identity check or cannot be written)."""
        try:
            self.library.ltfs.unmount(mounted.mount)
            if unload:
                self._unload(mounted.drive)
        finally:
            self.in_use.discard(mounted.drive)
            mounted.release.close()

    # --- drives -----------------------------------------------------------------------------

    def _into_drive(
        self, barcode: str, *, new: bool, prefer: int | None = None, waits: bool = False
    ) -> tuple[int, contextlib.ExitStack]:
        """The drive the cartridge is now loaded and ready in, the drive and the cartridge
        leased to this job. A cartridge another job holds is waited for (`waits`, a reader)
        with no drive leased meanwhile, or refused with DriveBusy (a writer takes another)."""
        cartridge = contextlib.ExitStack()  # its lease, when it had to be waited for
        waited = False
        try:
            while True:
                with self._choosing:
                    claimed = self._claim(barcode, prefer, waits=waits, have_cartridge=waited)
                if claimed is not None:
                    break
                logger.info(
                    "%s: waiting for cartridge %s, which another job is using",
                    self._purpose,
                    barcode,
                )
                cartridge.enter_context(self._cartridge_lease(barcode, wait=self._wait))
                waited = True
        except BaseException:
            cartridge.close()
            raise
        drive, stack, slot, occupied = claimed
        stack.enter_context(cartridge)
        try:
            if needs_cleaning(self.library, drive):
                unloaded_to = self._clean(drive)
                if slot is None:  # it was our cartridge in the drive: load it again
                    slot = unloaded_to
                occupied = False
            if slot is not None:
                if occupied:
                    self._unload(drive)
                self.library.changer.load(LoadRequest(slot=slot, drive=drive, barcode=barcode))
            self.library.drive(drive).wait_ready(new_cartridge=new)
        except BaseException:
            self._give_back(drive, stack)
            raise
        return drive, stack

    def _claim(
        self, barcode: str, prefer: int | None, *, waits: bool, have_cartridge: bool
    ) -> tuple[int, contextlib.ExitStack, int | None, bool] | None:
        """The drive for the cartridge, leased (and the cartridge too, unless this job has its
        lease already) and in `in_use`; the slot to load it from (None when it is in that
        drive already) and whether the drive holds another cartridge. None when another job
        has the cartridge and this one `waits` for it."""
        inventory = self.library.changer.inventory()
        found = inventory.locate(barcode)
        if found is None or (isinstance(found, Slot) and found.is_import_export):
            raise errors.CartridgeOffline(
                f"Cartridge {barcode} is not in the library (vaulted, or waiting in an "
                f"import/export slot). Insert and import it.",
                barcode=barcode,
            )
        failing = self._failing_drives()
        if (
            isinstance(found, DriveBay)
            and found.index in failing
            and found.index not in self.in_use
        ):
            # Left in a drive that is failing: read or write it in another one.
            self._unload(found.index)
            inventory = self.library.changer.inventory()
            found = inventory.locate(barcode)
        taken = self._live_mounts() | self.in_use | set(failing)
        if isinstance(found, DriveBay):
            if found.index in taken:
                another = found.index not in self.in_use and found.index not in failing
                if waits and another and self._leases is not None and not have_cartridge:
                    return None  # wait for its lease: its job releases it soon
                raise errors.DriveBusy(
                    f"Cartridge {barcode} is mounted in drive {found.index} by another job.",
                    barcode=barcode,
                    drive=found.index,
                )
            drive, stack = found.index, self._lease(found.index)
            slot, occupied = None, False
        else:
            # The preferred drive, then an empty one, else one holding a cartridge nobody uses
            # (unloaded first).
            free = sorted(
                (bay.index != prefer, bay.full, bay.index)
                for bay in inventory.drives
                if bay.index not in taken
            )
            if not free:
                raise errors.DriveBusy(
                    f"No drive is free to load cartridge {barcode}: every drive is in use"
                    + "".join(f"; {why}" for why in failing.values())
                    + ".",
                    barcode=barcode,
                )
            drive, stack = self._lease_any([index for _, _full, index in free])
            slot, occupied = found.number, inventory.drive(drive).full  # type: ignore[union-attr]
        if self._leases is not None and not have_cartridge:
            try:
                stack.enter_context(self._cartridge_lease(barcode, wait=0))
            except LeaseTimeout as exc:
                stack.close()
                if waits:
                    return None
                raise errors.DriveBusy(
                    f"Cartridge {barcode} is in use by another job: {exc.message}",
                    barcode=barcode,
                ) from exc
        self.in_use.add(drive)
        return drive, stack, slot, occupied

    def _failing_drives(self) -> dict[int, str]:
        """Drives no job uses while their recent media errors say they are failing."""
        if self._store is None:
            return {}
        return verdict(self._store, now=self.library.clock.now()).drives_out_of_service

    def _clean(self, drive: int) -> int | None:
        """Clean a drive that asks for it before anything is written or read with it (a dirty
        head turns writes into permanent errors, ltfs#387). Returns the slot the cartridge
        that was in the drive went to, if there was one."""
        try:
            done = clean_drive(self.library, drive)
        except errors.CleaningMediaExpired as exc:
            raise errors.NeedsCleaning(
                f"Drive {drive} asks to be cleaned and cannot be: {exc.message} Nothing is "
                f"written with it until it is cleaned.",
                drive=drive,
            ) from exc
        logger.info(
            "%s: cleaned drive %d with %s before using it", self._purpose, drive, done.cleaned_with
        )
        return done.unloaded_to

    def _live_mounts(self) -> set[int]:
        """Drives an LTFS mount takes: one a live process owns, or one whose ltfs died (it
        needs `archive-core tape recover`). A mount whose owner died (a worker killed
        mid-job) is adopted and unmounted instead, so LTFS writes its index and the drive is
        free again."""
        live = set()
        for record in self.library.ltfs.mounts():
            if record.orphaned and record.drive not in self.in_use:
                with self._lease(record.drive):
                    try:
                        self.library.ltfs.unmount(self.library.ltfs.adopt(record.drive))
                    except errors.TapeError as exc:
                        logger.warning(
                            "%s: the mount of drive %d left by dead process %d could not be "
                            "taken over: %s",
                            self._purpose,
                            record.drive,
                            record.owner_pid,
                            exc.message,
                        )
                        live.add(record.drive)
                    else:
                        logger.info(
                            "%s: unmounted %s in drive %d, left mounted by dead process %d (%s)",
                            self._purpose,
                            record.barcode,
                            record.drive,
                            record.owner_pid,
                            record.owner_name,
                        )
                continue
            if record.ltfs_alive or record.dead:
                live.add(record.drive)
        return live

    def _give_back(self, drive: int, stack: contextlib.ExitStack) -> None:
        """After a failure: the cartridge back in its slot, the drive and its lease free."""
        try:
            self._unload(drive)
        finally:
            self.in_use.discard(drive)
            stack.close()

    def _unload(self, drive: int) -> None:
        with contextlib.suppress(errors.SourceEmpty):
            self.library.changer.unload(UnloadRequest(drive=drive))

    def _lease(self, drive: int, *, wait: float | None = None) -> contextlib.ExitStack:
        """The drive's lease, held until the stack closes (none without a catalog)."""
        stack = contextlib.ExitStack()
        if self._leases is not None:
            stack.enter_context(
                self._leases.hold(
                    drive_lease(self._target, drive),
                    ttl=self._ttl,
                    wait=self._wait if wait is None else wait,
                    purpose=self._purpose,
                    priority=self._priority,
                )
            )
        return stack

    def _cartridge_lease(self, barcode: str, *, wait: float) -> contextlib.AbstractContextManager:
        assert self._leases is not None
        return self._leases.hold(
            cartridge_lease(self._target, barcode),
            ttl=self._ttl,
            wait=wait,
            purpose=self._purpose,
            priority=self._priority,
        )

    def restore_waits_for(self, mounted: Mounted) -> bool:
        """Whether a restore waits for the cartridge this job has mounted: a writer then
        syncs and releases it after its current file."""
        if self._leases is None:
            return False
        waiting = self._leases.waiting(cartridge_lease(self._target, mounted.barcode))
        return any(w.priority >= PRIORITY_RESTORE for w in waiting)

    def _lease_any(self, drives: list[int]) -> tuple[int, contextlib.ExitStack]:
        """The first of `drives` no other worker holds; else wait for the first."""
        if self._leases is not None:
            for drive in drives:
                with contextlib.suppress(LeaseTimeout):
                    return drive, self._lease(drive, wait=0)
        return drives[0], self._lease(drives[0])
