"""Self-describing targets: manifests beside the copies, and a lost catalog rebuilt from them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from click.testing import CliRunner

from archive_core import manifests
from archive_core.cli import main
from archive_core.portal import ArchiveCorePlugin

from .sites import POLICY, filesys_site, media


def _archived(tmp_path: Path):
    """Two batches archived to one filesys target; the FileSets Portal keeps, with bytes."""
    config, roots = filesys_site(tmp_path)
    plugin = ArchiveCorePlugin(config)
    kept = []
    for batch in range(2):
        originals = [
            media(
                tmp_path / "online",
                f"b{batch}f{n}.mxf",
                os.urandom(700 + n),
                item_id=f"VX-{batch}{n}",
            )
            for n in range(3)
        ]
        archived, _, error, _ = plugin.archive(originals, POLICY, f"job-{batch}")
        assert len(archived) == 3, error
        kept += [
            (fs, Path(o.files[0]).read_bytes()) for fs, o in zip(archived, originals, strict=True)
        ]
    return config, roots[0], kept


def _rebuild(config: Path, *extra: str):
    return CliRunner().invoke(
        main, ["--config", str(config), "catalog", "rebuild", "--target", "disk0", "--json", *extra]
    )


def _lose_catalog(tmp_path: Path) -> None:
    (tmp_path / "catalog.sqlite").unlink()


def test_each_batch_leaves_a_manifest_that_describes_its_copies(tmp_path):
    _config, root, kept = _archived(tmp_path)
    stored = sorted((root / ".archive-core" / "manifests").iterdir())
    assert len(stored) == 2
    parsed = [manifests.parse(p.read_text(), name=p.name) for p in stored]
    described = {e.external_id for m in parsed for e in m.entries}
    assert described == {fs.external_ids[0] for fs, _ in kept}
    entry = parsed[0].entries[0]
    assert entry.sha256 and entry.sha1 and entry.size and entry.item_id.startswith("VX-")
    assert parsed[0].policy == POLICY and parsed[0].target == "disk0"


def test_a_lost_catalog_is_rebuilt_and_everything_restores_through_the_portal_face(tmp_path):
    config, _root, kept = _archived(tmp_path)
    before = {r.external_id: r for r in ArchiveCorePlugin(config).site().catalog.copies()}
    _lose_catalog(tmp_path)
    result = _rebuild(config)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["from_manifests"], report["from_names"], report["refused"]) == (6, 0, [])
    plugin = ArchiveCorePlugin(config)
    after = {r.external_id: r for r in plugin.site().catalog.copies()}
    assert set(after) == set(before)
    for external_id, record in before.items():
        again = after[external_id]
        assert (again.sha1, again.sha256, again.size, again.item_id, again.name) == (
            record.sha1,
            record.sha256,
            record.size,
            record.item_id,
            record.name,
        )
    back = tmp_path / "back"
    back.mkdir()
    wanted = [fs._replace(files=[str(back / f"{n}.mxf")]) for n, (fs, _) in enumerate(kept)]
    plugin.restore(wanted, POLICY)  # raises when any file cannot be restored
    for (_, data), fs in zip(kept, wanted, strict=True):
        assert Path(fs.files[0]).read_bytes() == data


def test_an_edited_manifest_is_refused_and_its_copies_taken_by_their_names(tmp_path):
    config, root, _kept = _archived(tmp_path)
    [first, _second] = sorted((root / ".archive-core" / "manifests").iterdir())
    first.write_text(first.read_text().replace('"size": 700', '"size": 9999'))
    _lose_catalog(tmp_path)
    result = _rebuild(config)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["refused"] == [
        f"manifest {first.name} was changed: its lines do not match its trailer"
    ]
    assert (report["from_manifests"], report["from_names"]) == (3, 3)
    records = ArchiveCorePlugin(config).site().catalog.copies()
    by_name = [r for r in records if r.sha256 is None]
    assert len(by_name) == 3 and all(r.sha1 and r.item_id and r.size for r in by_name)


def test_a_truncated_manifest_is_refused_whole(tmp_path):
    config, root, _kept = _archived(tmp_path)
    [first, _second] = sorted((root / ".archive-core" / "manifests").iterdir())
    text = first.read_text()
    first.write_text(text[: len(text) // 2])
    _lose_catalog(tmp_path)
    report = json.loads(_rebuild(config).output)
    assert len(report["refused"]) == 1 and "cut off" in report["refused"][0], report
    assert report["from_manifests"] + report["from_names"] == 6


def test_a_copy_gone_from_the_target_is_not_rebuilt(tmp_path):
    config, root, kept = _archived(tmp_path)
    gone = kept[0][0].external_ids[0].split("/", 3)[3]
    (root / gone).unlink()
    _lose_catalog(tmp_path)
    report = json.loads(_rebuild(config).output)
    assert report["from_manifests"] == 5
    assert any(gone in why and "not on the target" in why for why in report["skipped"])


def test_rebuild_refuses_a_catalog_that_has_copies_unless_forced(tmp_path):
    config, _root, _kept = _archived(tmp_path)
    refused = _rebuild(config)
    assert refused.exit_code == 2
    assert "already records 6 copies on target disk0" in refused.output
    assert "--force" in refused.output
    forced = _rebuild(config, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["replaced"] == 6
    trail = list(ArchiveCorePlugin(config).site().catalog.audit.entries())
    assert trail[-1].operation == "rebuild"
