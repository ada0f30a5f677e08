"""The `archive-core` command: inspect drivers and policies, and act through the Portal face."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections import namedtuple
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from archive_core.errors import ArchiveCoreError

#: What the CLI hands the Portal face: the fields Portal's FileSet is known to have.
CliFileSet = namedtuple(
    "CliFileSet",
    ["files", "external_ids", "item_id", "sha1", "shape_id", "component_id"],
    defaults=((), (), None, None, None, None),
)

EXIT_FAILED = 1  # the command ran, but some files failed or a policy is not ready
EXIT_USAGE = 2  # bad input or configuration: nothing was done


class _Group(click.Group):
    """Turns archive-core errors into a readable message and exit code, never a traceback.

    Commands contributed by plugins are loaded only when a name is not built in (or help
    lists every command), so built-in commands start without importing any plugin.
    """

    _plugins_added = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and self._add_plugin_commands():
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def _add_plugin_commands(self) -> bool:
        """Let installed plugins add their commands; True when this call added them."""
        if self._plugins_added or os.environ.get("ARCHIVE_CORE_NO_PLUGIN_COMMANDS"):
            return False
        self._plugins_added = True
        from archive_core.hooks import default_hooks

        default_hooks().collect("archive_core_cli_commands", cli=self)
        return True

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArchiveCoreError as exc:
            click.secho(f"error: {exc.message}", fg="red", err=True)
            ctx.exit(EXIT_USAGE)


@click.group(cls=_Group)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="ARCHIVE_CORE_CONFIG",
    show_envvar=True,
    help="Site config (TOML). Default: /etc/archive-core/archive-core.toml.",
)
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@click.version_option(package_name="archive-core")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """archive-core: the archive plugin for Cantemo Portal, and its drivers."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = {"config_path": config_path}


def _plugin(ctx: click.Context, observer: Any = None):
    from archive_core.portal import ArchiveCorePlugin

    plugin = ArchiveCorePlugin(ctx.obj["config_path"], observer=observer, actor=_actor())
    plugin.site()  # raise the config error now, with every problem listed
    return plugin


def _actor() -> str:
    """Who the audit trail names for a command: the user running it, and where."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        user = f"uid {os.getuid()}"
    return f"{user} on {socket.gethostname()} (archive-core command line)"


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A table: drawn with rich on a terminal; plain aligned columns for scripts and pipes.

    Piped, rich would fold long values to fit 80 columns, which grep and awk cannot use.
    """
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    if not sys.stdout.isatty():
        widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
        lines = [columns, ["-" * w for w in widths], *cells]
        click.echo(title)
        for line in lines:
            click.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in cells:
        table.add_row(*row)
    Console().print(table)


# --- inspection --------------------------------------------------------------------------------


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


# --- acting through the Portal face -----------------------------------------------------------


class _ProgressBar:
    """A rich progress bar fed by the job runner (bytes moved, files finished)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=_stderr_console(),
        )
        self._task: Any = None
        self._files = 0
        self._done = 0

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def started(self, operation: str, files: int, total_bytes: int | None) -> None:
        self._files, self._done = files, 0
        self._task = self._progress.add_task(f"{operation} 0/{files}", total=total_bytes)
        self._operation = operation

    def advanced(self, nbytes: int) -> None:
        if self._task is not None:
            self._progress.advance(self._task, nbytes)

    def file_finished(self, outcome) -> None:
        self._done += 1
        if self._task is not None:
            self._progress.update(
                self._task, description=f"{self._operation} {self._done}/{self._files}"
            )


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _observer(as_json: bool):
    import contextlib

    if as_json or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    return _ProgressBar()


def _sha1_of(path: Path) -> str:
    """What Vidispine does before Portal archives: hash the file once."""
    import hashlib

    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _file_set_json(fs: Any) -> dict[str, Any]:
    return {
        "files": list(fs.files),
        "external_ids": list(fs.external_ids),
        "item_id": fs.item_id,
        "sha1": fs.sha1,
    }


def _load_file_sets(path: Path) -> list[CliFileSet]:
    """FileSets from the JSON `archive --json` printed (its `archived` list) or a plain list."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--from-json") from None
    if isinstance(data, dict):
        data = data.get("archived", [])
    if not isinstance(data, list):
        raise click.BadParameter(f"{path}: expected a list of file sets", param_hint="--from-json")
    try:
        return [
            CliFileSet(
                files=tuple(d["files"]),
                external_ids=tuple(d.get("external_ids", ())),
                item_id=d.get("item_id"),
                sha1=d.get("sha1"),
            )
            for d in data
        ]
    except (KeyError, TypeError) as exc:
        raise click.BadParameter(
            f"{path}: each file set needs 'files' ({exc})", param_hint="--from-json"
        ) from None


@main.command()
@click.option("--policy", required=True, help="Policy uuid.")
@click.option("--item-id", help="Portal item id to name the copies with (one file only).")
@click.option("--job-id", help="Job id recorded in the journal and logs.")
@click.option("--json", "as_json", is_flag=True, help="Print the FileSets as JSON.")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.pass_context
def archive(
    ctx: click.Context,
    policy: str,
    item_id: str | None,
    job_id: str | None,
    as_json: bool,
    files: tuple[Path, ...],
) -> None:
    """Archive FILES under POLICY, exactly as Portal would (sha1 computed first, as Vidispine)."""
    if item_id and len(files) > 1:
        raise click.UsageError("--item-id names one file; give one file or leave it out")
    file_sets = [
        CliFileSet(files=(str(f.resolve()),), item_id=item_id, sha1=_sha1_of(f)) for f in files
    ]
    with _observer(as_json) as observer:
        report = _plugin(ctx, observer).run("archive", file_sets, policy, job_id)
    pairs = list(zip(file_sets, report.results, strict=True))
    _report(
        ctx,
        report,
        as_json,
        ("archived", [fs._replace(external_ids=r.external_ids) for fs, r in pairs if r.ok]),
        ("not_archived", [fs for fs, r in pairs if not r.ok]),
        lambda fs: f"archived {fs.files[0]} -> {', '.join(fs.external_ids)}",
    )


def _report(
    ctx: click.Context,
    report: Any,
    as_json: bool,
    done: tuple[str, list],
    failed: tuple[str, list],
    line: Any,
) -> None:
    """Print an operation's FileSets (JSON or one line each) and exit 1 if any failed.

    Exit 2 instead when nothing could be done because a target's driver is not usable
    (misconfigured, not installed): a configuration problem, as the README promises.
    """
    error = report.error_text()
    if as_json:
        _emit_json(
            {
                done[0]: [_file_set_json(fs) for fs in done[1]],
                failed[0]: [_file_set_json(fs) for fs in failed[1]],
                "error": error,
            }
        )
    else:
        for fs in done[1]:
            click.echo(line(fs))
        if error:
            click.secho(error, fg="red", err=True)
    if failed[1]:
        ctx.exit(EXIT_USAGE if report.unusable and not done[1] else EXIT_FAILED)


def _selected_file_sets(
    external_id: str | None, destination: Path | None, from_json: Path | None, to_dir: Path | None
) -> list[CliFileSet]:
    if from_json is not None:
        if external_id or destination:
            raise click.UsageError("give either EXTERNAL_ID DESTINATION or --from-json")
        file_sets = _load_file_sets(from_json)
        if to_dir is not None:
            file_sets = [
                fs._replace(files=(str(to_dir.resolve() / Path(fs.files[0]).name),))
                for fs in file_sets
            ]
        return file_sets
    if not external_id:
        raise click.UsageError("give EXTERNAL_ID (and a DESTINATION for restore) or --from-json")
    files = (str(destination.resolve()),) if destination else ()
    return [CliFileSet(files=files, external_ids=(external_id,))]


@main.command()
@click.option("--policy", required=True, help="Policy uuid.")
@click.option("--sha1", help="Expected sha1 of the file (Portal always passes it).")
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FileSets as printed by `archive --json`.",
)
@click.option(
    "--to-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --from-json: restore into this directory instead of the original paths.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("external_id", required=False)
@click.argument("destination", required=False, type=click.Path(path_type=Path))
@click.pass_context
def restore(
    ctx: click.Context,
    policy: str,
    sha1: str | None,
    from_json: Path | None,
    to_dir: Path | None,
    as_json: bool,
    external_id: str | None,
    destination: Path | None,
) -> None:
    """Restore EXTERNAL_ID to DESTINATION (or many FileSets with --from-json)."""
    if external_id and not destination and not from_json:
        raise click.UsageError("restore needs a DESTINATION path")
    file_sets = _selected_file_sets(external_id, destination, from_json, to_dir)
    if sha1:
        file_sets = [fs._replace(sha1=sha1) for fs in file_sets]
    with _observer(as_json) as observer:
        report = _plugin(ctx, observer).run("restore", file_sets, policy)
    pairs = list(zip(file_sets, report.results, strict=True))
    _report(
        ctx,
        report,
        as_json,
        ("restored", [fs for fs, r in pairs if r.ok]),
        ("not_restored", [fs for fs, r in pairs if not r.ok]),
        lambda fs: f"restored {fs.files[0]}",
    )


@main.command()
@click.option("--policy", required=True, help="Policy uuid.")
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FileSets as printed by `archive --json`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("external_ids", nargs=-1)
@click.pass_context
def delete(
    ctx: click.Context,
    policy: str,
    from_json: Path | None,
    as_json: bool,
    external_ids: tuple[str, ...],
) -> None:
    """Delete archived copies named by EXTERNAL_IDS (or --from-json)."""
    file_sets = _many(external_ids, from_json)
    report = _plugin(ctx).run("delete", file_sets, policy)
    pairs = list(zip(file_sets, report.results, strict=True))
    _report(
        ctx,
        report,
        as_json,
        ("deleted", [fs for fs, r in pairs if r.ok]),
        ("not_deleted", [fs for fs, r in pairs if not r.ok]),
        lambda fs: f"deleted {', '.join(fs.external_ids)}",
    )


@main.command()
@click.option("--policy", required=True, help="Policy uuid.")
@click.option(
    "--from-json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="FileSets as printed by `archive --json`.",
)
@click.option("--all", "every", is_flag=True, help="Every copy the catalog holds for POLICY.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("external_ids", nargs=-1)
@click.pass_context
def verify(
    ctx: click.Context,
    policy: str,
    from_json: Path | None,
    every: bool,
    as_json: bool,
    external_ids: tuple[str, ...],
) -> None:
    """Read archived copies back and check them against their recorded sha1."""
    with _observer(as_json) as observer:
        plugin = _plugin(ctx, observer)
        if every:
            plugin.site().policy(policy)  # an unknown policy is an error, not "no copies"
            records = plugin.site().catalog.copies(policy=policy)
            if not records:
                if as_json:
                    _emit_json({"verified": [], "failed": [], "error": ""})
                else:
                    click.echo(
                        f"The catalog records no copies of policy {policy}: nothing to verify."
                    )
                return
            file_sets = [
                CliFileSet(external_ids=(r.external_id,), item_id=r.item_id, sha1=r.sha1)
                for r in records
            ]
        else:
            file_sets = _many(external_ids, from_json)
        report = plugin.run("verify", file_sets, policy)
    pairs = list(zip(file_sets, report.results, strict=True))
    _report(
        ctx,
        report,
        as_json,
        ("verified", [fs for fs, r in pairs if r.ok]),
        ("failed", [fs for fs, r in pairs if not r.ok]),
        lambda fs: f"verified {', '.join(fs.external_ids)}",
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


def _many(external_ids: tuple[str, ...], from_json: Path | None) -> list[CliFileSet]:
    if from_json is not None:
        return _load_file_sets(from_json)
    if not external_ids:
        raise click.UsageError("give EXTERNAL_IDS or --from-json")
    return [CliFileSet(external_ids=(e,)) for e in external_ids]


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


def _add_command_modules() -> None:
    # At the end: those modules take this one's helpers when their commands run.
    from archive_core.configcli import config

    main.add_command(config)


_add_command_modules()

if __name__ == "__main__":
    main()
