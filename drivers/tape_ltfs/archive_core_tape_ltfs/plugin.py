"""The archive-core plugin of this distribution: it adds `archive-core tape` to the CLI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from archive_core.hooks import hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def archive_core_cli_commands(cli: click.Group) -> None:
    from archive_core_tape_ltfs.cli import tape

    cli.add_command(tape)
