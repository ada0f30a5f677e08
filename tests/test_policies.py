"""The admin's config: every problem at once with its path, strict types, secrets by reference."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from archive_core.driver import setting
from archive_core.errors import ConfigError
from archive_core.policies import load_config, parse_config, structure
from archive_core.secret import Secret


def test_every_problem_is_reported_at_once_with_its_path():
    with pytest.raises(ConfigError) as caught:
        parse_config(
            {
                "catalog": {"url": 3, "pool": 1},
                "portal": {"legacy_archive_result": "false"},
                "targets": {"a": {"driver": "filesys"}, "b": {}},
                "policies": {
                    "p1": {"targets": "a"},
                    "p3": {"target": "a", "bulk": {"max_files": 0}},
                },
            }
        )
    assert caught.value.problems == (
        "catalog: unknown setting (pool)",
        "catalog.url: expected a string",
        "portal.legacy_archive_result: expected true or false",
        "targets.b.driver: required setting missing",
        "policies.p1.targets: expected a list",
        "policies.p3.bulk.max_files: must be > 0",
    )
    assert str(caught.value).startswith("archive-core configuration has 6 problems:")


def test_policy_naming_a_missing_target_is_reported():
    with pytest.raises(ConfigError, match=r"policies.p.targets: no target named 'x'"):
        parse_config({"policies": {"p": {"targets": ["x"]}}})


def test_policy_with_inline_driver_gets_a_target_of_its_own():
    config = parse_config({"policies": {"p": {"driver": "filesys", "settings": {"root": "/a"}}}})
    assert config.policies["p"].targets == ("p",)
    assert config.targets["p"].path == "policies.p"


def test_missing_config_file_names_the_variable_to_set(tmp_path):
    with pytest.raises(ConfigError, match="ARCHIVE_CORE_CONFIG"):
        load_config(tmp_path / "nope.toml")


def _exists(_inst, _attr, value):
    if not value.exists():
        raise ValueError("directory does not exist")


@attrs.frozen(kw_only=True)
class DriverConfig:
    root: Path = setting(help="root", validator=_exists)
    password: Secret = setting(help="password", secret=True)
    streams: int = setting(help="streams", default=2)


def _structure(settings):
    return structure(DriverConfig, settings, path="policies.p.settings")


def test_driver_settings_problems_carry_their_full_path(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    value, problems = _structure(
        {"root": str(tmp_path / "gone"), "password": "env:NO_SUCH_VAR", "streams": "4", "extra": 1}
    )
    assert value is None
    assert sorted(problems) == sorted(
        [
            "policies.p.settings: unknown setting (extra)",
            "policies.p.settings.root: directory does not exist",
            "policies.p.settings.password: environment variable NO_SUCH_VAR is not set",
            "policies.p.settings.streams: expected a whole number",
        ]
    )


def test_secrets_resolve_by_reference_and_never_show(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHIVE_PW", "hunter2")
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    value, problems = _structure({"root": str(tmp_path), "password": "env:ARCHIVE_PW"})
    assert problems == []
    assert value.password.reveal() == "hunter2"
    assert "hunter2" not in repr(value) and "hunter2" not in f"{value.password}"
    value, _ = _structure({"root": str(tmp_path), "password": f"file:{secret_file}"})
    assert value.password.reveal() == "s3cret"


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    _, problems = _structure({"root": str(tmp_path), "password": "hunter2"})
    assert problems == [
        "policies.p.settings.password: secrets must be given by reference "
        "(env:NAME or file:PATH), not inline"
    ]
    assert "hunter2" not in problems[0]


def test_the_validators_drivers_share_name_the_bound_after_the_settings_name():
    from archive_core import above, at_least, between, one_of

    @attrs.frozen(kw_only=True)
    class Shared:
        layout: str = setting(help="h", default="flat", validator=one_of(("flat", "item")))
        workers: int = setting(help="h", default=1, validator=between(1, 64))
        reserve: int = setting(help="h", default=0, validator=at_least(0))
        timeout: float = setting(help="h", default=1.0, validator=above(0))

    assert Shared(layout="item", workers=64, reserve=0, timeout=0.1).workers == 64
    made, problems = structure(
        Shared,
        {"layout": "deep", "workers": 0, "reserve": -1, "timeout": 0.0},
        path="targets.t.settings",
    )
    assert made is None
    assert problems == [
        "targets.t.settings.layout: must be one of flat, item",
        "targets.t.settings.workers: must be between 1 and 64",
        "targets.t.settings.reserve: must be 0 or more",
        "targets.t.settings.timeout: must be more than 0",
    ]
