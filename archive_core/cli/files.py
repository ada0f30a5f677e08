"""`archive-core archive|restore|delete|verify`: acting on files through the Portal face."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from archive_core.cli.base import (
    EXIT_FAILED,
    EXIT_USAGE,
    CliFileSet,
    _emit_json,
    _plugin,
    main,
)


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
    _report(
        ctx,
        report,
        file_sets,
        as_json,
        ("archived", "not_archived"),
        lambda fs: f"archived {fs.files[0]} -> {', '.join(fs.external_ids)}",
        done_as=lambda fs, r: fs._replace(external_ids=r.external_ids),
    )


def _report(
    ctx: click.Context,
    report: Any,
    file_sets: Sequence[Any],
    as_json: bool,
    keys: tuple[str, str],
    line: Any,
    done_as: Any = lambda fs, _result: fs,
) -> None:
    """Print an operation's FileSets (JSON under `keys`: the done, the failed; or one line
    each done) and exit 1 if any failed; `done_as` gives a done FileSet as it is printed.

    Exit 2 instead when nothing could be done because a target's driver is not usable
    (misconfigured, not installed): a configuration problem, as the README promises.
    """
    pairs = list(zip(file_sets, report.results, strict=True))
    done = [done_as(fs, r) for fs, r in pairs if r.ok]
    failed = [fs for fs, r in pairs if not r.ok]
    error = report.error_text()
    if as_json:
        _emit_json(
            {
                keys[0]: [_file_set_json(fs) for fs in done],
                keys[1]: [_file_set_json(fs) for fs in failed],
                "error": error,
            }
        )
    else:
        for fs in done:
            click.echo(line(fs))
        if error:
            click.secho(error, fg="red", err=True)
    if failed:
        ctx.exit(EXIT_USAGE if report.unusable and not done else EXIT_FAILED)


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
    _report(
        ctx,
        report,
        file_sets,
        as_json,
        ("restored", "not_restored"),
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
    _report(
        ctx,
        report,
        file_sets,
        as_json,
        ("deleted", "not_deleted"),
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
    _report(
        ctx,
        report,
        file_sets,
        as_json,
        ("verified", "failed"),
        lambda fs: f"verified {', '.join(fs.external_ids)}",
    )


def _many(external_ids: tuple[str, ...], from_json: Path | None) -> list[CliFileSet]:
    if from_json is not None:
        return _load_file_sets(from_json)
    if not external_ids:
        raise click.UsageError("give EXTERNAL_IDS or --from-json")
    return [CliFileSet(external_ids=(e,)) for e in external_ids]
