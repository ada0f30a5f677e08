"""The one way the real backend runs system tools, so tests can answer in their place."""

from __future__ import annotations

import logging
import shlex
import subprocess
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from archive_core_tape_ltfs.errors import ToolMissing, ToolTimeout
from archive_core_tape_ltfs.port import Clock

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class Command:
    argv: tuple[str, ...] = attrs.field(converter=tuple)
    timeout: float
    # Where it runs: `ltfsck --capture-index` writes its files to the current directory.
    cwd: Path | None = None

    @property
    def tool(self) -> str:
        return Path(self.argv[0]).name

    def __str__(self) -> str:
        return shlex.join(self.argv)


@attrs.frozen(kw_only=True)
class CommandResult:
    command: Command
    exit_code: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@runtime_checkable
class Process(Protocol):
    """A long-running tool (the `ltfs` daemon kept in the foreground)."""

    pid: int

    def poll(self) -> int | None: ...

    def wait(self, timeout: float) -> int:
        """Exit status; ToolTimeout if it is still running after `timeout` seconds."""

    def stderr_text(self) -> str: ...


@runtime_checkable
class Runner(Protocol):
    def run(self, command: Command) -> CommandResult: ...

    def spawn(self, command: Command, log_path: Path) -> Process: ...


@runtime_checkable
class SimulatedRunner(Runner, Protocol):
    """Tools played by a simulation on a virtual clock: each caller needs its own timeline
    (`worker`), where threads on real hardware share the wall clock."""

    clock: Clock

    def worker(self, name: str) -> SimulatedRunner: ...


class _Child:
    def __init__(self, popen: subprocess.Popen, command: Command, log_path: Path) -> None:
        self._popen = popen
        self._command = command
        self._log_path = log_path
        self.pid = popen.pid

    def poll(self) -> int | None:
        return self._popen.poll()

    def wait(self, timeout: float) -> int:
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolTimeout(
                f"{self._command.tool} (pid {self.pid}) was still running after {timeout:.0f} s.",
                detail=str(self._command),
            ) from None

    def stderr_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""


class SubprocessRunner:
    """Runs tools for real: stdout and stderr kept apart, every call bounded in time."""

    def run(self, command: Command) -> CommandResult:
        logger.debug("running %s (timeout %.0f s)", command, command.timeout)
        try:
            done = subprocess.run(
                command.argv,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=command.timeout,
                stdin=subprocess.DEVNULL,
                cwd=command.cwd,
                check=False,
            )
        except FileNotFoundError:
            raise ToolMissing(
                f"The tape tool {command.argv[0]!r} is not installed; install the Debian "
                f"packages mtx, mt-st and sg3-utils and LTFS on this host.",
                detail=str(command),
            ) from None
        except subprocess.TimeoutExpired:
            raise ToolTimeout(
                f"{command.tool} did not finish within {command.timeout:.0f} s: {command}.",
                detail=str(command),
            ) from None
        return CommandResult(
            command=command, exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr
        )

    def spawn(self, command: Command, log_path: Path) -> Process:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.debug("starting %s (log %s)", command, log_path)
        with open(log_path, "wb") as log:
            try:
                popen = subprocess.Popen(
                    command.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
            except FileNotFoundError:
                raise ToolMissing(
                    f"The tape tool {command.argv[0]!r} is not installed on this host.",
                    detail=str(command),
                ) from None
        return _Child(popen, command, log_path)
