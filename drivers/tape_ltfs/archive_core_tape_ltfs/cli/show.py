"""What the library holds: `status` (the map with drive and mount state), `inventory`,
`volumes` (one row per cartridge)."""

from __future__ import annotations

from typing import Any

import click

from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cli.common import (
    driver_of,
    json_option,
    library_of,
    report,
    tape,
    wants_json,
)
from archive_core_tape_ltfs.cli.ledger import ExportLedger
from archive_core_tape_ltfs.cli.output import (
    bay_json,
    capacity_json,
    duration_text,
    label,
    media_name,
    mount_json,
    mount_text,
    size_text,
    slot_json,
    volume_json,
)
from archive_core_tape_ltfs.model import DriveBay, Inventory, MountRecord, is_cleaning_barcode
from archive_core_tape_ltfs.port import Library


def _mounted_volume(library: Library, record: MountRecord) -> dict[str, Any]:
    """Volume, live state and usage of a mount, read through a query-only view of it."""
    view = library.ltfs.view(record.drive)
    return {
        "volume": volume_json(view.volume(), view.state()),
        "capacity": capacity_json(view.capacity()),
    }


def _drive_row(library: Library, bay: DriveBay, record: MountRecord | None) -> dict[str, Any]:
    row: dict[str, Any] = bay_json(bay)
    row["media"] = media_name(bay.barcode) if bay.full else None
    if bay.index not in library.drive_indexes():
        row["state"] = "not configured"
        return row
    drive = library.drive(bay.index)
    # One failing query must not hide the rest of the map: each part reports its own error.
    try:
        status = drive.status()
        row["state"] = status.state.value
        row["seconds_left"] = status.seconds_left
        row["write_protected"] = status.write_protected
        if status.detail:
            row["detail"] = status.detail
        if status.media is not None:
            row["media"] = status.media.name
    except errors.TapeError as exc:
        row["state"], row["error"] = "error", exc.message
    try:
        identity = drive.identity()
        row["serial"], row["model"] = identity.serial, identity.model
        row["generation"] = identity.generation
        alerts = drive.alerts()
        row["alerts"] = sorted(alerts.flags)
        row["alert_names"] = list(alerts.names)
        row["needs_cleaning"] = alerts.needs_cleaning
    except errors.TapeError as exc:
        row.setdefault("error", exc.message)
    row["mount"] = mount_json(record) if record else None
    if record is not None and record.ltfs_alive:
        try:
            row.update(_mounted_volume(library, record))
        except errors.TapeError as exc:
            row.setdefault("error", exc.message)
    return row


def _drive_line(row: dict[str, Any], record: MountRecord | None) -> str:
    state = row["state"]
    if row.get("seconds_left"):
        state += f" ({duration_text(row['seconds_left'])} left)"
    parts = [f"  {row['drive']:>3}  {state:<20} {label(row['full'], row['barcode'])}"]
    if row["source_slot"]:
        parts.append(f"from slot {row['source_slot']}")
    if "serial" in row:
        parts.append(f"{row['model']} serial {row['serial']}")
    if row.get("pool"):
        reason = f" ({row['reason']})" if row.get("reason") else ""
        parts.append(f"pool {row['pool']}, {row['cartridge_state']}{reason}")
    if row.get("alert_names"):
        parts.append("TapeAlert: " + ", ".join(row["alert_names"]))
    line = "  ".join(parts)
    if record is not None:
        line += f"\n       {mount_text(record)}"
    if "capacity" in row:
        capacity, volume = row["capacity"], row["volume"]
        line += (
            f"\n       volume {volume['serial']} generation {volume['generation']}: "
            f"{size_text(capacity['used_bytes'])} used, {size_text(capacity['free_bytes'])} "
            f"free, {capacity['files']} files"
            + (f"; read-only: {volume['why']}" if volume["read_only"] else "")
        )
    if row.get("error"):
        line += f"\n       error: {row['error']}"
    return line


def _slot_lines(inventory: Inventory, recorded: dict[str, Any]) -> list[str]:
    lines = ["Slots:"]
    for slot in inventory.slots:
        kind = "I/E" if slot.is_import_export else "   "
        note = "  cleaning" if slot.holds_cleaning else ""
        if (cartridge := recorded.get(slot.barcode or "")) is not None:
            note += f"  pool {cartridge.pool}, {_state_text(cartridge)}"
        lines.append(f"  {slot.number:>3} {kind}  {label(slot.full, slot.barcode)}{note}")
    return lines


def _state_text(cartridge: Any) -> str:
    return cartridge.state.value + (f" ({cartridge.reason})" if cartridge.reason else "")


@tape.command()
@json_option
@click.pass_context
def status(ctx: click.Context) -> None:
    """The library map: drives (state, cartridge, mount, volume usage, TapeAlert) and slots."""
    library = library_of(ctx)
    inventory = library.changer.inventory()
    records = {r.drive: r for r in library.ltfs.mounts()}
    recorded = _recorded(ctx)
    rows = [(_drive_row(library, bay, records.get(bay.index)), bay) for bay in inventory.drives]
    slots = [slot_json(s) for s in inventory.slots]
    for row in [r for r, _bay in rows] + slots:  # a drive's own "state" is the drive's
        if (cartridge := recorded.get(row.get("barcode") or "")) is not None:
            row.update(
                pool=cartridge.pool,
                cartridge_state=cartridge.state.value,
                reason=cartridge.reason,
            )
    report(
        ctx,
        {"changer": inventory.changer, "drives": [row for row, _bay in rows], "slots": slots},
        f"Changer {inventory.changer or '(unnamed)'}",
        "Drives:",
        *(_drive_line(row, records.get(bay.index)) for row, bay in rows),
        *_slot_lines(inventory, recorded),
    )


@tape.command()
@click.option("--rescan", is_flag=True, help="Make the robot re-read every slot first (slow).")
@json_option
@click.pass_context
def inventory(ctx: click.Context, rescan: bool) -> None:
    """Every slot and drive bay with its barcode."""
    found = library_of(ctx).changer.inventory(rescan=rescan)
    report(
        ctx,
        {
            "drives": [bay_json(d) for d in found.drives],
            "slots": [slot_json(s) for s in found.slots],
        },
        *(f"drive {bay.index:>3}: {label(bay.full, bay.barcode)}" for bay in found.drives),
        *_slot_lines(found, _recorded(ctx)),
    )


@tape.command()
@json_option
@click.pass_context
def volumes(ctx: click.Context) -> None:
    """One row per cartridge: where it is, its media type, and for a mounted one its usage."""
    library = library_of(ctx)
    inventory = library.changer.inventory()
    records = {r.drive: r for r in library.ltfs.mounts() if r.ltfs_alive}
    rows: list[dict[str, Any]] = []
    for bay in inventory.drives:
        if bay.full:
            row = {"barcode": bay.barcode, "where": f"drive {bay.index}", "drive": bay.index}
            if bay.index in records:
                try:
                    row.update(_mounted_volume(library, records[bay.index]))
                except errors.TapeError as exc:
                    row["error"] = exc.message
            rows.append(row)
    for slot in inventory.slots:
        if slot.full:
            where = f"{'I/E slot' if slot.is_import_export else 'slot'} {slot.number}"
            rows.append({"barcode": slot.barcode, "where": where, "slot": slot.number})
    present = {row["barcode"] for row in rows}
    for barcode in sorted(ExportLedger(library.work_directory).barcodes() - present):
        rows.append({"barcode": barcode, "where": "exported (not in the library)"})
    recorded = _recorded(ctx)
    for barcode in sorted(set(recorded) - {row["barcode"] for row in rows}):
        rows.append({"barcode": barcode, "where": "not in the library"})
    for row in rows:
        row["media"] = media_name(row["barcode"])
        row["cleaning"] = is_cleaning_barcode(row["barcode"])
        if (cartridge := recorded.get(row["barcode"])) is not None:
            row.update(pool=cartridge.pool, state=cartridge.state.value, reason=cartridge.reason)
    if wants_json(ctx):
        report(ctx, {"volumes": rows})
        return
    click.echo(f"{'BARCODE':<12} {'WHERE':<30} {'MEDIA':<22} {'STATE':<12} USAGE")
    for row in rows:
        media = "cleaning" if row["cleaning"] else (row["media"] or "unknown media")
        usage = ""
        if "capacity" in row:
            capacity, volume = row["capacity"], row["volume"]
            usage = (
                f"{size_text(capacity['used_bytes'])} used, "
                f"{size_text(capacity['free_bytes'])} free"
                + (f", read-only ({volume['why']})" if volume["read_only"] else "")
            )
        state = row.get("state", "")
        if row.get("reason"):
            usage = f"{usage}; " if usage else ""
            usage += f"{state}: {row['reason']}"
        click.echo(
            f"{label(True, row['barcode']):<12} {row['where']:<30} {media:<22} {state:<12} "
            f"{usage}".rstrip()
        )


def _recorded(ctx: click.Context) -> dict[str, Any]:
    """The media store's cartridges by barcode, on a site's target (none otherwise)."""
    if ctx.find_object(dict).get("target") is None:
        return {}
    return {c.barcode: c for c in driver_of(ctx, "volumes").media.all_cartridges()}
