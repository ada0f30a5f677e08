"""Several Portal workers (real processes) archiving overlapping batches to one policy at the
same moment all succeed, and leave one whole copy per file and target with one catalog row.

Each round gives 2-4 workers a random 60-80% of the same files (300 small ones and a few of
16 MiB and more), each in its own order, and lets them start together (tests/race_worker.py
waits for a line on stdin). A catalog that serializes badly shows up here as "deadlock
detected", "could not serialize" or "database is locked" in a worker's answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from archive_core.catalog import Catalog
from archive_core.testing.fileset import FileSet
from archive_core.transfer import LARGE_FILE
from tests.killrun import (
    TARGETS,
    Site,
    archived_state_problems,
    as_file_sets,
    build_site,
    write_manifest,
)
from tests.pgserver import PostgresServer, unique_database_name
from tests.sites import POLICY

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("race_worker.py")
SMALL_FILES = 300
LARGE_FILES = 3
ROUNDS = 5
#: A round whose workers have not all answered by then is a hang (they are killed).
ROUND_SECONDS = 120.0
#: What a catalog that lets concurrent workers trip over each other says.
CONTENTION = ("deadlock detected", "could not serialize", "database is locked")

pytestmark = pytest.mark.slow


@attrs.frozen(kw_only=True)
class Answer:
    """What one racing worker said: its result (None if it gave none) and its stderr."""

    worker: int
    returncode: int | None
    result: dict[str, Any] | None
    stderr: str


def _online_files(directory: Path, rng: random.Random) -> list[FileSet]:
    directory.mkdir()
    sizes = [rng.randint(1024, 64 * 1024) for _ in range(SMALL_FILES)]
    sizes += [LARGE_FILE + rng.randint(0, 4 * 1024 * 1024) for _ in range(LARGE_FILES)]
    file_sets = []
    for n, size in enumerate(sizes):
        data = rng.randbytes(size)
        path = directory / f"clip_{n:04d}.mxf"
        path.write_bytes(data)
        file_sets.append(
            FileSet(
                files=[str(path)],
                external_ids=[],
                item_id=f"VX-{2000 + n}",
                sha1=hashlib.sha1(data).hexdigest(),
                shape_id=f"VX-{6000 + n}",
                component_id=f"VX-{7000 + n}",
            )
        )
    return file_sets


#: Runs tests/race_worker.py (its command line follows the descriptor) and tells the test
#: when that worker is ready, on the pipe whose write end is that descriptor: the moment it
#: reads stdin for its go line, its READY_FILE made.
_READY_ON_PIPE = """
import os, runpy, sys

class GoLine:
    def __init__(self, stdin, ready):
        self._stdin, self._ready = stdin, ready

    def readline(self):
        if self._ready is not None:
            os.write(self._ready, b"ready\\n")
            os.close(self._ready)
            self._ready = None
        return self._stdin.readline()

    def __getattr__(self, name):
        return getattr(self._stdin, name)

sys.stdin = GoLine(sys.stdin, int(sys.argv.pop(1)))
sys.argv.pop(0)  # "-c": the worker's own command line follows
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _race(site: Site, batches: list[list[FileSet]], directory: Path) -> list[Answer]:
    """Start one worker per batch, let them all go at once, collect their answers."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    deadline = time.monotonic() + ROUND_SECONDS
    workers: list[subprocess.Popen[bytes]] = []
    readiness: dict[int, int] = {}  # the read end of each worker's ready pipe -> the worker
    try:
        for n, batch in enumerate(batches):
            manifest = write_manifest(directory / f"worker{n}.json", batch)
            ready_read, ready_write = os.pipe()
            readiness[ready_read] = n
            command = [
                *(sys.executable, "-c", _READY_ON_PIPE, str(ready_write)),
                *(str(WORKER), str(site.config), str(manifest), POLICY),
                *(f"race-job-{n}", str(directory / f"worker{n}.ready")),
            ]
            try:
                with (
                    open(directory / f"worker{n}.out", "wb") as out,
                    open(directory / f"worker{n}.err", "wb") as err,
                ):
                    workers.append(
                        subprocess.Popen(
                            command,
                            stdin=subprocess.PIPE,
                            stdout=out,
                            stderr=err,
                            env=env,
                            cwd=REPO,
                            pass_fds=(ready_write,),
                        )
                    )
            finally:
                os.close(ready_write)  # the worker holds the only one: its end if it exits
        # Every worker is loaded and waiting before any goes.
        waiting = dict(readiness)
        while waiting:
            timeout = max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select(list(waiting), [], [], timeout)
            assert readable, "racing workers did not get ready"
            for fd in readable:
                n = waiting.pop(fd)
                assert os.read(fd, 16) == b"ready\n", f"racing worker {n} exited unready"
        for process in workers:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            process.stdin.flush()
        for process in workers:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()  # a hang: its missing result is reported
                process.wait()
    finally:
        for fd in readiness:
            os.close(fd)
        for process in workers:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdin is not None:
                process.stdin.close()
    return [_answer(n, process, directory) for n, process in enumerate(workers)]


def _answer(n: int, process: subprocess.Popen[bytes], directory: Path) -> Answer:
    lines = (directory / f"worker{n}.out").read_text(errors="replace").strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    return Answer(
        worker=n,
        returncode=process.returncode,
        result=result,
        stderr=(directory / f"worker{n}.err").read_text(errors="replace"),
    )


def _answer_problems(answer: Answer, batch: list[FileSet]) -> list[str]:
    """Each worker's whole batch archived, with one external id per target, and no error."""
    who = f"worker {answer.worker}"
    problems = [
        f"{who}: {marker!r} in its {where}"
        for marker in CONTENTION
        for where, text in (("answer", json.dumps(answer.result)), ("stderr", answer.stderr))
        if marker in text
    ]
    result = answer.result
    if result is None or "archived" not in result:
        crash = (result or {}).get("crashed", "").strip().splitlines()[-1:] or [""]
        tail = " | ".join(answer.stderr.strip().splitlines()[-3:])
        return [*problems, f"{who}: no result (exit {answer.returncode}) {crash[0]} {tail}"]
    archived = as_file_sets(result["archived"])
    if result["not_archived"] or result["error"]:
        error = " ".join(result["error"].split())
        problems.append(
            f"{who}: {len(result['not_archived'])} of {len(batch)} not archived; error: "
            f"{error[:500]}"
        )
    short = [fs.item_id for fs in archived if len(set(fs.external_ids)) != len(TARGETS)]
    if short:
        problems.append(
            f"{who}: {len(short)} FileSets without one external id per target: {short[:3]}"
        )
    return problems


def _agreement_problems(answers: list[Answer]) -> list[str]:
    """The same file gets the same external ids whichever worker archived it."""
    seen: dict[str, dict[frozenset[str], list[int]]] = {}
    for answer in answers:
        for fs in as_file_sets((answer.result or {}).get("archived", [])):
            seen.setdefault(fs.item_id, {}).setdefault(frozenset(fs.external_ids), []).append(
                answer.worker
            )
    differing = [f"{item}: {ids}" for item, ids in seen.items() if len(ids) > 1]
    if not differing:
        return []
    return [f"{len(differing)} files got different external ids: {differing[:3]}"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def fresh_catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A callable giving a new empty catalog URL per round, on the parametrized backend."""
    made: list[str] = []
    server: PostgresServer | None = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgresql_server")

    def new(directory: Path) -> str:
        if server is None:
            return f"sqlite:///{directory / 'catalog.sqlite'}"
        name = unique_database_name("race")
        made.append(name)
        return server.create_database(name)

    yield new
    for name in made:
        assert server is not None
        server.drop_database(name)


def _round(directory: Path, url: str, file_sets: list[FileSet], rng: random.Random) -> list[str]:
    site = build_site(directory / "site", url)
    workers = rng.randint(2, 4)
    batches = []
    for _ in range(workers):
        batch = rng.sample(file_sets, k=round(len(file_sets) * rng.uniform(0.6, 0.8)))
        rng.shuffle(batch)
        batches.append(batch)
    answers = _race(site, batches, directory)
    problems = [p for a, b in zip(answers, batches, strict=True) for p in _answer_problems(a, b)]
    problems += _agreement_problems(answers)
    archived = [fs for a in answers for fs in as_file_sets((a.result or {}).get("archived", []))]
    done = {fs.item_id for fs in archived}
    failed = [fs for batch in batches for fs in batch if fs.item_id not in done]
    problems += archived_state_problems("after the race", site, archived, failed=failed)
    return [f"{workers} workers: {p}" for p in problems]


def test_workers_archiving_overlapping_batches_at_once_all_succeed_with_one_copy_each(
    fresh_catalog: Any, tmp_path: Path
) -> None:
    rng = random.Random(20240611)
    file_sets = _online_files(tmp_path / "online", rng)
    problems = []
    for n in range(ROUNDS):
        directory = tmp_path / f"round{n}"
        directory.mkdir()
        url = fresh_catalog(directory)
        # The catalog's tables exist already, as on any site past its first archive: the
        # race is between archives, not between two workers creating the schema.
        catalog = Catalog(url)
        catalog.unfinished()
        catalog.close()
        problems += [f"round {n}, {p}" for p in _round(directory, url, file_sets, rng)]
    assert not problems, "\n".join(problems)


def test_workers_racing_on_a_catalog_nobody_has_used_yet_all_succeed(
    fresh_catalog: Any, tmp_path: Path
) -> None:
    rng = random.Random(20240612)
    file_sets = _online_files(tmp_path / "online", rng)
    directory = tmp_path / "round"
    directory.mkdir()
    problems = _round(directory, fresh_catalog(directory), file_sets, rng)
    assert not problems, "\n".join(problems)
