"""Which processes live on this host, told apart by start time so a reused pid is not mistaken.

A mount outlives the process that made it (the ltfs daemon is not killed with its owner), so
other processes judge a recorded mount by asking whether its owner and its ltfs still run.
A pid alone cannot answer that: the kernel hands a dead process's pid to a new one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from archive_core_tape_ltfs.errors import ToolTimeout
from archive_core_tape_ltfs.port import Clock


@runtime_checkable
class ProcessTable(Protocol):
    def start_time(self, pid: int) -> float | None:
        """When `pid` started (any fixed origin), or None if no live process has it."""

    def this_process(self) -> tuple[int, float]:
        """This process's pid and start time."""


class ProcTable:
    """/proc: the start time is field 22 of /proc/<pid>/stat, in clock ticks since boot."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._ticks = os.sysconf("SC_CLK_TCK")

    def start_time(self, pid: int) -> float | None:
        try:
            stat = (self._proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        # The command name (field 2) is in parentheses and may hold spaces or parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":
            return None  # exited, only waiting for its parent to reap it
        return int(fields[19]) / self._ticks

    def this_process(self) -> tuple[int, float]:
        pid = os.getpid()
        started = self.start_time(pid)
        assert started is not None
        return pid, started


class ForeignProcess:
    """An ltfs process another process started (an adopted mount): not our child, so it can
    only be watched, never waited on, and its exit status cannot be read."""

    def __init__(
        self,
        *,
        pid: int,
        started: float,
        processes: ProcessTable,
        clock: Clock,
        log_path: Path,
        poll_interval: float,
    ) -> None:
        self.pid = pid
        self._started = started
        self._processes = processes
        self._clock = clock
        self._log_path = log_path
        self._poll_interval = poll_interval

    def poll(self) -> int | None:
        # 0 for a process that is gone: its status died with it; the log and the captured
        # index it wrote are the evidence of how it ended.
        return None if self._processes.start_time(self.pid) == self._started else 0

    def wait(self, timeout: float) -> int:
        deadline = self._clock.now() + timeout
        while (code := self.poll()) is None:
            if self._clock.now() >= deadline:
                raise ToolTimeout(
                    f"ltfs (pid {self.pid}) was still running after {timeout:.0f} s.",
                    detail=str(self._log_path),
                )
            self._clock.sleep(self._poll_interval)
        return code

    def stderr_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""
