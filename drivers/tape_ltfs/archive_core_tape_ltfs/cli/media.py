"""`tape scan` and `tape retire`: the target's cartridges as its media store records them.

Both need a site's target (`--target`): the media store is the driver's record of what it
wrote where, and the leases keep a scan off drives and cartridges that jobs use.
"""

from __future__ import annotations

from typing import Any

import click

from archive_core_tape_ltfs.cli.common import driver_of, json_option, report, tape
from archive_core_tape_ltfs.cli.output import EXIT_OPERATOR


@tape.command()
@click.argument("barcodes", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every cartridge the media store records.")
@json_option
@click.pass_context
def scan(ctx: click.Context, barcodes: tuple[str, ...], every: bool) -> None:
    """Compare each cartridge's LTFS index with the media store: files missing from the tape,
    files on it the store does not know, files of another size. A cartridge that differs is
    marked read-only (nothing more is written to it) and the command exits 3."""
    if every == bool(barcodes):
        raise click.UsageError("Name the cartridges to scan, or give --all (not both).")
    driver = driver_of(ctx, "scan")
    wanted = [c.barcode for c in driver.media.all_cartridges()] if every else list(barcodes)
    found: list[dict[str, Any]] = []
    for barcode in wanted:
        drift = driver.scan(barcode)
        found.append(
            {
                "barcode": barcode,
                "volume_uuid": drift.volume_uuid,
                "generation": drift.generation,
                "agrees": drift.clean,
                "missing": list(drift.missing),
                "unknown": list(drift.unknown),
                "changed": [
                    {"path": c.path, "catalogued": c.catalogued, "on_tape": c.on_tape}
                    for c in drift.changed
                ],
                "summary": drift.describe(),
            }
        )
    report(ctx, {"cartridges": found}, *(f["summary"] for f in found))
    if not all(f["agrees"] for f in found):
        ctx.exit(EXIT_OPERATOR)


@tape.command()
@click.argument("barcode")
@click.option("--reason", required=True, help="Why, for the record (worn out, migrated...).")
@json_option
@click.pass_context
def retire(ctx: click.Context, barcode: str, reason: str) -> None:
    """Take a cartridge out of service for good: its copies are still read, nothing is ever
    written to it again."""
    cartridge = driver_of(ctx, "retire").retire(barcode, reason)
    report(
        ctx,
        {"barcode": barcode, "state": cartridge.state.value, "reason": reason},
        f"retired {barcode}: {reason}",
    )
