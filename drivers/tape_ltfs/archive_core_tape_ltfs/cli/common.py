"""The `tape` group: the library a command works on, its `--json` flag, its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from archive_core import ArchiveCoreError
from archive_core_tape_ltfs.cli.output import emit, error_json, exit_status
from archive_core_tape_ltfs.config import LIBRARY_ENV, load_library_config
from archive_core_tape_ltfs.factory import open_library
from archive_core_tape_ltfs.port import Library

F = TypeVar("F", bound=Callable[..., Any])


class _TapeGroup(click.Group):
    """Prints an error as one sentence (or a JSON object with --json) and exits with the status
    its remedy calls for, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArchiveCoreError as exc:
            state = ctx.ensure_object(dict)
            if state.get("json"):
                emit(state.get("command", "tape"), {"error": error_json(exc)})
            else:
                click.secho(f"error: {exc.message}", fg="red", err=True)
            ctx.exit(exit_status(exc))


def library_of(ctx: click.Context) -> Library:
    obj = ctx.find_object(dict)
    if "library" not in obj:
        obj["library"] = open_library(load_library_config(obj.get("library_path")))
    return obj["library"]


def wants_json(ctx: click.Context) -> bool:
    return bool(ctx.find_object(dict).get("json"))


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    state = ctx.find_object(dict)
    state["json"] = value
    state["command"] = " ".join(ctx.command_path.split()[1:])  # "tape status", any program name
    return value


def json_option(command: F) -> F:
    """`--json` on a command: one object of the versioned schema, errors included."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        is_eager=True,
        expose_value=False,
        callback=_remember_json,
        help="Print one JSON object (schema archive-core.tape/1), errors too.",
    )(command)


def report(ctx: click.Context, payload: dict[str, Any], *lines: str) -> None:
    """Print the command's result: `payload` as JSON with --json, else the `lines`."""
    if wants_json(ctx):
        emit(ctx.find_object(dict)["command"], payload)
        return
    for line in lines:
        click.echo(line)


@click.group(cls=_TapeGroup)
@click.option(
    "--library",
    "library_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=LIBRARY_ENV,
    show_envvar=True,
    help="Library config (TOML): backend real or simulator, devices, timeouts.",
)
@click.pass_context
def tape(ctx: click.Context, library_path: Path | None) -> None:
    """Operate the tape library: map, moves, formatting, mounts, recovery, cleaning.

    Exit status: 0 done; 2 wrong command line or config; 3 an operator must act (insert,
    clean, check or replace a cartridge); 4 busy or not ready, try again later; 5 hardware or
    media error.
    """
    ctx.ensure_object(dict)["library_path"] = library_path
