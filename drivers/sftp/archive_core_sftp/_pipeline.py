"""Small files uploaded many at a time over one connection by one thread, without waiting.

A thread per file in flight spends most of a small file's time handing replies from thread
to thread (every reply wakes a waiter, each wake-up a turn of the GIL). Here one thread
keeps `files_in_flight` files going on one connection: it opens the next temporary file
while earlier ones are being written, sends a file's whole content (and its fsync, mtime
and CLOSE, on the same handle) as soon as its OPEN is answered, and reacts to each reply as
it comes. Each file ends as a `_files.RemoteStaged` (published with its chunk, as the
threaded path's are) or as the exception that failed it; a connection lost on the way fails
the files it carried, retryably, and the caller connects again.

Only files small enough to be sent whole (SMALL_FILE, at most WINDOW requests) come here,
and only when no per-file check (read_back, remote_checksum_command) has to run before the
publish: the rest take the threaded path, where a file's window of writes waits its turn.
"""

from __future__ import annotations

import collections
import posixpath
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

import attrs

from archive_core_sftp import _files, _remote, _wire

#: The largest file the pipeline takes: sent whole, its WRITEs need no window of their own.
SMALL_FILE = _files.WINDOW * _wire.MAX_CHUNK


@attrs.define(eq=False)
class SmallUpload:
    """One file's task, and where it got to: `done` is a RemoteStaged or an exception."""

    key: Any  # the caller's (the driver's item and locator)
    # Opens the source: the file (closed at the end), its HashingReader, its mtime.
    open_source: Callable[[], tuple[BinaryIO, BinaryIO, int | None]]
    root: str
    locator: str
    before: Callable[[_wire.Connection], None] | None = None  # a dead worker's leftovers
    temp: str = ""
    path: str = ""
    made: tuple[str, ...] = ()
    stream: BinaryIO | None = None
    source: BinaryIO | None = None
    mtime: int | None = None
    replies: int = 0
    failed: BaseException | None = None
    done: Any = None


def upload_small(
    connection: _wire.Connection,
    uploads: Iterable[SmallUpload],
    *,
    files_in_flight: int,
    forget: Callable[[str], None],
    throttle: Callable[[int], None] | None = None,
    unremoved: Callable[[str], None] | None = None,
) -> Iterator[SmallUpload]:
    """Each upload once it is staged or failed (its `done`), in the order they finish.

    Raises ConnectionLost when the connection breaks; every upload it carried is then
    yielded first, failed with it (their temporary files handed to `unremoved`).
    """
    from archive_core import transfer

    replies: queue.SimpleQueue[_wire.Reply] = queue.SimpleQueue()
    waiting = iter(uploads)
    active: set[SmallUpload] = set()
    finished: collections.deque[SmallUpload] = collections.deque()

    def begin(upload: SmallUpload) -> None:
        # Every upload taken from `waiting` ends in `finished`, whatever happens here: a
        # connection lost before its OPEN went out fails it too, for the caller to retry.
        try:
            start(upload)
        except _wire.ConnectionLost as lost:
            if upload not in active:
                end(upload, lost)
            raise

    def start(upload: SmallUpload) -> None:
        try:
            if upload.before is not None:
                upload.before(connection)
            upload.path = _remote.join(upload.root, upload.locator)
            directory, name = posixpath.split(upload.path)
            upload.temp = posixpath.join(directory, transfer.temporary_name(name))
            upload.made = tuple(_remote.make_parents(connection, upload.root, upload.path))
            upload.stream, upload.source, upload.mtime = upload.open_source()
        except _wire.ConnectionLost:
            raise
        except _wire.SFTPError as exc:  # a directory the layout needs was refused
            end(upload, _files._refused(connection, exc, upload.path, upload.root))
            return
        except BaseException as exc:  # nothing is on the server for it yet
            end(upload, exc)
            return
        flags = _wire.O_WRITE | _wire.O_CREAT | _wire.O_EXCL
        body = [_wire._s(upload.temp.encode()), _wire._U32.pack(flags)]
        body.append(_wire.Attrs(permissions=0o640).encode())
        connection.submit(_wire.OPEN, body, replies, tag=("open", upload), flush=False)
        active.add(upload)

    def opened(upload: SmallUpload, rtype: int, payload: Any) -> None:
        if rtype != _wire.HANDLE:
            code, message = _wire._status(payload) if rtype == _wire.STATUS else (0, "")
            refusal = _wire.SFTPError(code or _wire.BAD_MESSAGE, message, upload.temp)
            directory = posixpath.dirname(upload.path)
            end(upload, _files._refused(connection, refusal, upload.path, directory))
            return
        handle = _wire._string(payload, 0)[0]
        finish = _files._finish(connection, handle, upload.mtime)
        try:
            _send_small(connection, handle, upload, replies, throttle, finish)
        except _wire.ConnectionLost:
            raise
        except BaseException as exc:  # the source failed (or its sha1): only the CLOSE
            upload.failed = exc
            connection.submit(_wire.CLOSE, [_wire._s(handle)], replies, tag=("sent", upload))
            upload.replies += 1

    def sent(upload: SmallUpload, rtype: int, payload: Any) -> None:
        try:
            _files._check_status((None, rtype, payload), upload.temp)
        except _wire.ConnectionLost:
            raise
        except _wire.SFTPError as exc:
            if upload.failed is None:
                directory = posixpath.dirname(upload.path)
                upload.failed = _files._refused(connection, exc, upload.path, directory)
        upload.replies -= 1
        if upload.replies:
            return
        if upload.failed is None:
            digests = getattr(upload.source, "digests", None)
            staged = _files.RemoteStaged(
                temp=upload.temp, path=upload.path, digests=digests, made=upload.made, forget=forget
            )
            end(upload, staged)
            return
        body = [_wire._s(upload.temp.encode())]
        connection.submit(_wire.REMOVE, body, replies, tag=("removed", upload))

    def removed(upload: SmallUpload, rtype: int, payload: Any) -> None:
        end(upload, upload.failed)

    def end(upload: SmallUpload, outcome: Any) -> None:
        upload.done = outcome
        active.discard(upload)
        if upload.stream is not None:
            upload.stream.close()
        finished.append(upload)

    steps = {"open": opened, "sent": sent, "removed": removed}
    try:
        while True:
            while len(active) < files_in_flight:
                upload = next(waiting, None)
                if upload is None:
                    break
                begin(upload)
            while finished:
                yield finished.popleft()
            if not active:
                return
            connection.flush()
            (step, upload), rtype, payload = connection.wait(replies)
            if rtype == -1:
                raise _wire.broke(payload) from payload
            steps[step](upload, rtype, payload)
    except _wire.ConnectionLost as lost:
        for upload in list(active):
            if unremoved is not None:
                unremoved(upload.temp)
            end(upload, lost)
        while finished:
            yield finished.popleft()
        raise


def _send_small(
    connection: _wire.Connection,
    handle: bytes,
    upload: SmallUpload,
    replies: queue.SimpleQueue[_wire.Reply],
    throttle: Callable[[int], None] | None,
    finish: list[tuple[int, list[bytes]]],
) -> None:
    """Read the whole source (its sha1 checked at the end) and send it as WRITEs, then
    `finish`, without waiting for a reply; `upload.replies` counts what is to come. The
    one call per copy that writes its bytes."""
    assert upload.source is not None
    tag = ("sent", upload)
    offset = 0
    for data in _files.chunks(upload.source, throttle):
        head = _files._head(handle, offset, len(data))
        connection.submit(_wire.WRITE, [head, data], replies, tag=tag, flush=False)
        upload.replies += 1
        offset += len(data)
        if offset > SMALL_FILE:
            raise _wire.SFTPError(
                _wire.FAILURE, f"grew past {SMALL_FILE} bytes while it was read", upload.temp
            )
    for ptype, body in finish:
        connection.submit(ptype, body, replies, tag=tag, flush=False)
        upload.replies += 1
