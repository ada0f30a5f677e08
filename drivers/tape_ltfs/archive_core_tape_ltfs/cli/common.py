"""The `tape` group: the library a command works on, its `--json` flag, its errors, and the
drive leases it takes on a site.

A library is named by its own config (`--library`), or as a target of the site
(`archive-core --config SITE tape --target NAME`): then a command that uses a drive leases it
in the site's catalog first, as jobs do, so no job touches the drive meanwhile and the
command never touches one a job uses (it is refused at once, naming the holder, exit 4).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from archive_core import PRIORITY_RESTORE, ArchiveCoreError, LeaseTimeout
from archive_core_tape_ltfs import errors
from archive_core_tape_ltfs.cli.output import emit, error_json, exit_status
from archive_core_tape_ltfs.config import LIBRARY_ENV, load_library_config
from archive_core_tape_ltfs.factory import open_library
from archive_core_tape_ltfs.model import cartridge_lease, drive_lease
from archive_core_tape_ltfs.port import Library

#: Names the site's tape target when `--target` is not given.
TARGET_ENV = "ARCHIVE_CORE_TAPE_TARGET"
#: A command's drive lease is renewed while it runs; a command that dies loses it this soon.
LEASE_SECONDS = 60.0

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
        target = obj.get("target")
        if target is None:
            config = load_library_config(obj.get("library_path"))
        else:
            config = site_of(ctx).driver(target, driver="tape_ltfs").config.library
        obj["library"] = open_library(config)
    return obj["library"]


def driver_of(ctx: click.Context, command: str) -> Any:
    """The tape_ltfs driver of the site's target (`--target`), for commands on its media."""
    target = ctx.find_object(dict).get("target")
    if target is None:
        raise click.UsageError(
            f"`tape {command}` works on a site's target, whose media store knows the "
            f"cartridges: give `archive-core --config SITE tape --target NAME {command} ...`."
        )
    return site_of(ctx).driver(target, driver="tape_ltfs")


def site_of(ctx: click.Context) -> Any:
    """The site behind `archive-core --config` (an `OperatorSite`), closed with the command."""
    obj = ctx.find_object(dict)
    if "site" not in obj:
        from archive_core.operator import OperatorSite

        obj["site"] = OperatorSite.open(obj.get("config_path"))
        ctx.find_root().call_on_close(obj["site"].close)
    return obj["site"]


def _ask(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_object(dict)
    return {
        "ttl": LEASE_SECONDS,
        "wait": 0,
        "purpose": f"operator command `{obj.get('command') or ctx.command_path}`",
        # An operator at the console goes before jobs waiting for the drive.
        "priority": PRIORITY_RESTORE,
    }


@contextlib.contextmanager
def drive_leased(ctx: click.Context, drive: int) -> Iterator[None]:
    """The drive leased for the command's duration when the library is a site's target
    (nothing to lease otherwise). Refused at once when another holds it (LeaseTimeout, exit
    4); with `--force`, a holder proven dead loses it first: no LTFS mount of the drive is
    left on this host (`tape recover` clears those) and the holder's process is gone."""
    obj = ctx.find_object(dict)
    target = obj.get("target")
    if target is None:
        yield
        return
    leases = site_of(ctx).leases
    resource = drive_lease(target, drive)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(leases.hold(resource, **_ask(ctx)))
        except LeaseTimeout:
            if not obj.get("force"):
                raise
            _prove_unused(library_of(ctx), drive)
            leases.break_dead(
                resource, proof=f"no LTFS mount of drive {drive} is left on this host"
            )
            stack.enter_context(leases.hold(resource, **_ask(ctx)))
        yield


@contextlib.contextmanager
def cartridge_leased(ctx: click.Context, barcode: str) -> Iterator[None]:
    """The cartridge leased for the command's duration on a site's target, as jobs lease the
    cartridges they load (refused at once, exit 4, while a job has it)."""
    target = ctx.find_object(dict).get("target")
    if target is None:
        yield
        return
    with site_of(ctx).leases.hold(cartridge_lease(target, barcode), **_ask(ctx)):
        yield


def uses_drive(command: F) -> F:
    """A command on `--drive N` (its `drive_index`): run with the drive leased."""

    @functools.wraps(command)
    def leased(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        with drive_leased(ctx, kwargs["drive_index"]):
            return command(ctx, *args, **kwargs)

    return leased  # type: ignore[return-value]


def _prove_unused(library: Library, drive: int) -> None:
    for record in library.ltfs.mounts():
        if record.drive == drive:
            raise errors.DriveBusy(
                f"Drive {drive} still has an LTFS mount on this host (ltfs process "
                f"{record.ltfs_pid}, mounted by process {record.owner_pid}), so its lease "
                f"holder cannot be proven dead. Run `archive-core tape recover` first.",
                drive=drive,
            )


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
@click.option(
    "--target",
    envvar=TARGET_ENV,
    show_envvar=True,
    help="The site's tape_ltfs target to operate (with `archive-core --config SITE`): its "
    "library, and its drive leases, so that no job uses a drive while a command does.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --target: break a drive lease whose holder is proven dead (its process gone, "
    "no LTFS mount of the drive left).",
)
@click.pass_context
def tape(ctx: click.Context, library_path: Path | None, target: str | None, force: bool) -> None:
    """Operate the tape library: map, moves, formatting, mounts, recovery, cleaning.

    Exit status: 0 done; 2 wrong command line or config; 3 an operator must act (insert,
    clean, check or replace a cartridge); 4 busy or not ready, try again later; 5 hardware or
    media error.
    """
    if library_path is not None and target is not None:
        raise click.UsageError("Name the library by --library or by --target, not both.")
    if force and target is None:
        raise click.UsageError("--force breaks a drive lease of a site's target: give --target.")
    obj = ctx.ensure_object(dict)
    obj.update(library_path=library_path, target=target, force=force)
