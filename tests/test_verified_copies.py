"""The purge interlock: with `verified_copies = K`, archived means K copies read back."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from archive_core_filesys.driver import FilesysDriver

from archive_core.driver import Capability
from archive_core.errors import ConfigError
from archive_core.model import FileOutcome
from archive_core.policies import parse_config

from .sites import POLICY, MemoryDriver, files_under, media, plugin_with_drivers


class CountingFilesys(FilesysDriver):
    """The filesys driver, counting the copies it is asked to read back."""

    verified: list[str] = []

    def verify(self, request) -> Iterable[FileOutcome]:
        CountingFilesys.verified.extend(i.locator for i in request.items)
        yield from super().verify(request)


class RottingFilesys(CountingFilesys):
    """A disk that returns other bytes than it was given: every copy reads back wrong."""

    name = "rotting"

    def verify(self, request) -> Iterable[FileOutcome]:
        for item in request.items:
            path = Path(self.config.root) / item.locator
            data = bytearray(path.read_bytes())
            data[0] ^= 0xFF
            path.write_bytes(bytes(data))
        yield from super().verify(request)


class BlindDriver(MemoryDriver):
    """Stores copies but cannot read them back."""

    name = "blind"
    capabilities = frozenset({Capability.ARCHIVE, Capability.RESTORE, Capability.DELETE})


class TrustedStore(MemoryDriver):
    """A storage that checks the checksum of what it stores itself (an S3 with checksums)."""

    name = "trusted"
    capabilities = MemoryDriver.capabilities - {Capability.VERIFY} | {Capability.TRUSTED_CHECKSUM}


def site(tmp_path: Path, second: str = "filesys", *, wanted: int = 2, first: str = "filesys"):
    drivers = {
        "filesys": CountingFilesys,
        "rotting": RottingFilesys,
        "blind": BlindDriver,
        "trusted": TrustedStore,
    }
    targets = {}
    for name, driver in (("a", first), ("b", second)):
        root = tmp_path / f"archive-{name}"
        root.mkdir(exist_ok=True)
        on_disk = driver in ("filesys", "rotting")
        settings = {"root": str(root), "min_free_bytes": 0} if on_disk else {}
        targets[name] = {"driver": driver, "settings": settings}
    policies = {POLICY: {"name": "Two copies", "targets": ["a", "b"], "verified_copies": wanted}}
    return plugin_with_drivers(tmp_path, drivers, policies, targets)


@pytest.fixture(autouse=True)
def _fresh_counts():
    CountingFilesys.verified = []
    MemoryDriver.store = {}


def test_a_file_is_archived_once_both_required_copies_were_read_back(tmp_path):
    plugin = site(tmp_path)
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], POLICY, "job-1")
    assert archived and not not_archived, error
    assert len(CountingFilesys.verified) == 2  # one read back on each target
    copies = plugin.site().catalog.copies(policy=POLICY)
    assert len(copies) == 2 and all(c.last_verified is not None for c in copies)


def test_a_copy_that_reads_back_wrong_keeps_the_file_unarchived_naming_it(tmp_path):
    plugin = site(tmp_path, "rotting")
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], POLICY, "job-1")
    assert not archived and not_archived == [original]
    assert "2 verified copies are required" in error and "1 was verified" in error, error
    assert "target a: verified" in error
    assert "target b: reading the copy back failed" in error and "sha1" in error, error
    assert Path(original.files[0]).exists()  # Portal keeps the original: nothing to purge


def test_copies_verified_before_count_on_a_re_run_without_being_read_again(tmp_path):
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    _, not_archived, _, _ = site(tmp_path, "blind").archive([original], POLICY, "job-1")
    assert not_archived  # b cannot be verified: only a's copy was
    assert len(CountingFilesys.verified) == 1
    CountingFilesys.verified = []
    # The admin puts a target that can verify in b's place; a's copy is not read again.
    archived, not_archived, error, _ = site(tmp_path, "filesys").archive(
        [original], POLICY, "job-2"
    )
    assert archived and not not_archived, error
    assert len(CountingFilesys.verified) == 1  # b's new copy only


def test_a_target_that_cannot_read_back_never_counts_as_verified(tmp_path):
    plugin = site(tmp_path, "blind")
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], POLICY, "job-1")
    assert not archived and not_archived == [original]
    assert "target b: its driver blind cannot read copies back" in error, error


def test_a_storage_that_checks_checksums_itself_counts_without_a_read_back(tmp_path):
    plugin = site(tmp_path, "trusted")
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], POLICY, "job-1")
    assert archived and not not_archived, error
    assert len(CountingFilesys.verified) == 1  # a read back; b trusted


def test_one_verified_copy_of_two_is_enough_when_the_policy_asks_for_one(tmp_path):
    plugin = site(tmp_path, "blind", wanted=1)
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], POLICY, "job-1")
    assert archived and not not_archived, error


def test_more_verified_copies_than_targets_is_refused_with_its_path():
    raw = {
        "targets": {"a": {"driver": "filesys", "settings": {}}},
        "policies": {POLICY: {"targets": ["a"], "verified_copies": 2}},
    }
    with pytest.raises(ConfigError) as refused:
        parse_config(raw)
    assert f"policies.{POLICY}.verified_copies: 2 verified copies cannot come from 1 target" in (
        str(refused.value)
    )


OFFERED = "5e1f0000-0000-4000-8000-00000000a001"


class OfferingBlind(BlindDriver):
    """A driver that offers its own policy (as the tape driver offers one per pool)."""

    name = "offering"

    def policies(self):
        from archive_core.driver import OfferedPolicy

        yield OfferedPolicy(uuid=OFFERED, name="Offered")


@pytest.mark.parametrize("required", [None, 1])
def test_a_target_can_require_a_verified_copy_for_the_policies_its_driver_offers(
    tmp_path, required
):
    target = {"driver": "offering", "settings": {}}
    if required:
        target["verified_copies"] = required
    plugin = plugin_with_drivers(tmp_path, {"offering": OfferingBlind}, {}, {"t": target})
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, not_archived, error, _ = plugin.archive([original], OFFERED, "job-1")
    if required:
        assert not archived and not_archived == [original]
        assert "1 verified copy is required" in error, error
        assert "target t: its driver offering cannot read copies back" in error
    else:
        assert archived, error


def test_a_copy_written_again_is_read_back_again_not_taken_as_verified_from_before(tmp_path):
    """A verified copy goes missing and is written again; the new bytes read back wrong.
    The catalog must not go on counting the old verification for the new copy."""
    original = media(tmp_path / "online", "clip.mxf", os.urandom(5000))
    archived, _, error, _ = site(tmp_path).archive([original], POLICY, "job-1")
    assert archived, error
    [lost] = files_under(tmp_path / "archive-a")
    lost.unlink()
    _, not_archived, error, _ = site(tmp_path, first="rotting").archive([original], POLICY, "job-2")
    assert not_archived and "target a: reading the copy back failed" in error, error
    # The rewritten copy on a is bad; another attempt reads it back and refuses it again.
    archived, not_archived, error, _ = site(tmp_path).archive([original], POLICY, "job-3")
    assert not archived and "target a: reading the copy back failed" in error, error
    [bad] = [c for c in plugin_copies(tmp_path) if c.target == "a"]
    assert bad.failure and bad.last_failure is not None and bad.last_verified is None


def plugin_copies(tmp_path):
    return site(tmp_path).site().catalog.copies(policy=POLICY)
