"""Kill -9 trials of the core's data-safety promises, with real processes and real files.

A trial builds a fresh site (one policy, two filesys targets with the `item` layout, the
catalog on SQLite or a fresh PostgreSQL database), runs one archive, restore or delete in a
Portal worker process (tests/kill_worker.py), SIGKILLs that worker, or one of its staging
children, once the operation has visibly progressed by a sampled amount, runs the operation
again to completion in a fresh process as Celery would, and checks every promise the core
makes about the outcome, reporting every violation rather than the first. Each trial is drawn
from its own seed, so a violation is replayed with `--replay SEED`.

    python -m tests.killrun --trials 120 --backend both --seed 1
    python -m tests.killrun --replay 123456789 --backend sqlite --keep /tmp/trial
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs
from archive_core_filesys._pool import POOL_MIN_FILES

from archive_core.naming import archive_name
from archive_core.testing.fileset import FileSet
from archive_core.testing.siteconfig import write_config
from archive_core.transfer import LARGE_FILE
from tests.pgserver import PostgresServer, PostgresUnavailable, unique_database_name
from tests.sites import POLICY

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("kill_worker.py")
TARGETS = ("disk0", "disk1")
SCENARIOS = ("inproc", "pooled")
OPERATIONS = ("archive", "restore", "delete")
BACKENDS = ("sqlite", "postgresql")

#: How long one worker run may take before the trial calls it hung (a violation).
RUN_SECONDS = 180.0
#: How long a staging process orphaned by its parent's kill may live on (it should finish
#: the task it holds and exit when it finds its answer pipe gone).
ORPHAN_SECONDS = 60.0
#: Examples quoted per violation: enough to find the files, short enough to read.
EXAMPLES = 3
#: Shortest pause between two looks at a kill point's progress.
_POLL_PAUSE = 0.002

_STAGER_MARK = b"archive_core_filesys._stager"


# ==== plans ==================================================================================


@attrs.frozen(kw_only=True)
class KillPoint:
    """Kill once `probe` (a count of visible progress) reaches `count`."""

    probe: str  # published | removed | restored | temporary | journal | intents
    count: int

    def __str__(self) -> str:
        return f"{self.probe}>={self.count}"


@attrs.frozen(kw_only=True)
class TrialPlan:
    """Everything a trial does, drawn from its seed: the same seed replays the same trial."""

    seed: int
    backend: str
    scenario: str
    operation: str
    small_files: int
    large_files: int
    kill_target: str  # parent | child (a staging process; pooled archive only)
    kill_point: KillPoint
    rerun_job: str  # same | new: the re-run keeps the killed run's job id, or gets another

    @property
    def files(self) -> int:
        return self.small_files + self.large_files

    def replay(self) -> str:
        """The command that runs this trial again."""
        return (
            f"python -m tests.killrun --replay {self.seed} --backend {self.backend} "
            f"--scenario {self.scenario} --operation {self.operation} "
            f"--kill-target {self.kill_target}"
        )

    def describe(self) -> str:
        return (
            f"seed={self.seed} backend={self.backend} scenario={self.scenario} "
            f"op={self.operation} files={self.files} kill={self.kill_target}@{self.kill_point} "
            f"rerun={self.rerun_job}-job"
        )


def plan_trial(
    seed: int,
    backend: str,
    *,
    scenario: str | None = None,
    operation: str | None = None,
    kill_target: str | None = None,
    kill_point: KillPoint | None = None,
) -> TrialPlan:
    """The trial of `seed`; scenario, operation, kill target and point are drawn unless given.

    Every draw is made whether or not its value is given, so a trial printed as (seed,
    scenario, operation, kill target) is replayed exactly by giving those four.
    """
    rng = random.Random(seed)
    drawn_scenario, drawn_operation = rng.choice(SCENARIOS), rng.choice(OPERATIONS)
    drawn_target = rng.choice(("parent", "child"))
    scenario = scenario or drawn_scenario
    operation = operation or drawn_operation
    if scenario == "pooled":
        small, large = rng.randint(POOL_MIN_FILES, POOL_MIN_FILES + 200), 0
    else:
        small, large = rng.randint(200, 400), 2
    files = small + large
    if kill_target is None:
        pooled_archive = scenario == "pooled" and operation == "archive"
        kill_target = drawn_target if pooled_archive else "parent"
    copies = files * len(TARGETS)
    if kill_target == "child":
        # Staging processes exist only while a target's batch runs: kill one mid-batch.
        point = KillPoint(probe="published", count=rng.randint(1, copies - 1))
    else:
        progress = {"archive": "published", "restore": "restored", "delete": "removed"}[operation]
        units = files if operation == "restore" else copies
        kinds = [progress, progress, "journal", "journal", "intents"]
        if large and operation != "delete":
            kinds += ["temporary", "temporary"]  # a large file caught mid-copy, O_DIRECT
        kind = rng.choice(kinds)
        count = 1 if kind in ("intents", "temporary") else rng.randint(1, units - 1)
        point = KillPoint(probe=kind, count=count)
    return TrialPlan(
        seed=seed,
        backend=backend,
        scenario=scenario,
        operation=operation,
        small_files=small,
        large_files=large,
        kill_target=kill_target,
        kill_point=kill_point or point,
        rerun_job=rng.choice(("same", "new")),
    )


def plan_trials(
    count: int,
    seed: int,
    *,
    backends: Sequence[str],
    scenarios: Sequence[str] = SCENARIOS,
    operations: Sequence[str] = OPERATIONS,
) -> list[TrialPlan]:
    """`count` trials spread evenly over every (operation, scenario, kill target, backend);
    the rest of each trial is drawn from its seed."""
    rng = random.Random(seed)
    cells = [
        (operation, scenario, target, backend)
        for operation, scenario in itertools.product(operations, scenarios)
        for target in (
            ("parent", "child") if (operation, scenario) == ("archive", "pooled") else ("parent",)
        )
        for backend in backends
    ]
    plans = []
    for n in range(count):
        operation, scenario, target, backend = cells[n % len(cells)]
        plans.append(
            plan_trial(
                rng.randrange(2**31),
                backend,
                scenario=scenario,
                operation=operation,
                kill_target=target,
            )
        )
    return plans


# ==== sites and batches ======================================================================


@attrs.frozen(kw_only=True)
class Site:
    """One site on disk: its config, the root of each target, its catalog."""

    config: Path
    roots: dict[str, Path]
    catalog_url: str


def build_site(directory: Path, catalog_url: str) -> Site:
    """A policy with two filesys targets (two copies per file), written as an admin would."""
    directory.mkdir(parents=True)
    roots = {}
    for n, target in enumerate(TARGETS):
        roots[target] = directory / f"archive{n}"
        roots[target].mkdir()
    config = write_config(
        directory / "archive-core.toml",
        targets={
            target: {
                "driver": "filesys",
                "settings": {"root": str(root), "layout": "item", "min_free_bytes": 0},
            }
            for target, root in roots.items()
        },
        policies={POLICY: {"name": "Kill trials", "targets": list(TARGETS)}},
        catalog_url=catalog_url,
    )
    return Site(config=config, roots=roots, catalog_url=catalog_url)


def build_batch(directory: Path, plan: TrialPlan) -> list[FileSet]:
    """Online files and the FileSets Portal would pass for them (Vidispine's sha1).

    A few items share bytes with another item, as Portal's duplicates do; their copies are
    still separate (the item id is part of the archive name).
    """
    rng = random.Random(plan.seed ^ 0x5EED)
    sizes = [rng.randint(1024, 8192) for _ in range(plan.small_files)]
    sizes += [LARGE_FILE + rng.randint(0, 8 * 1024 * 1024) for _ in range(plan.large_files)]
    rng.shuffle(sizes)
    folders = [directory / f"ingest{n}" for n in range(8)]
    for folder in folders:
        folder.mkdir(parents=True)
    file_sets: list[FileSet] = []
    for n, size in enumerate(sizes):
        if file_sets and size < LARGE_FILE and rng.random() < 0.02:
            data = Path(rng.choice(file_sets).files[0]).read_bytes()
        else:
            data = rng.randbytes(size)
        path = rng.choice(folders) / f"clip_{n:05d}.mxf"
        path.write_bytes(data)
        file_sets.append(
            FileSet(
                files=[str(path)],
                external_ids=[],
                item_id=f"VX-{1000 + n}",
                sha1=hashlib.sha1(data).hexdigest(),
                shape_id=f"VX-{5000 + n}",
                component_id=f"VX-{9000 + n}",
            )
        )
    return file_sets


def expected_locator(fs: Any) -> str:
    """Where the item layout puts a FileSet's copy under a root (documented by the driver)."""
    return f"{fs.item_id}/{archive_name(fs.files[0], item_id=fs.item_id, sha1=fs.sha1)}"


def write_manifest(path: Path, file_sets: Iterable[Any]) -> Path:
    path.write_text(json.dumps([fs._asdict() for fs in file_sets]), encoding="utf-8")
    return path


def as_file_sets(rows: Iterable[dict[str, Any]]) -> list[FileSet]:
    return [FileSet(**row) for row in rows]


# ==== catalogs ===============================================================================


class Databases:
    """Fresh catalog URLs for trials: SQLite files, or databases on one PostgreSQL server."""

    def __init__(self, server: PostgresServer | None) -> None:
        self._server = server
        self._made: list[str] = []

    def new(self, backend: str, directory: Path) -> str:
        if backend == "sqlite":
            return f"sqlite:///{directory / 'catalog.sqlite'}"
        if self._server is None:
            raise RuntimeError("a PostgreSQL trial needs a PostgresServer")
        name = unique_database_name("killrun")
        self._made.append(name)
        return self._server.create_database(name)

    def drop_all(self) -> None:
        made, self._made = self._made, []
        for name in made:
            assert self._server is not None
            try:
                self._server.drop_database(name)
            except Exception as exc:  # a leftover database is not worth failing a report
                print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


def catalog_copies(site: Site) -> list[Any]:
    from archive_core.catalog import Catalog

    catalog = Catalog(site.catalog_url)
    try:
        return catalog.copies(policy=POLICY)
    finally:
        catalog.close()


def catalog_unfinished(site: Site) -> list[Any]:
    from archive_core.catalog import Catalog

    catalog = Catalog(site.catalog_url)
    try:
        return catalog.unfinished()
    finally:
        catalog.close()


class JournalCounter:
    """Counts journal rows of one job while a worker writes them, without creating tables.

    The harness reads the journal table itself: opening `Catalog` would create the schema,
    racing the worker's own creation of it on a fresh database.
    """

    def __init__(self, catalog_url: str, job_id: str) -> None:
        import sqlalchemy as sa

        url = sa.engine.make_url(catalog_url)
        if url.get_backend_name() == "sqlite":
            # Read-only: the worker must be the one to create the file and its schema.
            url = sa.engine.make_url(f"sqlite:///file:{url.database}?mode=ro&uri=true")
        self._engine = sa.create_engine(url)
        self._job = job_id
        self._sa = sa

    def count(self, *, finished_only: bool) -> int:
        sa = self._sa
        query = "SELECT count(*) FROM archive_core_journal WHERE job_id = :job"
        if finished_only:
            query += " AND state <> 'intent'"
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(sa.text(query), {"job": self._job}).scalar_one())
        except sa.exc.SQLAlchemyError:
            return 0  # no database or table yet: nothing journaled

    def close(self) -> None:
        self._engine.dispose()


# ==== the file system ========================================================================


@attrs.frozen(kw_only=True)
class Tree:
    """What is under a directory: final-named files, temporary files and directories."""

    files: dict[str, Path]  # relative posix path -> path, for names not starting with "."
    temporaries: list[Path]  # hidden names: `.<name>...partial` and anything else hidden
    directories: list[Path]


def scan(top: Path) -> Tree:
    files: dict[str, Path] = {}
    temporaries: list[Path] = []
    directories: list[Path] = []
    stack = [top]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                directories.append(Path(entry.path))
                stack.append(Path(entry.path))
            elif entry.name.startswith("."):
                temporaries.append(Path(entry.path))
            else:
                files[Path(entry.path).relative_to(top).as_posix()] = Path(entry.path)
    return Tree(files=files, temporaries=temporaries, directories=directories)


def count_entries(tops: Iterable[Path]) -> tuple[int, int]:
    """(final-named files, hidden files) under `tops`: the cheap scan a kill point polls."""
    final = hidden = 0
    stack = [os.fspath(t) for t in tops]
    while stack:
        try:
            entries = os.scandir(stack.pop())
        except FileNotFoundError:
            continue
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.name.startswith("."):
                    hidden += 1
                else:
                    final += 1
    return final, hidden


def sha1_of(path: Path) -> str | None:
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha1").hexdigest()
    except OSError:
        return None


# ==== processes ==============================================================================


@attrs.frozen(kw_only=True)
class WorkerRun:
    """How one worker process ended, and what it printed."""

    returncode: int | None
    result: dict[str, Any] | None
    stderr_tail: str
    timed_out: bool = False

    def summary(self) -> str:
        if self.timed_out:
            return f"did not finish within {RUN_SECONDS:g} s (killed)"
        if self.result is not None and "crashed" in self.result:
            lines = self.result["crashed"].strip().splitlines()
            where = next((line.strip() for line in reversed(lines) if "File " in line), "")
            return f"the Portal face raised {lines[-1]} ({where})"
        return f"exit status {self.returncode}; stderr: {self.stderr_tail or '(empty)'}"


def start_worker(site: Site, manifest: Path, operation: str, job_id: str, log: Path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *sys.path]))
    command = [
        sys.executable,
        str(WORKER),
        str(site.config),
        str(manifest),
        POLICY,
        operation,
        job_id,
    ]
    with open(f"{log}.out", "wb") as out, open(f"{log}.err", "wb") as err:
        # Files, not pipes: a result of thousands of FileSets must never block the worker
        # on a pipe the harness only reads at the end.
        return subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=REPO
        )


def finish_worker(process: subprocess.Popen, log: Path, *, deadline: float) -> WorkerRun:
    timed_out = False
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        process.kill()
        process.wait()
    out = Path(f"{log}.out").read_text(errors="replace").strip().splitlines()
    err = Path(f"{log}.err").read_text(errors="replace").strip().splitlines()
    result = None
    if out:
        try:
            result = json.loads(out[-1])
        except json.JSONDecodeError:
            result = None
    return WorkerRun(
        returncode=process.returncode,
        result=result,
        stderr_tail=" | ".join(err[-4:])[-600:],
        timed_out=timed_out,
    )


def run_worker(site: Site, manifest: Path, operation: str, job_id: str, log: Path) -> WorkerRun:
    process = start_worker(site, manifest, operation, job_id, log)
    return finish_worker(process, log, deadline=time.monotonic() + RUN_SECONDS)


def child_pids(pid: int) -> list[int]:
    """The live children of `pid`, from /proc (every thread's list: any thread may fork)."""
    kids: list[int] = []
    for listing in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            kids.extend(int(k) for k in listing.read_text().split())
        except (OSError, ValueError):
            continue
    return [k for k in dict.fromkeys(kids) if is_alive(k)]


def is_stager(pid: int) -> bool:
    try:
        return _STAGER_MARK in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def is_alive(pid: int) -> bool:
    """Running, not a zombie: PID 1 here may never reap the orphans it inherits."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def await_exit(pids: Iterable[int], *, seconds: float) -> list[int]:
    """Wait for `pids` to end; return those still alive after `seconds` (then killed)."""
    deadline = time.monotonic() + seconds
    waiting = [p for p in pids if is_alive(p)]
    while waiting and time.monotonic() < deadline:
        time.sleep(0.02)
        waiting = [p for p in waiting if is_alive(p)]
    for pid in waiting:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return waiting


# ==== checks shared by the trials and the race test ==========================================


def copies_problems(what: str, site: Site, archived: Sequence[Any]) -> list[str]:
    """Every copy an archived FileSet names is on its root with the FileSet's bytes."""
    from archive_core.externalid import ExternalId

    bad = []
    for fs in archived:
        for text in fs.external_ids:
            ext = ExternalId.parse(text)
            root = site.roots.get(ext.target)
            if root is None or sha1_of(root / ext.locator) != fs.sha1:
                bad.append(text)
    if not bad:
        return []
    return [
        f"{what}: {len(bad)} copies reported archived are missing or do not hold their "
        f"FileSet's bytes: {_examples(bad)}"
    ]


def archived_state_problems(
    what: str, site: Site, archived: Sequence[Any], *, failed: Sequence[Any] = ()
) -> list[str]:
    """After archives end: every copy of `archived` whole, nothing else on the roots, one
    catalog row per copy, no open intents.

    A FileSet may appear more than once (several workers archived it). Copies of `failed`
    FileSets (reported not archived) may stay, as the driver documents, for a re-run to
    reuse; they must still be whole, and are not counted as strays.
    """
    from archive_core.externalid import ExternalId

    problems = copies_problems(what, site, archived)
    expected: dict[tuple[str, str], tuple[Any, str]] = {}
    for fs in archived:
        for text in fs.external_ids:
            ext = ExternalId.parse(text)
            expected[(ext.target, ext.locator)] = (fs, text)
    leftovers = {
        (target, expected_locator(fs)): fs
        for fs in failed
        for target in site.roots
        if (target, expected_locator(fs)) not in expected
    }
    known = expected.keys() | leftovers.keys()
    for target, root in site.roots.items():
        tree = scan(root)
        broken = [
            loc
            for loc, path in tree.files.items()
            if (target, loc) in leftovers and sha1_of(path) != leftovers[(target, loc)].sha1
        ]
        if broken:
            problems.append(
                f"{what}: {len(broken)} copies of failed files on {target} are under their "
                f"final name but do not hold their bytes: {_examples(broken)}"
            )
        stray = [loc for loc in tree.files if (target, loc) not in known]
        if stray:
            problems.append(
                f"{what}: {len(stray)} files under final names on {target} that no archived "
                f"FileSet names: {_examples(stray)}"
            )
        partials = [p.relative_to(root) for p in tree.temporaries if p.name.endswith(".partial")]
        if partials:
            problems.append(
                f"{what}: {len(partials)} temporary .partial files left on {target}: "
                f"{_examples(partials)}"
            )
        hidden = [p.relative_to(root) for p in tree.temporaries if not p.name.endswith(".partial")]
        if hidden:
            problems.append(
                f"{what}: {len(hidden)} hidden files left on {target}: {_examples(hidden)}"
            )
    rows = catalog_copies(site)
    per_location = collections.Counter((r.target, r.locator) for r in rows)
    per_name = collections.Counter((r.target, r.name) for r in rows)
    doubled = [f"{t}:{loc} x{n}" for (t, loc), n in per_location.items() if n > 1]
    doubled += [f"{t}:{name} x{n}" for (t, name), n in per_name.items() if n > 1]
    if doubled:
        problems.append(
            f"{what}: {len(doubled)} copies have more than one catalog row: {_examples(doubled)}"
        )
    missing = [text for key, (_, text) in expected.items() if key not in per_location]
    if missing:
        problems.append(
            f"{what}: {len(missing)} copies reported archived have no catalog row: "
            f"{_examples(missing)}"
        )
    extra = [
        r.external_id
        for r in rows
        if (r.target, r.locator) not in expected
        and (
            (r.target, r.locator) not in leftovers
            or r.sha1 != leftovers[(r.target, r.locator)].sha1
        )
    ]
    if extra:
        problems.append(
            f"{what}: {len(extra)} catalog rows for copies no FileSet names: {_examples(extra)}"
        )
    wrong = [
        r.external_id
        for r in rows
        if (key := (r.target, r.locator)) in expected
        and (r.sha1 != expected[key][0].sha1 or r.external_id != expected[key][1])
    ]
    if wrong:
        problems.append(
            f"{what}: {len(wrong)} catalog rows disagree with Portal's record (sha1 or external "
            f"id): {_examples(wrong)}"
        )
    return problems + open_intent_problems(what, site)


def open_intent_problems(what: str, site: Site) -> list[str]:
    """No journal intent is left without its result once every run has ended."""
    open_ = catalog_unfinished(site)
    if not open_:
        return []
    jobs = collections.Counter(f"{r.job_id}/{r.target}/{r.operation}" for r in open_)
    return [
        f"{what}: {len(open_)} journal intents still open (job/target/operation: "
        f"{dict(jobs)}); e.g. {_examples(r.name for r in open_)}"
    ]


# ==== one trial ==============================================================================


@attrs.frozen(kw_only=True)
class TrialReport:
    plan: TrialPlan
    outcome: str  # killed | finished-before-kill | no-child-to-kill | setup-failed
    violations: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float
    phases: tuple[tuple[str, float], ...] = ()  # each worker run, for where the time goes

    def line(self) -> str:
        verdict = "ok" if not self.violations else f"{len(self.violations)} VIOLATIONS"
        return f"{self.plan.describe()} outcome={self.outcome} {verdict} ({self.seconds:.1f} s)"


class Trial:
    """Runs one plan in `directory`; collects violations as it goes (never stops at one)."""

    def __init__(self, plan: TrialPlan, directory: Path, databases: Databases) -> None:
        self.plan = plan
        self.directory = directory
        self.databases = databases
        self.violations: list[str] = []
        self.notes: list[str] = []
        self.rng = random.Random(plan.seed ^ 0xC0FFEE)
        self._runs = itertools.count(1)
        self.phases: list[tuple[str, float]] = []

    # --- the flow ----------------------------------------------------------------------------

    def run(self) -> TrialReport:
        started = time.monotonic()
        plan = self.plan
        self.batch = build_batch(self.directory / "online", plan)
        self.by_locator = {expected_locator(fs): fs for fs in self.batch}
        self.site = build_site(
            self.directory / "site", self.databases.new(plan.backend, self.directory / "site")
        )
        self.manifest = write_manifest(self.directory / "batch.json", self.batch)
        job = f"job-{plan.seed}-{plan.operation}"
        outcome = "setup-failed"
        if plan.operation == "archive":
            expected_ids = self._reference_ids()
            if expected_ids is not None:
                outcome = self._archive_trial(job, expected_ids)
        else:
            archived = self._archive("setup", f"job-{plan.seed}-setup", None)
            if archived is not None:
                expected_ids = {fs.item_id: set(fs.external_ids) for fs in archived}
                if plan.operation == "restore":
                    outcome = self._restore_trial(job, archived)
                else:
                    outcome = self._delete_trial(job, archived)
                self._rearchive(f"job-{plan.seed}-rearchive", expected_ids)
        return TrialReport(
            plan=plan,
            outcome=outcome,
            violations=tuple(self.violations),
            notes=tuple(self.notes),
            seconds=time.monotonic() - started,
            phases=tuple(self.phases),
        )

    def _archive_trial(self, job: str, expected_ids: dict[str, set[str]]) -> str:
        run, outcome, orphans = self._killed_run(self.manifest, "archive", job, None)
        self._check_copies_whole_after_kill()
        if self.plan.kill_target == "child":
            self._check_survivor_of_child_kill(run)
        archived = self._archive("re-run", self._rerun_job(job), expected_ids, orphans=orphans)
        if archived is not None:
            self.violations += archived_state_problems("re-run", self.site, archived)
        self._rearchive(f"job-{self.plan.seed}-rearchive", expected_ids)
        return outcome

    def _restore_trial(self, job: str, archived: list[FileSet]) -> str:
        destinations = self.directory / "restored"
        if self.rng.random() < 0.5:  # Portal's folder may exist already, or not
            for folder in {Path(fs.files[0]).parent.name for fs in self.batch}:
                (destinations / folder).mkdir(parents=True, exist_ok=True)
        wanted = [
            fs._replace(files=[str(destinations / Path(fs.files[0]).parent.name / f"r_{n}.mxf")])
            for n, fs in enumerate(archived)
        ]
        manifest = write_manifest(self.directory / "restore.json", wanted)
        _, outcome, _ = self._killed_run(manifest, "restore", job, destinations)
        self._check_destinations("after the kill", wanted, partial_ok=True)
        run = self._run(manifest, "restore", self._rerun_job(job))
        if run.result is None or "raised" not in run.result:
            self._violate(f"restore re-run: no result ({run.summary()})")
        elif run.result["raised"] is not None:
            self._violate(f"restore re-run raised: {_short(run.result['raised'])}")
        self._check_destinations("restore re-run", wanted, partial_ok=False)
        leftovers = scan(destinations).temporaries
        if leftovers:
            self._violate(
                f"restore re-run: {len(leftovers)} temporary files left in the destination "
                f"folders: {_examples(leftovers)}"
            )
        self.violations += open_intent_problems("restore re-run", self.site)
        return outcome

    def _delete_trial(self, job: str, archived: list[FileSet]) -> str:
        manifest = write_manifest(self.directory / "delete.json", archived)
        _, outcome, _ = self._killed_run(manifest, "delete", job, None)
        stale = self._stale_rows()
        if stale:
            self.notes.append(
                f"after the kill: {len(stale)} catalog rows name copies already gone from "
                f"their root (the delete ran ahead of its journal): {_examples(stale)}"
            )
        run = self._run(manifest, "delete", self._rerun_job(job))
        if run.result is None or "deleted" not in run.result:
            self._violate(f"delete re-run: no result ({run.summary()})")
        else:
            deleted = {fs["item_id"] for fs in run.result["deleted"]}
            missing = [fs.item_id for fs in archived if fs.item_id not in deleted]
            if missing:
                self._violate(
                    f"delete re-run: {len(missing)} of {len(archived)} FileSets not reported "
                    f"deleted: {_examples(missing)}"
                )
        for target, root in self.site.roots.items():
            tree = scan(root)
            if tree.files:
                self._violate(
                    f"delete re-run: {len(tree.files)} copies left on {target}: "
                    f"{_examples(tree.files)}"
                )
            if tree.temporaries:
                self._violate(
                    f"delete re-run: {len(tree.temporaries)} temporary files left on {target}: "
                    f"{_examples(tree.temporaries)}"
                )
            empty = [d for d in tree.directories if not any(d.iterdir())]
            if empty:
                self._violate(
                    f"delete re-run: {len(empty)} empty layout directories left on {target}: "
                    f"{_examples(d.relative_to(root) for d in empty)}"
                )
        rows = catalog_copies(self.site)
        if rows:
            self._violate(
                f"delete re-run: {len(rows)} catalog rows left for deleted copies: "
                f"{_examples(r.external_id for r in rows)}"
            )
        self.violations += open_intent_problems("delete re-run", self.site)
        return outcome

    # --- runs --------------------------------------------------------------------------------

    def _run(self, manifest: Path, operation: str, job_id: str, site: Site | None = None):
        log = self.directory / f"run{next(self._runs)}-{operation}"
        started = time.monotonic()
        run = run_worker(site or self.site, manifest, operation, job_id, log)
        self.phases.append((f"{operation} {job_id}", time.monotonic() - started))
        return run

    def _rerun_job(self, job: str) -> str:
        return job if self.plan.rerun_job == "same" else f"{job}-retry"

    def _reference_ids(self) -> dict[str, set[str]] | None:
        """External ids of an uninterrupted run of the same batch in a separate site."""
        directory = self.directory / "reference"
        site = build_site(directory, self.databases.new(self.plan.backend, directory))
        run = self._run(self.manifest, "archive", f"job-{self.plan.seed}-reference", site)
        archived = self._archive_result("reference run", run)
        if archived is None:
            return None
        return {fs.item_id: set(fs.external_ids) for fs in archived}

    def _archive(
        self,
        what: str,
        job_id: str,
        expected_ids: dict[str, set[str]] | None,
        *,
        orphans: Sequence[int] = (),
    ) -> list[FileSet] | None:
        """Archive the batch to completion; check Portal's answer (and ids, when known)."""
        run = self._run(self.manifest, "archive", job_id)
        survivors = await_exit(orphans, seconds=ORPHAN_SECONDS)
        if survivors:
            self._violate(
                f"staging processes {survivors} orphaned by the kill still ran "
                f"{ORPHAN_SECONDS:g} s later"
            )
        archived = self._archive_result(what, run)
        if archived is not None and expected_ids is not None:
            self._check_ids(what, archived, expected_ids)
        return archived

    def _archive_result(self, what: str, run: WorkerRun) -> list[FileSet] | None:
        result = run.result
        if result is None or "archived" not in result:
            self._violate(f"{what}: archive gave no result ({run.summary()})")
            return None
        archived = as_file_sets(result["archived"])
        not_archived = result["not_archived"]
        if not_archived or result["error"]:
            self._violate(
                f"{what}: {len(not_archived)} of {len(self.batch)} FileSets not archived; "
                f"error: {_short(result['error'])}"
            )
        if len(archived) + len(not_archived) != len(self.batch):
            self._violate(
                f"{what}: {len(archived)} archived + {len(not_archived)} not archived for a "
                f"batch of {len(self.batch)}"
            )
        wrong = [fs.item_id for fs in archived if len(set(fs.external_ids)) != len(TARGETS)]
        if wrong:
            self._violate(
                f"{what}: {len(wrong)} archived FileSets without one external id per target: "
                f"{_examples(wrong)}"
            )
        return archived

    def _rearchive(self, job_id: str, expected_ids: dict[str, set[str]]) -> None:
        """Whatever happened, archiving the batch again works and names the same copies."""
        archived = self._archive("re-archive", job_id, expected_ids)
        if archived is not None:
            self.violations += archived_state_problems("re-archive", self.site, archived)

    def _killed_run(
        self, manifest: Path, operation: str, job_id: str, destinations: Path | None
    ) -> tuple[WorkerRun, str, list[int]]:
        """Run `operation` and SIGKILL the plan's target at its kill point.

        Returns the run, the outcome, and the staging processes the kill orphaned.
        """
        plan = self.plan
        log = self.directory / f"run{next(self._runs)}-{operation}-killed"
        journal = JournalCounter(self.site.catalog_url, job_id)
        probe = self._probe(plan.kill_point, journal, destinations)
        deadline = time.monotonic() + RUN_SECONDS
        started = time.monotonic()
        process = start_worker(self.site, manifest, operation, job_id, log)
        orphans: list[int] = []
        outcome = "finished-before-kill"
        reached = False
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if not reached:
                    looked = time.monotonic()
                    if probe() < plan.kill_point.count:
                        # Pause as long as the look took: a scan of thousands of folders
                        # must not take a core from the worker it is watching.
                        time.sleep(max(_POLL_PAUSE, time.monotonic() - looked))
                        continue
                reached = True
                children = [c for c in child_pids(process.pid) if is_stager(c)]
                if plan.kill_target == "child":
                    if not children:
                        time.sleep(_POLL_PAUSE)  # between targets: the next pool is starting
                        continue
                    victim = self.rng.choice(children)
                    os.kill(victim, signal.SIGKILL)
                    outcome = "killed"
                    self.notes.append(f"killed staging process {victim} of {len(children)}")
                else:
                    process.send_signal(signal.SIGKILL)
                    orphans = children
                    outcome = "killed"
                break
        finally:
            journal.close()
        if reached and outcome != "killed":
            outcome = "no-child-to-kill"  # the point came between two targets' pools
        run = finish_worker(process, log, deadline=deadline)
        self.phases.append((f"{operation} {job_id} (killed)", time.monotonic() - started))
        if run.timed_out:
            self._violate(f"{operation} (the run to be killed) hung: {run.summary()}")
        if outcome == "killed" and plan.kill_target == "parent":
            final, hidden = count_entries(self.site.roots.values())
            where = f"{final} final-named and {hidden} hidden files on the roots"
            if destinations is not None:
                final, hidden = count_entries([destinations])
                where += f", {final} and {hidden} at the restore destinations"
            self.notes.append(f"at the kill: {where}; {len(orphans)} staging processes orphaned")
        return run, outcome, orphans

    def _probe(
        self, point: KillPoint, journal: JournalCounter, destinations: Path | None
    ) -> Callable[[], int]:
        roots = list(self.site.roots.values())
        if point.probe == "published":
            return lambda: count_entries(roots)[0]
        if point.probe == "removed":
            before = count_entries(roots)[0]
            return lambda: before - count_entries(roots)[0]
        if point.probe == "restored":
            assert destinations is not None
            return lambda: count_entries([destinations])[0]
        if point.probe == "temporary":
            where = [destinations] if destinations is not None else roots
            return lambda: count_entries(where)[1]
        if point.probe == "journal":
            return lambda: journal.count(finished_only=True)
        if point.probe == "intents":
            return lambda: journal.count(finished_only=False)
        raise ValueError(f"unknown kill point {point}")

    # --- checks ------------------------------------------------------------------------------

    def _violate(self, message: str) -> None:
        self.violations.append(message)

    def _check_ids(self, what: str, archived: list[FileSet], expected: dict[str, set[str]]) -> None:
        differing = [
            f"{fs.item_id}: {sorted(fs.external_ids)} != {sorted(expected.get(fs.item_id, ()))}"
            for fs in archived
            if set(fs.external_ids) != expected.get(fs.item_id)
        ]
        if differing:
            self._violate(
                f"{what}: {len(differing)} FileSets got other external ids than an "
                f"uninterrupted run: {_examples(differing)}"
            )

    def _check_copies_whole_after_kill(self) -> None:
        """Nothing half-done, even mid-batch: every final name and catalog row is whole."""
        unexpected, broken = [], []
        for target, root in self.site.roots.items():
            for locator, path in scan(root).files.items():
                fs = self.by_locator.get(locator)
                if fs is None:
                    unexpected.append(f"{target}:{locator}")
                elif sha1_of(path) != fs.sha1:
                    broken.append(f"{target}:{locator} ({path.stat().st_size} bytes)")
        if unexpected:
            self._violate(
                f"after the kill: {len(unexpected)} files under names no FileSet of the batch "
                f"gets: {_examples(unexpected)}"
            )
        if broken:
            self._violate(
                f"after the kill: {len(broken)} files under their final name do not hold their "
                f"bytes: {_examples(broken)}"
            )
        bad = []
        for row in catalog_copies(self.site):
            root = self.site.roots.get(row.target)
            if root is None or sha1_of(root / row.locator) != row.sha1:
                bad.append(row.external_id)
        if bad:
            self._violate(
                f"after the kill: {len(bad)} catalog rows record copies that are missing or "
                f"not whole: {_examples(bad)}"
            )

    def _check_survivor_of_child_kill(self, run: WorkerRun) -> None:
        """The parent of a killed staging process finishes, and what it calls archived is."""
        if run.result is None or "archived" not in run.result:
            self._violate(
                f"after its staging process was killed, the worker gave no result ({run.summary()})"
            )
            return
        archived = as_file_sets(run.result["archived"])
        failed = len(run.result["not_archived"])
        self.notes.append(f"first run: {len(archived)} archived, {failed} not archived")
        if failed and not run.result["error"]:
            self._violate("first run: FileSets not archived, but the error string is empty")
        self.violations += copies_problems("first run (staging killed)", self.site, archived)

    def _check_destinations(self, what: str, wanted: list[FileSet], *, partial_ok: bool) -> None:
        """Every destination holds the right bytes (after a kill: the right bytes or nothing)."""
        absent, wrong = [], []
        for fs in wanted:
            path = Path(fs.files[0])
            if not path.exists():
                absent.append(path)
            elif sha1_of(path) != fs.sha1:
                wrong.append(path)
        if wrong:
            self._violate(
                f"{what}: {len(wrong)} restored files under their final name do not hold "
                f"their bytes: {_examples(wrong)}"
            )
        if absent and not partial_ok:
            self._violate(f"{what}: {len(absent)} files not restored: {_examples(absent)}")

    def _stale_rows(self) -> list[str]:
        return [
            r.external_id
            for r in catalog_copies(self.site)
            if r.target in self.site.roots and not (self.site.roots[r.target] / r.locator).exists()
        ]


def run_trial(
    plan: TrialPlan, directory: Path, databases: Databases, *, keep: bool = False
) -> TrialReport:
    """Run one trial in a fresh `directory`; removes it afterwards unless `keep`."""
    directory.mkdir(parents=True)
    try:
        return Trial(plan, directory, databases).run()
    finally:
        databases.drop_all()
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)


def run_trials(
    plans: Sequence[TrialPlan],
    *,
    server: PostgresServer | None,
    workdir: Path,
    keep: bool = False,
    out: TextIO | None = None,
    verbose: bool = False,
) -> list[TrialReport]:
    """Run `plans` one after another; print each trial's line (and what it found) to `out`."""
    databases = Databases(server)
    reports = []
    for n, plan in enumerate(plans, 1):
        report = run_trial(plan, workdir / f"trial{n:04d}-{plan.seed}", databases, keep=keep)
        reports.append(report)
        if out is not None:
            print(f"[{n}/{len(plans)}] {report.line()}", file=out, flush=True)
            for note in report.notes if verbose else ():
                print(f"    note: {note}", file=out)
            if verbose:
                runs = ", ".join(f"{label} {seconds:.1f} s" for label, seconds in report.phases)
                print(f"    runs: {runs}", file=out)
            for violation in report.violations:
                print(f"    VIOLATION: {violation}", file=out)
            if report.violations:
                print(f"    replay: {plan.replay()}", file=out)
    return reports


# ==== report =================================================================================


def summary_table(reports: Sequence[TrialReport]) -> str:
    cells: dict[tuple[str, str, str, str], list[TrialReport]] = collections.defaultdict(list)
    for report in reports:
        plan = report.plan
        cells[(plan.operation, plan.scenario, plan.kill_target, plan.backend)].append(report)
    head = (
        f"{'operation':<9} {'scenario':<8} {'kill':<6} {'backend':<10} {'trials':>6} "
        f"{'killed':>6} {'failing':>7} {'violations':>10}"
    )
    lines = [head, "-" * len(head)]
    for (operation, scenario, target, backend), group in sorted(cells.items()):
        lines.append(
            f"{operation:<9} {scenario:<8} {target:<6} {backend:<10} {len(group):>6} "
            f"{sum(r.outcome == 'killed' for r in group):>6} "
            f"{sum(bool(r.violations) for r in group):>7} "
            f"{sum(len(r.violations) for r in group):>10}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<9} {'':<8} {'':<6} {'':<10} {len(reports):>6} "
        f"{sum(r.outcome == 'killed' for r in reports):>6} "
        f"{sum(bool(r.violations) for r in reports):>7} "
        f"{sum(len(r.violations) for r in reports):>10}"
    )
    return "\n".join(lines)


def _examples(items: Iterable[Any]) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:EXAMPLES])
    return shown + (f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else "")


def _short(text: Any, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ==== command line ===========================================================================


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.killrun",
        description="SIGKILL trials of archive, restore and delete through the Portal face.",
    )
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--backend", choices=(*BACKENDS, "both"), default="sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", choices=(*SCENARIOS, "all"), default="all")
    parser.add_argument("--operation", choices=(*OPERATIONS, "all"), default="all")
    parser.add_argument("--replay", type=int, metavar="TRIAL_SEED", help="run one trial again")
    parser.add_argument(
        "--kill-target", choices=("parent", "child"), help="with --replay: what was killed"
    )
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep trial directories here")
    parser.add_argument("--verbose", action="store_true", help="notes and run times per trial")
    args = parser.parse_args(argv)

    backends = BACKENDS if args.backend == "both" else (args.backend,)
    scenarios = SCENARIOS if args.scenario == "all" else (args.scenario,)
    operations = OPERATIONS if args.operation == "all" else (args.operation,)
    if args.replay is not None:
        given = {"scenario": args.scenario, "operation": args.operation}
        plans = [
            plan_trial(
                args.replay,
                backend,
                kill_target=args.kill_target,
                **{k: v for k, v in given.items() if v != "all"},
            )
            for backend in backends
        ]
    else:
        plans = plan_trials(
            args.trials, args.seed, backends=backends, scenarios=scenarios, operations=operations
        )
    server = PostgresServer() if "postgresql" in {p.backend for p in plans} else None
    if server is not None:
        try:
            server.start()
        except PostgresUnavailable as exc:
            print(f"PostgreSQL trials cannot run here: {exc}", file=sys.stderr)
            return 2
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="killrun-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        reports = run_trials(
            plans,
            server=server,
            workdir=workdir,
            keep=args.keep is not None,
            out=sys.stdout,
            verbose=args.verbose,
        )
    finally:
        if server is not None:
            server.stop()
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(summary_table(reports))
    failing = [r for r in reports if r.violations]
    print(
        f"\n{len(reports)} trials in {time.monotonic() - started:.0f} s; "
        f"{len(failing)} with violations"
    )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
