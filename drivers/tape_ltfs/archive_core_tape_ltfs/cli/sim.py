"""`tape sim ...`: the simulated library's own controls (faults, the operator's hands, clock)."""

from __future__ import annotations

from typing import Any

import attrs
import click

from archive_core_tape_ltfs.cli.common import json_option, library_of, report, tape


def _simulator(ctx: click.Context):
    from archive_core_tape_ltfs.sim.library import SimLibrary

    library = library_of(ctx)
    if not isinstance(library, SimLibrary):
        raise click.UsageError("this library is not simulated (backend = 'real')")
    return library


@tape.group()
def sim() -> None:
    """Control the simulated library: faults, the operator's hands, the clock."""


class _FaultGroup(click.Group):
    """`fault list`, `fault clear`, and `fault KIND ...` to inject one."""

    def resolve_command(self, ctx: click.Context, args: list[str]):
        if args and args[0] not in self.commands:
            return "inject", self.commands["inject"], args
        return super().resolve_command(ctx, args)


@sim.group(cls=_FaultGroup)
def fault() -> None:
    """Inject a fault (`fault KIND [options]`), or `fault list` / `fault clear [KIND]`."""


@fault.command(hidden=True)
@click.argument("kind")
@click.option("--drive", "drive_index", type=int)
@click.option("--barcode")
@click.option("--slot", type=int)
@click.option("--other-slot", type=int, help="For swap: the second slot.")
@click.option("--path", help="For read_error / write_error: the file.")
@click.option("--at", "at_time", type=float, help="Fire at this simulated time (seconds).")
@click.option("--after-ops", type=int, help="Fire after this many port operations.")
@click.option("--count", type=int, default=1, show_default=True)
@click.option("--seconds", type=float, default=0.0, help="For windows (becoming_ready...).")
@click.option("--at-bytes", type=int, help="For write_error: bytes into the file.")
@click.option("--label", help="For mislabel: the barcode label now stuck on the cartridge.")
@json_option
@click.pass_context
def inject(ctx: click.Context, kind: str, **fields: Any) -> None:
    """Inject a fault KIND (e.g. unit_attention, crash, write_error, drive_dead)."""
    fields["drive"] = fields.pop("drive_index")
    _simulator(ctx).inject(kind=kind, **fields)
    report(ctx, {"injected": kind}, f"injected {kind}")


@fault.command(name="list")
@json_option
@click.pass_context
def list_(ctx: click.Context) -> None:
    """The faults scheduled and not yet fired."""
    scheduled = [
        {k: v for k, v in attrs.asdict(f).items() if k not in ("changed", "hot_changed")}
        for f in _simulator(ctx).faults()
    ]
    lines = [
        f"{f['kind']}: " + ", ".join(f"{k}={v}" for k, v in f.items() if k != "kind" and v)
        for f in scheduled
    ] or ["no fault is scheduled"]
    report(ctx, {"faults": scheduled}, *lines)


@fault.command()
@click.argument("kind", required=False)
@json_option
@click.pass_context
def clear(ctx: click.Context, kind: str | None) -> None:
    """Drop every scheduled fault, or only those of KIND."""
    cleared = _simulator(ctx).clear_faults(kind)
    report(ctx, {"cleared": cleared}, f"cleared {cleared} scheduled fault(s)")


@sim.command()
@click.argument("barcode")
@click.option("--slot", type=int, required=True, help="Usually an import/export slot.")
@click.option("--write-protected", is_flag=True)
@json_option
@click.pass_context
def insert(ctx: click.Context, barcode: str, slot: int, write_protected: bool) -> None:
    """Put a cartridge into a slot by hand (a new one, or one back from the vault)."""
    from archive_core_tape_ltfs.config import SimulatedCartridge

    _simulator(ctx).insert(
        SimulatedCartridge(barcode=barcode, slot=slot, write_protected=write_protected)
    )
    report(ctx, {"barcode": barcode, "slot": slot}, f"inserted {barcode} into slot {slot}")


@sim.command(name="take-out")
@click.option("--slot", type=int, required=True)
@json_option
@click.pass_context
def take_out(ctx: click.Context, slot: int) -> None:
    """Take the cartridge out of a slot by hand (it goes to the vault)."""
    key = _simulator(ctx).take_out(slot)
    report(ctx, {"barcode": key, "slot": slot}, f"took {key} out of slot {slot}")


@sim.command()
@json_option
@click.pass_context
def clock(ctx: click.Context) -> None:
    """The simulated time, in seconds since the library was created."""
    now = _simulator(ctx).clock.now()
    report(ctx, {"seconds": now}, f"{now:.1f}")
