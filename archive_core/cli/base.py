"""The `archive-core` command group, and what its commands share: the config, errors, output."""

from __future__ import annotations

import json
import logging
import os
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
