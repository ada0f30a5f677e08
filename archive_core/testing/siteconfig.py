"""Writing site configuration files (TOML) for tests and the kit, as an admin would write them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def toml_value(value: Any) -> str:
    """`value` as a TOML literal: strings, paths, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"{type(value).__name__} has no TOML form: {value!r}")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else toml_value(key)


def write_config(
    path: Path,
    *,
    targets: Mapping[str, Mapping[str, Any]],
    policies: Mapping[str, Mapping[str, Any]],
    catalog_url: str | None = None,
    portal: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write a site config to `path`; the state directory defaults to `state/` beside it.

    With no targets and policies it is a bootstrap file: they are then read from the catalog
    (`config`: the `[config]` table, e.g. `allowed_roots`).
    """
    lines = [f"state_dir = {toml_value(state_dir or path.parent / 'state')}"]
    if catalog_url:
        lines += ["[catalog]", f"url = {toml_value(catalog_url)}"]
    if config:
        lines += ["[config]"] + [f"{_key(k)} = {toml_value(v)}" for k, v in config.items()]
    if portal:
        lines += ["[portal]"] + [f"{_key(k)} = {toml_value(v)}" for k, v in portal.items()]
    for name, target in targets.items():
        lines += [f"[targets.{toml_value(name)}]"]
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in target.items()]
    for uuid, policy in policies.items():
        lines += [f"[policies.{toml_value(uuid)}]"]
        lines += [f"{_key(k)} = {toml_value(v)}" for k, v in policy.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
