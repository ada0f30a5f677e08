"""Reading a batch's sources ahead of the tape drive, so that a slow source does not starve it.

A drive writes at its native rate or, fed slower, no slower than its speed-matching floor;
fed below that it stops and repositions (a back-hitch) each time its buffer runs dry, which
wears tape and heads and loses throughput. A source that takes 100 ms to open a file and
streams 120 MB/s cannot keep an LTO-9 drive (177-400 MB/s) going by itself. The feed opens
the batch's files ahead and reads them in segments on several threads at once, into a
bounded memory budget, and hands them to the writer in batch order. Files below a threshold
are handed over in groups, only once the whole group is in memory, so the drive writes them
back to back instead of waiting on each file's open.

Time: every opener and reader thread has a clock of its own (a worker of the port), and each
file and segment notes on it when it was ready; the writer's clock waits for that before the
writer uses it. On the real library they are all the wall clock and every such wait is over
when it is asked for; on the simulator they put the feed's concurrency on the virtual
timeline, deterministically, because which thread opens or reads what is fixed (round robin
by position in the batch), not left to the thread scheduler.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from archive_core import ArchiveItem, TransferFailed, at_least, between, setting
from archive_core.transfer import RegularFile, open_first_readable
from archive_core_tape_ltfs.port import Clock

logger = logging.getLogger(__name__)

MiB = 2**20
GiB = 2**30

#: Files opened ahead of the writer at most (each holds a descriptor until it is written).
MAX_OPEN_FILES = 64
#: Segments in memory at most, whatever their size (empty and tiny files count too).
MAX_SEGMENTS = 1024
#: How long closing the feed waits for each of its threads.
CLOSE_WAIT_SECONDS = 10.0


@attrs.frozen(kw_only=True)
class ReadAhead:
    """How the archive reads its sources ahead of the drive (`[read_ahead]`)."""

    readers: int = setting(
        default=4,
        help="Sources read at once ahead of the drive (and as many opened ahead); 0 reads "
        "each file only as it is written, as a plain copy would.",
        validator=between(0, 64),
    )
    memory_bytes: int = setting(
        default=1 * GiB,
        help="Most bytes read ahead and held in memory per job and pool.",
        validator=at_least(16 * MiB),
    )
    segment_bytes: int = setting(
        default=64 * MiB,
        help="Bytes a reader reads in one go; a larger file is read by several readers at "
        "once, in segments (at most memory_bytes).",
        advanced=True,
        validator=between(MiB, GiB),
    )
    group_bytes: int | None = setting(
        default=None,
        help="Bytes of small files written back to back as one group, once all of it is in "
        "memory (at most memory_bytes). Default: 256 MiB, or half of memory_bytes if less.",
        advanced=True,
        validator=attrs.validators.optional(at_least(0)),
    )
    small_file_bytes: int | None = setting(
        default=None,
        help="Files below this size are written in groups (at most group_bytes). Default: "
        "64 MiB, or group_bytes if less.",
        advanced=True,
        validator=attrs.validators.optional(at_least(0)),
    )

    def __attrs_post_init__(self) -> None:
        # A segment, and a group of small files, must fit in memory whole.
        problems = []
        if self.segment_bytes > self.memory_bytes:
            problems.append(
                f"segment_bytes ({self.segment_bytes}) must not exceed memory_bytes "
                f"({self.memory_bytes})"
            )
        if self.group_bytes is not None and self.group_bytes > self.memory_bytes:
            problems.append(
                f"group_bytes ({self.group_bytes}) must not exceed memory_bytes "
                f"({self.memory_bytes})"
            )
        if self.small_file_bytes is not None and self.small_file_bytes > self.group:
            problems.append(
                f"small_file_bytes ({self.small_file_bytes}) must not exceed group_bytes "
                f"({self.group})"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def group(self) -> int:
        if self.group_bytes is not None:
            return self.group_bytes
        return min(256 * MiB, self.memory_bytes // 2)

    @property
    def small_file(self) -> int:
        if self.small_file_bytes is not None:
            return self.small_file_bytes
        return min(64 * MiB, self.group)


# --- sources --------------------------------------------------------------------------------


class Source(Protocol):
    """One opened source file. Reads may be issued from several threads at once."""

    size: int

    def readinto_at(self, view: memoryview, offset: int, clock: Clock) -> int:
        """Read into `view` from `offset`; how many bytes came (0 at the end). The caller
        whose clock is given waits for it."""

    def close(self) -> None: ...


class SourceOpener(Protocol):
    def __call__(self, item: ArchiveItem, clock: Clock) -> tuple[str, Source]:
        """The first readable of the item's sources (its path and the open source), or
        TransferFailed naming each one and why; the caller whose clock is given waits."""


class LocalSource:
    """A local (or mounted network) file; the wall clock is the only clock it knows."""

    def __init__(self, file: RegularFile) -> None:
        self._file = file
        self.size = file.size

    def readinto_at(self, view: memoryview, offset: int, clock: Clock) -> int:
        return self._file.readinto_at(view, offset)

    def close(self) -> None:
        self._file.close()


def open_source(item: ArchiveItem, clock: Clock) -> tuple[str, Source]:
    """The default opener: the item's first readable source path."""
    path, file = open_first_readable(item.sources)
    return path, LocalSource(file)


def read_exactly(source: Source, offset: int, length: int, clock: Clock) -> memoryview:
    """Up to `length` bytes from `offset`: fewer only where the source ends."""
    buffer = memoryview(bytearray(length))
    got = 0
    while got < length:
        count = source.readinto_at(buffer[got:], offset + got, clock)
        if not count:
            break
        got += count
    return buffer[:got]


class _Stream:
    """A file's bytes for `HashingReader`, read in order; `size` is the size opened."""

    size: int

    def readable(self) -> bool:
        return True

    def read(self, count: int = -1) -> bytes:
        buffer = bytearray(max(count, 0) if count >= 0 else self.size)
        got = self.readinto(memoryview(buffer))
        return bytes(buffer[:got])

    def readinto(self, view: Any) -> int:
        raise NotImplementedError

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class SourceStream(_Stream):
    """A source read straight through, on the writer's own clock (no read-ahead)."""

    def __init__(self, source: Source, clock: Clock) -> None:
        self._source = source
        self._clock = clock
        self._offset = 0
        self.size = source.size

    def readinto(self, view: Any) -> int:
        count = self._source.readinto_at(memoryview(view), self._offset, self._clock)
        self._offset += count
        return count

    def close(self) -> None:
        self._source.close()


# --- the feed -------------------------------------------------------------------------------


def _catch_up(clock: Clock, when: float) -> None:
    """Let `clock` reach `when`: a no-op on the wall clock, where `when` is always past."""
    ahead = when - clock.now()
    if ahead > 0:
        clock.sleep(ahead)


@attrs.define(eq=False)
class _File:
    index: int
    item: ArchiveItem
    path: str = ""
    source: Source | None = None
    size: int = 0
    error: TransferFailed | None = None
    opened_at: float | None = None  # on its opener's clock; None until opened (or failed)
    segments: list[_Segment] = attrs.Factory(list)
    released_at: float | None = None  # when the writer was done with it


@attrs.define(eq=False)
class _Segment:
    index: int  # in the batch
    file: _File
    offset: int
    length: int
    defined_at: float  # when a reader could know of it: its file, and all before, opened
    data: memoryview | None = None
    error: OSError | None = None
    ready_at: float | None = None  # on its reader's clock
    freed_at: float | None = None  # when the writer was done with it


class Feed:
    """The batch's files read ahead on `settings.readers` threads; `take()` them in order.

    Memory holds at most `memory_bytes` of segments read and not yet written: a segment is
    read only once the segments before it that would not fit beside it were written, so the
    writer never waits for memory. A file that cannot be opened, or whose read fails, is that
    file's failure only.
    """

    def __init__(
        self,
        items: Sequence[ArchiveItem],
        *,
        opener: SourceOpener,
        writer_clock: Clock,
        clocks: Callable[[str], Clock],
        settings: ReadAhead,
        context: str,
    ) -> None:
        if settings.readers < 1:
            raise ValueError("a feed needs at least one reader")
        self._opener = opener
        self._clock = writer_clock
        self._settings = settings
        self._context = context
        self._files = [_File(index=n, item=item) for n, item in enumerate(items)]
        self._lock = threading.Condition()
        self._segments: list[_Segment] = []
        self._before: list[int] = [0]  # bytes of the segments before each, and in all
        self._defined = 0  # files whose segments are defined
        self._last_open = writer_clock.now()
        self._next = 0  # the next file the writer takes
        self._group_end = 0  # files before it are in memory already, as one group
        self._stopped = False
        start = writer_clock.now()
        self._threads = [
            threading.Thread(
                target=self._guarded,
                args=(work, clocks(f"{context} {kind} {n}"), n),
                name=f"tape feed {kind} {n}",
                daemon=True,
            )
            for kind, work in (("opener", self._open_files), ("reader", self._read_segments))
            for n in range(settings.readers)
        ]
        self._start = start
        for thread in self._threads:
            thread.start()

    # --- opener and reader threads ---------------------------------------------------------

    def _guarded(self, work: Callable[[Clock, int], None], clock: Clock, lane: int) -> None:
        _catch_up(clock, self._start)
        try:
            work(clock, lane)
        except BaseException:  # a bug: fail the batch's remaining files, never hang it
            logger.exception("%s: a read-ahead thread failed", self._context)
            with self._lock:
                self._stopped = True
                self._lock.notify_all()

    def _open_files(self, clock: Clock, lane: int) -> None:
        for file in self._files[lane :: self._settings.readers]:
            with self._lock:
                # No more files open than MAX_OPEN_FILES: wait for the writer to finish one.
                oldest = (
                    self._files[file.index - MAX_OPEN_FILES]
                    if file.index >= MAX_OPEN_FILES
                    else None
                )
                self._lock.wait_for(
                    lambda f=oldest: self._stopped or f is None or f.released_at is not None
                )
                if self._stopped:
                    return
            _catch_up(clock, oldest.released_at if oldest is not None else self._start)
            try:
                path, source = self._opener(file.item, clock)
            except TransferFailed as exc:
                path, source, error = "", None, exc
            else:
                error = None
            with self._lock:
                file.path, file.source, file.error = path, source, error
                file.size = source.size if source is not None else 0
                file.opened_at = clock.now()
                if self._stopped and source is not None:
                    source.close()
                    file.source = None
                self._define()
                self._lock.notify_all()

    def _define(self) -> None:
        """Segments for each file opened, in batch order (their positions depend on the sizes
        of the files before them)."""
        segment = self._settings.segment_bytes
        while self._defined < len(self._files):
            file = self._files[self._defined]
            if file.opened_at is None:
                return
            self._last_open = max(self._last_open, file.opened_at)
            count = max(1, -(-file.size // segment))
            for n in range(count):
                length = min(segment, file.size - n * segment) if file.size else 0
                piece = _Segment(
                    index=len(self._segments),
                    file=file,
                    offset=n * segment,
                    length=length,
                    defined_at=self._last_open,
                )
                file.segments.append(piece)
                self._segments.append(piece)
                self._before.append(self._before[-1] + length)
            self._defined += 1

    def _room_after(self, piece: _Segment) -> _Segment | None:
        """The last segment that must be written before `piece` fits in memory beside the
        rest (None: it fits now)."""
        end = self._before[piece.index + 1]
        # Segments from `first` to `piece` fit in memory together.
        first = bisect.bisect_left(self._before, end - self._settings.memory_bytes)
        first = min(max(first, piece.index + 1 - MAX_SEGMENTS), piece.index)
        return self._segments[first - 1] if first > 0 else None

    def _read_segments(self, clock: Clock, lane: int) -> None:
        position = lane
        while True:
            with self._lock:
                self._lock.wait_for(
                    lambda n=position: (
                        self._stopped
                        or n < len(self._segments)
                        or self._defined == len(self._files)
                    )
                )
                if self._stopped or position >= len(self._segments):
                    return
                piece = self._segments[position]
                needed = self._room_after(piece)
                self._lock.wait_for(
                    lambda p=needed: self._stopped or p is None or p.freed_at is not None
                )
                if self._stopped:
                    return
                room_at = needed.freed_at if needed is not None else self._start
                source = piece.file.source
            _catch_up(clock, max(piece.defined_at, room_at))
            data, error = None, None
            if source is not None and piece.length:
                try:
                    data = read_exactly(source, piece.offset, piece.length, clock)
                except OSError as exc:
                    error = exc
            with self._lock:
                piece.data, piece.error = data, error
                piece.ready_at = clock.now()
                self._lock.notify_all()
            position += self._settings.readers

    # --- the writer's side -----------------------------------------------------------------

    def take(self, item: ArchiveItem) -> FedFile | None:
        """The item's file, opened (TransferFailed when it could not be), or None when the
        feed does not hold it. Files before it that the writer passed over are dropped."""
        position = next(
            (f.index for f in self._files[self._next :] if f.item.key == item.key), None
        )
        if position is None:
            return None
        for skipped in self._files[self._next : position]:
            self._drop(skipped)
        self._next = position + 1
        file = self._files[position]
        with self._lock:
            self._lock.wait_for(lambda: self._stopped or file.opened_at is not None)
            self._check_running()
        assert file.opened_at is not None
        _catch_up(self._clock, file.opened_at)
        if file.error is not None:
            self._drop(file)
            raise file.error
        if position >= self._group_end and file.size < self._settings.small_file:
            self._group_end = self._gather(position)
        return FedFile(self, file)

    def _gather(self, first: int) -> int:
        """Wait until the small files from `first` on, up to `group_bytes`, are all in memory;
        the position after the group."""
        total, end = 0, first
        seen = self._clock.now()  # the writer knows a file's size once it is open
        with self._lock:
            while end < len(self._files) and end - first < MAX_OPEN_FILES // 2:
                file = self._files[end]
                self._lock.wait_for(lambda f=file: self._stopped or f.opened_at is not None)
                self._check_running()
                seen = max(seen, file.opened_at or seen)
                if file.error is None and file.size >= self._settings.small_file:
                    break
                if end > first and total + file.size > self._settings.group:
                    break
                total += file.size
                end += 1
            pieces = [p for f in self._files[first:end] for p in f.segments]
            self._lock.wait_for(
                lambda: self._stopped or all(p.ready_at is not None for p in pieces)
            )
            self._check_running()
        ready = [p.ready_at for p in pieces if p.ready_at is not None]
        _catch_up(self._clock, max([seen, *ready]))
        return end

    def _check_running(self) -> None:
        if self._stopped:
            raise TransferFailed(
                "Reading the sources ahead of the drive stopped (see the log); the file was "
                "not archived.",
                retryable=True,
            )

    def _wait(self, piece: _Segment) -> None:
        with self._lock:
            self._lock.wait_for(lambda: self._stopped or piece.ready_at is not None)
            self._check_running()
        assert piece.ready_at is not None
        _catch_up(self._clock, piece.ready_at)

    def _free(self, piece: _Segment, *, used: bool) -> None:
        """The writer is done with `piece` (having written it, or not): its memory is free."""
        with self._lock:
            if piece.freed_at is not None:
                return
            now = self._clock.now()
            if not used and piece.ready_at is not None:
                now = max(now, piece.ready_at)
            piece.freed_at, piece.data = now, None
            self._lock.notify_all()

    def _release(self, file: _File) -> None:
        with self._lock:
            if file.released_at is not None:
                return
            file.released_at = self._clock.now()
            if file.source is not None:
                file.source.close()
            self._lock.notify_all()

    def _drop(self, file: _File) -> None:
        """Pass a file over: its segments are freed as they come, unwritten."""
        with self._lock:
            self._lock.wait_for(lambda: self._stopped or file.opened_at is not None)
        for piece in list(file.segments):
            with self._lock:
                self._lock.wait_for(lambda p=piece: self._stopped or p.ready_at is not None)
            self._free(piece, used=False)
        self._release(file)

    def close(self) -> None:
        """Stop reading ahead, close every source still open, end the threads."""
        with self._lock:
            self._stopped = True
            self._lock.notify_all()
        for thread in self._threads:
            # A thread stuck in a source's open or read (a hung network mount) is left to
            # finish on its own: it closes what it opens once it sees the feed stopped.
            thread.join(CLOSE_WAIT_SECONDS)
            if thread.is_alive():
                logger.warning(
                    "%s: %s is still in a source's open or read; left to end by itself",
                    self._context,
                    thread.name,
                )
        for file in self._files:
            if file.source is not None and file.released_at is None:
                with contextlib.suppress(OSError):
                    file.source.close()
                file.released_at = self._clock.now()


class FedFile(_Stream):
    """One file of a feed, read in order from its segments as they come."""

    def __init__(self, feed: Feed, file: _File) -> None:
        self._feed = feed
        self._file = file
        self._segment = 0
        self._within = 0
        self.path = file.path
        self.size = file.size

    def readinto(self, view: Any) -> int:
        segments = self._file.segments
        while self._segment < len(segments):
            piece = segments[self._segment]
            self._feed._wait(piece)
            if piece.error is not None:
                raise piece.error
            data = piece.data
            available = len(data) - self._within if data is not None else 0
            if available <= 0:
                self._feed._free(piece, used=True)
                if data is not None and len(data) < piece.length:
                    # The source ended inside this segment: the file ends here, short.
                    self._segment = len(segments)
                    return 0
                self._segment += 1
                self._within = 0
                continue
            count = min(len(view), available)
            view[:count] = data[self._within : self._within + count]
            self._within += count
            return count
        return 0

    def close(self) -> None:
        """Done with the file, whether or not all of it was written: its memory is free."""
        for piece in self._file.segments[self._segment :]:
            with self._feed._lock:
                self._feed._lock.wait_for(
                    lambda p=piece: self._feed._stopped or p.ready_at is not None
                )
            self._feed._free(piece, used=False)
        self._segment = len(self._file.segments)
        self._feed._release(self._file)
