"""The worker processes of a trial: start, await and read them; find and await their stagers."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from tests.killrun.site import Site
from tests.sites import POLICY

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "kill_worker.py"

#: How long one worker run may take before the trial calls it hung (a violation).
RUN_SECONDS = 180.0

_STAGER_MARK = b"archive_core.transfer.stager._worker"


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


def start_worker(
    site: Site, manifest: Path, operation: str, job_id: str, log: Path
) -> subprocess.Popen[bytes]:
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


def finish_worker(process: subprocess.Popen[bytes], log: Path, *, deadline: float) -> WorkerRun:
    timed_out = False
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        timed_out = True
        process.kill()
        process.wait()
    out, err = _log_lines(log, "out"), _log_lines(log, "err")
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


def _log_lines(log: Path, stream: str) -> list[str]:
    return Path(f"{log}.{stream}").read_text(errors="replace").strip().splitlines()


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
