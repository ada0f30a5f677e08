"""`archive-core demo`: a whole archive → restore → verify cycle on a temporary local site.

It uses the embedded default (the filesys driver and a SQLite catalog) and goes through the
same Portal face Portal calls, so what it prints is what Portal would get.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

DEMO_POLICY = "0d3e6f1a-5e70-4c2b-9e5d-a2c41de0c0de"

#: Sample media: awkward names on purpose (spaces, accents, no extension, empty file).
SAMPLES = {
    "interview take 1.mov": 3 * 1024 * 1024 + 17,
    "Überblick_proxy.mp4": 700 * 1024,
    "subtitles.srt": 4096,
    "README": 600,
    "empty.wav": 0,
}


def run_demo(*, where: Path | None = None, keep: bool = False) -> bool:
    from collections import namedtuple

    from rich.console import Console
    from rich.table import Table

    from archive_core.portal import ArchiveCorePlugin

    console = Console()
    base = Path(where) if where else Path(tempfile.mkdtemp(prefix="archive-core-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    if any(base.iterdir()):
        console.print(f"[red]error:[/] demo directory {base} is not empty")
        return False
    FileSet = namedtuple("FileSet", "files external_ids item_id sha1 shape_id component_id")
    try:
        online, archive_root, restored = base / "online", base / "archive", base / "restored"
        for d in (online, archive_root, restored):
            d.mkdir()
        config = base / "archive-core.toml"
        config.write_text(
            "# written by `archive-core demo`: one local filesys policy, SQLite catalog\n"
            f'state_dir = "{base / "state"}"\n\n'
            "[targets.demo-disk]\n"
            'driver = "filesys"\n'
            f'settings = {{ root = "{archive_root}", min_free_bytes = 0 }}\n\n'
            f"[policies.{DEMO_POLICY}]\n"
            'name = "Demo archive"\n'
            'targets = ["demo-disk"]\n',
            encoding="utf-8",
        )
        console.print(f"[bold]archive-core demo[/] in {base}")
        console.print(f"config: {config}\n")

        file_sets = []
        for n, (name, size) in enumerate(SAMPLES.items()):
            path = online / name
            path.write_bytes(_sample_bytes(name, size))
            sha1 = hashlib.sha1(path.read_bytes()).hexdigest()  # Vidispine's hash
            file_sets.append(
                FileSet(
                    files=[str(path)],
                    external_ids=[],
                    item_id=f"VX-{n + 1}",
                    sha1=sha1,
                    shape_id=f"VX-{100 + n}",
                    component_id=None,
                )
            )

        plugin = ArchiveCorePlugin(config)
        ready = plugin.readiness()
        for state in ready:
            console.print(
                f"policy {state.policy.name}: ready={state.readiness.ok} ({state.readiness.reason})"
            )
        started = time.perf_counter()
        archived, not_archived, error, _ = plugin.archive(file_sets, DEMO_POLICY, "demo-job-1")
        archive_s = time.perf_counter() - started
        if error:
            console.print(f"[red]archive error:[/] {error}")

        # Portal restores to the original paths after a purge; the demo restores elsewhere so
        # originals and restored copies can be compared byte for byte.
        to_restore = [
            fs._replace(files=[str(restored / Path(fs.files[0]).name)]) for fs in archived
        ]
        started = time.perf_counter()
        plugin.restore(to_restore, DEMO_POLICY)
        restore_s = time.perf_counter() - started
        verified, failed, verify_error = plugin.verify(archived, DEMO_POLICY)

        table = Table(title="What the demo did", title_justify="left")
        for column in ("file", "bytes", "restored equal", "verified"):
            table.add_column(column, overflow="fold")
        verified_ids = {tuple(fs.external_ids) for fs in verified}
        all_ok = not not_archived and not failed
        for original, copy in zip(archived, to_restore, strict=True):
            same = Path(original.files[0]).read_bytes() == Path(copy.files[0]).read_bytes()
            is_verified = tuple(original.external_ids) in verified_ids
            all_ok = all_ok and same and is_verified
            table.add_row(
                Path(original.files[0]).name,
                str(os.path.getsize(original.files[0])),
                "yes" if same else "[red]NO[/]",
                "yes" if is_verified else "[red]NO[/]",
            )
        console.print(table)
        console.print("external ids Portal would store:")
        for fs in archived:
            console.print(f"  {', '.join(fs.external_ids)}", soft_wrap=True, highlight=False)
        catalog = plugin.site().catalog
        console.print(
            f"archived {len(archived)} files in {archive_s:.2f} s, restored in {restore_s:.2f} s;"
            f" catalog holds {len(catalog.copies(policy=DEMO_POLICY))} copies "
            f"({plugin.site().config.catalog_url})"
        )
        if verify_error:
            console.print(f"[red]verify error:[/] {verify_error}")
        plugin.site().close()
        console.print("[green]demo passed[/]" if all_ok else "[red]demo FAILED[/]")
        if keep or where:
            console.print(f"kept: {base}  (try: archive-core --config {config} check)")
        return all_ok
    finally:
        if not keep and where is None:
            shutil.rmtree(base, ignore_errors=True)


def _sample_bytes(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]
