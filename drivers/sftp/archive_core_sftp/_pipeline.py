"""Small files moved many at a time over one connection by one thread, without waiting.

A thread per file in flight spends most of a small file's time handing replies from thread
to thread (every reply wakes a waiter, each wake-up a turn of the GIL). Here one thread
keeps `files_in_flight` files going on one connection and reacts to each reply as it comes:

- `upload_small` opens the next temporary file while earlier ones are being written, sends
  a file's whole content (and its fsync, mtime and CLOSE, on the same handle) as soon as
  its OPEN is answered. Each file ends as a `_files.RemoteStaged` (published with its
  chunk, as the threaded path's are) or as the exception that failed it.
- `download_small` looks at every directory on a copy's way and at the copy (LSTATs, as
  `_remote.lookup` does, so nothing is read through a link), then opens it and asks for all
  of it at once. Each file ends as its bytes, as LARGE (bigger than SMALL_FILE: the caller
  reads it by the windowed path) or as the exception that failed it.

A connection lost on the way fails the files it carried, retryably, and the caller connects
again. Only files small enough to be held whole (SMALL_FILE, at most WINDOW requests) come
here; uploads only when no per-file check (read_back, remote_checksum_command) has to run
before the publish: the rest take the threaded path, where a file's window waits its turn.
"""

from __future__ import annotations

import collections
import errno
import posixpath
import queue
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Generic, TypeVar

import attrs

from archive_core import CopyNotFound, TransferFailed, UnsafeName
from archive_core_sftp import _files, _remote, _wire

#: The largest file the pipeline takes: sent whole, its WRITEs need no window of their own.
SMALL_FILE = _files.WINDOW * _wire.MAX_CHUNK

#: What `download_small` ends a copy bigger than SMALL_FILE with.
LARGE = "larger than SMALL_FILE"


@attrs.define(eq=False)
class SmallUpload:
    """One file's task, and where it got to: `done` is a RemoteStaged or an exception."""

    key: Any  # the caller's (the driver's item and locator)
    # Opens the source: the file (closed at the end), its HashingReader, its mtime.
    open_source: Callable[[], tuple[BinaryIO, BinaryIO, int | None]]
    root: str
    locator: str
    before: Callable[[_wire.Connection], None] | None = None  # a dead worker's leftovers
    tries: int = 0  # connections lost under it so far
    temp: str = ""
    path: str = ""
    made: tuple[str, ...] = ()
    stream: BinaryIO | None = None
    source: BinaryIO | None = None
    mtime: int | None = None
    replies: int = 0
    failed: BaseException | None = None
    done: Any = None


@attrs.define(eq=False)
class SmallDownload:
    """One copy's task: `done` is its bytes, LARGE, or an exception."""

    key: Any  # the caller's
    root: str
    locator: str
    tries: int = 0
    path: str = ""
    size: int = 0
    handle: bytes = b""
    parts: dict[int, bytes] = attrs.Factory(dict)
    replies: int = 0
    failed: BaseException | None = None
    done: Any = None


TaskT = TypeVar("TaskT", SmallUpload, SmallDownload)


class _Loop(Generic[TaskT]):
    """The event loop both directions share: tasks begun while there is room, replies
    dispatched by their tag's step, every task taken ending in `finished`."""

    def __init__(self, connection: _wire.Connection, files_in_flight: int) -> None:
        self.connection = connection
        self.files_in_flight = files_in_flight
        self.replies: queue.SimpleQueue[_wire.Reply] = queue.SimpleQueue()
        self.active: set[TaskT] = set()
        self.finished: collections.deque[TaskT] = collections.deque()

    def submit(self, ptype: int, body: list[Any], step: str, task: TaskT, *extra: Any) -> None:
        self.connection.submit(ptype, body, self.replies, tag=(step, task, *extra), flush=False)
        task.replies += 1

    def end(self, task: TaskT, outcome: Any) -> None:
        task.done = outcome
        self.active.discard(task)
        self.finished.append(task)

    def run(
        self,
        tasks: Iterable[TaskT],
        start: Callable[[TaskT], None],
        steps: dict[str, Callable[..., None]],
        lost: Callable[[TaskT], None],
    ) -> Iterator[TaskT]:
        waiting = iter(tasks)
        try:
            while True:
                while len(self.active) < self.files_in_flight:
                    task = next(waiting, None)
                    if task is None:
                        break
                    self.active.add(task)
                    try:
                        start(task)
                    except _wire.ConnectionLost as exc:
                        # Taken is ended, whatever happens: a connection lost before its
                        # first request went out fails it too, for the caller to retry.
                        if task in self.active and not task.replies:
                            lost(task)
                            self.end(task, exc)
                        raise
                while self.finished:
                    yield self.finished.popleft()
                if not self.active:
                    return
                self.connection.flush()
                (step, task, *extra), rtype, payload = self.connection.wait(self.replies)
                if rtype == -1:
                    raise _wire.broke(payload) from payload
                task.replies -= 1
                steps[step](task, rtype, payload, *extra)
        except _wire.ConnectionLost as exc:
            for task in list(self.active):
                lost(task)
                self.end(task, exc)
            while self.finished:
                yield self.finished.popleft()
            raise


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

    loop: _Loop[SmallUpload] = _Loop(connection, files_in_flight)

    def end(upload: SmallUpload, outcome: Any) -> None:
        if upload.stream is not None:
            upload.stream.close()
        loop.end(upload, outcome)

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
        loop.submit(_wire.OPEN, body, "open", upload)

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
            _send_small(loop, handle, upload, throttle, finish)
        except _wire.ConnectionLost:
            raise
        except BaseException as exc:  # the source failed (or its sha1): only the CLOSE
            upload.failed = exc
            loop.submit(_wire.CLOSE, [_wire._s(handle)], "sent", upload)

    def sent(upload: SmallUpload, rtype: int, payload: Any) -> None:
        try:
            _files._check_status((None, rtype, payload), upload.temp)
        except _wire.SFTPError as exc:
            if upload.failed is None:
                directory = posixpath.dirname(upload.path)
                upload.failed = _files._refused(connection, exc, upload.path, directory)
        if upload.replies:
            return
        if upload.failed is None:
            digests = getattr(upload.source, "digests", None)
            staged = _files.RemoteStaged(
                temp=upload.temp, path=upload.path, digests=digests, made=upload.made, forget=forget
            )
            end(upload, staged)
            return
        loop.submit(_wire.REMOVE, [_wire._s(upload.temp.encode())], "removed", upload)

    def removed(upload: SmallUpload, rtype: int, payload: Any) -> None:
        end(upload, upload.failed)

    def lost(upload: SmallUpload) -> None:
        if upload.stream is not None:
            upload.stream.close()
        if upload.temp and unremoved is not None:
            unremoved(upload.temp)

    steps = {"open": opened, "sent": sent, "removed": removed}
    return loop.run(uploads, start, steps, lost)


def _send_small(
    loop: _Loop[SmallUpload],
    handle: bytes,
    upload: SmallUpload,
    throttle: Callable[[int], None] | None,
    finish: list[tuple[int, list[bytes]]],
) -> None:
    """Read the whole source (its sha1 checked at the end) and send it as WRITEs, then
    `finish`, without waiting for a reply. The one call per copy that writes its bytes."""
    assert upload.source is not None
    offset = 0
    for data in _files.chunks(upload.source, throttle):
        loop.submit(_wire.WRITE, [_files._head(handle, offset, len(data)), data], "sent", upload)
        offset += len(data)
        if offset > SMALL_FILE:
            raise _wire.SFTPError(
                _wire.FAILURE, f"grew past {SMALL_FILE} bytes while it was read", upload.temp
            )
    for ptype, body in finish:
        loop.submit(ptype, body, "sent", upload)


def download_small(
    connection: _wire.Connection,
    downloads: Iterable[SmallDownload],
    *,
    files_in_flight: int,
    throttle: Callable[[int], None] | None = None,
) -> Iterator[SmallDownload]:
    """Each download once it is read, LARGE or failed (its `done`), as they finish.

    Raises ConnectionLost when the connection breaks; every download it carried is then
    yielded first, failed with it.
    """
    loop: _Loop[SmallDownload] = _Loop(connection, files_in_flight)

    def fail(download: SmallDownload, exc: BaseException) -> None:
        if download.failed is None:  # the first reason: the outermost, in request order
            download.failed = exc

    def start(download: SmallDownload) -> None:
        try:
            download.path = _remote.join(download.root, download.locator)
            ways = _remote.directories_to(download.root, download.path)
        except UnsafeName as exc:
            loop.end(download, exc)
            return
        for way in [*ways, download.path]:
            loop.submit(_wire.LSTAT, [_wire._path(way)], "looked", download, way)

    def looked(download: SmallDownload, rtype: int, payload: Any, way: str) -> None:
        try:
            attrs = _wire.Attrs.decode(
                _expect(connection, (rtype, payload), _wire.ATTRS, way, download), 0
            )[0]
            if way == download.path:
                _remote.expect_file(attrs, way, download.root)
                download.size = attrs.size or 0
            else:
                _remote.expect_directory(attrs, way, download.root)
        except (_wire.SFTPError, UnsafeName, CopyNotFound) as exc:
            fail(download, exc)
        if download.replies:  # LSTATs of the way still to come
            return
        if download.failed is not None:
            loop.end(download, download.failed)
        elif download.size > SMALL_FILE:
            loop.end(download, LARGE)
        else:
            body = [_wire._path(download.path), _wire._U32.pack(_wire.O_READ)]
            loop.submit(_wire.OPEN, [*body, _wire.Attrs().encode()], "opened", download)

    def opened(download: SmallDownload, rtype: int, payload: Any) -> None:
        try:
            download.handle = _wire._string(
                _expect(connection, (rtype, payload), _wire.HANDLE, download.path, download), 0
            )[0]
        except (_wire.SFTPError, CopyNotFound) as exc:
            loop.end(download, exc)
            return
        for offset in range(0, download.size, _wire.MAX_CHUNK):
            ask(download, offset, min(_wire.MAX_CHUNK, download.size - offset))
        if not download.replies:  # an empty copy
            close(download)

    def ask(download: SmallDownload, offset: int, length: int) -> None:
        if throttle is not None:
            throttle(length)
        body = [_files._head(download.handle, offset, length)]
        loop.submit(_wire.READ, body, "read", download, offset, length)

    def read(download: SmallDownload, rtype: int, payload: Any, offset: int, length: int) -> None:
        if rtype == _wire.DATA:
            (count,) = _wire._U32.unpack_from(payload, 0)
            download.parts[offset] = payload[4 : 4 + count]
            if 0 < count < length and download.failed is None:
                ask(download, offset + count, length - count)  # a short READ: the rest
            elif count == 0:
                fail(download, _changed(download, offset))
        elif rtype == _wire.STATUS and _wire._status(payload)[0] == _wire.EOF:
            fail(download, _changed(download, offset))
        else:
            try:
                _expect(connection, (rtype, payload), _wire.DATA, download.path, download)
            except (_wire.SFTPError, CopyNotFound) as exc:
                fail(download, exc)
        if not download.replies:
            close(download)

    def close(download: SmallDownload) -> None:
        loop.submit(_wire.CLOSE, [_wire._s(download.handle)], "closed", download)

    def closed(download: SmallDownload, rtype: int, payload: Any) -> None:
        # A read handle's CLOSE cannot lose anything: its answer changes nothing.
        if download.failed is not None:
            loop.end(download, download.failed)
            return
        data = b"".join(download.parts[offset] for offset in sorted(download.parts))
        download.parts.clear()
        loop.end(download, data if len(data) == download.size else _changed(download, len(data)))

    steps = {"looked": looked, "opened": opened, "read": read, "closed": closed}
    return loop.run(downloads, start, steps, lambda download: None)


def _expect(
    connection: _wire.Connection,
    reply: tuple[int, bytes],
    want: int,
    path: str,
    download: SmallDownload,
) -> bytes:
    """The `reply`'s payload when it is the one `want`ed, as `Connection._expect` has it; a
    missing copy raised as CopyNotFound, in the words the windowed path uses."""
    try:
        return connection._expect(*reply, want, path)
    except _wire.SFTPError as exc:
        if exc.errno == errno.ENOENT:
            raise _remote.not_found(download.locator, download.root, download.path) from None
        raise


def _changed(download: SmallDownload, offset: int) -> TransferFailed:
    return TransferFailed(
        f"{download.path} ended after {offset} bytes on the server, not {download.size}; "
        "it changed while it was read.",
        paths=(download.path,),
        retryable=True,
    )


__all__ = ["LARGE", "SMALL_FILE", "SmallDownload", "SmallUpload", "download_small", "upload_small"]
