"""Plugin hooks: isolated plugin loading, observers that cannot break a job, CLI commands."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import attrs
import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from archive_core.errors import ArchiveCoreError
from archive_core.hooks import (
    PLUGIN_GROUP,
    Hooks,
    JobInfo,
    JobSummary,
    default_hooks,
    hookimpl,
    reset_default_hooks,
)
from archive_core.model import FileOutcome
from tests.fakedist import FakeSite, fake_site, run_python, write_distribution

JOB = JobInfo(job_id="VX-42", policy="nearline", operation="archive", file_count=2)
SUMMARY = JobSummary(succeeded=1, failed=1, bytes=2048, seconds=0.5)


@pytest.fixture
def site() -> Iterator[FakeSite]:
    with fake_site() as made:
        yield made


class Recorder:
    """An observer that remembers every call it got."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @hookimpl
    def archive_core_job_started(self, job: JobInfo) -> None:
        self.calls.append(("started", job))

    @hookimpl
    def archive_core_file_failed(self, job: JobInfo, outcome: FileOutcome) -> None:
        self.calls.append(("file_failed", job, outcome))

    @hookimpl
    def archive_core_job_finished(self, job: JobInfo, summary: JobSummary) -> str:
        self.calls.append(("finished", job, summary))
        return f"recorded {summary.succeeded} of {job.file_count}"


class Crasher:
    """An observer whose every implementation raises."""

    @hookimpl
    def archive_core_job_started(self, job: JobInfo) -> None:
        raise RuntimeError(f"observer broke on {job.job_id}")

    @hookimpl
    def archive_core_job_finished(self, summary: JobSummary) -> str:
        raise RuntimeError("observer broke at the end")


# --- plugins found through entry points -------------------------------------------------------

GOOD_PLUGIN = """
    from archive_core.hooks import hookimpl

    @hookimpl
    def archive_core_job_started(job):
        print("observed", job.policy, job.job_id, flush=True)
"""


def test_plugin_entry_point_that_fails_to_import_is_isolated_in_a_real_process(tmp_path: Path):
    write_distribution(
        tmp_path,
        name="acme-audit",
        version="0.4",
        entry_points={PLUGIN_GROUP: {"audit": "acme_audit"}},
        files={"acme_audit.py": GOOD_PLUGIN},
    )
    write_distribution(
        tmp_path,
        name="acme-metrics",
        version="1.1",
        entry_points={PLUGIN_GROUP: {"metrics": "acme_metrics"}},
        files={"acme_metrics.py": "import prometheus_absent\n"},
    )
    result = run_python(
        """
        import json, logging
        logging.basicConfig(level=logging.INFO)
        from archive_core.hooks import JobInfo, default_hooks
        hooks = default_hooks()
        job = JobInfo(job_id="VX-7", policy="nearline", operation="restore", file_count=1)
        hooks.notify("archive_core_job_started", job=job)
        print(json.dumps({"names": hooks.names(), "failures": dict(hooks.failures)}))
        """,
        site_dirs=[tmp_path],
    )

    assert result.returncode == 0, result.stderr
    observed, listing = result.stdout.strip().splitlines()[-2:]
    assert observed == "observed nearline VX-7"
    reason = (
        "plugin 'metrics' from distribution 'acme-metrics 1.1' failed to import: "
        "ModuleNotFoundError: No module named 'prometheus_absent'"
    )
    loaded = json.loads(listing)
    # In-tree distributions (the tape driver's CLI) contribute plugins of their own.
    assert "audit" in loaded["names"] and "metrics" not in loaded["names"]
    assert loaded["failures"] == {"metrics": reason}
    assert f"archive-core plugin 'metrics' could not be loaded: {reason}" in result.stderr


@pytest.mark.parametrize(
    ("source", "attribute", "reason"),
    [
        ("raise RuntimeError('licence expired')\n", None, "RuntimeError: licence expired"),
        ("import sys\nsys.exit(2)\n", None, "failed to import: SystemExit: 2"),
        ("plugin = 1\n", "missing", "failed to import: AttributeError"),
        (
            "from archive_core.hooks import hookimpl\n"
            "@hookimpl\ndef archive_core_job_begun(job):\n    pass\n",
            None,
            "implements hooks archive-core does not define: archive_core_job_begun",
        ),
        (
            "from archive_core.hooks import hookimpl\n"
            "@hookimpl\ndef archive_core_job_started(job, extra):\n    pass\n",
            None,
            "was refused: Plugin 'bad' cannot be registered",
        ),
    ],
    ids=["raises", "exits", "missing-attribute", "misspelt-hook", "unknown-argument"],
)
def test_broken_plugin_is_recorded_with_reason_while_the_others_load(
    site, source, attribute, reason
):
    site.install("acme-bad", group=site.plugin_group, modules={"bad": (source, attribute)})
    site.install("acme-good", group=site.plugin_group, modules={"good": (GOOD_PLUGIN, None)})

    hooks = Hooks.from_entry_points(group=site.plugin_group)

    assert hooks.names() == ("good",)
    assert list(hooks.failures) == ["bad"]
    assert hooks.failures["bad"].startswith("plugin 'bad' from distribution 'acme-bad 1.0' ")
    assert reason in hooks.failures["bad"]


def test_default_hooks_are_built_once_per_process_until_reset():
    first = default_hooks()
    try:
        assert default_hooks() is first
        reset_default_hooks()
        assert default_hooks() is not first
    finally:
        reset_default_hooks()


# --- calling observers ------------------------------------------------------------------------


def test_observer_that_raises_is_logged_and_the_other_observers_still_run(caplog):
    recorder = Recorder()
    hooks = Hooks()
    hooks.register(recorder, name="recorder")
    hooks.register(Crasher(), name="crasher")  # registered last: pluggy calls it first

    with caplog.at_level(logging.ERROR, logger="archive_core.hooks"):
        hooks.notify("archive_core_job_started", job=JOB)

    assert recorder.calls == [("started", JOB)]
    [record] = caplog.records
    assert record.getMessage() == (
        "archive-core plugin 'crasher' raised in archive_core_job_started "
        "(policy nearline, job VX-42); the other plugins still run"
    )
    assert str(record.exc_info[1]) == "observer broke on VX-42"


def test_collect_returns_results_of_observers_that_did_not_raise():
    hooks = Hooks()
    first, second = Recorder(), Recorder()
    hooks.register(first, name="first")
    hooks.register(Crasher(), name="crasher")
    hooks.register(second, name="second")

    results = hooks.collect("archive_core_job_finished", job=JOB, summary=SUMMARY)

    assert results == ["recorded 1 of 2", "recorded 1 of 2"]
    assert first.calls == second.calls == [("finished", JOB, SUMMARY)]
    assert hooks.collect("archive_core_job_started", job=JOB) == []  # None results dropped


@given(raises=st.lists(st.booleans(), max_size=8))
@settings(max_examples=50, deadline=None)
def test_every_observer_that_does_not_raise_is_called_once_in_pluggy_order(raises):
    called: list[int] = []

    def observer(index: int, broken: bool) -> object:
        class Observer:
            @hookimpl
            def archive_core_file_failed(self, job: JobInfo, outcome: FileOutcome) -> None:
                called.append(index)
                if broken:
                    raise ValueError(f"observer {index} broke on {outcome.key}")

        return Observer()

    hooks = Hooks()
    for index, broken in enumerate(raises):
        hooks.register(observer(index, broken), name=f"observer-{index}")
    outcome = FileOutcome.failure("clip.mxf", "disk full", retryable=True)

    hooks.notify("archive_core_file_failed", job=JOB, outcome=outcome)

    # pluggy's order: the plugin registered last is called first.
    assert called == list(reversed(range(len(raises))))


def test_tryfirst_and_trylast_are_honoured():
    called: list[str] = []

    class Early:
        @hookimpl(tryfirst=True)
        def archive_core_job_started(self) -> None:
            called.append("early")

    class Late:
        @hookimpl(trylast=True)
        def archive_core_job_started(self) -> None:
            called.append("late")

    class Plain:
        @hookimpl
        def archive_core_job_started(self) -> None:
            called.append("plain")

    hooks = Hooks()
    for plugin in (Late(), Plain(), Early()):
        hooks.register(plugin)
    hooks.notify("archive_core_job_started", job=JOB)

    assert called == ["early", "plain", "late"]


def test_driver_load_failed_observer_gets_name_and_reason():
    told: list[tuple[str, str]] = []

    class Pager:
        @hookimpl
        def archive_core_driver_load_failed(self, name: str, reason: str) -> None:
            told.append((name, reason))

    hooks = Hooks()
    hooks.register(Pager())
    hooks.notify("archive_core_driver_load_failed", name="s3", reason="no boto3")

    assert told == [("s3", "no boto3")]


def test_cli_commands_hook_adds_a_command_to_a_click_group():
    class Reports:
        @hookimpl
        def archive_core_cli_commands(self, cli: click.Group) -> None:
            @cli.command("usage-report")
            @click.option("--policy", required=True)
            def usage_report(policy: str) -> None:
                """Print archive usage for one policy."""
                click.echo(f"usage of {policy}: 0 bytes")

    class Broken:
        @hookimpl
        def archive_core_cli_commands(self, cli: click.Group) -> None:
            raise RuntimeError("cannot add commands")

    @click.group()
    def cli() -> None:
        """archive-core"""

    hooks = Hooks()
    hooks.register(Reports(), name="reports")
    hooks.register(Broken(), name="broken")
    hooks.collect("archive_core_cli_commands", cli=cli)

    result = CliRunner().invoke(cli, ["usage-report", "--policy", "nearline"])
    assert result.exit_code == 0, result.output
    assert result.output == "usage of nearline: 0 bytes\n"
    assert "usage-report" in CliRunner().invoke(cli, ["--help"]).output


# --- contract checks --------------------------------------------------------------------------


def test_plugin_implementing_a_misspelt_hook_is_refused_naming_it():
    class Typo:
        @hookimpl
        def archive_core_job_finsihed(self, job: JobInfo) -> None:
            pass

    hooks = Hooks()
    with pytest.raises(ArchiveCoreError, match="archive_core_job_finsihed") as refused:
        hooks.register(Typo(), name="typo")

    assert "Known hooks: archive_core_cli_commands" in str(refused.value)
    assert hooks.names() == ()


def test_optional_hook_without_a_spec_is_accepted():
    class Future:
        @hookimpl(optionalhook=True)
        def archive_core_job_paused(self, job: JobInfo) -> None:
            pass

    hooks = Hooks()
    assert hooks.register(Future(), name="future") == "future"


def test_registering_two_plugins_under_one_name_is_refused():
    hooks = Hooks()
    hooks.register(Recorder(), name="audit")
    with pytest.raises(ArchiveCoreError, match="Plugin 'audit' cannot be registered"):
        hooks.register(Recorder(), name="audit")


def test_calling_an_unknown_hook_or_with_wrong_arguments_is_refused():
    hooks = Hooks()
    with pytest.raises(ArchiveCoreError, match="no hook named 'archive_core_job_begun'"):
        hooks.notify("archive_core_job_begun", job=JOB)
    with pytest.raises(ArchiveCoreError, match="takes job, summary; it was called with job"):
        hooks.notify("archive_core_job_finished", job=JOB)
    with pytest.raises(ArchiveCoreError, match="it was called with job, policy"):
        hooks.collect("archive_core_job_started", job=JOB, policy="x")


@pytest.mark.parametrize("operation", ["archive", "restore", "delete", "verify"])
def test_job_info_takes_each_operation_portal_runs(operation):
    assert JobInfo(job_id=None, policy="p", operation=operation, file_count=0).operation == (
        operation
    )


def test_job_info_refuses_an_unknown_operation_and_values_are_frozen():
    with pytest.raises(ValueError, match="operation"):
        JobInfo(job_id="VX-1", policy="p", operation="copy", file_count=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        SUMMARY.failed = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        JobSummary(1, 0, 10, 0.1)  # type: ignore[misc] # keyword-only
