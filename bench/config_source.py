"""What keeping the configuration in the catalog costs a Portal worker (issue 14).

Run `python bench/config_source.py [--quick]` from the repository (in its virtualenv). Two
long-lived plugins archive the same small files through Portal's face to a filesys target:
one whose targets and policies are in its config file (as before issue 14) and one whose
bootstrap file leaves them to the catalog, where they are saved as a version. The catalog
plugin asks the catalog for the newest version number once per job call; the bench shows that
this costs one call a constant (a query, nothing per file) and what the first call after an
admin saves a new version pays to switch to it. Both run on SQLite and on a PostgreSQL server
it starts itself, interleaved run by run. See bench/README.md.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from core import StatementCount, load_pgserver  # noqa: E402 - bench/core.py
from filesys import FileSet, settle, table, workspace, write_random  # noqa: E402

from archive_core.testing.siteconfig import write_config  # noqa: E402

POLICY = "4b0c1a1e-0000-4000-8000-000000000014"
FILE_SIZE = 4096
ADMIN = "bench (Portal admin)"


def document(work: Path, name: str) -> dict[str, Any]:
    """The targets and policies both plugins use; `name` is what a saved version changes."""
    return {
        "targets": {"disk": {"driver": "filesys", "settings": {"root": str(work / "archive")}}},
        "policies": {POLICY: {"name": name, "targets": ["disk"]}},
    }


def file_site(work: Path, url: str) -> Path:
    """A config file that declares the targets and policies itself (as before issue 14)."""
    (work / "archive").mkdir(parents=True)
    return write_config(work / "archive-core.toml", catalog_url=url, **document(work, "Bench"))


def catalog_site(work: Path, url: str) -> Path:
    """A bootstrap file that leaves the targets and policies to the catalog's versions."""
    (work / "archive").mkdir(parents=True)
    return write_config(
        work / "bootstrap.toml",
        targets={},
        policies={},
        catalog_url=url,
        config={"source": "catalog", "allowed_roots": [str(work)]},
    )


class Worker:
    """One long-lived plugin, as a Portal worker holds it; every call checked afterwards."""

    def __init__(self, label: str, config: Path, work: Path) -> None:
        from archive_core.portal import ArchiveCorePlugin

        self.label = label
        self.work = work
        self.plugin = ArchiveCorePlugin(config)
        self.jobs = itertools.count()
        self.names = itertools.count()

    def save_version(self) -> None:
        from archive_core import configedit

        site = self.plugin.site()
        based_on = site.catalog.config_versions.latest_number()
        configedit.save(
            site,
            document(self.work, f"Bench {next(self.names)}"),
            actor=ADMIN,
            comment="bench",
            based_on=based_on,
        )

    def archive(self, sources: list[tuple[Path, str]]) -> None:
        job = next(self.jobs)
        sets = [
            FileSet([str(path)], (), f"VX-{job}-{n}", sha1, "VX-S", "VX-C")
            for n, (path, sha1) in enumerate(sources)
        ]
        archived, not_archived, error, _ = self.plugin.archive(sets, POLICY, f"bench-{job}")
        if error or not_archived or len(archived) != len(sets):
            raise SystemExit(f"{self.label}: archive failed: {error or not_archived}")


def timed(count: StatementCount, call) -> tuple[float, int]:
    """`call()`'s wall time and SQL statements. Not bench/core.py's `_timed`: its
    gc.collect() before the timer leaves the caches cold and triples the time of a
    sub-millisecond query (measured: 0.3 ms against 1.0 ms for the version check)."""
    count.reset()
    start = time.perf_counter()
    call()
    return time.perf_counter() - start, count.statements


def measure(
    workers: dict[str, Worker], batches: dict[int, list[tuple[Path, str]]], repeats: int
) -> dict[tuple[str, Any], list[tuple[float, int]]]:
    """Every (worker, batch size) `repeats` times, interleaved, plus the catalog worker's
    first call after each saved version."""
    count = StatementCount()
    samples: dict[tuple[str, Any], list[tuple[float, int]]] = {}
    for _ in range(repeats):
        for size, sources in batches.items():
            for label, worker in workers.items():
                samples.setdefault((label, size), []).append(
                    timed(count, lambda w=worker, s=sources: w.archive(s))
                )
        worker = workers["catalog"]
        versions = worker.plugin.site().catalog.config_versions
        samples.setdefault(("catalog", "the check alone"), []).extend(
            timed(count, versions.latest_number) for _ in range(10)
        )
        worker.save_version()
        samples.setdefault(("catalog", "after a save"), []).append(
            timed(count, lambda w=worker: w.archive(batches[1]))
        )
    return samples


def report(backend: str, samples: dict[tuple[str, Any], list[tuple[float, int]]]) -> str:
    def ms(key: tuple[str, Any]) -> float:
        return statistics.median(s[0] for s in samples[key]) * 1e3

    def sql(key: tuple[str, Any]) -> float:
        return statistics.median(s[1] for s in samples[key])

    def row(files: str, label: str, key: tuple[str, Any], base: float | None = None) -> tuple:
        """A table row; against `base` (the file worker's ms) when given."""
        vs = f"{ms(key) / base:.3f}x" if base else ""
        extra = f"{ms(key) - base:+.2f}" if base and key[0] != "file" else ""
        return (files, label, f"{ms(key):.2f}", f"{sql(key):.0f}", vs, extra)

    rows = [("files per call", "config in", "ms per call", "SQL per call", "vs file", "extra ms")]
    for size in sorted(size for label, size in samples if label == "file"):
        base = ms(("file", size))
        rows.append(row(f"{size:,}", "file", ("file", size), base))
        rows.append(row(f"{size:,}", "catalog", ("catalog", size), base))
    rows.append(row("1", "catalog, new version", ("catalog", "after a save"), ms(("file", 1))))
    rows.append(row("0", "the version check alone", ("catalog", "the check alone")))
    return f"{backend}\n{table(rows)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs")
    parser.add_argument("--repeats", type=int, help="runs per worker and batch size")
    parser.add_argument(
        "--backend", choices=("sqlite", "postgresql", "both"), default="both", help="catalogs"
    )
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args()
    repeats = args.repeats or (8 if args.quick else 30)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    base = workspace(args.keep)
    server = None
    try:
        settle(base)
        batches = {}
        for size in (1, 100):
            folder = base / f"src-{size}"
            folder.mkdir()
            batches[size] = [
                (path, write_random(path, FILE_SIZE))
                for path in (folder / f"clip{n:04d}.bin" for n in range(size))
            ]
        if "postgresql" in backends:
            server = load_pgserver().PostgresServer()
            server.start()
        reports = []
        for backend in backends:
            workers = {}
            for label, make in (("file", file_site), ("catalog", catalog_site)):
                work = base / backend / label
                url = (
                    f"sqlite:///{work / 'catalog.sqlite'}"
                    if backend == "sqlite"
                    else server.create_database(f"bench_config_{label}")
                )
                work.mkdir(parents=True)
                workers[label] = Worker(label, make(work, url), work)
            workers["catalog"].save_version()
            # A long-lived worker has archived before: imports, schema, driver and
            # connections are paid for here, untimed.
            for worker in workers.values():
                for sources in batches.values():
                    worker.archive(sources)
            reports.append(report(backend, measure(workers, batches, repeats)))
        print(
            f"\n{repeats} calls per row, median; {FILE_SIZE:,} B files to a filesys target "
            "through Portal's face; 'after a save': the first call after an admin saved a "
            "new version; 'the version check alone': ConfigVersions.latest_number(), what each "
            "job call adds\n"
        )
        print("\n\n".join(reports))
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
