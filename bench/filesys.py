"""Side-by-side benchmark: archive-core's filesys target against cp, sha256sum and rsync.

Run `python bench/filesys.py [--quick]` from the repository (in its virtualenv). It archives
one large file and many small files through Portal's face (`ArchiveCorePlugin.archive`), and
straight through the driver, next to the tools an admin would script instead, on the file
system that holds the repository, and prints a table with each tool's time relative to
`cp && sync`. See bench/README.md for the method and how to read the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
POLICY = "4b0c1a1e-0000-4000-8000-000000000001"

#: What Portal hands the plugin (its fields as Portal names them); external_ids empty before
#: archive, the Vidispine sha1 already computed.
FileSet = namedtuple(
    "FileSet", ["files", "external_ids", "item_id", "sha1", "shape_id", "component_id"]
)

GOALS = {"large": 1.05, "small": 1.5}  # time relative to `cp && sync` / `cp -r && sync`


# --- the workspace -----------------------------------------------------------------------------


def workspace(keep: bool) -> Path:
    """A scratch directory on the repository's file system (refusing tmpfs)."""
    parent = REPO.parent if os.access(REPO.parent, os.W_OK) else REPO
    if os.stat(parent).st_dev != os.stat(REPO).st_dev:
        parent = REPO
    fstype = filesystem_type(parent)
    if fstype in ("tmpfs", "ramfs"):
        sys.exit(f"{parent} is on {fstype}; run the benchmark on a disk-backed file system.")
    path = Path(tempfile.mkdtemp(prefix="archive-core-bench-", dir=parent))
    print(f"workspace: {path} ({fstype}){'; kept afterwards' if keep else ''}")
    return path


def filesystem_type(path: Path) -> str:
    try:
        out = subprocess.run(
            ["df", "-PT", str(path)], capture_output=True, text=True, check=True
        ).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def settle(base: Path, *, patience: float = 90.0) -> None:
    """Wait until creating files runs at its usual speed before timing anything.

    On ext4 without a journal, for 30 s after many files are deleted every create scans past
    the deleted inodes and runs ten times slower; a previous bench run's cleanup does that.
    """
    probe = base / "settle"
    probe.mkdir()
    deadline = time.monotonic() + patience
    for attempt in range(1_000):
        start = time.perf_counter()
        for n in range(300):
            os.close(os.open(probe / f"{attempt}-{n}", os.O_WRONLY | os.O_CREAT, 0o644))
        each = (time.perf_counter() - start) / 300
        if each < 100e-6 or time.monotonic() > deadline:
            break
        if attempt == 0:
            print(
                f"creating a file takes {each * 1e6:.0f} us right now (many files deleted in the"
                " last 30 s?); waiting for the file system to settle ..."
            )
        time.sleep(5)


def write_random(path: Path, size: int) -> str:
    """Write `size` random bytes to `path`; return their sha1 (before any timer runs)."""
    digest = hashlib.sha1()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MiB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def warm(paths: list[Path]) -> None:
    """Read every source once so each tool starts from the same (cached) state."""
    for path in paths:
        with open(path, "rb", buffering=0) as stream:
            while stream.read(8 * MiB):
                pass


# --- the contestants ---------------------------------------------------------------------------


class Case:
    """One data set (a large file, or many small files) and its fresh destinations."""

    def __init__(self, name: str, base: Path, sources: list[Path], sha1s: list[str]) -> None:
        self.name = name
        self.base = base
        self.sources = sources
        self.sha1s = sha1s
        self.bytes = sum(p.stat().st_size for p in sources)
        self._runs = 0

    def fresh(self, tool: str) -> Path:
        """A destination directory nobody has used yet."""
        self._runs += 1
        path = self.base / f"out-{tool}-{self._runs}"
        path.mkdir()
        return path

    def file_sets(self) -> list[FileSet]:
        return [
            FileSet(
                files=[str(p)],
                external_ids=(),
                item_id=f"VX-{i}",
                sha1=sha1,
                shape_id=f"VX-S{i}",
                component_id=f"VX-C{i}",
            )
            for i, (p, sha1) in enumerate(zip(self.sources, self.sha1s, strict=True))
        ]


def shell(command: str) -> Callable[[Case, Path], None]:
    def run(case: Case, dest: Path) -> None:
        # One large file is copied as a file; many small ones as their directory.
        src = str(case.sources[0]) if len(case.sources) == 1 else str(case.sources[0].parent)
        subprocess.run(
            ["sh", "-c", command.format(src=f"'{src}'", dst=f"'{dest}/'", dstdir=f"'{dest}'")],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    return run


def config_for(case: Case, dest: Path) -> Path:
    """A site config whose one policy archives to `dest`, with a catalog of its own."""
    config = dest.parent / f"{dest.name}.toml"
    config.write_text(
        f"""state_dir = "{dest.parent / (dest.name + ".state")}"
[catalog]
url = "sqlite:///{dest.parent / (dest.name + ".sqlite")}"
[targets.bench]
driver = "filesys"
settings = {{ root = "{dest}", min_free_bytes = 0 }}
[policies.{POLICY}]
name = "Bench"
targets = ["bench"]
"""
    )
    return config


class PortalFace:
    """archive-core as Portal calls it: a long-lived plugin object, warmed up beforehand."""

    def prepare(self, case: Case, dest: Path):
        from archive_core.portal import ArchiveCorePlugin

        plugin = ArchiveCorePlugin(config_for(case, dest))
        # A Portal worker is long-lived: imports, catalog schema and driver loading are paid
        # once per process, not per job, so one tiny file is archived before the timer.
        warmup = dest.parent / f"{dest.name}.warmup"
        sha1 = write_random(warmup, 1024)
        fs = FileSet([str(warmup)], (), "VX-warmup", sha1, "VX-S", "VX-C")
        archived, _, error, _ = plugin.archive([fs], POLICY, "bench-warmup")
        if error or len(archived) != 1:
            raise SystemExit(f"warm-up archive failed: {error}")
        batch = [
            FileSet([str(p)], (), f"VX-w{i}", sha1, "VX-S", "VX-C")
            for i, (p, sha1) in warm_batch(case)
        ]
        if batch:
            archived, _, error, _ = plugin.archive(batch, POLICY, "bench-warmup-batch")
            if error or len(archived) != len(batch):
                raise SystemExit(f"warm-up archive failed: {error}")
        return plugin

    def run(self, case: Case, dest: Path, plugin) -> None:
        archived, not_archived, error, _ = plugin.archive(case.file_sets(), POLICY, "bench-job")
        if error or not_archived or len(archived) != len(case.sources):
            raise SystemExit(f"archive through the Portal face failed: {error}")


class DriverOnly:
    """The filesys driver called directly, as the core calls it (no catalog, no journal)."""

    def prepare(self, case: Case, dest: Path):
        from archive_core_filesys.driver import FilesysConfig, FilesysDriver

        from archive_core.driver import DriverContext
        from archive_core.model import ArchiveItem, ArchiveRequest
        from archive_core.naming import archive_name

        driver = FilesysDriver(
            FilesysConfig(root=dest, min_free_bytes=0),
            DriverContext(target="bench", state_dir=dest.parent),
        )
        items = [
            ArchiveItem(
                key=str(i),
                sources=[str(p)],
                name=archive_name(str(p), item_id=f"VX-{i}", sha1=sha1),
                item_id=f"VX-{i}",
                sha1=sha1,
            )
            for i, (p, sha1) in enumerate(zip(case.sources, case.sha1s, strict=True))
        ]
        batch = [
            ArchiveItem(key=f"w{i}", sources=[str(p)], name=p.name, sha1=sha1)
            for i, (p, sha1) in warm_batch(case)
        ]
        if batch:
            warm_up = ArchiveRequest(policy=POLICY, target="bench", job_id="w", items=batch)
            if not all(o.ok for o in driver.archive(warm_up)):
                raise SystemExit("driver warm-up archive failed")
        return driver, ArchiveRequest(policy=POLICY, target="bench", job_id="b", items=items)

    def run(self, case: Case, dest: Path, prepared) -> None:
        driver, request = prepared
        failed = [o for o in driver.archive(request) if not o.ok]
        if failed:
            raise SystemExit(f"driver archive failed: {failed[0].error}")


def warm_batch(case: Case) -> list[tuple[int, tuple[Path, str]]]:
    """Tiny files enough for the driver to start its staging processes, for a many-file case.

    A Portal worker is long-lived: the filesys driver starts its staging processes at the
    first big batch and keeps them, so the timed run must not be the one paying for that.
    Their copies end in `.warmup`, which the copy check leaves out.
    """
    if len(case.sources) == 1:
        return []
    if not hasattr(case, "warm_sources"):
        from archive_core.transfer.stager._stager import PROCESS_MIN_FILES

        folder = case.base.parent / f"{case.name}-warm-src"
        folder.mkdir()
        case.warm_sources = []
        for n in range(PROCESS_MIN_FILES):
            path = folder / f"w{n:05d}.warmup"
            case.warm_sources.append((path, write_random(path, 64)))
    return list(enumerate(case.warm_sources))


def hashing_bound(case: Case, dest: Path) -> None:
    """Read the source and compute both digests, writing nothing: what hashing alone costs."""
    from archive_core import transfer

    for path in case.sources:
        transfer.hash_file(path)


def bare_loop_bound(case: Case, dest: Path) -> None:
    """The fewest Python steps that copy, hash twice, and publish by rename, without checks.

    Shows what a Python implementation cannot go below on this machine: the interpreter's
    per-file cost on top of the system calls `cp` makes.
    """
    from archive_core import transfer
    from archive_core.naming import archive_name

    view = memoryview(bytearray(1024 * 1024))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    temps = []
    for i, (path, sha1) in enumerate(zip(case.sources, case.sha1s, strict=True)):
        fd = os.open(path, os.O_RDONLY)
        count = os.readv(fd, [view])
        os.close(fd)
        data = view[:count]
        hashlib.sha1(data).hexdigest()
        hashlib.sha256(data).hexdigest()
        name = archive_name(str(path), item_id=f"VX-{i}", sha1=sha1)  # same names as Portal's
        temp = f"{dest}/.{name}.partial"
        out = os.open(temp, flags, 0o666)
        os.write(out, data)
        os.close(out)
        temps.append((temp, f"{dest}/{name}"))
    transfer.sync_filesystem(dest)
    for temp, final in temps:
        os.rename(temp, final)
    transfer.fsync_directory(dest)


def contestants(case: str, have_rsync: bool) -> list[tuple[str, object]]:
    if case == "large":
        tools: list[tuple[str, object]] = [
            ("cp && sync", shell("cp {src} {dst} && sync")),
            ("cp && sha256sum && sync", shell("cp {src} {dst} && sha256sum {dstdir}/* && sync")),
        ]
        if have_rsync:
            tools.append(
                ("rsync --checksum && sync", shell("rsync --checksum {src} {dst} && sync"))
            )
    else:
        tools = [
            ("cp -r && sync", shell("cp -r {src}/. {dst} && sync")),
            (
                "cp -r && sha256sum && sync",
                shell(
                    "cp -r {src}/. {dst} && find {dstdir} -type f -print0 | "
                    "xargs -0 sha256sum >/dev/null && sync"
                ),
            ),
        ]
        if have_rsync:
            tools.append(
                ("rsync -r --checksum && sync", shell("rsync -r --checksum {src}/ {dst} && sync"))
            )
    tools.append(("archive-core (driver)", DriverOnly()))
    tools.append(("archive-core (Portal face)", PortalFace()))
    if case == "large":
        tools.append((HASH_BOUND, hashing_bound))
    else:
        tools.append((LOOP_BOUND, bare_loop_bound))
    return tools


HASH_BOUND = "bound: read + sha1 + sha256 only"
LOOP_BOUND = "bound: bare Python loop"


def measure(case: Case, tools: list[tuple[str, object]], repeats: int) -> dict[str, list[float]]:
    """Every tool `repeats` times, interleaved, each into a fresh destination after a sync."""
    times: dict[str, list[float]] = {name: [] for name, _ in tools}
    for _ in range(repeats):
        for name, tool in tools:
            slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
            dest = case.fresh(slug)
            prepared = tool.prepare(case, dest) if hasattr(tool, "prepare") else None
            prefault(case.bytes)
            os.sync()
            start = time.perf_counter()
            if prepared is None:
                tool(case, dest)
            else:
                tool.run(case, dest, prepared)
            times[name].append(time.perf_counter() - start)
            if name != HASH_BOUND:
                check_copies(case, dest)
            if case.name == "large":
                # One inode: removing it now is cheap and keeps the disk from filling up. The
                # many small files stay until the end: on ext4 without a journal, inodes
                # deleted in the last 30 s slow every following create down (recently_deleted).
                shutil.rmtree(dest)
    return times


def prefault(size: int) -> None:
    """Touch and free memory the size of the data, just before a timed run.

    In a VM that hands freed pages back to the host (virtio-balloon free page reporting),
    the first write to a fresh page-cache page costs a hypervisor fault; how many of those a
    tool hits depends on what ran before it, which made `cp` times vary fivefold. Touched
    pages go back to the guest's free lists and are reused at once. This helps tools that
    write through the page cache (cp, rsync) the most, so it never flatters archive-core.
    """
    scratch = bytearray(min(size + size // 2, 2048 * MiB))
    del scratch


def copies_under(dest: Path) -> list[str]:
    """The files under `dest`, but archive-core's own (`.archive-core/`: the manifests)."""
    names = []
    for directory, dirs, files in os.walk(dest):
        if ".archive-core" in dirs:
            dirs.remove(".archive-core")
        names += [os.path.join(directory, f) for f in files]
    return names


def check_copies(case: Case, dest: Path) -> None:
    """Every tool must have produced a full copy (else its time means nothing)."""
    names = copies_under(dest)
    leftovers = [n for n in names if n.endswith(".partial")]
    if leftovers:
        raise SystemExit(f"{dest}: temporary files left behind: {leftovers[:3]}")
    stored = sum(os.path.getsize(n) for n in names if not n.endswith(".warmup"))
    if stored != case.bytes:
        raise SystemExit(f"{dest}: {stored} bytes stored, expected {case.bytes}")


# --- start-up times ------------------------------------------------------------------------


def startup(command: list[str], repeats: int = 5, *, tty: bool = False) -> float | None:
    """Best wall time of `command`; with `tty`, its output goes to a terminal (a pty)."""
    best = None
    for _ in range(repeats):
        master = slave = None
        if tty:
            import pty

            master, slave = pty.openpty()
        start = time.perf_counter()
        try:
            done = subprocess.run(
                command,
                stdout=slave if tty else subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
        except OSError:
            return None
        finally:
            if tty:
                os.close(slave)
        took = time.perf_counter() - start
        if tty:
            os.close(master)
        if done.returncode != 0:
            return None
        best = took if best is None else min(best, took)
    return best


# --- report ------------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repeats")
    parser.add_argument("--repeats", type=int, help="runs per tool (best is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    parser.add_argument(
        "--case",
        choices=("large", "small", "startup"),
        action="append",
        help="run only this part (repeatable); default: all of them",
    )
    parser.add_argument(
        "--install-missing", action="store_true", help="apt-get install rsync when missing"
    )
    args = parser.parse_args()
    large_size = (256 if args.quick else 1024) * MiB
    small_count = 2_000 if args.quick else 10_000
    repeats = args.repeats or (2 if args.quick else 5)

    have_rsync = shutil.which("rsync") is not None
    if not have_rsync and args.install_missing:
        subprocess.run(["apt-get", "install", "-y", "rsync"], check=False)
        have_rsync = shutil.which("rsync") is not None
    if not have_rsync:
        print("rsync is not installed: its rows are left out (apt-get install -y rsync).")

    parts = set(args.case or ("large", "small", "startup"))
    base = workspace(args.keep)
    try:
        settle(base)
        cases = []
        if "large" in parts:
            print(f"writing {large_size // MiB} MiB of random data ...")
            (base / "large-src").mkdir()
            big = base / "large-src" / "master.mxf"
            cases.append(Case("large", base / "large", [big], [write_random(big, large_size)]))
        if "small" in parts:
            print(f"writing {small_count} x 16 KiB of random data ...")
            small_dir = base / "small-src"
            small_dir.mkdir()
            smalls = [small_dir / f"clip{i:05d}.wav" for i in range(small_count)]
            sha1s = [write_random(p, 16 * 1024) for p in smalls]
            cases.append(Case("small", base / "small", smalls, sha1s))
        for case in cases:
            case.base.mkdir()
            warm(case.sources)

        rows = [("case", "tool", "best s", "median s", "MiB/s", "vs cp && sync")]
        verdicts = []
        for case in cases:
            tools = contestants(case.name, have_rsync)
            label = (
                f"{case.name}: 1 x {case.bytes // MiB} MiB"
                if case.name == "large"
                else f"{case.name}: {len(case.sources)} x 16 KiB"
            )
            print(f"timing {label}, {repeats} run(s) per tool ...")
            times = measure(case, tools, repeats)
            baseline = min(times[tools[0][0]])
            for name, _ in tools:
                best = min(times[name])
                rows.append(
                    (
                        label,
                        name,
                        f"{best:.3f}",
                        f"{statistics.median(times[name]):.3f}",
                        f"{case.bytes / MiB / best:.0f}",
                        f"{best / baseline:.2f}x",
                    )
                )
            ours = min(times["archive-core (Portal face)"]) / baseline
            goal = GOALS[case.name]
            verdicts.append(
                f"{case.name}: Portal face {ours:.2f}x of {tools[0][0]} "
                f"(goal <= {goal}x: {'met' if ours <= goal else 'NOT met'})"
            )
        if cases:
            print()
            print(table(rows))
            print()
            for verdict in verdicts:
                print(verdict)
            print()
        if "startup" not in parts:
            return
        # A production install (pip, or `./run setup`) has bytecode for every module; the
        # in-tree packages are editable, so theirs is compiled here, as pip would.
        packages = [REPO / "archive_core", *REPO.glob("drivers/*/archive_core_*")]
        subprocess.run([sys.executable, "-m", "compileall", "-q", *map(str, packages)], check=True)
        cli = shutil.which("archive-core") or str(Path(sys.executable).parent / "archive-core")
        for label, command, tty in (
            ("archive-core drivers", [cli, "drivers"], False),
            ("archive-core drivers (on a terminal)", [cli, "drivers"], True),
            (
                'python -c "import archive_core"',
                [sys.executable, "-c", "import archive_core"],
                False,
            ),
        ):
            took = startup(command, tty=tty)
            shown = "not available" if took is None else f"{took * 1000:.0f} ms"
            goal = (
                "" if took is None else f" (goal < 150 ms: {'met' if took < 0.150 else 'NOT met'})"
            )
            print(f"{label}: {shown}, best of 5{goal}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
