"""`tape plan restore`: how a restore of archived copies would run, moving nothing.

The copies are named by their external ids (`ltfs://<target>/<barcode>/<path>`, as Portal
shows them); the site's catalog gives every copy of each file and where it sits, the target's
media store the sizes, the library its drives and cartridges now. The plan is the one the
driver would carry out: per drive the cartridges in order, their files and bytes, estimated
start and end from the port's cost model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from archive_core import ArchiveCoreError, CopyRef
from archive_core_tape_ltfs.cli.common import json_option, report, tape
from archive_core_tape_ltfs.restore import RestorePlan


@tape.group("plan")
def plan() -> None:
    """Plan tape work without moving anything."""


@plan.command("restore")
@click.argument("external_ids", nargs=-1)
@click.option(
    "--ids-from",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of external ids, one per line (for batches too long for a command line).",
)
@json_option
@click.pass_context
def plan_restore(ctx: click.Context, external_ids: tuple[str, ...], ids_from: Path | None) -> None:
    """Print how a restore of EXTERNAL_IDS would run: per drive the cartridges in order, their
    files and bytes, estimated start and end. Needs the site config (`archive-core --config`)."""
    ids = list(external_ids)
    if ids_from is not None:
        ids += [line.strip() for line in ids_from.read_text().splitlines() if line.strip()]
    if not ids:
        raise click.UsageError("Name the copies to plan: external ids, or --ids-from FILE.")
    driver, refs = _copies(ctx, ids)
    planned, skipped = driver.plan_restore(refs, job="tape plan restore")
    unplanned = [{"external_id": o.key, "error": o.error} for o in skipped]
    report(
        ctx,
        {**_plan_json(planned), "not_planned": unplanned},
        planned.describe(),
        *(f"not planned: {u['external_id']}: {u['error']}" for u in unplanned),
    )


def _copies(ctx: click.Context, ids: Sequence[str]) -> tuple[Any, list[CopyRef]]:
    """The tape target's driver and the catalog's reference to each copy."""
    from archive_core.operator import OperatorSite

    site = OperatorSite.open(ctx.find_object(dict).get("config_path"))
    ctx.call_on_close(site.close)
    found = site.copies(ids)
    targets = sorted({target for target, _ in found})
    if len(targets) != 1:
        raise ArchiveCoreError(
            f"The copies are on {len(targets)} targets ({', '.join(targets)}); plan the "
            f"restore of one tape target at a time."
        )
    return site.driver(targets[0], driver="tape_ltfs"), [ref for _, ref in found]


def _plan_json(planned: RestorePlan) -> dict[str, Any]:
    return {
        "files": planned.files,
        "bytes": planned.bytes,
        "exchanges": planned.exchanges,
        "estimated_seconds": round(planned.makespan, 1),
        "lower_bound_seconds": round(planned.lower_bound, 1),
        "empty_files": len(planned.no_tape),
        "warnings": list(planned.warnings),
        "drives": [
            {
                "drive": d.drive,
                "holds": d.holds,
                "cartridges": [
                    {
                        "barcode": r.barcode,
                        "slot": r.slot,
                        "mounted": r.mounted,
                        "files": r.files,
                        "bytes": r.bytes,
                        "start_seconds": round(r.start, 1),
                        "end_seconds": round(r.end, 1),
                        "paths": [step.copy.path for step in r.reads],
                    }
                    for r in d.runs
                ],
            }
            for d in planned.drives
        ],
    }
