"""`archive-core config ...`: the configuration versions in the catalog, from a shell.

The same operations as Portal's pages (`configedit`): see where the site's configuration
comes from, export it as TOML, import a TOML file as a new version (validated first),
list the versions with what changed, revert to one.
"""

from __future__ import annotations

from pathlib import Path

import click

from archive_core.cli.base import _actor, _emit_json, _plugin, _table, main
from archive_core.policies import CATALOG


@main.group("config")
def config() -> None:
    """The site's targets and policies: where they come from, versions, import and export."""


def _site(ctx: click.Context):
    return _plugin(ctx).site()


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Which source this site's targets and policies come from, and why."""
    site = _site(ctx)
    source = site.config.config_source
    click.echo(f"targets and policies come from {source.describe()}")
    click.echo(f"bootstrap file: {source.file}")
    click.echo(f"catalog: {site.catalog.safe_url()}")
    if source.kind == CATALOG:
        latest = site.catalog.config_versions.latest_number()
        click.echo(f"versions saved in the catalog: {latest}")


@config.command("export")
@click.option("--version", "number", type=int, help="A saved version (default: the one in use).")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file."
)
@click.pass_context
def config_export(ctx: click.Context, number: int | None, output: Path | None) -> None:
    """The targets and policies as TOML ([targets] and [policies] of a config file)."""
    from archive_core import configedit, configstore
    from archive_core.errors import ConfigError

    site = _site(ctx)
    if number is None:
        document = configstore.document_of(site.config)
    else:
        version = site.catalog.config_versions.get(number)
        if version is None:
            raise ConfigError([f"--version: the catalog holds no configuration version {number}"])
        document = version.document
    text = configedit.render(document)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


@config.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--comment", default="", help="Why: shown in the history.")
@click.option("--check", is_flag=True, help="Only validate; save nothing.")
@click.pass_context
def config_import(ctx: click.Context, path: Path, comment: str, check: bool) -> None:
    """Validate the targets and policies in PATH, then save them as the newest version.

    PATH may be a whole config file (a site moving its config to the catalog): only its
    [targets] and [policies] are taken.
    """
    from archive_core import configedit

    site = _site(ctx)
    document, left = configedit.read_document(path)
    if left:
        click.echo(
            f"{path}: only [targets] and [policies] are imported; "
            f"{', '.join(left)} stay{'s' if len(left) == 1 else ''} per machine in its "
            "bootstrap file",
            err=True,
        )
    if check:
        config = configedit.validate(site.config, document, registry=site.registry)
        click.echo(
            f"{path}: valid ({len(config.targets)} targets, {len(config.policies)} policies); "
            "nothing saved"
        )
        return
    versions = site.catalog.config_versions
    saved = configedit.save(
        site,
        document,
        actor=_actor(),
        comment=comment or f"imported from {path}",
        based_on=versions.latest_number(),
    )
    click.echo(f"saved as configuration version {saved.number}")
    if site.config.config_source.kind != CATALOG:
        click.secho(
            f"note: this site reads its targets and policies from {site.config.config_source.file}"
            f" ({site.config.config_source.why}), not from the catalog; remove them from that "
            "file for the workers to use this version",
            fg="yellow",
            err=True,
        )


@config.command("history")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def config_history(ctx: click.Context, as_json: bool) -> None:
    """Every saved version, newest first, with who saved it and what changed."""
    from archive_core import configedit

    site = _site(ctx)
    versions = site.catalog.config_versions.history()
    secret = configedit.secret_test(site.registry)
    rows = []
    for index, version in enumerate(versions):
        before = versions[index + 1].document if index + 1 < len(versions) else None
        rows.append((version, configedit.changes(before, version.document, secret=secret)))
    if as_json:
        _emit_json(
            [
                {
                    "version": v.number,
                    "at": v.at.isoformat(),
                    "actor": v.actor,
                    "comment": v.comment,
                    "digest": v.digest,
                    "changes": lines,
                }
                for v, lines in rows
            ]
        )
        return
    _table(
        "configuration versions",
        ("version", "saved", "by", "comment", "changes"),
        (
            (v.number, f"{v.at:%Y-%m-%d %H:%M:%S} UTC", v.actor, v.comment, "; ".join(lines))
            for v, lines in rows
        ),
    )


@config.command("revert")
@click.argument("number", type=int)
@click.pass_context
def config_revert(ctx: click.Context, number: int) -> None:
    """Save version NUMBER again as the newest version."""
    from archive_core import configedit

    site = _site(ctx)
    latest = site.catalog.config_versions.latest_number()
    saved = configedit.revert(site, number, actor=_actor(), based_on=latest)
    click.echo(f"version {number} saved again as configuration version {saved.number}")
