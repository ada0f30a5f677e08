"""`tape prepare`: format new cartridges ahead of the jobs that will write them.

A new LTO-9 cartridge spends 20 to 120 minutes in media optimisation on its first load, and it
cannot be cancelled. Run on idle drives before a job needs the cartridges, it costs the job
nothing; inside an archive job, it stalls the job for that long.
"""

from __future__ import annotations

import threading
from typing import Any

import click

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cli.common import json_option, library_of, report, tape
from archive_core_tape_ltfs.cli.moves import find_in_slot
from archive_core_tape_ltfs.cli.output import exit_status
from archive_core_tape_ltfs.model import (
    FormatRequest,
    LoadRequest,
    Slot,
    UnloadRequest,
    is_cleaning_barcode,
    volume_serial_for,
)
from archive_core_tape_ltfs.port import Library


def _checked(library: Library, barcodes: tuple[str, ...]) -> list[Slot]:
    """Every cartridge's slot, refusing the whole command before any move if one is wrong."""
    inventory = library.changer.inventory()
    slots = []
    for barcode in barcodes:
        if is_cleaning_barcode(barcode):
            raise click.UsageError(f"{barcode} is a cleaning cartridge; it is not formatted.")
        if volume_serial_for(barcode) is None:
            raise errors.BarcodeUnreadable(
                f"Cannot prepare {barcode}: an LTFS volume serial is the barcode's first 6 "
                f"characters, A-Z and 0-9 only. Relabel the cartridge.",
                barcode=barcode,
            )
        slots.append(find_in_slot(inventory, barcode))
    return slots


def _prepare_one(library: Library, drive: int, slot: Slot, name: str) -> dict[str, Any]:
    barcode = slot.barcode
    assert barcode is not None
    library.changer.load(LoadRequest(slot=slot.number, drive=drive, barcode=barcode))
    try:
        library.drive(drive).wait_ready(new_cartridge=True)
        try:
            volume = library.ltfs.format(FormatRequest(drive=drive, barcode=barcode, name=name))
            result = {"result": "formatted", "serial": volume.serial, "uuid": volume.uuid}
        except errors.AlreadyFormatted:
            # Formatting it again would destroy its files: prepared already, left as it is.
            result = {"result": "already formatted"}
    finally:
        library.changer.unload(UnloadRequest(drive=drive, slot=slot.number))
    return {"barcode": barcode, "drive": drive, **result}


def _drive_worker(
    library: Library, drive: int, work: list[Slot], name: str, done: list[dict[str, Any]]
) -> None:
    for slot in work:
        try:
            done.append(_prepare_one(library, drive, slot, name))
        except errors.TapeError as exc:
            done.append(
                {
                    "barcode": slot.barcode,
                    "drive": drive,
                    "result": "failed",
                    "error": exc.message,
                    "exit_status": exit_status(exc),
                }
            )


@tape.command()
@click.argument("barcodes", nargs=-1, required=True)
@click.option(
    "--drive",
    "drives",
    type=int,
    multiple=True,
    help="A drive to use (repeat it); default: every empty drive.",
)
@click.option("--name", default="", help="Volume name to give each cartridge.")
@json_option
@click.pass_context
def prepare(
    ctx: click.Context, barcodes: tuple[str, ...], drives: tuple[int, ...], name: str
) -> None:
    """Format new cartridges BARCODES on idle drives, in parallel, and put them back.

    Each cartridge is loaded (a new LTO-9 cartridge is optimised first: up to two hours),
    formatted with LTFS and returned to its slot; one already holding an LTFS volume is left
    as it is. Every barcode is checked before anything moves.
    """
    library = library_of(ctx)
    slots = _checked(library, barcodes)
    inventory = library.changer.inventory()
    empty = [b.index for b in inventory.drives if not b.full and b.index in library.drive_indexes()]
    use = list(drives) or empty
    busy = [d for d in use if d not in empty]
    if busy or not use:
        raise errors.DriveBusy(
            "No empty drive to prepare cartridges on."
            if not use
            else f"Drive {busy[0]} holds a cartridge; prepare uses empty drives only.",
            drive=busy[0] if busy else None,
        )
    done: list[dict[str, Any]] = []
    # One worker per drive, the cartridges dealt out in turn: on real hardware the drives
    # optimise their cartridges at the same time, and the simulator gives each worker its own
    # timeline for the same reason. Dealt, not queued: a shared queue would let whichever
    # thread runs first take them all, so the split would depend on the host's scheduling.
    threads = [
        threading.Thread(
            target=_drive_worker,
            args=(library.worker(f"prepare-drive{d}"), d, slots[n :: len(use)], name, done),
            name=f"prepare-drive{d}",
        )
        for n, d in enumerate(use)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.sort(key=lambda d: barcodes.index(d["barcode"]))
    report(
        ctx,
        {"cartridges": done},
        *(
            f"{d['barcode']} (drive {d['drive']}): {d['result']}"
            + (f": {d['error']}" if "error" in d else "")
            for d in done
        ),
    )
    failed = [d["exit_status"] for d in done if d["result"] == "failed"]
    if failed:
        ctx.exit(max(failed))
