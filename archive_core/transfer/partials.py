"""Temporary files of copies being written: their one name format, and removing dead writers' files.

A copy that cannot be an unnamed file is written beside its destination under
`.<name>.<host>.<pid>.<token>.partial` (`PartialName`). The name says which worker made it,
so the files a killed worker left can be told from those a live one is writing.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Collection, Iterable

import attrs

from archive_core import workers
from archive_core.naming import NAME_MAX

log = logging.getLogger(__name__)

SUFFIX = ".partial"

#: A temporary file nobody has written to for this long is stale whoever made it.
STALE_AFTER_SECONDS = 24 * 3600


@attrs.frozen(kw_only=True)
class PartialName:
    """`.<name>.<host>.<pid>.<token>.partial`: the temporary name one worker gave a copy of `name`.

    Host and pid are those of `archive_core.workers.current()` for a name made here, the
    terms the journal records a worker in. `name` is the destination's name as far as it
    fits: a long one is cut at its end so that the whole stays within NAME_MAX bytes (it
    is there for admins, and for matching by the part that was kept).
    """

    name: str
    host: str
    pid: int
    token: str

    @classmethod
    def fresh(cls, name: str) -> PartialName:
        """A name for a copy of `name` no other call, process or host makes."""
        host, pid, token = _TOKENS.next()
        budget = NAME_MAX - len(os.fsencode(f"..{host}.{pid}.{token}{SUFFIX}"))
        # Cutting bytes may split a UTF-8 sequence; fsdecode's surrogateescape keeps them exact.
        return cls(name=os.fsdecode(os.fsencode(name)[:budget]), host=host, pid=pid, token=token)

    @classmethod
    def parse(cls, entry: str) -> PartialName | None:
        """The parts of directory entry `entry`; None when it is not a temporary name."""
        if not (entry.startswith(".") and entry.endswith(SUFFIX)):
            return None
        # rsplit: the name may hold dots, host labels and tokens never do.
        fields = entry[1 : -len(SUFFIX)].rsplit(".", 3)
        if len(fields) != 4 or not fields[2].isdigit():
            return None
        name, host, pid, token = fields
        return cls(name=name, host=host, pid=int(pid), token=token)

    def __str__(self) -> str:
        return f".{self.name}.{self.host}.{self.pid}.{self.token}{SUFFIX}"

    @property
    def cut(self) -> bool:
        """Whether `name` may be a cut one: the whole name is as long as NAME_MAX allows."""
        return len(os.fsencode(str(self))) >= NAME_MAX

    def is_for(self, name: str) -> bool:
        """Whether this is a temporary name for `name` (matched by the part kept when cut)."""
        kept, wanted = os.fsencode(self.name), os.fsencode(name)
        return kept == wanted or (self.cut and bool(kept) and wanted.startswith(kept))


class _Tokens:
    """Host, pid, random per process and a counter: unique names without a syscall each."""

    def __init__(self) -> None:
        self._me: tuple[str, int, str] | None = None
        self._counter = itertools.count()
        # A forked child must never share its parent's names.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._me = None

    def next(self) -> tuple[str, int, str]:
        if self._me is None:
            me = workers.current()
            self._me = (me.host, me.pid, os.urandom(4).hex())
        host, pid, prefix = self._me
        return host, pid, f"{prefix}{next(self._counter):x}"


_TOKENS = _Tokens()


def temporary_name(name: str) -> str:
    """A hidden name beside `name`, unique per host, process and call, that fits NAME_MAX.

    The shape is `.<name>.<host>.<pid>.<token>.partial` (see `PartialName`), so
    `sweep_partials` can tell which worker made it; long names are cut at the end.
    """
    return str(PartialName.fresh(name))


def sweep_partials(
    directory: str | os.PathLike[str], *, older_than: float = STALE_AFTER_SECONDS
) -> list[str]:
    """Remove the temporary files that stopped workers left in `directory`; return their names.

    A worker killed mid-copy (SIGKILL, a crash, a power cut) cannot remove its temporary
    file. One is stale when it was made on this host by a process that no longer runs, or
    when nothing has written to it for `older_than` seconds (made on another host sharing
    the directory, whose processes cannot be checked from here). Live copies are kept.
    """
    removed: list[str] = []
    host, me, now = workers.current().host, os.getpid(), time.time()
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return removed
    with entries:
        for entry in entries:
            name = entry.name
            if not (name.startswith(".") and name.endswith(SUFFIX)):
                continue
            partial = PartialName.parse(name)
            if partial is not None and partial.host == host and partial.pid != me:
                stale = not _process_exists(partial.pid)
            else:  # another host's, or a shape from elsewhere: only its age tells
                try:
                    stale = now - entry.stat(follow_symlinks=False).st_mtime > older_than
                except OSError:
                    continue
            if stale:
                try:
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed.append(name)
    return removed


def remove_partials(
    directory: str | os.PathLike[str],
    name: str | Collection[str],
    *,
    made_by: Collection[workers.WorkerId | str],
) -> list[str]:
    """Remove the temporary files the workers `made_by` made for `name` in `directory`.

    `name` may also be several names of that directory: one listing serves them all.
    Which entries go is `abandoned_partials`'s choice; this lists and unlinks locally.
    """
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    with entries:
        listed = {entry.name: entry.path for entry in entries}
    removed: list[str] = []
    for entry in abandoned_partials(listed, name, made_by=made_by):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listed[entry])
            removed.append(entry)
    return removed


def abandoned_partials(
    entries: Iterable[str],
    name: str | Collection[str],
    *,
    made_by: Collection[workers.WorkerId | str],
) -> list[str]:
    """Of a directory's `entries`, the temporary files the workers `made_by` made for `name`.

    For a caller the core's journal told that those workers' attempts at this name died
    (`abandoned_by`); any other worker's temporary file may be a live copy and stays, so
    two workers writing one name never remove each other's. Workers are matched on the
    host label and pid a temporary name carries. A pid of this host that runs again (a
    reused pid looks the same in a name) is kept too: the sweep removes it once it is
    gone. Names cut to fit NAME_MAX are matched by the part that was kept. Storage other
    than a local directory (a server over SFTP) lists and removes with its own calls.
    """
    here = workers.current().host
    owners: set[tuple[str, int]] = set()
    for worker in made_by:
        parsed = workers.WorkerId.parse(worker) if isinstance(worker, str) else worker
        if parsed is None:
            log.warning("ignoring %r: it is not a worker id", worker)
            continue
        if parsed.host == here and _process_exists(parsed.pid):
            continue
        owners.add((parsed.host, parsed.pid))
    if not owners:
        return []
    names = {name} if isinstance(name, str) else set(name)
    chosen = []
    for entry in entries:
        partial = PartialName.parse(entry)
        if partial is None or (partial.host, partial.pid) not in owners:
            continue
        if partial.name in names or any(partial.is_for(n) for n in names):
            chosen.append(entry)
    return chosen


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
