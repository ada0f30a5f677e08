"""Reading an archive batch's sources ahead of the drive: order, memory, failures, time."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import attrs
import pytest
from archive_core_tape_ltfs.driver.feeding import Feed, ReadAhead, open_source
from archive_core_tape_ltfs.sim.sources import PacedOpener

from archive_core import ArchiveItem, TransferFailed

MiB = 2**20
MB = 10**6


class Clock:
    """A virtual clock of one thread."""

    def __init__(self, now: float = 0.0) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._now += max(0.0, seconds)


def items_of(folder: Path, sizes: list[int]) -> tuple[list[ArchiveItem], list[bytes]]:
    items, contents = [], []
    for n, size in enumerate(sizes):
        data = os.urandom(size)
        path = folder / f"f{n}"
        path.write_bytes(data)
        items.append(ArchiveItem(key=f"k{n}", sources=(str(path),), name=f"f{n}"))
        contents.append(data)
    return items, contents


def feed_of(items, writer: Clock, opener=open_source, **settings) -> Feed:
    read_ahead = ReadAhead(
        **{
            "memory_bytes": 16 * MiB,
            "segment_bytes": MiB,
            "small_file_bytes": 4 * MiB,
            "group_bytes": 16 * MiB,
            **settings,
        }
    )
    return Feed(
        items,
        opener=opener,
        writer_clock=writer,
        clocks=lambda _name: Clock(writer.now()),
        settings=read_ahead,
        context="test",
    )


def drain(stream, writer: Clock | None = None, rate: float | None = None) -> bytes:
    """Read a fed file whole; with `rate`, the writer's clock runs as a drive that fast."""
    parts = []
    while chunk := stream.read(256 * 1024):
        parts.append(chunk)
        if writer is not None and rate:
            writer.sleep(len(chunk) / rate)
    stream.close()
    return b"".join(parts)


def test_files_come_in_batch_order_whole_however_they_are_segmented(tmp_path):
    sizes = [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 5, 17]
    items, contents = items_of(tmp_path, sizes)
    feed = feed_of(items, Clock(), readers=3)
    try:
        for item, data in zip(items, contents, strict=True):
            fed = feed.take(item)
            assert fed is not None and fed.size == len(data) and fed.path == item.sources[0]
            assert drain(fed) == data
    finally:
        feed.close()


@attrs.define
class _Recorded:
    """Reads as the sources saw them: (reader's time, last byte of the batch read)."""

    bases: dict[str, int]
    reads: list[tuple[float, int]] = attrs.Factory(list)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def opener(self, inner):
        recorded = self

        def open_(item, clock):
            path, source = inner(item, clock)
            base = recorded.bases[item.key]

            class Tracked:
                size = source.size

                def readinto_at(self, view, offset, clock):
                    count = source.readinto_at(view, offset, clock)
                    with recorded.lock:
                        recorded.reads.append((clock.now(), base + offset + count))
                    return count

                def close(self):
                    source.close()

            return path, Tracked()

        return open_


def test_read_ahead_never_holds_more_than_its_memory(tmp_path):
    """A writer slower than the source: every read ends within `memory_bytes` of what the
    writer had written by then."""
    sizes = [5 * MiB] * 8
    items, _ = items_of(tmp_path, sizes)
    bases = {item.key: sum(sizes[:n]) for n, item in enumerate(items)}
    recorded = _Recorded(bases)
    writer = Clock()
    feed = feed_of(
        items, writer, recorded.opener(PacedOpener(rate=400 * MB)), readers=4, memory_bytes=16 * MiB
    )
    written: list[tuple[float, int]] = [(0.0, 0)]
    try:
        for item in items:
            fed = feed.take(item)
            assert fed is not None
            while chunk := fed.read(MiB):
                writer.sleep(len(chunk) / (40 * MB))
                written.append((writer.now(), written[-1][1] + len(chunk)))
            fed.close()
    finally:
        feed.close()
    assert recorded.reads
    for at, end in recorded.reads:
        done = max(total for when, total in written if when <= at)
        assert end - done <= 16 * MiB + MiB  # the budget, plus the segment the writer is on
    # The source was far faster than the writer: it did run ahead, as far as allowed.
    assert max(end - max(t for w, t in written if w <= at) for at, end in recorded.reads) > 8 * MiB


def test_a_source_that_cannot_be_opened_fails_only_its_own_file(tmp_path):
    items, contents = items_of(tmp_path, [MiB, 2 * MiB, 300])
    missing = attrs.evolve(items[1], sources=(str(tmp_path / "nowhere"),))
    feed = feed_of([items[0], missing, items[2]], Clock(), readers=2)
    try:
        assert drain(feed.take(items[0])) == contents[0]
        with pytest.raises(TransferFailed) as failed:
            feed.take(missing)
        assert "nowhere" in failed.value.message
        assert drain(feed.take(items[2])) == contents[2]
    finally:
        feed.close()


def test_a_read_error_fails_only_its_own_file(tmp_path):
    items, contents = items_of(tmp_path, [3 * MiB, 3 * MiB, 3 * MiB])

    def opener(item, clock):
        path, source = open_source(item, clock)
        if item.key != "k1":
            return path, source

        class Failing:
            size = source.size

            def readinto_at(self, view, offset, clock):
                if offset >= MiB:
                    raise OSError(5, "Input/output error")
                return source.readinto_at(view, offset, clock)

            def close(self):
                source.close()

        return path, Failing()

    feed = feed_of(items, Clock(), opener=opener, readers=2)
    try:
        assert drain(feed.take(items[0])) == contents[0]
        broken = feed.take(items[1])
        with pytest.raises(OSError, match="Input/output error"):
            drain(broken)
        broken.close()
        assert drain(feed.take(items[2])) == contents[2]
    finally:
        feed.close()


def test_a_file_passed_over_is_dropped_and_the_rest_still_come(tmp_path):
    """The writer skips files (their copy was found already): their memory is freed, so
    files after them, which would not fit beside them, still come."""
    items, contents = items_of(tmp_path, [6 * MiB] * 6)
    feed = feed_of(items, Clock(), readers=2, memory_bytes=16 * MiB)
    try:
        assert drain(feed.take(items[3])) == contents[3]
        assert drain(feed.take(items[5])) == contents[5]
        assert feed.take(items[0]) is None  # passed over: the writer reads it itself
    finally:
        feed.close()


def _time_to_write(tmp_path: Path, readers: int) -> float:
    """The writer's clock after a drive of 400 MB/s wrote 12 files of 4 MiB from a source
    that takes 0.1 s to open a file and streams 12 MB/s."""
    tmp_path.mkdir()
    items, contents = items_of(tmp_path, [4 * MiB] * 12)
    writer = Clock()
    feed = feed_of(items, writer, PacedOpener(rate=12 * MB, open_seconds=0.1), readers=readers)
    try:
        for item, data in zip(items, contents, strict=True):
            assert drain(feed.take(item), writer, rate=400 * MB) == data
    finally:
        feed.close()
    return writer.now()


def test_several_readers_feed_the_writer_where_one_cannot_on_the_virtual_clock(tmp_path):
    one = _time_to_write(tmp_path / "one", 1)
    four = _time_to_write(tmp_path / "four", 4)
    again = _time_to_write(tmp_path / "again", 4)
    read = 4 * MiB / (12 * MB)
    # One reader: the files one after the other (each opened while the one before is read).
    assert one == pytest.approx(0.1 + 12 * read + 4 * MiB / (400 * MB), rel=0.01)
    # Four: the source's four streams at once, the drive waiting on neither opens nor reads.
    assert four == pytest.approx(0.1 + 12 * read / 4, rel=0.03)
    assert four == again  # which thread reads what is fixed, not left to the scheduler


def test_small_files_are_handed_over_once_their_whole_group_is_in_memory(tmp_path):
    """Four 1 MiB files make one group of 4 MiB (a 3 MiB file does not fit beside them);
    the first is handed over only when all four were read, the writer then waits for none
    of them, and the large file after them is not waited for."""
    sizes = [MiB] * 4 + [3 * MiB, 8 * MiB]
    items, contents = items_of(tmp_path, sizes)
    bases = {item.key: sum(sizes[:n]) for n, item in enumerate(items)}
    recorded = _Recorded(bases)
    writer = Clock()
    feed = feed_of(
        items,
        writer,
        recorded.opener(PacedOpener(rate=10 * MB, open_seconds=0.05)),
        readers=2,
        small_file_bytes=4 * MiB,
        group_bytes=4 * MiB,
    )
    try:
        first = feed.take(items[0])
        group_read = max(at for at, end in recorded.reads if end <= 4 * MiB)
        assert writer.now() == pytest.approx(group_read)
        drain(first)
        for item in items[1:4]:
            before = writer.now()
            drain(feed.take(item))
            assert writer.now() == before
        feed.take(items[4]).close()  # a group of its own
        large = feed.take(items[5])
        taken = writer.now()
        assert drain(large) == contents[5]
        # Handed over before all of it was read: the writer waited for its segments as it
        # went (virtual times, the same whatever order the threads ran in).
        assert writer.now() > taken
    finally:
        feed.close()


def test_settings_keep_a_segment_and_a_group_within_memory():
    with pytest.raises(ValueError, match="segment_bytes"):
        ReadAhead(memory_bytes=16 * MiB, segment_bytes=32 * MiB)
    with pytest.raises(ValueError, match="small_file_bytes"):
        ReadAhead(small_file_bytes=128 * MiB, group_bytes=64 * MiB)
    with pytest.raises(ValueError, match="memory_bytes"):
        ReadAhead(memory_bytes=16 * MiB, segment_bytes=MiB, group_bytes=32 * MiB)
