"""Changing the site's configuration: validate a new version, save it, revert, import, export.

What Portal's pages and `archive-core config import|export|revert` share. A document is
checked by the code the workers run (`policies.parse_document` for its shape,
`site.check_targets` for each driver's settings), so nothing a worker would refuse is ever
saved, and every problem comes back at once with its path (`targets.x.settings.root: ...`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from archive_core.errors import ConfigError
from archive_core.policies import ConfigVersion, SiteConfig, parse_document
from archive_core.site import Site, check_targets

#: What a document may hold; the rest of a config file belongs to each machine's bootstrap.
DOCUMENT_KEYS = ("targets", "policies")


def validate(
    base: SiteConfig,
    document: Mapping[str, Any],
    *,
    registry: Any,
    previous: Mapping[str, Any] | None = None,
) -> SiteConfig:
    """The site config `document` makes with `base`'s bootstrap settings (catalog, state
    directory, allowed roots); raises ConfigError listing every problem with its path.

    Targets exactly as in the `previous` document are not checked against their drivers
    again: workers already run them, and one whose driver stopped loading (an upgrade gone
    wrong) is that driver's problem, shown on the overview; it must not block every other
    change. Everything in the document is still checked for its shape.
    """
    targets, policies = parse_document(document)
    config = attrs.evolve(base, targets=targets, policies=policies)
    kept = (previous or {}).get("targets", {})
    given = document.get("targets", {})
    changed = {n: t for n, t in targets.items() if kept.get(n) != given.get(n)}
    problems = check_targets(attrs.evolve(config, targets=changed), registry)
    if problems:
        raise ConfigError(problems)
    return config


def save(
    site: Site,
    document: Mapping[str, Any],
    *,
    actor: str,
    comment: str = "",
    based_on: int,
) -> ConfigVersion:
    """Validate `document` and save it as the next version in the site's catalog."""
    previous = site.catalog.config_versions.get(based_on) if based_on else None
    config = validate(
        site.config,
        document,
        registry=site.registry,
        previous=previous.document if previous else None,
    )
    return site.catalog.config_versions.save(
        document, config=config, actor=actor, comment=comment, based_on=based_on
    )


def revert(site: Site, number: int, *, actor: str, based_on: int) -> ConfigVersion:
    """Save version `number`'s document again as the newest version (checked again first:
    a driver it names may have been uninstalled since)."""
    old = site.catalog.config_versions.get(number)
    if old is None:
        raise ConfigError([f"version: the catalog holds no configuration version {number}"])
    return save(
        site, old.document, actor=actor, comment=f"revert to version {number}", based_on=based_on
    )


def read_document(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[str]]:
    """The targets and policies of a TOML file for `config import`, and the other tables it
    holds, which are left out: a whole config file may be imported (moving a site's file
    config to the catalog), its `[catalog]`, `[portal]` ... staying per machine."""
    import tomllib

    where = Path(path)
    try:
        raw = tomllib.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{where}: file not found"]) from None
    except OSError as exc:
        raise ConfigError([f"{where}: cannot be read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from None
    if not any(key in raw for key in DOCUMENT_KEYS):
        raise ConfigError([f"{where}: declares no [targets] or [policies] to import"])
    left = sorted(set(raw) - set(DOCUMENT_KEYS))
    return {key: raw.get(key, {}) for key in DOCUMENT_KEYS}, left


def render(document: Mapping[str, Any]) -> str:
    """`document` as the TOML of a config file's `[targets]` and `[policies]` tables."""
    import tomli_w

    # Keys in order, as the catalog stores them: the same document always reads the same.
    return tomli_w.dumps(_sorted({key: document.get(key, {}) for key in DOCUMENT_KEYS}))


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


#: Says whether setting `key` of driver `driver` is a secret (its value is never shown).
SecretTest = Callable[[str, str], bool]


def secret_test(registry: Any) -> SecretTest:
    """Which settings the installed drivers declare secret; a driver that does not load has
    all its settings treated as secret, since nothing says which are not."""
    from archive_core.driver import describe_config
    from archive_core.errors import ArchiveCoreError

    known: dict[str, set[str] | None] = {}

    def test(driver: str, key: str) -> bool:
        if driver not in known:
            try:
                infos = describe_config(registry.load(driver).Config)
                known[driver] = {i.name for i in infos if i.secret}
            except (ArchiveCoreError, TypeError):
                known[driver] = None
        secrets = known[driver]
        return secrets is None or key in secrets

    return test


def changes(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], *, secret: SecretTest
) -> list[str]:
    """What changed from document `before` to `after`, one sentence each, for the history
    page; a secret setting is named, never shown (not even as its reference)."""
    before = before or {}
    lines: list[str] = []
    old_t, new_t = before.get("targets", {}), after.get("targets", {})
    for name in sorted(set(old_t) | set(new_t)):
        was, now = old_t.get(name), new_t.get(name)
        if was is None:
            lines.append(f"target {name} added (driver {now.get('driver')})")
        elif now is None:
            lines.append(f"target {name} removed")
        else:
            lines.extend(_target_changes(name, was, now, secret))
    old_p, new_p = before.get("policies", {}), after.get("policies", {})
    for uuid in sorted(set(old_p) | set(new_p)):
        was, now = old_p.get(uuid), new_p.get(uuid)
        label = f"policy {(now or was).get('name') or uuid} ({uuid})"
        if was is None:
            where = (
                f"with its own driver {now['driver']}"
                if "driver" in now
                else f"targets {_listed(now.get('targets'))}"
            )
            lines.append(f"{label} added, {where}")
        elif now is None:
            lines.append(f"{label} removed")
        else:
            for key in sorted(set(was) | set(now)):
                if key == "settings":  # of a policy with its own driver: as a target's
                    lines.extend(
                        f"{label}: {line}"
                        for line in _settings_changes(was, now, now.get("driver", ""), secret)
                    )
                elif was.get(key) != now.get(key):
                    lines.append(f"{label}: {_field(key, was.get(key), now.get(key))}")
    return lines


def _target_changes(name: str, was: Mapping, now: Mapping, secret: SecretTest) -> list[str]:
    lines = []
    driver = now.get("driver", "")
    if was.get("driver") != driver:
        lines.append(f"target {name}: driver changed from {was.get('driver')} to {driver}")
    for key in ("disabled", "verified_copies"):
        if was.get(key) != now.get(key):
            lines.append(f"target {name}: {_field(key, was.get(key), now.get(key))}")
    lines.extend(f"target {name}: {line}" for line in _settings_changes(was, now, driver, secret))
    return lines


def _settings_changes(was: Mapping, now: Mapping, driver: str, secret: SecretTest) -> list[str]:
    old_s, new_s = was.get("settings") or {}, now.get("settings") or {}
    lines = []
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) == new_s.get(key):
            continue
        if secret(driver, key):
            lines.append(f"secret {key} changed (never shown)")
        else:
            lines.append(_field(key, old_s.get(key), new_s.get(key)))
    return lines


def _field(key: str, was: Any, now: Any) -> str:
    if key == "disabled":
        return "disabled" if now else "enabled again"
    if was is None:
        return f"{key} set to {_shown(now)}"
    if now is None:
        return f"{key} {_shown(was)} removed (the default applies)"
    return f"{key} changed from {_shown(was)} to {_shown(now)}"


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return _listed(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_shown(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, str) else str(value)


def _listed(values: Any) -> str:
    return ", ".join(str(v) for v in values or ()) or "none"
