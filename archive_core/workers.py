"""Who a worker process is, so that another process can tell whether it still runs.

The journal records the worker behind every intent, and temporary file names carry its host
and pid. A process id alone is not an identity: pids are reused, after a reboot every pid is,
and two containers with one host name each have a pid 1. So a worker is named by its host,
its pid, the pid space that pid means something in (the boot and the pid namespace) and its
start time; from here, a process is known dead only when it ran in this very pid space and
its pid is gone or now belongs to a younger process. Anything else cannot be told from here.
"""

from __future__ import annotations

import os

import attrs

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@attrs.frozen
class WorkerId:
    """One process on one host, as the journal and temporary names record it."""

    host: str  # the host label: letters, digits and '-' (dots separate fields in temp names)
    pid: int
    pid_space: str = ""  # boot id and pid namespace: where `pid` names this process; "" unknown
    start: int = 0  # the process's start time in clock ticks since boot; 0 where unknown

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.pid_space}:{self.start}"

    @classmethod
    def parse(cls, text: str) -> WorkerId | None:
        """The id `str()` wrote (or the older `host:pid`); None for anything else."""
        parts = text.split(":")
        if len(parts) not in (2, 4) or not parts[1].isdigit():
            return None
        if len(parts) == 2:
            return cls(host=host_label(parts[0]), pid=int(parts[1]))
        start = int(parts[3]) if parts[3].isdigit() else 0
        return cls(host=parts[0], pid=int(parts[1]), pid_space=parts[2], start=start)

    def is_alive(self) -> bool | None:
        """Whether this process still runs; None when that cannot be told from here.

        None for another host, another boot of this one, another pid namespace (a container
        of the same name), or an id without a pid space (older archive-core versions).
        """
        here = current()
        if self.host != here.host or not self.pid_space or self.pid_space != here.pid_space:
            return None
        if self.pid == here.pid:
            return not self.start or not here.start or self.start == here.start
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        if self.start:
            started = _start_ticks(self.pid)
            if started is not None and started != self.start:
                return False  # the pid was reused by a newer process
        return True


def host_label(name: str | None = None) -> str:
    """A host name as temporary names and worker ids carry it (at most 32 characters)."""
    name = os.uname().nodename if name is None else name
    label = "".join(c if c.isalnum() or c == "-" else "-" for c in name)
    return label[:32] or "host"


def current() -> WorkerId:
    """This process, computed once per process (a forked child computes its own)."""
    global _current
    pid = os.getpid()
    if _current is None or _current.pid != pid:
        _current = of_process(pid)
    return _current


def of_process(pid: int) -> WorkerId:
    """The id of process `pid` of this host and pid namespace."""
    return WorkerId(
        host=host_label(), pid=pid, pid_space=_pid_space(), start=_start_ticks(pid) or 0
    )


_current: WorkerId | None = None


def _pid_space() -> str:
    """This boot's id and this process's pid namespace; "" where either is unknown."""
    try:
        with open(_BOOT_ID, encoding="ascii") as fh:
            boot = fh.read().strip().replace("-", "")[:12]
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    digits = "".join(c for c in namespace if c.isdigit())
    return f"{boot}-{digits}" if boot and digits else ""


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ')'.
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None
