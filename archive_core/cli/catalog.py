"""`archive-core catalog ...`: the catalog's schema, journal retention, rebuild from a target."""

from __future__ import annotations

import click

from archive_core.cli.base import (
    EXIT_FAILED,
    _actor,
    _emit_json,
    _plugin,
    main,
)


@main.group()
def catalog() -> None:
    """The catalog database: its schema version, and the upgrade to this code's."""


@catalog.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def catalog_status(ctx: click.Context, as_json: bool) -> None:
    """Show the catalog's schema version and whether this archive-core can use it."""
    from archive_core import schema

    store = _plugin(ctx).site().catalog
    found = store.schema_state()
    refusal = found.refusal(store.safe_url())
    if as_json:
        _emit_json(
            {
                "catalog": store.safe_url(),
                "version": found.version,
                "tables": list(found.tables),
                "code_version": schema.SCHEMA_VERSION,
                "usable": refusal is None,
                "reason": refusal,
            }
        )
        return
    click.echo(f"catalog: {store.safe_url()}")
    click.echo(f"schema: {found.describe()}; this archive-core uses {schema.SCHEMA_VERSION}")
    click.echo("usable: yes" if refusal is None else f"usable: no. {refusal}")


@catalog.command("upgrade")
@click.pass_context
def catalog_upgrade(ctx: click.Context) -> None:
    """Bring the catalog to this archive-core's schema version (stop older workers first)."""
    store = _plugin(ctx).site().catalog
    before, after = store.upgrade()
    if before.version == after.version:
        click.echo(f"The catalog is already at version {after.version}: nothing to do.")
        return
    click.echo(f"Upgraded the catalog from {before.describe()} to {after.describe()}.")


@catalog.command("rebuild")
@click.option("--target", required=True, help="The target whose copies to rebuild.")
@click.option("--policy", help="Whose copies the ones no manifest describes are.")
@click.option("--force", is_flag=True, help="Replace the copies the catalog records there.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def catalog_rebuild(
    ctx: click.Context, target: str, policy: str | None, force: bool, as_json: bool
) -> None:
    """Rebuild the catalog's copies of TARGET from its manifests (and names), after a loss."""
    from archive_core.rebuild import rebuild

    report = rebuild(_plugin(ctx).site(), target, policy=policy, replace=force, actor=_actor())
    if as_json:
        _emit_json(report.as_json())
    else:
        click.echo(
            f"target {target}: {report.from_manifests} copies from manifests, "
            f"{report.from_names} by their names alone"
            + (f"; {report.replaced} rows replaced" if report.replaced else "")
        )
        for why in report.refused:
            click.secho(f"refused: {why}", fg="red")
        for why in report.skipped:
            click.secho(f"left out: {why}", fg="yellow")
    if report.refused:
        ctx.exit(EXIT_FAILED)


@catalog.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go, remove nothing.")
@click.pass_context
def catalog_prune(ctx: click.Context, dry_run: bool) -> None:
    """Remove the journal of finished work past the site's retention ([catalog]
    keep_done_days, keep_failed_days). Unfinished work's journal is always kept."""
    import datetime as dt

    site = _plugin(ctx).site()
    keep = site.config.journal_retention
    now = dt.datetime.now(dt.UTC)
    pruned = site.catalog.prune(
        done_before=now - dt.timedelta(days=keep.done_days),
        failed_before=now - dt.timedelta(days=keep.failed_days),
        dry_run=dry_run,
    )
    verb = "Would remove" if dry_run else "Removed"
    click.echo(
        f"{verb} the journal of {pruned.done} files done or abandoned more than "
        f"{keep.done_days} days ago ({pruned.batches} batches) and of {pruned.failed} files "
        f"that failed more than {keep.failed_days} days ago."
    )
