"""Moving cartridges: `load`, `unload`, `import`, `export`, `clean`."""

from __future__ import annotations

import contextlib

import click

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cleaning import clean_drive
from archive_core_tape_ltfs.cli.common import (
    cartridge_leased,
    drive_leased,
    driver_of,
    json_option,
    library_of,
    report,
    tape,
    uses_drive,
)
from archive_core_tape_ltfs.cli.ledger import ExportLedger
from archive_core_tape_ltfs.cli.output import EXIT_OPERATOR, duration_text, label
from archive_core_tape_ltfs.model import (
    DriveBay,
    DriveState,
    Inventory,
    LoadRequest,
    Slot,
    TransferRequest,
    UnloadRequest,
    is_cleaning_barcode,
)
from archive_core_tape_ltfs.port import Library


def find_in_slot(inventory: Inventory, barcode: str) -> Slot:
    where = inventory.locate(barcode)
    if where is None:
        raise errors.CartridgeOffline(
            f"Cartridge {barcode} is not in the library. Insert it and run "
            f"`archive-core tape import {barcode}`.",
            barcode=barcode,
        )
    if isinstance(where, DriveBay):
        raise errors.DestinationFull(
            f"Cartridge {barcode} is already in drive {where.index}.",
            barcode=barcode,
            drive=where.index,
        )
    return where


def _refuse_cleaning(barcode: str | None, slot: int) -> None:
    if is_cleaning_barcode(barcode):
        raise click.UsageError(
            f"{barcode} in slot {slot} is a cleaning cartridge; clean a drive with "
            f"`archive-core tape clean --drive N`, which puts it back afterwards."
        )


def wait_until_ready(library: Library, drive: int) -> str:
    """Wait for a loaded cartridge, saying first how long a calibration will take."""
    status = library.drive(drive).status()
    if status.state is DriveState.CALIBRATING:
        left = f" (about {duration_text(status.seconds_left)} left)" if status.seconds_left else ""
        click.echo(
            f"drive {drive} is optimising a new cartridge{left}; this cannot be cancelled", err=True
        )
    # The long timeout is only an upper bound: a drive that is merely loading is ready in
    # seconds, and one that will calibrate a new cartridge may not say so before it starts.
    return library.drive(drive).wait_ready(new_cartridge=True).state.value


@tape.command()
@click.argument("barcode", required=False)
@click.option("--slot", type=int, help="Load from this slot (e.g. a cartridge without label).")
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--no-wait", is_flag=True, help="Return once the robot has moved the cartridge.")
@json_option
@click.pass_context
@uses_drive
def load(
    ctx: click.Context, barcode: str | None, slot: int | None, drive_index: int, no_wait: bool
) -> None:
    """Load the cartridge BARCODE (or the one in --slot) into a drive and wait until ready."""
    if (barcode is None) == (slot is None):
        raise click.UsageError("Name the cartridge: give a BARCODE or --slot S, not both.")
    library = library_of(ctx)
    inventory = library.changer.inventory()
    if barcode is not None:
        source = find_in_slot(inventory, barcode)
    else:
        assert slot is not None
        found = inventory.slot(slot)
        if found is None or not found.full:
            raise errors.SourceEmpty(f"Slot {slot} holds no cartridge.", slot=slot)
        source = found
    _refuse_cleaning(source.barcode, source.number)
    library.changer.load(LoadRequest(slot=source.number, drive=drive_index, barcode=source.barcode))
    name = label(True, source.barcode)
    lines = [f"loaded {name} from slot {source.number} into drive {drive_index}"]
    state = None
    if not no_wait:
        state = wait_until_ready(library, drive_index)
        lines.append(f"drive {drive_index} is {state}")
    report(
        ctx,
        {"barcode": source.barcode, "slot": source.number, "drive": drive_index, "state": state},
        *lines,
    )


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@click.option("--slot", type=int, help="Target slot (default: the slot it came from).")
@json_option
@click.pass_context
@uses_drive
def unload(ctx: click.Context, drive_index: int, slot: int | None) -> None:
    """Return a drive's cartridge to a slot."""
    target = library_of(ctx).changer.unload(UnloadRequest(drive=drive_index, slot=slot))
    report(
        ctx,
        {"drive": drive_index, "slot": target},
        f"unloaded drive {drive_index} into slot {target}",
    )


@tape.command(name="import")
@click.argument("barcodes", nargs=-1)
@json_option
@click.pass_context
def import_(ctx: click.Context, barcodes: tuple[str, ...]) -> None:
    """Move cartridges from import/export slots into free storage slots.

    Without BARCODES every waiting cartridge is imported except those this library exported
    (they wait to be carried to the vault); name one to bring it back.
    """
    library = library_of(ctx)
    ledger = ExportLedger(library.work_directory)
    inventory = library.changer.inventory()
    waiting = [s for s in inventory.import_export_slots() if s.full]
    skipped: list[Slot] = []
    if barcodes:
        missing = set(barcodes) - {s.barcode for s in waiting}
        if missing:
            raise errors.CartridgeOffline(
                f"Not in an import/export slot: {', '.join(sorted(missing))}. Put the "
                f"cartridges into the library's mail slots first."
            )
        waiting = [s for s in waiting if s.barcode in barcodes]
    else:
        exported = ledger.barcodes()
        skipped = [s for s in waiting if s.barcode in exported]
        waiting = [s for s in waiting if s.barcode not in exported]
    free = list(inventory.free_storage_slots())
    if len(free) < len(waiting):
        raise errors.DestinationFull(
            f"{len(waiting)} cartridges wait to be imported but only {len(free)} storage slots "
            f"are free. Export cartridges first."
        )
    moved = []
    for source, destination in zip(waiting, free, strict=False):
        library.changer.transfer(
            TransferRequest(source=source.number, destination=destination.number)
        )
        if source.barcode:
            ledger.discard(source.barcode)
        moved.append(
            {"barcode": source.barcode, "from_slot": source.number, "slot": destination.number}
        )
    lines = [
        f"imported {label(True, m['barcode'])} from slot {m['from_slot']} into slot {m['slot']}"
        for m in moved
    ]
    lines += [
        f"left {s.barcode} in slot {s.number}: this library exported it; name it to import it"
        for s in skipped
    ]
    if not moved and not skipped:
        lines.append("no cartridge waits in an import/export slot")
    report(
        ctx,
        {"imported": moved, "skipped": [{"barcode": s.barcode, "slot": s.number} for s in skipped]},
        *lines,
    )


@tape.command(name="export")
@click.argument("barcodes", nargs=-1)
@click.option("--pool", help="Every cartridge of this pool inside the library (needs --target).")
@json_option
@click.pass_context
def export_(ctx: click.Context, barcodes: tuple[str, ...], pool: str | None) -> None:
    """Move cartridges BARCODES (or a whole --pool) to free import/export slots, for taking
    out of the library; import skips them from then on unless named. On a site's target a
    cartridge or drive a job uses is refused. When the import/export slots run out, what did
    not fit is named (exit 3): empty the slots and run the command again."""
    if bool(barcodes) == (pool is not None):
        raise click.UsageError("Name the cartridges to export, or give --pool (not both).")
    library = library_of(ctx)
    inventory = library.changer.inventory()
    wanted = list(barcodes) if pool is None else _pool_inside(ctx, pool, inventory)
    ledger = ExportLedger(library.work_directory)
    moved = []
    for n, barcode in enumerate(wanted):
        inventory = library.changer.inventory()
        free = [s for s in inventory.import_export_slots() if not s.full]
        if not free:
            report(
                ctx,
                {"exported": moved, "left": wanted[n:]},
                *(f"exported {m['barcode']} to import/export slot {m['slot']}" for m in moved),
                f"every import/export slot is full: empty them at the library and run again "
                f"for {', '.join(wanted[n:])}",
            )
            ctx.exit(EXIT_OPERATOR)
        where = inventory.locate(barcode)
        if where is None:
            raise errors.CartridgeOffline(
                f"Cartridge {barcode} is not in the library.", barcode=barcode
            )
        if isinstance(where, Slot) and where.is_import_export:
            raise errors.CartridgeOffline(
                f"Cartridge {barcode} already waits in import/export slot {where.number}.",
                barcode=barcode,
                slot=where.number,
            )
        with contextlib.ExitStack() as leased:
            if isinstance(where, DriveBay):  # drive, then cartridge: the order jobs take
                leased.enter_context(drive_leased(ctx, where.index))
            leased.enter_context(cartridge_leased(ctx, barcode))
            if isinstance(where, DriveBay):
                library.changer.unload(UnloadRequest(drive=where.index, slot=free[0].number))
            else:
                library.changer.transfer(
                    TransferRequest(
                        source=where.number, destination=free[0].number, barcode=barcode
                    )
                )
        ledger.add(barcode)
        moved.append({"barcode": barcode, "slot": free[0].number})
    report(
        ctx,
        {"exported": moved, "left": []},
        *(f"exported {m['barcode']} to import/export slot {m['slot']}" for m in moved),
    )


def _pool_inside(ctx: click.Context, pool: str, inventory: Inventory) -> list[str]:
    """The pool's recorded cartridges in a storage slot or a drive."""
    recorded = driver_of(ctx, "export --pool").media.all_cartridges()
    members = [c.barcode for c in recorded if c.pool == pool]
    if not members:
        raise click.UsageError(f"The media store records no cartridge of pool {pool!r}.")
    inside = []
    for barcode in members:
        where = inventory.locate(barcode)
        if isinstance(where, DriveBay) or (isinstance(where, Slot) and not where.is_import_export):
            inside.append(barcode)
    return inside


@tape.command()
@click.option("--drive", "drive_index", type=int, default=0, show_default=True)
@json_option
@click.pass_context
@uses_drive
def clean(ctx: click.Context, drive_index: int) -> None:
    """Clean a drive with the first usable cleaning cartridge in a storage slot, then put it
    back (a used-up one goes to an import/export slot for you to replace)."""
    done = clean_drive(library_of(ctx), drive_index)
    lines = []
    if done.unloaded_to is not None:
        lines.append(
            f"unloaded {label(True, done.unloaded)} from drive {drive_index} to slot "
            f"{done.unloaded_to}"
        )
    lines += [f"retired used-up cleaning cartridge {b}" for b in done.retired]
    lines.append(f"cleaned drive {drive_index} with {done.cleaned_with} (slot {done.slot})")
    report(
        ctx,
        {
            "drive": drive_index,
            "cleaning_cartridge": done.cleaned_with,
            "slot": done.slot,
            "retired": list(done.retired),
        },
        *lines,
    )
