"""`archive-core scrub|status|audit|metrics`: the copies' health, the audit trail, metrics."""

from __future__ import annotations

import json
from typing import Any

import click

from archive_core.cli.base import (
    EXIT_FAILED,
    _emit_json,
    _plugin,
    _table,
    main,
)


@main.command()
@click.option("--target", "targets", multiple=True, help="Only this target (repeatable).")
@click.option("--policy", help="Only the copies of this policy.")
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1),
    help="Read at most this many bytes per target in this run.",
)
@click.option(
    "--max-seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="Spend at most this long per target in this run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def scrub(
    ctx: click.Context,
    targets: tuple[str, ...],
    policy: str | None,
    max_bytes: int | None,
    max_seconds: float | None,
    as_json: bool,
) -> None:
    """Read archived copies back, the longest unverified first, within a budget per target.

    Run it from a timer (see the README): each run goes on where the last one stopped.
    Exits 1 when a copy read back wrong (and its policy did not repair it).
    """
    from archive_core.scrub import ScrubBudget
    from archive_core.scrub import scrub as run_scrub

    def progress(target: str, done: Any) -> None:
        click.echo(
            f"scrub {target}: {done.verified} copies verified ({done.bytes:,} bytes), "
            f"{len(done.bad)} bad",
            err=True,
        )

    plugin = _plugin(ctx)
    results = run_scrub(
        plugin,
        budget=ScrubBudget(max_bytes=max_bytes, max_seconds=max_seconds),
        targets=targets or None,
        policy=policy,
        progress=None if as_json else progress,
    )
    bad = [b for r in results for b in r.bad]
    if as_json:
        _emit_json({"targets": [r.as_json() for r in results]})
    else:
        _table(
            "archive-core scrub",
            ["target", "verified", "bytes", "bad", "left", "stopped"],
            [
                (r.target, r.verified, f"{r.bytes:,}", len(r.bad), r.left, r.stopped)
                for r in results
            ],
        )
        for b in bad:
            click.secho(f"bad copy {b.external_id} (policy {b.policy}): {b.error}", fg="red")
            if b.repaired:
                click.echo(f"  repaired from a good copy: now {b.repaired}")
            elif b.repair_error:
                click.secho(f"  not repaired: {b.repair_error}", fg="red")
    if any(not b.repaired for b in bad):
        ctx.exit(EXIT_FAILED)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per policy and target: copies, bytes, never verified, oldest verification, bad copies."""
    import attrs

    site = _plugin(ctx).site()
    names = {p.uuid: p.name for p in site.policies()}
    rows = site.catalog.summary()
    if as_json:
        _emit_json([{**attrs.asdict(r), "name": names.get(r.policy)} for r in rows])
        return
    _table(
        "archive-core status",
        ["policy", "name", "target", "copies", "bytes", "never verified", "oldest verified", "bad"],
        [
            (
                r.policy,
                names.get(r.policy, "(not configured)"),
                r.target,
                r.copies,
                f"{r.bytes:,}",
                r.never_verified,
                r.oldest_verified.isoformat(timespec="seconds") if r.oldest_verified else "",
                r.failed,
            )
            for r in rows
        ],
    )


@main.group()
def audit() -> None:
    """The audit trail: who archived, restored, deleted, verified or changed what, and when."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Check the trail's hash chain: exits 1 when an entry was edited, removed or cut off.

    Keep the head hash it prints somewhere else: it anchors the trail as it is now.
    """
    check = _plugin(ctx).site().catalog.audit.verify()
    if as_json:
        _emit_json(
            {
                "ok": check.ok,
                "entries": check.entries,
                "head_id": check.head_id,
                "head_hash": check.head_hash,
                "problems": list(check.problems),
            }
        )
    elif check.ok:
        click.echo(
            f"audit trail intact: {check.entries} entries; head entry {check.head_id}, "
            f"hash {check.head_hash}"
        )
    else:
        click.secho(f"audit trail NOT intact ({check.entries} entries read):", fg="red")
        for problem in check.problems:
            click.secho(f"  {problem}", fg="red")
    if not check.ok:
        ctx.exit(EXIT_FAILED)


@audit.command("export")
@click.option("--since", type=click.IntRange(min=0), default=0, help="Only entries after this id.")
@click.pass_context
def audit_export(ctx: click.Context, since: int) -> None:
    """Write the trail to standard output as JSON Lines, oldest first."""
    for entry in _plugin(ctx).site().catalog.audit.entries(since=since):
        click.echo(json.dumps(entry.as_json(), ensure_ascii=False, sort_keys=True))


@main.group()
def metrics() -> None:
    """Prometheus metrics of the site's workers (see the README's scrape setup)."""


@metrics.command("show")
@click.pass_context
def metrics_show(ctx: click.Context) -> None:
    """Print the metrics once, in Prometheus' text format (for a textfile collector)."""
    from archive_core.metrics import exposition

    click.echo(exposition(_plugin(ctx).site()).decode(), nl=False)


@metrics.command("serve")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9464, show_default=True)
@click.pass_context
def metrics_serve(ctx: click.Context, address: str, port: int) -> None:
    """Serve /metrics for Prometheus: every worker's counters and the catalog's gauges."""
    from archive_core.metrics import serve

    serve(_plugin(ctx).site(), address=address, port=port)
