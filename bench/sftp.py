"""Side-by-side benchmark of SFTP transports against one loopback OpenSSH server.

Run `.venv/bin/python bench/sftp.py [--quick] [--repeats N]` from the repository. It starts
its own sshd (drivers/sftp/tests/sshd.py; the remote root is a directory on the same disk)
and moves one large file, many 64 KiB files and a few hundred 4 MiB files up and down with
OpenSSH's sftp (the baseline), rsync and scp, asyncssh, paramiko's SFTP client over the
system ssh's pipes, archive-core's own SFTP v3 client over the system ssh's pipes
(drivers/sftp/archive_core_sftp/_wire.py, through bench/wire_bulk.py), and archive-core
itself through the Portal face. Every client uses the cipher aes128-gcm.

Printed per workload and direction: MB/s (10^6 bytes/s) median and best, the ratio of the
medians to OpenSSH sftp's, the client's CPU seconds per GiB (its own and its ssh child's),
and the server's (sshd and its sftp subsystem). Candidates that are not installed print
"missing: pip install X" and are left out. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import itertools
import os
import queue
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "drivers" / "sftp" / "tests"))

import sshd  # noqa: E402 - drivers/sftp/tests/sshd.py
import wire_bulk  # noqa: E402 - bench/wire_bulk.py: _wire's bulk transfers, for the ssh+wire rows
from filesys import (  # noqa: E402
    POLICY,
    FileSet,
    prefault,
    settle,
    warm,
    workspace,
    write_random,
)

KiB, MiB, GiB = 1024, 1024 * 1024, 1024 * 1024 * 1024
CIPHER = "aes128-gcm@openssh.com"
CHACHA = "chacha20-poly1305@openssh.com"
TICK = os.sysconf("SC_CLK_TCK")


def optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# --- workloads ----------------------------------------------------------------------------------


@dataclass
class Case:
    """A data set: `count` files of `size` bytes (one file: `single`)."""

    name: str
    count: int
    size: int
    local: Path = Path()  # the source directory (or file) for uploads
    remote: Path = Path()  # the same data on the server's side, for downloads
    sha1: dict[str, str] = field(default_factory=dict)

    @property
    def single(self) -> bool:
        return self.count == 1

    @property
    def bytes(self) -> int:
        return self.count * self.size

    def names(self) -> list[str]:
        return ["big.bin"] if self.single else [f"f{n:05d}.bin" for n in range(self.count)]


def make_cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("256 MiB x 1", 1, 256 * MiB), Case("500 x 64 KiB", 500, 64 * KiB),
                Case("50 x 4 MiB", 50, 4 * MiB)]  # fmt: skip
    return [Case("1 GiB x 1", 1, GiB), Case("2,000 x 64 KiB", 2000, 64 * KiB),
            Case("200 x 4 MiB", 200, 4 * MiB)]  # fmt: skip


def prepare(case: Case, base: Path, remote_base: Path) -> None:
    slug = f"{case.count}x{case.size}"
    local = base / f"src-{slug}"
    remote = remote_base / f"src-{slug}"
    local.mkdir()
    remote.mkdir()
    for name in case.names():
        case.sha1[name] = write_random(local / name, case.size)
        shutil.copyfile(local / name, remote / name)
    case.local = local / "big.bin" if case.single else local
    case.remote = remote / "big.bin" if case.single else remote


def copies(case: Case, target: Path) -> list[Path]:
    """Where a tool that names copies as their sources put them under `target`."""
    if case.single:
        return [target]
    names = sorted(os.listdir(target))
    if names != case.names():
        raise SystemExit(f"{target}: incomplete copy ({len(names)} files)")
    return [target / n for n in names]


def check(case: Case, paths: list[Path], *, full: bool) -> None:
    """The copy is all there (sizes; with `full`, every sha1); `paths` in case.names() order."""
    if len(paths) != case.count or any(p.stat().st_size != case.size for p in paths):
        raise SystemExit(f"{paths[0].parent}: incomplete copy ({len(paths)} files)")
    if full:
        for name, path in zip(case.names(), paths, strict=True):
            digest = hashlib.sha1(path.read_bytes()).hexdigest()
            if digest != case.sha1[name]:
                raise SystemExit(f"{path}: content differs from the source")


# --- the environment a candidate runs in ---------------------------------------------------------


@dataclass
class Env:
    server: sshd.SshServer
    cipher: str = CIPHER
    resting: set[int] = field(default_factory=set)  # session processes that stay (kept)

    def ssh_options(self) -> list[str]:
        return ["-c", self.cipher, *self.server.ssh_options()]

    def ssh_e(self) -> str:
        return shlex.join(["ssh", *self.ssh_options()])

    @property
    def host(self) -> str:
        return self.server.host


def run_batch(env: Env, commands: str, tool: str = "sftp") -> None:
    done = subprocess.run(
        [tool, "-q", "-b", "-", *env.ssh_options(), env.host],
        input=commands,
        text=True,
        capture_output=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{tool} failed: {done.stderr.strip()}")


def quiet_run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stderr.strip()}")


# Every candidate: up(env, case, target) puts case.local at remote `target`; down(env, case,
# target) gets case.remote into local `target`. For a directory `target` does not exist yet.


def sftp_up(env: Env, case: Case, target: Path) -> None:
    run_batch(env, f"put {'-r ' if not case.single else ''}{case.local} {target}\n")


def sftp_down(env: Env, case: Case, target: Path) -> None:
    run_batch(env, f"get {'-r ' if not case.single else ''}{case.remote} {target}\n")


def sftp_synced_up(env: Env, case: Case, target: Path) -> None:
    """`sftp put`, then `sync` on the server: the copy as durable as archive-core makes it."""
    sftp_up(env, case, target)
    quiet_run(["ssh", *env.ssh_options(), env.host, "sync"])


def sftp_synced_down(env: Env, case: Case, target: Path) -> None:
    """`sftp get`, then `sync` here: the restore as durable as archive-core makes it."""
    sftp_down(env, case, target)
    os.sync()


def scp_up(env: Env, case: Case, target: Path) -> None:
    quiet_run(["scp", "-q", "-r", *env.ssh_options(), str(case.local), f"{env.host}:{target}"])


def scp_down(env: Env, case: Case, target: Path) -> None:
    quiet_run(["scp", "-q", "-r", *env.ssh_options(), f"{env.host}:{case.remote}", str(target)])


def rsync_up(env: Env, case: Case, target: Path, *options: str) -> None:
    source, there = f"{case.local}/", f"{env.host}:{target}/"
    quiet_run(["rsync", "-a", *options, "-e", env.ssh_e(), source, there])


def rsync_down(env: Env, case: Case, target: Path, *options: str) -> None:
    source, there = f"{env.host}:{case.remote}/", f"{target}/"
    quiet_run(["rsync", "-a", *options, "-e", env.ssh_e(), source, there])


def rsync_fsync() -> tuple[Callable[..., None], ...]:
    """rsync made as durable as archive-core's copies: every file fsynced where it lands."""

    def up(env: Env, case: Case, target: Path) -> None:
        rsync_up(env, case, target, "--fsync")

    def down(env: Env, case: Case, target: Path) -> None:
        rsync_down(env, case, target, "--fsync")

    return up, down


# asyncssh: its own SSH implementation in Python (cryptography for AES-GCM).


def asyncssh_client(env: Env, files: int, tuned: bool) -> tuple[Callable[..., None], ...]:
    asyncssh = importlib.import_module("asyncssh")
    server = env.server
    options: dict[str, Any] = (
        {"block_size": wire_bulk.MAX_CHUNK, "max_requests": 128} if tuned else {}
    )

    async def session(work: Callable[[Any], Any]) -> None:
        async with (
            asyncssh.connect(
                server.host,
                server.port,
                username=server.user,
                client_keys=[str(server.client_key)],
                known_hosts=str(server.known_hosts),
                encryption_algs=[env.cipher],
                compression_algs=["none"],
                agent_path=None,
                config=[],
            ) as connection,
            connection.start_sftp_client() as client,
        ):
            await work(client)

    async def many(client: Any, pairs: list[tuple[str, str]], method: str) -> None:
        gate = asyncio.Semaphore(files)

        async def one(src: str, dst: str) -> None:
            async with gate:
                await getattr(client, method)(src, dst, **options)

        await asyncio.gather(*(one(src, dst) for src, dst in pairs))

    def up(env: Env, case: Case, target: Path) -> None:
        async def work(client: Any) -> None:
            if case.single or files == 1:
                await client.put(str(case.local), str(target), recurse=True, **options)
                return
            await client.mkdir(str(target))
            names = case.names()
            pairs = [(str(case.local / n), str(target / n)) for n in names]
            await many(client, pairs, "put")

        asyncio.run(session(work))

    def down(env: Env, case: Case, target: Path) -> None:
        async def work(client: Any) -> None:
            if case.single or files == 1:
                await client.get(str(case.remote), str(target), recurse=True, **options)
                return
            target.mkdir()
            names = sorted(await client.listdir(str(case.remote)))
            names = [n for n in names if n not in (".", "..")]
            pairs = [(str(case.remote / n), str(target / n)) for n in names]
            await many(client, pairs, "get")

        asyncio.run(session(work))

    return up, down


# paramiko's SFTPClient over the system ssh's pipes (paramiko's own SSH transport not used).


class PipeSock:
    """The socket-like face paramiko's SFTPClient needs, over ssh's stdin and stdout."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.write_fd = self.process.stdin.fileno()
        self.read_fd = self.process.stdout.fileno()
        for fd in (self.write_fd, self.read_fd):
            with contextlib.suppress(OSError):
                import fcntl

                fcntl.fcntl(fd, wire_bulk.F_SETPIPE_SZ, 1 << 20)

    def send(self, data: bytes) -> int:
        return os.write(self.write_fd, data)

    def recv(self, n: int) -> bytes:
        return os.read(self.read_fd, n)

    def recv_ready(self) -> bool:
        import select

        return bool(select.select([self.read_fd], [], [], 0)[0])

    def close(self) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        self.process.stdout.close()
        self.process.wait(10)

    def settimeout(self, timeout: float | None) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None

    def setblocking(self, blocking: bool) -> None:
        pass

    def get_name(self) -> str:
        return "ssh-pipes"


def fan_out(
    connections: int,
    connect: Callable[[], Any],
    prelude: Callable[[Any], list[Any]],
    work: Callable[[Any, Iterator[Any]], None],
) -> None:
    """`connections` sessions opened at once; the first runs `prelude` (mkdir, listing), which
    gives the work items; then every session takes items from one queue until none are left."""
    items: queue.SimpleQueue[Any] = queue.SimpleQueue()
    ready = threading.Event()
    errors: list[BaseException] = []

    def drain() -> Iterator[Any]:
        while True:
            try:
                yield items.get_nowait()
            except queue.Empty:
                return

    def worker(first: bool) -> None:
        try:
            with connect() as session:
                if first:
                    try:
                        for item in prelude(session):
                            items.put(item)
                    finally:
                        ready.set()
                else:
                    ready.wait()
                work(session, drain())
        except BaseException as error:
            errors.append(error)
            ready.set()

    if connections == 1:
        worker(True)
    else:
        threads = [threading.Thread(target=worker, args=(n == 0,)) for n in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]


def paramiko_client(env: Env, connections: int) -> tuple[Callable[..., None], ...]:
    paramiko = importlib.import_module("paramiko")
    command = wire_bulk.ssh_command(env.host, env.server.ssh_options(), cipher=env.cipher)

    def connect() -> Any:
        return paramiko.SFTPClient(PipeSock(command))

    def work(method: str) -> Callable[[Any, Iterator[Any]], None]:
        def run(client: Any, items: Iterator[tuple[str, str]]) -> None:
            for src, dst in items:
                getattr(client, method)(src, dst)

        return run

    def up(env: Env, case: Case, target: Path) -> None:
        def prelude(client: Any) -> list[tuple[str, str]]:
            if case.single:
                return [(str(case.local), str(target))]
            client.mkdir(str(target))
            return [(str(case.local / n), str(target / n)) for n in case.names()]

        fan_out(connections, connect, prelude, work("put"))

    def down(env: Env, case: Case, target: Path) -> None:
        def prelude(client: Any) -> list[tuple[str, str]]:
            if case.single:
                return [(str(case.remote), str(target))]
            target.mkdir()
            names = sorted(client.listdir(str(case.remote)))
            return [(str(case.remote / n), str(target / n)) for n in names]

        fan_out(connections, connect, prelude, work("get"))

    return up, down


# archive-core's own SFTP v3 client (_wire.py) over the system ssh's pipes.


def wire_client(
    env: Env,
    files: int,
    connections: int = 1,
    *,
    chunk: int = wire_bulk.MAX_CHUNK,
    window: int = 64,
    atomic: bool = False,
    hashing: bool = False,
    fsync: bool = False,
) -> tuple[Callable[..., None], ...]:
    command = wire_bulk.ssh_command(env.host, env.server.ssh_options(), cipher=env.cipher)
    options: dict[str, Any] = {"chunk": chunk, "window": window, "files_in_flight": files}

    def connect() -> Any:
        return wire_bulk.spawn_ssh(command)

    def put(connection: Any, items: Iterator[tuple[str, str]]) -> None:
        extra: dict[str, Any] = {"atomic": atomic, "fsync": fsync}
        if hashing:
            sha1, sha256 = hashlib.sha1(), hashlib.sha256()

            def digest(data: bytes) -> None:
                sha1.update(data)
                sha256.update(data)

            extra["digest"] = digest
        wire_bulk.put_files(connection, items, **options, **extra)

    def get(connection: Any, items: Iterator[tuple[str, str, int]]) -> None:
        wire_bulk.get_files(connection, items, **options)

    def up(env: Env, case: Case, target: Path) -> None:
        def prelude(connection: Any) -> list[tuple[str, str]]:
            if case.single:
                return [(str(case.local), str(target))]
            connection.mkdir(str(target))
            return [(str(case.local / n), str(target / n)) for n in case.names()]

        fan_out(connections, connect, prelude, put)

    def down(env: Env, case: Case, target: Path) -> None:
        def prelude(connection: Any) -> list[tuple[str, str, int]]:
            if case.single:
                return [(str(case.remote), str(target), case.size)]
            target.mkdir()
            entries = connection.listdir(str(case.remote))
            return [
                (str(case.remote / os.fsdecode(n)), str(target / os.fsdecode(n)), attrs.size)
                for n, attrs in sorted(entries)
            ]

        fan_out(connections, connect, prelude, get)

    return up, down


# archive-core through Portal's face: ArchiveCorePlugin with an sftp target on the same sshd.


class PortalFace:
    """archive-core as a Portal worker runs it: one long-lived plugin, catalog and connection.

    Up is `plugin.archive(file_sets, policy, job)` with Portal's sha1 handed in (hashing, the
    sha1 check, temporary name, atomic publish, size check, catalog journal); down is
    `plugin.restore` of FileSets archived before the timer. The copies land where the target
    puts them (flat layout under one remote root), so `up` returns their paths for the check.
    A Portal worker is long-lived: imports, catalog schema and the ssh connection are made by
    a warm-up archive before any timer, as they are once per worker process.
    """

    def __init__(self, env: Env, **settings: int) -> None:
        from archive_core.portal import ArchiveCorePlugin

        server = env.server
        slug = "portal-face" + "".join(f"-{k}-{v}" for k, v in settings.items())
        home = Path(server.root) / slug
        self.root = server.data_dir / slug
        home.mkdir()
        self.root.mkdir()
        config = home / "site.toml"
        extra = "".join(f", {k} = {v}" for k, v in settings.items())
        config.write_text(
            f"""state_dir = "{home / "state"}"
[catalog]
url = "sqlite:///{home / "catalog.sqlite"}"
[targets.bench]
driver = "sftp"
settings = {{ host = "{server.host}", port = {server.port}, user = "{server.user}", \
remote_root = "{self.root}", key_file = "{server.client_key}", \
known_hosts = "{server.known_hosts}", min_free_bytes = 0{extra} }}
[policies.{POLICY}]
name = "Bench"
targets = ["bench"]
"""
        )
        self.plugin = ArchiveCorePlugin(config)
        self.runs = itertools.count()
        self.sources: dict[str, list[Any]] = {}  # case name: its FileSets, archived untimed
        warmup = home / "warmup.bin"
        sha1 = write_random(warmup, 1024)
        self._archive([FileSet([str(warmup)], (), "VX-warmup", sha1, "VX-S", "VX-C")])
        self.env = env
        self._rest()

    def _rest(self) -> None:
        # The plugin keeps its connection between calls, as a worker does: its sessions stay.
        self.env.resting = set(self.env.server.session_pids())

    def _archive(self, file_sets: list[Any]) -> list[Any]:
        archived, not_archived, error, _ = self.plugin.archive(
            file_sets, POLICY, f"bench-{next(self.runs)}"
        )
        if error or not_archived or len(archived) != len(file_sets):
            raise RuntimeError(f"archive through the Portal face failed: {error}")
        return archived

    def _file_sets(self, case: Case, tag: str) -> list[Any]:
        paths = [case.local] if case.single else [case.local / n for n in case.names()]
        return [
            FileSet([str(path)], (), f"VX-{tag}-{i}", case.sha1[path.name], "VX-S", "VX-C")
            for i, path in enumerate(paths)
        ]

    def _placed(self, archived: list[Any]) -> list[Path]:
        prefix = "sftp://bench/"
        return [self.root / fs.external_ids[0].removeprefix(prefix) for fs in archived]

    def up(self, env: Env, case: Case, target: Path) -> list[Path]:
        placed = self._placed(self._archive(self._file_sets(case, f"r{next(self.runs)}")))
        self._rest()
        return placed

    def down(self, env: Env, case: Case, target: Path) -> None:
        destinations = [target] if case.single else [target / n for n in case.names()]
        if not case.single:
            target.mkdir()
        file_sets = [
            fs._replace(files=[str(path)])
            for fs, path in zip(self.sources[case.name], destinations, strict=True)
        ]
        restored = self.plugin.restore(file_sets, POLICY, f"bench-{next(self.runs)}")
        if len(restored) != len(file_sets):
            raise RuntimeError(f"restore through the Portal face gave {len(restored)} files")
        self._rest()

    def prepare(self, cases: list[Case]) -> None:
        """Archive each case once, before any timer, for the restores to read back."""
        for case in cases:
            self.sources[case.name] = self._archive(self._file_sets(case, "src"))


# --- the candidates ------------------------------------------------------------------------------

SINGLE, SMALL, MEDIUM = "single", "small", "medium"
ALL = {SINGLE, SMALL, MEDIUM}


@dataclass
class Candidate:
    name: str
    cases: set[str]
    build: Callable[[Env], Any]  # (up, down), or an object with up, down, prepare
    needs: str | None = None  # module that must import
    directions: tuple[str, ...] = ("up", "down")


def candidates() -> list[Candidate]:
    return [
        Candidate("OpenSSH sftp", ALL, lambda env: (sftp_up, sftp_down)),
        Candidate("OpenSSH sftp && sync", ALL, lambda env: (sftp_synced_up, sftp_synced_down)),
        Candidate("scp", {SINGLE}, lambda env: (scp_up, scp_down)),
        Candidate("rsync -e ssh", {SMALL, MEDIUM}, lambda env: (rsync_up, rsync_down)),
        Candidate("rsync -e ssh --fsync", {SMALL, MEDIUM}, lambda env: rsync_fsync()),
        Candidate("asyncssh", ALL, lambda env: asyncssh_client(env, 1, False), "asyncssh"),
        Candidate("asyncssh tuned x8", ALL, lambda env: asyncssh_client(env, 8, True), "asyncssh"),
        Candidate(
            "asyncssh tuned x32",
            {SMALL, MEDIUM},
            lambda env: asyncssh_client(env, 32, True),
            "asyncssh",
        ),
        Candidate("ssh+paramiko", ALL, lambda env: paramiko_client(env, 1), "paramiko"),
        Candidate(
            "ssh+paramiko 4 conns",
            {SMALL, MEDIUM},
            lambda env: paramiko_client(env, 4),
            "paramiko",
        ),
        Candidate("archive-core (Portal face)", ALL, PortalFace),
        Candidate(
            "archive-core (Portal face) 1 conn",
            {SMALL, MEDIUM},
            lambda env: PortalFace(env, connections=1),
        ),
        Candidate(
            "archive-core (Portal face) 32 in flight",
            {SMALL},
            lambda env: PortalFace(env, files_in_flight=32),
        ),
        Candidate("ssh+wire x1", ALL, lambda env: wire_client(env, 1)),
        Candidate("ssh+wire x8", {SMALL, MEDIUM}, lambda env: wire_client(env, 8)),
        Candidate("ssh+wire x32", {SMALL, MEDIUM}, lambda env: wire_client(env, 32)),
        Candidate("ssh+wire 2 conns x16", {SMALL}, lambda env: wire_client(env, 16, 2)),
        Candidate("ssh+wire 4 conns x8", {SMALL}, lambda env: wire_client(env, 8, 4)),
        Candidate(
            "ssh+wire x32 +atomic +sha1/256",
            ALL,
            lambda env: wire_client(env, 32, atomic=True, hashing=True),
            directions=("up",),
        ),
        Candidate(
            "ssh+wire x32 +atomic +sha +fsync",
            {SMALL, MEDIUM},
            lambda env: wire_client(env, 32, atomic=True, hashing=True, fsync=True),
            directions=("up",),
        ),
        Candidate(
            "ssh+wire 2 conns x16 +atomic +sha",
            {SMALL, MEDIUM},
            lambda env: wire_client(env, 16, 2, atomic=True, hashing=True),
            directions=("up",),
        ),
    ]


def kind(case: Case) -> str:
    if case.single:
        return SINGLE
    return SMALL if case.size < MiB else MEDIUM


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Sample:
    seconds: float
    client_cpu: float
    server_cpu: float
    others: float  # cores other processes kept busy meanwhile (another job on a shared box)


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent not idle (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int, *, own: bool) -> float:
    """CPU seconds of `pid`'s reaped children, and with `own` its own as well."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return 0.0  # ended meanwhile: its parent's reaped-children time holds it
    return sum(int(v) for v in fields[11 if own else 13 : 15]) / TICK


def server_cpu(server: sshd.SshServer) -> float:
    """CPU of every session the listener has had, in seconds: the reaped ones (its children
    time) and the live ones (a kept connection), each process counted once."""
    assert server.pid is not None
    live = sum(proc_cpu(pid, own=True) for pid in server.session_pids())
    return proc_cpu(server.pid, own=False) + live


def sessions_gone(env: Env, deadline: float = 10.0) -> None:
    """Wait until only the sessions meant to stay (a kept connection) are left, so that the
    next timer starts quiet and no session is still finishing the last run's work."""
    end = time.monotonic() + deadline
    while set(env.server.session_pids()) - env.resting and time.monotonic() < end:
        time.sleep(0.005)


QUIET_BUDGET = [180.0]  # seconds the whole run may spend waiting for other jobs to pause


def wait_quiet(threshold: float = 0.15, probe: float = 0.3) -> None:
    """On a shared machine, wait (bounded) until other processes leave the CPUs alone.

    Measured while the bench itself is idle: anything busy then is someone else (or kernel
    writeback). Gives up when QUIET_BUDGET is spent; the `others` column then tells.
    """
    while QUIET_BUDGET[0] > 0:
        before = busy_cpu()
        time.sleep(probe)
        if (busy_cpu() - before) / probe < threshold:
            return
        QUIET_BUDGET[0] -= probe


def live_children_cpu() -> float:
    """CPU seconds of this process's children still running (a kept ssh connection)."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as listing:
            pids = listing.read().split()
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except FileNotFoundError:
                continue  # ended meanwhile: RUSAGE_CHILDREN counts it once reaped
            total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def measure(
    env: Env, action: Callable[..., list[Path] | None], case: Case, target: Path
) -> tuple[Sample, list[Path] | None]:
    """One timed run; the paths the action says it placed the copies at, when it does."""
    sessions_gone(env)
    prefault(case.bytes)
    os.sync()
    wait_quiet()  # after the sync: its writeback is kernel threads' CPU too
    server0, self0, children0 = server_cpu(env.server), cpu_self(), cpu_children()
    live0, busy0 = live_children_cpu(), busy_cpu()
    start = time.perf_counter()
    placed = action(env, case, target)
    seconds = time.perf_counter() - start
    self1, children1, live1, busy1 = cpu_self(), cpu_children(), live_children_cpu(), busy_cpu()
    sessions_gone(env)
    # A child alive at both ends counts by its difference; one that ended in between counts
    # in RUSAGE_CHILDREN in full, less what it had used before the start.
    client = (self1 - self0) + (children1 - children0) + (live1 - live0)
    server = server_cpu(env.server) - server0
    # The sessions' last CPU (after the timer) counts as the server's, not as the others'.
    others = max(0.0, (busy1 - busy0) - client - server) / seconds
    return Sample(seconds, client, server, others), placed


@dataclass
class Result:
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    def rate(self, case: Case, pick: Callable[[list[float]], float]) -> float:
        return case.bytes / pick([s.seconds for s in self.samples]) / 1e6

    def per_gib(self, case: Case, what: str) -> float:
        values = [getattr(s, what) for s in self.samples]
        return statistics.median(values) / (case.bytes / GiB)


RUN_SERIAL = itertools.count(1)  # one numbering for every Bench: their directories are shared


class Bench:
    def __init__(self, base: Path, env: Env) -> None:
        self.base = base
        self.env = env
        self.remote_base = env.server.data_dir
        self.checked: set[tuple[str, str, str]] = set()

    def fresh(self, where: Path) -> Path:
        parent = where / f"run-{next(RUN_SERIAL):05d}"
        parent.mkdir()
        return parent

    def once(self, name: str, direction: str, action: Callable[..., None], case: Case) -> Sample:
        if direction == "up":
            parent = self.fresh(self.remote_base)
        else:
            parent = self.fresh(self.base / "down")
        target = parent / ("big.bin" if case.single else "data")
        sample, placed = measure(self.env, action, case, target)
        paths = placed if placed is not None else copies(case, target)
        key = (name, direction, case.name)
        check(case, paths, full=key not in self.checked)
        self.checked.add(key)
        if case.single or case.size >= MiB:
            # Free the blocks but keep the inodes: on ext4 without a journal, creates scan past
            # inodes deleted in the last 30 s and run up to ten times slower (bench/README.md).
            for path in paths:
                os.truncate(path, 0)
        return sample


def run_table(
    bench: Bench, cases: list[Case], rows: list[Candidate], repeats: int
) -> dict[tuple[str, str, str], Result]:
    results: dict[tuple[str, str, str], Result] = {}
    built: dict[str, tuple[Callable[..., None], ...]] = {}
    for row in rows:
        actions = row.build(bench.env)
        if not isinstance(actions, tuple):  # an object with up, down and an untimed prepare
            actions.prepare(cases)
            actions = (actions.up, actions.down)
        built[row.name] = actions
    for repeat in range(repeats):
        for case in cases:
            for direction in ("up", "down"):
                for row in rows:
                    if kind(case) not in row.cases or direction not in row.directions:
                        continue
                    result = results.setdefault((row.name, case.name, direction), Result())
                    if result.error:
                        continue
                    action = built[row.name][0 if direction == "up" else 1]
                    try:
                        sample = bench.once(row.name, direction, action, case)
                    except Exception as error:  # a candidate that fails is reported, not fatal
                        result.error = f"{type(error).__name__}: {error}"[:200]
                        print(f"  {row.name} {case.name} {direction}: FAILED {result.error}")
                        continue
                    result.samples.append(sample)
                    print(
                        f"  [{repeat + 1}/{repeats}] {case.name:>15} {direction:<4} "
                        f"{row.name:<32} {case.bytes / sample.seconds / 1e6:8.1f} MB/s "
                        f"client {sample.client_cpu:6.2f} s  server {sample.server_cpu:6.2f} s"
                        f"  others {sample.others:4.2f} cores",
                        flush=True,
                    )
    return results


def report(
    cases: list[Case],
    rows: list[Candidate],
    results: dict[tuple[str, str, str], Result],
    baseline: str = "OpenSSH sftp",
) -> str:
    out = []
    header = (
        "candidate",
        "dir",
        "MB/s med",
        "best",
        "x sftp",
        "client CPU s/GiB",
        "server CPU s/GiB",
        "others",
    )
    for case in cases:
        lines: list[tuple[str, ...]] = [header]
        for direction in ("up", "down"):
            base = results.get((baseline, case.name, direction))
            base_rate = base.rate(case, statistics.median) if base and base.samples else None
            for row in rows:
                result = results.get((row.name, case.name, direction))
                if result is None:
                    continue
                if not result.samples:
                    lines.append((row.name, direction, "failed", "", "", "", "", ""))
                    continue
                median = result.rate(case, statistics.median)
                ratio = f"{median / base_rate:.2f}" if base_rate else "-"
                lines.append(
                    (
                        row.name,
                        direction,
                        f"{median:.0f}",
                        f"{result.rate(case, min):.0f}",
                        ratio,
                        f"{result.per_gib(case, 'client_cpu'):.2f}",
                        f"{result.per_gib(case, 'server_cpu'):.2f}",
                        f"{statistics.median(s.others for s in result.samples):.2f}",
                    )
                )
        out.append(f"\n{case.name} ({case.bytes / 1e6:,.0f} MB)\n{table(lines)}")
    return "\n".join(out)


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


# --- main ---------------------------------------------------------------------------------------


def available_rows(names: list[str] | None) -> list[Candidate]:
    rows = []
    for row in candidates():
        if names and not any(n.lower() in row.name.lower() for n in names):
            continue
        if row.needs and optional(row.needs) is None:
            print(f"{row.name}: missing: pip install {row.needs}")
            continue
        tool = row.name.split()[-1] if row.name.startswith("OpenSSH") else row.name.split()[0]
        if tool in ("sftp", "scp", "rsync") and shutil.which(tool) is None:
            package = "rsync" if tool == "rsync" else "openssh-client"
            print(f"{row.name}: missing: apt-get install {package}")
            continue
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, 1 run each")
    parser.add_argument("--repeats", type=int, help="runs per candidate (default 3, quick 1)")
    parser.add_argument(
        "--only", action="append", help="only candidates whose name contains this (repeatable)"
    )
    parser.add_argument(
        "--case", action="append", choices=[SINGLE, SMALL, MEDIUM], help="only this workload"
    )
    parser.add_argument("--no-extras", action="store_true", help="skip the cipher/server rows")
    parser.add_argument("--keep", action="store_true", help="keep the workspace")
    args = parser.parse_args()
    repeats = args.repeats or (1 if args.quick else 3)

    reason = sshd.available()
    if reason:
        sys.exit(f"cannot start sshd: {reason}")
    rows = available_rows(args.only)
    cases = [c for c in make_cases(args.quick) if not args.case or kind(c) in args.case]
    base = workspace(args.keep)
    started = time.monotonic()
    try:
        (base / "down").mkdir()
        with sshd.SshServer(base_dir=str(base), log_level="ERROR") as server:
            env = Env(server)
            for case in cases:
                prepare(case, base, server.data_dir)
            warm([p for c in cases for p in ([c.local] if c.single else c.local.iterdir())])
            warm([p for c in cases for p in ([c.remote] if c.single else c.remote.iterdir())])
            settle(base)
            print(
                f"sshd {server.host}:{server.port} (internal-sftp), cipher {CIPHER}, "
                f"{os.cpu_count()} CPUs, {repeats} run(s) each"
            )
            bench = Bench(base, env)
            results = run_table(bench, cases, rows, repeats)
            print(report(cases, rows, results))
            if not args.no_extras:
                extras(bench, cases, rows, results, server, base, args.quick)
    finally:
        print(f"\ntotal {time.monotonic() - started:.0f} s")
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def extras(
    bench: Bench,
    cases: list[Case],
    rows: list[Candidate],
    results: dict[tuple[str, str, str], Result],
    server: sshd.SshServer,
    base: Path,
    quick: bool,
) -> None:
    """Once each: chacha20 vs aes-gcm, _wire's chunk and window, sftp-server vs internal-sftp."""
    single = [c for c in cases if c.single]
    small = [c for c in cases if kind(c) == SMALL]
    by_name = {row.name: row for row in rows}
    pick = [n for n in ("OpenSSH sftp", "ssh+wire x1", "asyncssh tuned x8") if n in by_name]
    if single:
        chacha_env = Env(server, CHACHA)
        chacha_bench = Bench(base, chacha_env)
        chacha_rows = [by_name[n] for n in pick]
        chacha = run_table(chacha_bench, single, chacha_rows, 1)
        renamed = [Candidate(f"{r.name} [chacha20]", r.cases, r.build) for r in chacha_rows]
        mixed = dict(results)
        for row, new in zip(chacha_rows, renamed, strict=True):
            for key, value in chacha.items():
                if key[0] == row.name:
                    mixed[(new.name, key[1], key[2])] = value
        print("\nchacha20-poly1305 vs aes128-gcm, one run each:")
        print(report(single, [by_name[n] for n in pick] + renamed, mixed))

        sweep = [
            Candidate(f"ssh+wire chunk {c // KiB}K window {w}", {SINGLE},
                      lambda env, c=c, w=w: wire_client(env, 1, chunk=c, window=w))
            for c, w in ((32 * KiB, 64), (64 * KiB, 64), (128 * KiB, 32), (wire_bulk.MAX_CHUNK, 8),
                         (wire_bulk.MAX_CHUNK, 16), (wire_bulk.MAX_CHUNK, 128))
        ]  # fmt: skip
        swept = run_table(bench, single, sweep, 1)
        swept.update({k: v for k, v in results.items() if k[0] in ("OpenSSH sftp", "ssh+wire x1")})
        print("\n_wire chunk size and window (outstanding requests), one run each:")
        print(report(single, [by_name["OpenSSH sftp"], by_name["ssh+wire x1"], *sweep], swept))

    if quick:
        return
    subject = [by_name[n] for n in ("OpenSSH sftp", "ssh+wire x1", "ssh+wire x32") if n in by_name]
    with sshd.SshServer(base_dir=str(base), log_level="ERROR", sftp_server="sftp-server") as other:
        other_env = Env(other)
        other_bench = Bench(base, other_env)
        other_bench.remote_base = server.data_dir  # same data; other sshd, same machine
        other_results = run_table(other_bench, single + small, subject, 1)
    renamed = [Candidate(f"{r.name} [sftp-server]", r.cases, r.build) for r in subject]
    mixed = dict(results)
    for row, new in zip(subject, renamed, strict=True):
        for key, value in other_results.items():
            if key[0] == row.name:
                mixed[(new.name, key[1], key[2])] = value
    print("\n/usr/lib/openssh/sftp-server vs internal-sftp, one run each:")
    print(report(single + small, subject + renamed, mixed))


if __name__ == "__main__":
    main()
