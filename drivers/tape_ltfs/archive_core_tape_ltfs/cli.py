"""`archive-core tape ...`: the operator's commands for a tape library (real or simulated)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.config import LIBRARY_ENV, load_library_config
from archive_core_tape_ltfs.factory import open_library
from archive_core_tape_ltfs.model import (
    DriveBay,
    FormatRequest,
    Inventory,
    LoadRequest,
    Slot,
    TransferRequest,
    UnloadRequest,
)


def _library(ctx: click.Context):
    obj = ctx.find_object(dict)
    if "library" not in obj:
        config = load_library_config(obj.get("library_path"))
        obj["library"] = open_library(config)
    return obj["library"]


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _slot_json(slot: Slot) -> dict[str, Any]:
    return {
        "slot": slot.number,
        "kind": slot.kind.value,
        "full": slot.full,
        "barcode": slot.barcode,
        "cleaning": slot.holds_cleaning,
    }


def _bay_json(bay: DriveBay) -> dict[str, Any]:
    return {
        "drive": bay.index,
        "full": bay.full,
        "barcode": bay.barcode,
        "source_slot": bay.source_slot,
    }


def _label(full: bool, barcode: str | None) -> str:
    if not full:
        return "-"
    return barcode or "(no readable barcode)"


@click.group()
@click.option(
    "--library",
    "library_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=LIBRARY_ENV,
    show_envvar=True,
    help="Library config (TOML): backend real or simulator, devices, timeouts.",
)
@click.pass_context
def tape(ctx: click.Context, library_path: Path | None) -> None:
    """Operate the tape library: map, moves, formatting, import/export, cleaning."""
    ctx.ensure_object(dict)["library_path"] = library_path


@tape.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The library map: drives (state, cartridge, identity) and every slot."""
    library = _library(ctx)
    inventory = library.changer.inventory()
    drives = []
    for bay in inventory.drives:
        row: dict[str, Any] = _bay_json(bay)
        if bay.index in library.drive_indexes():
            drive = library.drive(bay.index)
            try:
                row["state"] = drive.status().state.value
                identity = drive.identity()
                row["serial"], row["model"] = identity.serial, identity.model
                row["alerts"] = sorted(drive.alerts().flags)
            except errors.TapeError as exc:
                row["state"] = f"error: {exc.message}"
        else:
            row["state"] = "not configured"
        drives.append(row)
    if as_json:
        _emit(
            {
                "changer": inventory.changer,
                "drives": drives,
                "slots": [_slot_json(s) for s in inventory.slots],
            }
        )
        return
    click.echo(f"Changer {inventory.changer or '(unnamed)'}")
    click.echo("Drives:")
    for row in drives:
        source = f" from slot {row['source_slot']}" if row["source_slot"] else ""
        alerts = f"  TapeAlert {row['alerts']}" if row.get("alerts") else ""
        ident = (
            f"  {row.get('model', '')} serial {row.get('serial', '')}" if "serial" in row else ""
        )
        click.echo(
            f"  {row['drive']:>3}  {row['state']:<12} {_label(row['full'], row['barcode'])}"
            f"{source}{ident}{alerts}"
        )
    _print_slots(inventory)


def _print_slots(inventory: Inventory) -> None:
    click.echo("Slots:")
    for slot in inventory.slots:
        kind = "I/E" if slot.is_import_export else "   "
        note = "  cleaning" if slot.holds_cleaning else ""
        click.echo(f"  {slot.number:>3} {kind}  {_label(slot.full, slot.barcode)}{note}")


@tape.command()
@click.option("--rescan", is_flag=True, help="Make the robot re-read every slot first (slow).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def inventory(ctx: click.Context, rescan: bool, as_json: bool) -> None:
    """Every slot and drive bay with its barcode."""
    found = _library(ctx).changer.inventory(rescan=rescan)
    if as_json:
        _emit(
            {
                "drives": [_bay_json(d) for d in found.drives],
                "slots": [_slot_json(s) for s in found.slots],
            }
        )
        return
    for bay in found.drives:
        click.echo(f"drive {bay.index:>3}: {_label(bay.full, bay.barcode)}")
    _print_slots(found)


def _find(inventory: Inventory, barcode: str) -> Slot:
    where = inventory.locate(barcode)
    if where is None:
        raise errors.CartridgeOffline(
            f"Cartridge {barcode} is not in the library. Insert it and run "
            f"`archive-core tape import`.",
            barcode=barcode,
        )
    if isinstance(where, DriveBay):
        raise errors.DestinationFull(
            f"Cartridge {barcode} is already in drive {where.index}.",
            barcode=barcode,
            drive=where.index,
        )
    return where


@tape.command()
@click.argument("barcode")
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--no-wait", is_flag=True, help="Return once the robot has moved the cartridge.")
@click.pass_context
def load(ctx: click.Context, barcode: str, drive_index: int, no_wait: bool) -> None:
    """Load the cartridge BARCODE into a drive and wait until it is ready."""
    library = _library(ctx)
    slot = _find(library.changer.inventory(), barcode)
    library.changer.load(LoadRequest(slot=slot.number, drive=drive_index, barcode=barcode))
    click.echo(f"loaded {barcode} from slot {slot.number} into drive {drive_index}")
    if not no_wait:
        state = library.drive(drive_index).wait_ready(new_cartridge=True)
        click.echo(f"drive {drive_index} is {state.state.value}")


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--slot", type=int, help="Target slot (default: the slot it came from).")
@click.pass_context
def unload(ctx: click.Context, drive_index: int, slot: int | None) -> None:
    """Return a drive's cartridge to a slot."""
    target = _library(ctx).changer.unload(UnloadRequest(drive=drive_index, slot=slot))
    click.echo(f"unloaded drive {drive_index} into slot {target}")


@tape.command(name="format")
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--name", default="", help="Volume name.")
@click.option("--force", is_flag=True, help="Format over an existing LTFS volume (destroys it).")
@click.pass_context
def format_(ctx: click.Context, drive_index: int, name: str, force: bool) -> None:
    """Format the cartridge in a drive with LTFS (serial = first 6 characters of its barcode)."""
    library = _library(ctx)
    bay = library.changer.inventory().drive(drive_index)
    if bay is None or not bay.full:
        raise errors.SourceEmpty(f"Drive {drive_index} holds no cartridge.", drive=drive_index)
    if not bay.barcode:
        raise errors.BarcodeUnreadable(
            f"The cartridge in drive {drive_index} has no readable barcode; it cannot be given "
            f"a volume serial.",
            drive=drive_index,
        )
    library.drive(drive_index).wait_ready(new_cartridge=True)
    volume = library.ltfs.format(
        FormatRequest(drive=drive_index, barcode=bay.barcode, name=name, force=force)
    )
    click.echo(f"formatted {bay.barcode}: serial {volume.serial}, uuid {volume.uuid}")


@tape.command(name="import")
@click.argument("barcodes", nargs=-1)
@click.pass_context
def import_(ctx: click.Context, barcodes: tuple[str, ...]) -> None:
    """Move cartridges from import/export slots into free storage slots (all, or BARCODES)."""
    library = _library(ctx)
    inventory = library.changer.inventory()
    waiting = [s for s in inventory.import_export_slots() if s.full]
    if barcodes:
        waiting = [s for s in waiting if s.barcode in barcodes]
        missing = set(barcodes) - {s.barcode for s in waiting}
        if missing:
            raise errors.CartridgeOffline(
                f"Not in an import/export slot: {', '.join(sorted(missing))}."
            )
    free = list(inventory.free_storage_slots())
    if len(free) < len(waiting):
        raise errors.DestinationFull(
            f"{len(waiting)} cartridges wait to be imported but only {len(free)} storage slots "
            f"are free."
        )
    for source, destination in zip(waiting, free, strict=False):
        library.changer.transfer(
            TransferRequest(source=source.number, destination=destination.number)
        )
        click.echo(
            f"imported {_label(True, source.barcode)} from slot {source.number} "
            f"into slot {destination.number}"
        )
    if not waiting:
        click.echo("no cartridge waits in an import/export slot")


@tape.command(name="export")
@click.argument("barcodes", nargs=-1, required=True)
@click.pass_context
def export_(ctx: click.Context, barcodes: tuple[str, ...]) -> None:
    """Move cartridges BARCODES to free import/export slots, for taking out of the library."""
    library = _library(ctx)
    for barcode in barcodes:
        inventory = library.changer.inventory()
        free = [s for s in inventory.import_export_slots() if not s.full]
        if not free:
            raise errors.DestinationFull(
                "Every import/export slot is full; empty them at the library first.",
                barcode=barcode,
            )
        where = inventory.locate(barcode)
        if where is None:
            raise errors.CartridgeOffline(
                f"Cartridge {barcode} is not in the library.", barcode=barcode
            )
        if isinstance(where, DriveBay):
            library.changer.unload(UnloadRequest(drive=where.index, slot=free[0].number))
        else:
            library.changer.transfer(
                TransferRequest(source=where.number, destination=free[0].number, barcode=barcode)
            )
        click.echo(f"exported {barcode} to import/export slot {free[0].number}")


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.pass_context
def clean(ctx: click.Context, drive_index: int) -> None:
    """Clean a drive with the first cleaning cartridge in a storage slot, then put it back."""
    library = _library(ctx)
    inventory = library.changer.inventory()
    bay = inventory.drive(drive_index)
    if bay is not None and bay.full:
        back = library.changer.unload(UnloadRequest(drive=drive_index))
        click.echo(f"unloaded {_label(True, bay.barcode)} from drive {drive_index} to slot {back}")
        inventory = library.changer.inventory()
    cleaners = inventory.cleaning_slots()
    if not cleaners:
        raise errors.CleaningMediaExpired(
            "No cleaning cartridge (barcode CLN...) is in a storage slot. Insert one and import "
            "it.",
            drive=drive_index,
        )
    cleaner = cleaners[0]
    library.changer.load(
        LoadRequest(slot=cleaner.number, drive=drive_index, barcode=cleaner.barcode)
    )
    try:
        library.drive(drive_index).wait_ready()
    finally:
        library.changer.unload(UnloadRequest(drive=drive_index, slot=cleaner.number))
    click.echo(f"cleaned drive {drive_index} with {cleaner.barcode} (slot {cleaner.number})")


# --- the simulator's own controls -----------------------------------------------------------


def _simulator(ctx: click.Context):
    from archive_core_tape_ltfs.sim.library import SimLibrary

    library = _library(ctx)
    if not isinstance(library, SimLibrary):
        raise click.UsageError("this library is not simulated (backend = 'real')")
    return library


@tape.group()
def sim() -> None:
    """Control the simulated library: faults, the operator's hands, the clock."""


@sim.command()
@click.argument("kind")
@click.option("--drive", "drive_index", type=int)
@click.option("--barcode")
@click.option("--slot", type=int)
@click.option("--other-slot", type=int, help="For swap: the second slot.")
@click.option("--path", help="For read_error / write_error: the file.")
@click.option("--at", "at_time", type=float, help="Fire at this simulated time (seconds).")
@click.option("--after-ops", type=int, help="Fire after this many port operations.")
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--seconds", type=float, default=0.0, help="For becoming_ready: how long.")
@click.option("--at-bytes", type=int, help="For write_error: bytes into the file.")
@click.pass_context
def fault(ctx: click.Context, kind: str, **fields: Any) -> None:
    """Inject a fault KIND (e.g. unit_attention, crash, write_error, barcode_unreadable)."""
    fields["drive"] = fields.pop("drive_index")
    _simulator(ctx).inject(kind=kind, **fields)
    click.echo(f"injected {kind}")


@sim.command()
@click.argument("barcode")
@click.option("--slot", type=int, required=True, help="Usually an import/export slot.")
@click.option("--write-protected", is_flag=True)
@click.pass_context
def insert(ctx: click.Context, barcode: str, slot: int, write_protected: bool) -> None:
    """Put a cartridge into a slot by hand (a new one, or one back from the vault)."""
    from archive_core_tape_ltfs.config import SimulatedCartridge

    _simulator(ctx).insert(
        SimulatedCartridge(barcode=barcode, slot=slot, write_protected=write_protected)
    )
    click.echo(f"inserted {barcode} into slot {slot}")


@sim.command(name="take-out")
@click.option("--slot", type=int, required=True)
@click.pass_context
def take_out(ctx: click.Context, slot: int) -> None:
    """Take the cartridge out of a slot by hand (it goes to the vault)."""
    key = _simulator(ctx).take_out(slot)
    click.echo(f"took {key} out of slot {slot}")


@sim.command()
@click.pass_context
def clock(ctx: click.Context) -> None:
    """The simulated time, in seconds since the library was created."""
    click.echo(f"{_simulator(ctx).clock.now():.1f}")
