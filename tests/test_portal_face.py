"""Portal's contract, exercised through ArchiveCorePlugin exactly as Portal's workers call it."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import namedtuple
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive_core.catalog import Catalog
from archive_core.errors import RestoreFailed
from archive_core.portal import PLUGIN_GUID, ArchiveCorePlugin
from archive_core.testing.fileset import FileSet
from tests.sites import POLICY, files_under, filesys_site, media


@pytest.fixture
def site(tmp_path):
    config, roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    yield plugin, roots[0], tmp_path
    plugin.site().close()


def test_plugin_has_fixed_identity_and_the_four_roles(tmp_path):
    plugin = ArchiveCorePlugin(tmp_path / "missing.toml")
    assert plugin.plugin_guid == PLUGIN_GUID
    assert plugin.name == "archive-core"
    assert plugin.role_archive == "portal_archive_archive_core"
    assert plugin.role_restore == "portal_restore_archive_core"
    assert plugin.role_purge == "portal_purge_archive_core"
    assert plugin.role_delete == "portal_delete_archive_core"


def test_archive_returns_four_tuple_with_external_ids_set_through_replace(site):
    plugin, root, tmp = site
    fs = media(tmp / "online", "clip one.mov", b"frames" * 1000, item_id="VX-7")
    archived, not_archived, error, extra = plugin.archive([fs], POLICY, 42)
    assert (not_archived, error, extra) == ([], "", {})
    [done] = archived
    assert type(done) is FileSet
    assert done._replace(external_ids=fs.external_ids) == fs  # nothing else changed
    [external_id] = done.external_ids
    assert external_id.startswith("filesys://disk0/")
    stored = files_under(root)
    assert [p.name for p in stored] == [f"clip one_VX-7_{fs.sha1}.mov"]
    assert stored.pop().read_bytes() == b"frames" * 1000


def test_archive_returns_only_the_archived_list_when_legacy_setting_is_on(tmp_path):
    config, _ = filesys_site(tmp_path, portal={"legacy_archive_result": True})
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "a.wav", b"x" * 10)
    result = plugin.archive([fs], POLICY, "job")
    assert isinstance(result, list)
    assert [r.external_ids != [] for r in result] == [True]


def test_archive_reports_unreadable_and_mismatching_files_as_not_archived(site):
    plugin, root, tmp = site
    good = media(tmp / "online", "good.mxf", b"good")
    gone = media(tmp / "online", "gone.mxf", b"gone")
    Path(gone.files[0]).unlink()
    wrong = media(tmp / "online", "wrong.mxf", b"wrong")._replace(sha1="0" * 40)
    archived, not_archived, error, _ = plugin.archive([good, gone, wrong], POLICY, "j")
    assert [fs.files for fs in archived] == [good.files]
    assert not_archived == [gone, wrong]  # the very objects Portal passed
    assert "2 of 3 files could not be archived" in error
    assert gone.files[0] in error and wrong.files[0] in error
    assert "checksum mismatch" in error.lower() or "sha1" in error
    assert [p.name for p in files_under(root)] == [f"good_VX-1_{good.sha1}.mxf"]


def test_archive_again_reuses_the_copy_without_duplicates(site):
    plugin, root, tmp = site
    fs = media(tmp / "online", "promo.mp4", b"promo" * 333)
    first, *_ = plugin.archive([fs], POLICY, "j1")
    second, *_ = plugin.archive([fs], POLICY, "j2")
    assert first[0].external_ids == second[0].external_ids
    assert len(files_under(root)) == 1
    assert len(plugin.site().catalog.copies()) == 1


def test_two_items_sharing_one_sha1_get_two_separate_copies(site):
    plugin, root, tmp = site
    a = media(tmp / "online", "same.mov", b"identical", item_id="VX-1")
    b = media(tmp / "online2", "same.mov", b"identical", item_id="VX-2")
    archived, *_ = plugin.archive([a, b], POLICY, "j")
    assert archived[0].external_ids != archived[1].external_ids
    assert len(files_under(root)) == 2


def test_restore_round_trip_gives_equal_bytes(site):
    plugin, _, tmp = site
    content = bytes(range(256)) * 4099
    fs = media(tmp / "online", "master.mxf", content)
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    Path(fs.files[0]).unlink()  # purged from online storage
    restored = plugin.restore([archived], POLICY)
    assert restored == [archived]
    assert Path(fs.files[0]).read_bytes() == content


def test_restore_raises_admin_readable_error_naming_each_failed_file(site):
    plugin, root, tmp = site
    ok = media(tmp / "online", "ok.mov", b"ok")
    lost = media(tmp / "online", "lost.mov", b"lost")
    archived, *_ = plugin.archive([ok, lost], POLICY, "j")
    for p in files_under(root):
        if "lost" in p.name:
            p.unlink()
    with pytest.raises(RestoreFailed) as caught:
        plugin.restore(archived, POLICY)
    message = str(caught.value)
    assert message.startswith("Restore failed for 1 file")
    assert lost.files[0] in message and "does not exist" in message
    assert ok.files[0] not in message
    assert caught.value.paths == (lost.files[0],)


def test_restore_works_when_shape_has_more_files_than_external_ids(site):
    plugin, _, tmp = site
    fs = media(tmp / "online", "multi.mov", b"multi" * 50)
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    second_storage = str(tmp / "other" / "multi.mov")
    shaped = archived._replace(files=[fs.files[0], second_storage])
    Path(fs.files[0]).unlink()
    plugin.restore([shaped], POLICY)
    assert Path(fs.files[0]).read_bytes() == b"multi" * 50
    assert not Path(second_storage).exists()  # Portal copies to further locations itself


def test_restore_works_from_portals_external_id_after_the_catalog_is_lost(tmp_path):
    config, _ = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "keep.mov", b"keep me")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    plugin.site().close()
    (tmp_path / "catalog.sqlite").unlink()
    for leftover in tmp_path.glob("catalog.sqlite-*"):
        leftover.unlink()
    Path(fs.files[0]).unlink()
    ArchiveCorePlugin(config).restore([archived], POLICY)
    assert Path(fs.files[0]).read_bytes() == b"keep me"


def test_restore_fails_over_to_the_second_copy(tmp_path):
    config, roots = filesys_site(tmp_path, copies=2)
    plugin = ArchiveCorePlugin(config)
    fs = media(tmp_path / "online", "twice.mov", b"two copies")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    assert [e.split("/")[2] for e in archived.external_ids] == ["disk0", "disk1"]
    for p in files_under(roots[0]):
        p.unlink()
    Path(fs.files[0]).unlink()
    plugin.restore([archived], POLICY)
    assert Path(fs.files[0]).read_bytes() == b"two copies"


def test_restore_refuses_a_copy_whose_bytes_changed_on_the_archive(site):
    plugin, root, tmp = site
    fs = media(tmp / "online", "rot.mov", b"original bytes")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    [stored] = files_under(root)
    stored.write_bytes(b"bit rot bytes!")
    Path(fs.files[0]).unlink()
    with pytest.raises(RestoreFailed, match="sha1"):
        plugin.restore([archived], POLICY)
    assert not Path(fs.files[0]).exists()  # nothing half-written at the destination


def test_delete_removes_the_copy_and_its_catalog_row(site):
    plugin, root, tmp = site
    fs = media(tmp / "online", "bye.mov", b"bye")
    [archived], *_ = plugin.archive([fs], POLICY, "j")
    assert plugin.delete([archived], POLICY) == [archived]
    assert files_under(root) == set()
    assert plugin.site().catalog.copies() == []


def test_unknown_policy_leaves_every_file_not_archived_with_a_message(site):
    plugin, _, tmp = site
    fs = media(tmp / "online", "x.mov", b"x")
    archived, not_archived, error, _ = plugin.archive([fs], "no-such-policy", "j")
    assert archived == [] and not_archived == [fs]
    assert "no-such-policy" in error and POLICY in error


def test_file_sets_with_extra_or_missing_optional_fields_still_work(site):
    plugin, _, tmp = site
    Newer = namedtuple(
        "FileSet", "files external_ids item_id sha1 shape_id component_id storage_id priority"
    )
    Older = namedtuple("FileSet", "files external_ids sha1")
    newer = Newer(*media(tmp / "a", "n.mov", b"newer", item_id="VX-5"), "VX-S1", 3)
    content = b"older"
    old_path = tmp / "b" / "o.mov"
    old_path.parent.mkdir()
    old_path.write_bytes(content)
    older = Older(files=[str(old_path)], external_ids=[], sha1=hashlib.sha1(content).hexdigest())
    archived, not_archived, error, _ = plugin.archive([newer, older], POLICY, "j")
    assert not_archived == [] and error == ""
    assert type(archived[0]) is Newer and archived[0].priority == 3
    assert type(archived[1]) is Older
    old_path.unlink()
    plugin.restore([archived[1]], POLICY)
    assert old_path.read_bytes() == content


def test_construction_never_raises_and_broken_config_is_not_ready(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[policies.p]\ntargets = ['nowhere']\n")
    plugin = ArchiveCorePlugin(bad)
    assert plugin.is_ready() is False
    assert plugin.get_policies() == []
    fs = FileSet(files=[str(tmp_path / "f")], sha1="0" * 40)
    _, not_archived, error, _ = plugin.archive([fs], "p", "j")
    assert not_archived == [fs]
    assert "policies.p.targets: no target named 'nowhere'" in error


def test_fixed_config_is_picked_up_without_restarting_portal(tmp_path):
    config, _ = filesys_site(tmp_path)
    good = config.read_text()
    config.write_text("this is = not toml [")
    plugin = ArchiveCorePlugin(config)
    assert plugin.get_policies() == []
    config.write_text(good)
    assert [p["uuid"] for p in plugin.get_policies()] == [POLICY]


def test_get_policies_lists_uuid_name_and_bulk_support(tmp_path):
    config, _ = filesys_site(tmp_path)
    text = config.read_text() + "bulk = { max_files = 100, max_bytes = 1000000 }\n"
    config.write_text(text)
    plugin = ArchiveCorePlugin(config)
    assert plugin.get_policies() == [{"uuid": POLICY, "name": "Test archive", "bulk_support": True}]
    assert plugin.get_policy_constrains() == [
        {"uuid": POLICY, "max_files": 100, "max_bytes": 1000000}
    ]


def test_is_ready_true_for_a_writable_filesys_target(site):
    plugin, _, _ = site
    assert plugin.is_ready() is True
    [state] = plugin.readiness()
    assert state.readiness.ok and state.readiness.reason


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batch=st.lists(
        st.tuples(
            st.text(
                st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"),
                min_size=1,
                max_size=40,
            ).filter(lambda n: n not in (".", "..")),
            st.binary(max_size=2048),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda t: t[0],
    )
)
def test_any_batch_of_awkward_names_and_sizes_round_trips(tmp_path_factory, batch):
    tmp = tmp_path_factory.mktemp("batch")
    config, _ = filesys_site(tmp)
    plugin = ArchiveCorePlugin(config)
    file_sets = [
        media(tmp / "online", name, data, item_id=f"VX-{n}") for n, (name, data) in enumerate(batch)
    ]
    archived, not_archived, error, _ = plugin.archive(file_sets, POLICY, "j")
    assert not_archived == [] and error == ""
    for fs in file_sets:
        Path(fs.files[0]).unlink()
    plugin.restore(archived, POLICY)
    for fs, (_, data) in zip(file_sets, batch, strict=True):
        assert Path(fs.files[0]).read_bytes() == data
    plugin.site().close()


def test_catalog_records_size_sha1_and_sha256_of_each_copy(site):
    plugin, _, tmp = site
    content = b"catalogued" * 99
    fs = media(tmp / "online", "c.mov", content)
    [archived], *_ = plugin.archive([fs], POLICY, "job-9")
    [record] = Catalog(plugin.site().config.catalog_url).copies()
    assert attrs.asdict(record, filter=lambda a, _: a.name in ("size", "sha1", "sha256")) == {
        "size": len(content),
        "sha1": fs.sha1,
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert record.external_id == archived.external_ids[0]
    journal = plugin.site().catalog.journal(job_id="job-9")
    assert [row.state for row in journal] == ["done"]


def test_readiness_never_blocks_longer_than_the_timeout(tmp_path):
    from tests.sites import MemoryDriver, plugin_with_drivers

    probing, released = threading.Event(), threading.Event()

    class HangingDriver(MemoryDriver):
        name = "hanging"

        def check_ready(self):
            probing.set()
            released.wait()  # a dead mount: no answer until the test lets go
            return super().check_ready()

    plugin = plugin_with_drivers(
        tmp_path,
        {"hanging": HangingDriver},
        targets={"slow": {"driver": "hanging"}},
        policies={"p": {"targets": ["slow"]}},
        portal={"ready_timeout_seconds": 0.2, "ready_cache_seconds": 60},
    )
    try:
        started = time.monotonic()
        assert plugin.is_ready() is False
        assert time.monotonic() - started < 1.5
        assert probing.wait(timeout=10)  # the probe ran, and hangs still
        [state] = plugin.readiness()  # cached: answers at once, with the reason
        assert "no answer from target" in state.readiness.reason
    finally:
        released.set()
