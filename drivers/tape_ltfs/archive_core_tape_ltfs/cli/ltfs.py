"""LTFS on a loaded cartridge: `format`, `mount`, `unmount`, `check`, `release`, `recover`."""

from __future__ import annotations

from typing import Any

import click

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cli.common import json_option, library_of, report, tape, uses_drive
from archive_core_tape_ltfs.cli.moves import wait_until_ready
from archive_core_tape_ltfs.cli.output import EXIT_HARDWARE, EXIT_OPERATOR, mount_json
from archive_core_tape_ltfs.model import (
    CapturedIndex,
    CheckMode,
    CheckRequest,
    CheckResult,
    DriveBay,
    FormatRequest,
    MountRecord,
    MountRequest,
    is_cleaning_barcode,
    media_type_for,
    volume_serial_for,
)
from archive_core_tape_ltfs.port import Library


def _loaded(library: Library, drive: int) -> DriveBay:
    bay = library.changer.inventory().drive(drive)
    if bay is None or not bay.full:
        raise errors.SourceEmpty(
            f"Drive {drive} holds no cartridge; load one with `archive-core tape load`.",
            drive=drive,
        )
    return bay


def _record(library: Library, drive: int) -> MountRecord | None:
    return next((r for r in library.ltfs.mounts() if r.drive == drive), None)


def _check_format_target(library: Library, drive: int, bay: DriveBay) -> str:
    """Everything that can refuse a format is checked before waiting on the drive: a new LTO-9
    cartridge's media optimisation takes 40 minutes or more and cannot be cancelled."""
    barcode = bay.barcode
    if not barcode:
        raise errors.BarcodeUnreadable(
            f"The cartridge in drive {drive} has no readable barcode; it cannot be given a "
            f"volume serial. Label it, or unload it.",
            drive=drive,
        )
    if is_cleaning_barcode(barcode):
        raise errors.UnformattedTape(
            f"Cannot format {barcode}: it is a cleaning cartridge.", barcode=barcode, drive=drive
        )
    if volume_serial_for(barcode) is None:
        raise errors.BarcodeUnreadable(
            f"Cannot format {barcode}: an LTFS volume serial is the barcode's first 6 "
            f"characters, A-Z and 0-9 only. Relabel the cartridge.",
            barcode=barcode,
            drive=drive,
        )
    media = media_type_for(barcode)
    generation = library.drive(drive).identity().generation
    if (
        media is not None
        and generation is not None
        and media.generation
        not in (
            generation,
            generation - 1,
        )
    ):
        raise errors.MediaError(
            f"Cannot format {barcode}: an {media.name} cartridge cannot be written in the "
            f"LTO-{generation} drive {drive}.",
            barcode=barcode,
            drive=drive,
        )
    if library.drive(drive).status().write_protected:
        raise errors.WriteProtected(
            f"Cannot format {barcode}: its write-protect tab is set. Unload it and slide the "
            f"tab if it really is a scratch cartridge.",
            barcode=barcode,
            drive=drive,
        )
    return barcode


@tape.command(name="format")
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--name", default="", help="Volume name.")
@click.option("--force", is_flag=True, help="Format over an existing LTFS volume (destroys it).")
@json_option
@click.pass_context
@uses_drive
def format_(ctx: click.Context, drive_index: int, name: str, force: bool) -> None:
    """Format the cartridge in a drive with LTFS (serial = first 6 characters of its barcode)."""
    library = library_of(ctx)
    barcode = _check_format_target(library, drive_index, _loaded(library, drive_index))
    wait_until_ready(library, drive_index)
    volume = library.ltfs.format(
        FormatRequest(drive=drive_index, barcode=barcode, name=name, force=force)
    )
    report(
        ctx,
        {"drive": drive_index, "barcode": barcode, "serial": volume.serial, "uuid": volume.uuid},
        f"formatted {barcode}: serial {volume.serial}, uuid {volume.uuid}",
    )


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--read-only", is_flag=True, help="Mount without allowing writes.")
@json_option
@click.pass_context
@uses_drive
def mount(ctx: click.Context, drive_index: int, read_only: bool) -> None:
    """Mount the LTFS volume in a drive; it stays mounted until `unmount`."""
    library = library_of(ctx)
    bay = _loaded(library, drive_index)
    wait_until_ready(library, drive_index)
    mounted = library.ltfs.mount(
        MountRequest(drive=drive_index, barcode=bay.barcode, read_only=read_only)
    )
    volume, state = mounted.volume(), mounted.state()
    record = _record(library, drive_index)
    where = f" at {record.mountpoint}" if record else ""
    report(
        ctx,
        {
            "drive": drive_index,
            "barcode": bay.barcode,
            "serial": volume.serial,
            "uuid": volume.uuid,
            "read_only": state.read_only,
            "why": state.why,
            "mount": mount_json(record) if record else None,
        },
        f"mounted {bay.barcode} (serial {volume.serial}) in drive {drive_index}{where}"
        + (f", read-only: {state.why}" if state.read_only else ""),
        f"it stays mounted: `archive-core tape unmount --drive {drive_index}` when done",
    )


def _unmount(library: Library, drive: int, *, eject: bool) -> CapturedIndex | None:
    """Take over the mount of `drive` (its owner, often an earlier command, has exited) and
    unmount it, waiting for LTFS to write its index."""
    return library.ltfs.unmount(library.ltfs.adopt(drive), eject=eject)


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--eject", is_flag=True, help="Also rewind and unthread the cartridge.")
@json_option
@click.pass_context
@uses_drive
def unmount(ctx: click.Context, drive_index: int, eject: bool) -> None:
    """Unmount a drive's LTFS volume once its owner is gone; waits until the index is on tape."""
    library = library_of(ctx)
    if _record(library, drive_index) is None:
        raise errors.SourceEmpty(f"Drive {drive_index} has no LTFS mount.", drive=drive_index)
    index = _unmount(library, drive_index, eject=eject)
    files = len(index.files) if index else None
    report(
        ctx,
        {"drive": drive_index, "generation": index.generation if index else None, "files": files},
        f"unmounted drive {drive_index}"
        + (f": index generation {index.generation}, {files} files" if index else ""),
    )


_MODES = {mode.value: mode for mode in CheckMode}


def _check_json(result: CheckResult) -> dict[str, Any]:
    return {
        "exit_code": result.exit_code,
        "clean": result.clean,
        "corrected": result.corrected,
        "uncorrected": result.uncorrected,
        "generations": list(result.generations),
        "output": result.output,
    }


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(sorted(_MODES)),
    default="verify",
    show_default=True,
    help="verify: check and fix; salvage: keep data after the last index; deep: a missing end "
    "of data; list-rollback / rollback: index generations.",
)
@click.option("--generation", type=int, help="For --mode rollback: the generation to go back to.")
@json_option
@click.pass_context
@uses_drive
def check(ctx: click.Context, drive_index: int, mode: str, generation: int | None) -> None:
    """Check (ltfsck) the unmounted LTFS volume in a drive. Exit 5 if errors remain."""
    if (mode == "rollback") != (generation is not None):
        raise click.UsageError("--generation goes with --mode rollback, and only with it.")
    library = library_of(ctx)
    _loaded(library, drive_index)
    wait_until_ready(library, drive_index)
    result = library.ltfs.check(
        CheckRequest(drive=drive_index, mode=_MODES[mode], generation=generation)
    )
    verdict = (
        "errors remain: copy its files out and reformat it"
        if result.uncorrected
        else "corrected"
        if result.corrected
        else "clean"
    )
    report(
        ctx,
        {"drive": drive_index, "mode": mode, **_check_json(result)},
        f"checked drive {drive_index} ({mode}): {verdict}",
        *(f"  generation {g}" for g in result.generations),
    )
    if result.uncorrected:
        ctx.exit(EXIT_HARDWARE)


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@json_option
@click.pass_context
@uses_drive
def release(ctx: click.Context, drive_index: int) -> None:
    """Clear the SCSI reservation a crashed LTFS process left on a drive."""
    library_of(ctx).ltfs.release(drive_index)
    report(ctx, {"drive": drive_index}, f"released drive {drive_index}")


def _recover_one(library: Library, record: MountRecord) -> dict[str, Any]:
    found: dict[str, Any] = {"drive": record.drive, "barcode": record.barcode}
    found["found"] = mount_json(record)
    actions: list[str] = []
    found["actions"] = actions
    if record.owner_alive and record.ltfs_alive:
        found["result"] = "in use"
        actions.append(f"left alone: pid {record.owner_pid} still uses it")
        return found
    if record.ltfs_alive:
        index = _unmount(library, record.drive, eject=False)
        actions.append("unmounted the orphaned mount")
        found["result"] = "recovered"
        if index is not None:
            found["files"] = len(index.files)
        return found
    library.ltfs.release(record.drive)
    actions.append("released the drive")
    result = library.ltfs.check(CheckRequest(drive=record.drive, mode=CheckMode.VERIFY))
    actions.append(f"checked the volume (ltfsck exit {result.exit_code})")
    found["check"] = _check_json(result)
    found["result"] = "needs operator" if result.uncorrected else "recovered"
    return found


@tape.command()
@json_option
@click.pass_context
def recover(ctx: click.Context) -> None:
    """After a crash: unmount leftover mounts, release drives whose LTFS died, check them."""
    library = library_of(ctx)
    done = [_recover_one(library, record) for record in library.ltfs.mounts()]
    lines = [
        f"drive {d['drive']} ({d['barcode'] or 'no barcode'}): {d['result']}: "
        + "; ".join(d["actions"])
        for d in done
    ] or ["no leftover LTFS mount on this host"]
    report(ctx, {"drives": done}, *lines)
    if any(d["result"] == "needs operator" for d in done):
        ctx.exit(EXIT_OPERATOR)
