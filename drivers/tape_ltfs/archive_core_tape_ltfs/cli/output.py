"""What the tape commands print: the JSON schema they share and the exit statuses they use."""

from __future__ import annotations

import json
from typing import Any

import click

from archive_core import ArchiveCoreError, ConfigError
from archive_core_tape_ltfs.errors import Remedy, TapeError
from archive_core_tape_ltfs.model import (
    Capacity,
    DriveBay,
    MountRecord,
    Slot,
    VolumeInfo,
    VolumeState,
    media_type_for,
)

# Bumped when a field changes meaning or goes away; new fields do not bump it.
SCHEMA = "archive-core.tape/1"

EXIT_OK = 0
EXIT_USAGE = 2  # the command line or the library config is wrong: nothing was done
EXIT_OPERATOR = 3  # a person must act: insert, clean, check or replace a cartridge
EXIT_RETRY = 4  # busy or not ready yet: the same command later may work
EXIT_HARDWARE = 5  # the library, a drive or a cartridge failed

_BY_REMEDY = {
    Remedy.OPERATOR: EXIT_OPERATOR,
    Remedy.RETRY: EXIT_RETRY,
    Remedy.HARDWARE: EXIT_HARDWARE,
}


def exit_status(error: ArchiveCoreError) -> int:
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    if isinstance(error, TapeError):
        return _BY_REMEDY[error.remedy]
    return EXIT_RETRY if error.retryable else EXIT_OPERATOR


def error_json(error: ArchiveCoreError) -> dict[str, Any]:
    found: dict[str, Any] = {"type": type(error).__name__, "message": error.message}
    for name in ("barcode", "slot", "drive", "device"):
        if (value := getattr(error, name, None)) is not None:
            found[name] = value
    if isinstance(error, TapeError):
        found["remedy"] = error.remedy.value
    if isinstance(error, ConfigError):
        found["problems"] = list(error.problems)
    found["exit_status"] = exit_status(error)
    return found


def emit(command: str, payload: dict[str, Any]) -> None:
    click.echo(json.dumps({"schema": SCHEMA, "command": command, **payload}, indent=2))


def label(full: bool, barcode: str | None) -> str:
    if not full:
        return "-"
    return barcode or "(no readable barcode)"


def media_name(barcode: str | None) -> str | None:
    media = media_type_for(barcode)
    return media.name if media else None


def slot_json(slot: Slot) -> dict[str, Any]:
    return {
        "slot": slot.number,
        "kind": slot.kind.value,
        "full": slot.full,
        "barcode": slot.barcode,
        "cleaning": slot.holds_cleaning,
        "media": media_name(slot.barcode) if slot.full else None,
    }


def bay_json(bay: DriveBay) -> dict[str, Any]:
    return {
        "drive": bay.index,
        "full": bay.full,
        "barcode": bay.barcode,
        "source_slot": bay.source_slot,
    }


def mount_json(record: MountRecord) -> dict[str, Any]:
    return {
        "mountpoint": record.mountpoint,
        "barcode": record.barcode,
        "owner_pid": record.owner_pid,
        "owner_alive": record.owner_alive,
        "ltfs_pid": record.ltfs_pid,
        "ltfs_alive": record.ltfs_alive,
        "host": record.host,
        "state": mount_state(record),
    }


def mount_state(record: MountRecord) -> str:
    if record.dead:
        return "dead"  # ltfs is gone: release the drive and check the volume
    return "orphaned" if record.orphaned else "mounted"


def mount_text(record: MountRecord) -> str:
    state = mount_state(record)
    if state == "dead":
        return f"LTFS died (pid {record.ltfs_pid}): run `archive-core tape recover`"
    owner = f"pid {record.owner_pid}" + ("" if record.owner_alive else ", exited")
    return f"mounted at {record.mountpoint} by {owner}"


def capacity_json(capacity: Capacity) -> dict[str, Any]:
    return {
        "total_bytes": capacity.total_bytes,
        "free_bytes": capacity.free_bytes,
        "used_bytes": capacity.total_bytes - capacity.free_bytes,
        "files": capacity.files,
    }


def volume_json(volume: VolumeInfo, state: VolumeState) -> dict[str, Any]:
    return {
        "serial": volume.serial,
        "uuid": volume.uuid,
        "name": volume.name,
        "generation": volume.generation,
        "mam_barcode": volume.mam_barcode,
        "read_only": state.read_only,
        "why": state.why,
        "lock_state": f"0x{state.lock_state:08x}",
    }


def size_text(nbytes: int) -> str:
    for unit, scale in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def duration_text(seconds: float) -> str:
    if seconds >= 90:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
