"""`archive-core drivers|policies|check|demo`: what is installed, configured and ready."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from archive_core.cli.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    _emit_json,
    _plugin,
    _table,
    main,
)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def drivers(ctx: click.Context, as_json: bool) -> None:
    """Installed drivers: distribution, version, API version, capabilities, status.

    With a command instead, work on drivers: `drivers new NAME` starts a new one.
    """
    if ctx.invoked_subcommand is not None:
        if as_json:
            raise click.UsageError("--json applies to the listing of drivers, not to a command")
        return
    _list_drivers(as_json)


def _list_drivers(as_json: bool) -> None:
    from archive_core.registry import default_registry

    states = default_registry().states(load=True)
    rows = [
        {
            "name": s.name,
            "distribution": s.entry.distribution if s.entry else None,
            "version": s.entry.version if s.entry else None,
            "api_version": s.api_version,
            "capabilities": sorted(c.value for c in s.capabilities),
            "status": s.status.value,
            "reason": s.reason,
        }
        for s in states
    ]
    if as_json:
        _emit_json(rows)
        return
    if not rows:
        click.echo("No archive-core drivers are installed.")
        return
    _table(
        "archive-core drivers",
        ["name", "distribution", "version", "api", "capabilities", "status", "reason"],
        [
            (
                r["name"],
                r["distribution"],
                r["version"],
                r["api_version"],
                ", ".join(r["capabilities"]),
                r["status"],
                r["reason"],
            )
            for r in rows
        ],
    )


@drivers.command("new")
@click.argument("name")
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    metavar="DIR",
    help="Where to create the distribution's directory. Default: the current directory.",
)
def new_driver(name: str, directory: Path) -> None:
    """Start a new driver distribution, ready for the conformance kit.

    NAME is the driver's name: a lowercase letter, then lowercase letters, digits or '_'.

    Writes DIR/archive-core-driver-NAME/ (with '_' as '-'): a pyproject with the entry point
    and the archive-core range, the driver package, a conformance test module and a README.
    Never overwrites: an existing directory is refused.
    """
    from archive_core import scaffold

    try:
        names = scaffold.names_for(name)
    except scaffold.InvalidDriverName as exc:
        raise click.BadParameter(exc.message, param_hint="NAME") from None
    created = scaffold.scaffold(name, directory)
    click.echo(f"Created the driver distribution {created}:")
    for path in sorted(p for p in created.rglob("*") if p.is_file()):
        click.echo(f"  {path}")
    package = created / names.package
    methods = ", ".join(f"{m}()" for m in scaffold.MARKED_METHODS)
    click.echo("Next steps:")
    click.echo(f"  1. Fill in the methods marked FILL IN in {package / 'driver.py'}: {methods}.")
    click.echo(f"  2. pip install -e {shlex.quote(f'{created}[testing]')}")
    click.echo(f"  3. pytest {shlex.quote(str(created))}")
    _warn_if_name_is_taken(name)


def _warn_if_name_is_taken(name: str) -> None:
    """Say so when an installed distribution already registers driver `name`."""
    from archive_core.registry import default_registry

    taken = [e.source for e in default_registry().entries() if e.name == name]
    if taken:
        click.secho(
            f"warning: an installed distribution already registers a driver named {name!r} "
            f"({', '.join(taken)}). Two drivers of one name are refused at discovery: "
            f"rename the new one before installing it next to that one.",
            fg="yellow",
            err=True,
        )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def policies(ctx: click.Context, as_json: bool) -> None:
    """Policies Portal will see, with their targets and bulk limits."""
    site = _plugin(ctx).site()
    rows = []
    for p in site.policies():
        drivers = [site.config.targets[t].driver for t in p.targets]
        rows.append(
            {
                "uuid": p.uuid,
                "name": p.name,
                "targets": list(p.targets),
                "drivers": drivers,
                "bulk_support": site.bulk_support(p),
                "max_files": p.bulk.max_files if p.bulk else None,
                "max_bytes": p.bulk.max_bytes if p.bulk else None,
                "offered_by": p.offered_by,
            }
        )
    if as_json:
        _emit_json(rows)
        return
    _table(
        "archive-core policies",
        ["uuid", "name", "targets", "drivers", "bulk", "max files", "max bytes"],
        [
            (
                r["uuid"],
                r["name"],
                ", ".join(r["targets"]),
                ", ".join(r["drivers"]),
                "yes" if r["bulk_support"] else "no",
                r["max_files"],
                r["max_bytes"],
            )
            for r in rows
        ],
    )


@main.command()
@click.argument("policy", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def check(ctx: click.Context, policy: str | None, as_json: bool) -> None:
    """Readiness of every policy (or one) with the reason.

    Exit 1 when a policy is not ready, 2 when one cannot work until its configuration changes.
    """
    site = _plugin(ctx).site()
    if policy is not None:
        states = [(site.policy(policy), site.readiness(site.policy(policy)))]
    else:
        states = [(s.policy, s.readiness) for s in site.all_readiness()]
    rows = [{"uuid": p.uuid, "name": p.name, "ready": r.ok, "reason": r.reason} for p, r in states]
    if as_json:
        _emit_json(rows)
    else:
        if not rows:
            click.echo("No policies are configured.")
        for row in rows:
            mark = (
                click.style("ready", fg="green")
                if row["ready"]
                else click.style("NOT READY", fg="red")
            )
            click.echo(f"{row['uuid']}  {row['name']}: {mark} - {row['reason']}")
    if any(site.unusable(p) for p, _ in states):
        ctx.exit(EXIT_USAGE)  # a target cannot be built: the configuration must change
    if not rows or not all(r["ready"] for r in rows):
        ctx.exit(EXIT_FAILED)


@main.command()
@click.option("--keep", is_flag=True, help="Keep the demo directory instead of removing it.")
@click.option(
    "--dir",
    "where",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run the demo in this (new or empty) directory.",
)
def demo(keep: bool, where: Path | None) -> None:
    """Archive, restore and verify sample files on a temporary local filesys policy."""
    from archive_core.demo import run_demo

    ok = run_demo(where=where, keep=keep)
    sys.exit(0 if ok else EXIT_FAILED)
