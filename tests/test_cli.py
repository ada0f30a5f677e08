"""The `archive-core` command, in-process through click and as a real subprocess."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from archive_core.cli import main
from tests.sites import POLICY, files_under, filesys_site, write_config


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_drivers_lists_filesys_with_its_distribution_and_capabilities():
    result = _run("drivers", "--json")
    assert result.exit_code == 0
    [filesys] = [d for d in json.loads(result.output) if d["name"] == "filesys"]
    assert filesys["distribution"] == "archive-core-driver-filesys"
    assert filesys["status"] == "loaded" and filesys["api_version"] == 1
    assert {"archive", "restore", "delete", "verify"} <= set(filesys["capabilities"])


def test_archive_restore_verify_delete_round_trip_through_the_portal_face(tmp_path):
    config, [root] = filesys_site(tmp_path)
    source = tmp_path / "online" / "cli clip.mov"
    source.parent.mkdir()
    source.write_bytes(b"cli bytes" * 1000)

    archived = _run(
        "--config",
        str(config),
        "archive",
        "--policy",
        POLICY,
        "--item-id",
        "VX-3",
        "--json",
        str(source),
    )
    assert archived.exit_code == 0, archived.output
    record = json.loads(archived.output)
    assert record["error"] == "" and record["not_archived"] == []
    external_id = record["archived"][0]["external_ids"][0]
    assert external_id.startswith("filesys://disk0/cli%20clip_VX-3_")
    manifest = tmp_path / "archived.json"
    manifest.write_text(archived.output)

    out = tmp_path / "restored"
    restored = _run(
        "--config",
        str(config),
        "restore",
        "--policy",
        POLICY,
        "--from-json",
        str(manifest),
        "--to-dir",
        str(out),
    )
    assert restored.exit_code == 0, restored.output
    assert (out / "cli clip.mov").read_bytes() == source.read_bytes()

    verified = _run("--config", str(config), "verify", "--policy", POLICY, "--all", "--json")
    assert verified.exit_code == 0
    assert json.loads(verified.output)["failed"] == []

    deleted = _run("--config", str(config), "delete", "--policy", POLICY, external_id)
    assert deleted.exit_code == 0 and "deleted" in deleted.output
    assert files_under(root) == set()


def test_verify_fails_with_exit_1_when_a_copy_has_changed(tmp_path):
    config, [root] = filesys_site(tmp_path)
    source = tmp_path / "a.mov"
    source.write_bytes(b"original")
    assert _run("--config", str(config), "archive", "--policy", POLICY, str(source)).exit_code == 0
    [stored] = files_under(root)
    stored.write_bytes(b"changed!")
    result = _run("--config", str(config), "verify", "--policy", POLICY, "--all")
    assert result.exit_code == 1
    assert "1 of 1 files could not be verified" in result.output
    assert hashlib.sha1(b"original").hexdigest() in result.output


def test_check_reports_reason_and_exits_1_when_a_policy_is_not_ready(tmp_path):
    config = write_config(
        tmp_path / "c.toml",
        targets={"gone": {"driver": "filesys", "settings": {"root": str(tmp_path / "nope")}}},
        policies={"p": {"name": "Gone", "targets": ["gone"]}},
    )
    result = _run("--config", str(config), "check", "--json")
    assert result.exit_code == 1
    [state] = json.loads(result.output)
    assert state["ready"] is False
    assert f"archive root {tmp_path / 'nope'} does not exist" in state["reason"]


def test_policies_lists_what_portal_sees(tmp_path):
    config, _ = filesys_site(tmp_path)
    result = _run("--config", str(config), "policies", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)[0]["uuid"] == POLICY


def test_broken_config_exits_2_listing_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[portal]\nready_timeout_seconds = 'soon'\ncolour = 1\n")
    result = CliRunner().invoke(main, ["--config", str(bad), "policies"])
    assert result.exit_code == 2
    assert "portal: unknown setting (colour)" in result.output
    assert "portal.ready_timeout_seconds: expected a number" in result.output
    assert "Traceback" not in result.output


def test_archive_of_a_missing_file_is_a_usage_error(tmp_path):
    config, _ = filesys_site(tmp_path)
    result = CliRunner().invoke(
        main,
        ["--config", str(config), "archive", "--policy", POLICY, str(tmp_path / "missing.mov")],
    )
    assert result.exit_code == 2 and "does not exist" in result.output


def test_demo_runs_with_no_config_at_all(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "archive_core.cli", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "demo passed" in done.stdout
    assert "filesys://demo-disk/" in done.stdout.replace("\n", "").replace("│", "")


def test_demo_keeps_its_directory_when_asked(tmp_path):
    where = tmp_path / "demo"
    result = _run("demo", "--dir", str(where))
    assert result.exit_code == 0, result.output
    assert (where / "archive-core.toml").is_file()
    assert len(files_under(where / "archive")) == 5
    assert Path(where / "restored").is_dir()


def test_verify_all_on_an_empty_catalog_says_there_is_nothing_to_verify(tmp_path):
    config, _ = filesys_site(tmp_path)
    result = _run("--config", str(config), "verify", "--policy", POLICY, "--all")
    assert result.exit_code == 0
    assert f"The catalog records no copies of policy {POLICY}: nothing to verify." in result.output
    unknown = _run("--config", str(config), "verify", "--policy", "no-such-policy", "--all")
    assert unknown.exit_code == 2 and "no-such-policy" in unknown.output


def test_a_target_whose_settings_are_refused_is_a_configuration_error_exit_2(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    config = write_config(
        tmp_path / "c.toml",
        targets={"t": {"driver": "filesys", "settings": {"root": str(root), "colour": "red"}}},
        policies={"p": {"name": "Misconfigured", "targets": ["t"]}},
    )
    check = _run("--config", str(config), "check")
    assert check.exit_code == 2 and "unknown setting (colour)" in check.output
    source = tmp_path / "a.mov"
    source.write_bytes(b"a")
    archived = _run("--config", str(config), "archive", "--policy", "p", str(source))
    assert archived.exit_code == 2 and "colour" in archived.output
    assert list(root.iterdir()) == []
