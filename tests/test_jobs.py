"""The core's guarantees whatever a driver does: capability checks, totality, fixity, isolation."""

from __future__ import annotations

import pytest

from archive_core.driver import Capability, OfferedPolicy
from archive_core.errors import ArchiveCoreError, CapabilityNotDeclared
from archive_core.hooks import hookimpl
from archive_core.model import FileOutcome
from tests.sites import MemoryDriver, media, plugin_with_drivers


def _plugin(tmp_path, driver_cls, **portal):
    return plugin_with_drivers(
        tmp_path,
        {driver_cls.name: driver_cls},
        targets={"t": {"driver": driver_cls.name}},
        policies={"p": {"name": "P", "targets": ["t"]}},
        portal=portal or None,
    )


def _batch(tmp_path, n):
    return [
        media(tmp_path / "online", f"f{i}.mov", f"content {i}".encode(), item_id=f"VX-{i}")
        for i in range(n)
    ]


class ArchiveOnly(MemoryDriver):
    name = "archive-only"
    capabilities = frozenset({Capability.ARCHIVE})


def test_core_refuses_undeclared_operation_naming_driver_policy_and_capability(tmp_path):
    plugin = _plugin(tmp_path, ArchiveOnly)
    [archived], *_ = plugin.archive(_batch(tmp_path, 1), "p", "j")
    started: list[str] = []

    class Observer:
        @hookimpl
        def archive_core_job_started(self, job):
            started.append(job.operation)

    plugin.site().hooks.register(Observer(), name="observer")
    with pytest.raises(CapabilityNotDeclared) as caught:
        plugin.restore([archived], "p")
    # Refused before it started: observers never see a job that starts and never finishes.
    assert started == []
    assert str(caught.value) == (
        "Policy 'p' uses driver 'archive-only', which does not support 'restore'."
    )
    assert (caught.value.driver, caught.value.policy, caught.value.capability) == (
        "archive-only",
        "p",
        "restore",
    )


class RaisesMidway(MemoryDriver):
    name = "raises-midway"

    def archive(self, request):
        for n, outcome in enumerate(super().archive(request)):
            if n == 2:
                raise ConnectionError("storage went away")
            yield outcome


def test_driver_that_raises_midway_fails_only_the_remaining_files(tmp_path):
    plugin = _plugin(tmp_path, RaisesMidway)
    batch = _batch(tmp_path, 5)
    archived, not_archived, error, _ = plugin.archive(batch, "p", "j")
    assert archived and [fs.files for fs in archived] == [fs.files for fs in batch[:2]]
    assert not_archived == batch[2:]
    assert "ConnectionError: storage went away" in error
    assert len(plugin.site().catalog.copies()) == 2


def test_files_a_driver_left_when_it_raised_an_os_error_are_retryable(tmp_path):
    plugin = _plugin(tmp_path, RaisesMidway)
    failed = []

    class Recorder:
        @hookimpl
        def archive_core_file_failed(self, job, outcome):
            failed.append(outcome.retryable)

    plugin.site().hooks.register(Recorder(), name="recorder")
    plugin.archive(_batch(tmp_path, 4), "p", "j")
    # A connection reset is an OSError: a retry may well succeed, as for a file's own.
    assert failed == [True, True]


class Forgetful(MemoryDriver):
    name = "forgetful"

    def archive(self, request):
        yield from list(super().archive(request))[1:]


def test_file_a_driver_never_reports_is_not_archived(tmp_path):
    plugin = _plugin(tmp_path, Forgetful)
    batch = _batch(tmp_path, 3)
    _, not_archived, error, _ = plugin.archive(batch, "p", "j")
    assert not_archived == batch[:1]
    assert "did not report on this file" in error


class Liar(MemoryDriver):
    name = "liar"

    def archive(self, request):
        for outcome in super().archive(request):
            yield FileOutcome.success(outcome.key, locator=outcome.locator, sha1="f" * 40)


class Silent(MemoryDriver):
    name = "silent"

    def archive(self, request):
        for outcome in super().archive(request):
            yield FileOutcome.success(outcome.key, locator=outcome.locator)


@pytest.mark.parametrize(
    "driver_cls, phrase", [(Liar, "checksum mismatch"), (Silent, "did not report the sha1")]
)
def test_copy_is_never_recorded_unless_its_sha1_matches_portals(tmp_path, driver_cls, phrase):
    plugin = _plugin(tmp_path, driver_cls)
    batch = _batch(tmp_path, 2)
    archived, not_archived, error, _ = plugin.archive(batch, "p", "j")
    assert archived == [] and not_archived == batch
    assert phrase in error
    assert plugin.site().catalog.copies() == []
    assert {r.state for r in plugin.site().catalog.journal(job_id="j")} == {"failed"}


def test_broken_target_makes_only_its_own_policy_not_ready(tmp_path):
    plugin = plugin_with_drivers(
        tmp_path,
        {"memory": MemoryDriver},
        targets={"good": {"driver": "memory"}, "bad": {"driver": "not-installed"}},
        policies={"ok": {"targets": ["good"]}, "broken": {"targets": ["bad"]}},
    )
    assert plugin.is_ready() is True
    states = {s.policy.uuid: s.readiness for s in plugin.readiness()}
    assert states["ok"].ok
    assert not states["broken"].ok and "not-installed" in states["broken"].reason
    assert plugin.archive(_batch(tmp_path, 1), "ok", "j")[0]
    _, not_archived, error, _ = plugin.archive(_batch(tmp_path, 1), "broken", "j")
    assert not_archived and "not-installed" in error


def test_driver_settings_errors_name_their_path_and_mark_the_target_not_ready(tmp_path):
    plugin = plugin_with_drivers(
        tmp_path,
        {"memory": MemoryDriver},
        targets={"t": {"driver": "memory", "settings": {"label": 5, "colour": "red"}}},
        policies={"p": {"targets": ["t"]}},
    )
    [state] = plugin.readiness()
    assert "targets.t.settings: unknown setting (colour)" in state.readiness.reason
    assert "targets.t.settings.label: expected a string" in state.readiness.reason


class Offering(MemoryDriver):
    name = "offering"
    capabilities = MemoryDriver.capabilities | {Capability.BULK}

    def policies(self):
        return [OfferedPolicy(uuid="pool-a", name="Pool A", max_files=50)]


def test_get_policies_is_the_union_of_configured_and_driver_offered_policies(tmp_path):
    plugin = _plugin(tmp_path, Offering)
    assert plugin.get_policies() == [
        {"uuid": "p", "name": "P", "bulk_support": True},
        {"uuid": "pool-a", "name": "Pool A", "bulk_support": True},
    ]
    assert plugin.get_policy_constrains() == [
        {"uuid": "p", "max_files": None, "max_bytes": None},
        {"uuid": "pool-a", "max_files": 50, "max_bytes": None},
    ]
    [archived], *_ = plugin.archive(_batch(tmp_path, 1), "pool-a", "j")
    assert archived.external_ids[0].startswith("offering://t/")


def test_observer_that_raises_never_fails_a_job_and_others_are_told(tmp_path):
    plugin = _plugin(tmp_path, MemoryDriver)
    seen = []

    class Broken:
        @hookimpl
        def archive_core_file_done(self, job, outcome):
            raise RuntimeError("observer bug")

    class Recorder:
        @hookimpl
        def archive_core_file_done(self, job, outcome):
            seen.append((job.policy, job.job_id, outcome.key))

        @hookimpl
        def archive_core_job_finished(self, job, summary):
            seen.append(("finished", summary.succeeded, summary.failed))

    plugin.site().hooks.register(Broken(), name="broken")
    plugin.site().hooks.register(Recorder(), name="recorder")
    archived, _, error, _ = plugin.archive(_batch(tmp_path, 2), "p", "job-1")
    assert len(archived) == 2 and error == ""
    assert seen == [("p", "job-1", "0"), ("p", "job-1", "1"), ("finished", 2, 0)]


class Recording(MemoryDriver):
    name = "recording"
    seen: list = []

    def archive(self, request):
        Recording.seen.extend((i.name, i.abandoned_by) for i in request.items)
        yield from super().archive(request)


def test_driver_is_told_which_files_a_dead_worker_left_unfinished_and_by_whom(tmp_path):
    import subprocess

    from archive_core import workers
    from archive_core.catalog import Catalog, JournalEntry
    from archive_core.naming import archive_name

    plugin = _plugin(tmp_path, Recording)
    batch = _batch(tmp_path, 2)
    dead = archive_name(batch[0].files[0], item_id=batch[0].item_id, sha1=batch[0].sha1)
    killed = subprocess.Popen(["sleep", "0"])
    worker = workers.of_process(killed.pid)
    killed.wait()
    left_behind = Catalog(plugin.site().catalog.url, worker=worker)
    left_behind.begin(
        job_id="killed",
        policy="p",
        target="t",
        operation="archive",
        entries=[JournalEntry(key="0", name=dead)],
    )
    left_behind.close()  # that worker is gone: nothing here beats its heartbeat
    Recording.seen = []
    archived, _, error, _ = plugin.archive(batch, "p", "retry")
    assert len(archived) == 2 and error == ""
    assert dict(Recording.seen) == {
        dead: (str(worker),),
        archive_name(batch[1].files[0], item_id=batch[1].item_id, sha1=batch[1].sha1): (),
    }
    assert [r.state for r in plugin.site().catalog.journal(job_id="killed")] == ["abandoned"]


class Lowercase(MemoryDriver):
    name = "lowercase"
    sha1s: list = []

    def archive(self, request):
        Lowercase.sha1s.extend(i.sha1 for i in request.items)
        yield from super().archive(request)


def test_portals_sha1_is_checked_and_lowercased_once_at_the_boundary(tmp_path):
    plugin = _plugin(tmp_path, Lowercase)
    [good, bad] = _batch(tmp_path, 2)
    shouting = good._replace(sha1=good.sha1.upper())
    archived, not_archived, error, _ = plugin.archive(
        [shouting, bad._replace(sha1="not-a-sha1")], "p", "j"
    )
    assert Lowercase.sha1s == [good.sha1]
    assert good.sha1 in archived[0].external_ids[0]
    assert not_archived[0].sha1 == "not-a-sha1"
    assert "Portal's sha1 'not-a-sha1' is not 40 hexadecimal digits" in error
    with pytest.raises(ArchiveCoreError, match="is not 40 hexadecimal digits"):
        plugin.restore([archived[0]._replace(sha1="xyz")], "p")
