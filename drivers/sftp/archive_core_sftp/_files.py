"""Whole files to and from the server, pipelined: many requests out, bytes hashed on the way.

`stage` writes a stream (the core's `HashingReader`, which checks the sha1 before it reports
the end) to a fresh temporary name beside the copy and makes it durable where the server
offers fsync@openssh.com; `publish` gives a chunk of staged copies their names with SFTP's
RENAME, which OpenSSH's server makes with link(2) and so never replaces a file already
there: an archive copy never replaces other bytes. A name taken by the same bytes counts as
the copy. `RemoteReader` is a file-like reader of a remote file with its READs pipelined,
for the core's staging (restore) and hashing (verify).
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import queue
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs

from archive_core import TransferFailed
from archive_core_sftp import _remote, _wire

if TYPE_CHECKING:
    from archive_core_sftp._durable import DirectorySync

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")

#: Requests in flight per file: enough to cover the round trip of a long-distance link.
WINDOW = 16


@attrs.frozen(kw_only=True)
class RemoteStaged:
    """A copy written, checked and fsynced under its temporary name on the server; the
    stager's `StagedCopy`, published with its chunk by `publish`."""

    temp: str
    path: str
    digests: Any  # transfer.Digests, checked against Vidispine's sha1 on the way
    made: tuple[str, ...]  # directories made for it, whose entries are new in their parents
    forget: Callable[[str], None] = attrs.field(eq=False, repr=False)  # removes a temp file

    def discard(self) -> None:
        self.forget(self.temp)


def _head(handle: bytes, offset: int, length: int) -> bytes:
    return _U32.pack(len(handle)) + handle + _U64.pack(offset) + _U32.pack(length)


def _check_status(reply: _wire.Reply, path: str) -> None:
    _, rtype, payload = reply
    if rtype == -1:
        raise _wire.broke(payload) from payload
    if rtype != _wire.STATUS:
        raise _wire.SFTPError(_wire.BAD_MESSAGE, f"unexpected reply type {rtype}", path)
    code, message = _wire._status(payload)
    if code != _wire.OK:
        raise _wire.SFTPError(code, message, path)


def stage(
    connection: _wire.Connection,
    source: BinaryIO,
    *,
    root: str,
    locator: str,
    forget: Callable[[str], None],
    mtime: int | None = None,
    throttle: Callable[[int], None] | None = None,
    unremoved: Callable[[str], None] | None = None,
) -> RemoteStaged:
    """Write `source` (a `HashingReader`) to a fresh temporary name beside root/locator,
    fsynced, dated and closed; nothing is under the copy's name yet.

    A temporary file that cannot be removed because the connection broke is handed to
    `unremoved`, for the caller to remove once connected again. A write the server refuses
    raises TransferFailed saying why (disk full, read-only, permission) where it can tell.
    `forget` is how the staged copy removes its temporary file when it is discarded.
    """
    from archive_core import transfer

    path = _remote.join(root, locator)
    directory, name = posixpath.split(path)
    temp = posixpath.join(directory, transfer.temporary_name(name))
    asked = written = False  # asked: the OPEN was sent, the file may be on the server
    try:
        try:
            made = _remote.make_parents(connection, root, path)
            flags = _wire.O_WRITE | _wire.O_CREAT | _wire.O_EXCL
            asked = True
            handle = connection.open(temp, flags, _wire.Attrs(permissions=0o640))
            _write_all(
                connection, handle, source, temp, throttle, _finish(connection, handle, mtime)
            )
        except _wire.SFTPError as exc:
            if isinstance(exc, _wire.ConnectionLost):
                raise
            # Asked while the temporary file still holds what was written: a full disk
            # shows as full only now.
            raise _refused(connection, exc, path, directory) from exc
        digests = getattr(source, "digests", None)
        if digests is None:
            raise TypeError("stage() needs a transfer.HashingReader as its source")
        written = True
        return RemoteStaged(temp=temp, path=path, digests=digests, made=tuple(made), forget=forget)
    finally:
        if asked and not written:
            try:
                connection.remove(temp)
            except _wire.ConnectionLost:
                if unremoved is not None:
                    unremoved(temp)  # the file may be there: the next connection removes it
            except _wire.SFTPError:
                pass  # not made (ENOENT), or the refusal being raised says why


def publish(
    connection: _wire.Connection,
    staged: Sequence[RemoteStaged],
    *,
    root: str,
    durable: DirectorySync | None = None,
    stop: Callable[[], bool] | None = None,
) -> list[TransferFailed | str | None]:
    """Give each staged copy its name, as `transfer.publish_staged` does for local files:
    None where published, ALREADY_PUBLISHED where the name already held the same bytes,
    else the error (the temporary file removed, the name left as it was).

    RENAME never replaces a file on OpenSSH's server (it links), so an archive copy never
    overwrites other bytes. The renames go out together, then the sizes are confirmed under
    the new names, then each directory that changed is fsynced once (with `durable`): one
    round of waiting for the whole chunk. `stop`, asked before each name, ends the chunk.
    """
    results: list[TransferFailed | str | None] = [None] * len(staged)
    replies: queue.SimpleQueue[_wire.Reply] = queue.SimpleQueue()
    sent: list[int] = []
    for index, copy in enumerate(staged):
        if stop is not None and stop():
            results[index] = TransferFailed(
                f"{copy.path} was not published: its batch was stopped.", paths=(copy.path,)
            )
            copy.discard()
            continue
        body = [_wire._s(copy.temp.encode()), _wire._s(copy.path.encode())]
        connection.submit(_wire.RENAME, body, replies, tag=index, flush=False)
        sent.append(index)
    connection.flush()
    renamed, taken = _collect(connection, replies, len(sent), staged, results)
    for index, refusal in taken:
        results[index] = _taken(connection, root, staged[index], refusal)
    for index in sorted(renamed):
        connection.submit(
            _wire.LSTAT, [_wire._s(staged[index].path.encode())], replies, tag=index, flush=False
        )
    connection.flush()
    for _ in renamed:
        index, rtype, payload = connection.wait(replies)
        if rtype == -1:
            raise _wire.broke(payload) from payload
        copy = staged[index]
        if rtype != _wire.ATTRS:
            said = _wire._status(payload)[1] if rtype == _wire.STATUS else f"reply {rtype}"
            results[index] = TransferFailed(
                f"{copy.path} could not be looked at on the server right after it was "
                f"renamed to that name ({said}).",
                paths=(copy.path,),
                retryable=True,
            )
            continue
        there = _wire.Attrs.decode(payload, 0)[0].size
        if there != copy.digests.size:
            # Ours: the rename made it just now. A short copy must not hold the name.
            with contextlib.suppress(_wire.SFTPError):
                connection.remove(copy.path)
            results[index] = TransferFailed(
                f"{copy.path} held {there} bytes on the server after it was written with "
                f"{copy.digests.size}; it was removed.",
                paths=(copy.path,),
                retryable=True,
            )
    if durable is not None:
        # Each directory once, in order: where the copies now have their names (a name
        # found taken by the same bytes too: an earlier attempt's rename may not be on disk
        # yet), then the directories made for them, deepest first.
        kept = [i for i, result in enumerate(results) if result is None or isinstance(result, str)]
        changed = dict.fromkeys(posixpath.dirname(staged[i].path) for i in kept)
        for index in kept:
            changed.update(
                dict.fromkeys(posixpath.dirname(d) for d in reversed(staged[index].made))
            )
        for directory in changed:
            durable.sync(connection, directory)
    return results


def _collect(
    connection: _wire.Connection,
    replies: queue.SimpleQueue[_wire.Reply],
    count: int,
    staged: Sequence[RemoteStaged],
    results: list[TransferFailed | str | None],
) -> tuple[list[int], list[tuple[int, str]]]:
    """The RENAME replies: the copies renamed, and those refused (with the server's word)."""
    renamed: list[int] = []
    taken: list[tuple[int, str]] = []
    for _ in range(count):
        index, rtype, payload = connection.wait(replies)
        if rtype == -1:
            raise _wire.broke(payload) from payload
        status = _wire._status(payload) if rtype == _wire.STATUS else None
        code, message = status or (_wire.BAD_MESSAGE, f"unexpected reply type {rtype}")
        if code == _wire.OK:
            renamed.append(index)
        elif code == _wire.NO_SUCH_FILE:
            copy = staged[index]
            results[index] = TransferFailed(
                f"{copy.temp} was gone from the server before it could be renamed to "
                f"{copy.path}; nothing was published.",
                paths=(copy.path,),
                retryable=True,
            )
        else:
            taken.append((index, message))  # OpenSSH says only "Failure" when the name exists
    return renamed, taken


def _finish(
    connection: _wire.Connection, handle: bytes, mtime: int | None
) -> list[tuple[int, list[bytes]]]:
    """What follows the bytes on the same handle: durable, dated, closed. A server runs one
    handle's requests in order, so these go out with the last WRITEs, not a round trip each."""
    finish: list[tuple[int, list[bytes]]] = []
    if b"fsync@openssh.com" in connection.extensions:
        finish.append((_wire.EXTENDED, [_wire._s(b"fsync@openssh.com"), _wire._s(handle)]))
    if mtime is not None:
        dated = _wire.Attrs(atime=mtime, mtime=mtime)
        finish.append((_wire.FSETSTAT, [_wire._s(handle), dated.encode()]))
    finish.append((_wire.CLOSE, [_wire._s(handle)]))
    return finish


def _refused(
    connection: _wire.Connection, exc: _wire.SFTPError, path: str, directory: str
) -> TransferFailed:
    """Why the server would not write `path`, in words an admin can act on.

    OpenSSH's server reports ENOSPC, EROFS and EDQUOT all as the bare SSH_FX_FAILURE
    ("Failure"): the free space and the read-only flag (statvfs@openssh.com) tell them apart.
    """
    where = exc.filename or path
    if exc.code == _wire.PERMISSION_DENIED:
        return TransferFailed(
            f"The server refused writing {path}: permission denied on {where}. Give the login "
            f"user write permission on {posixpath.dirname(where)} on the server (or choose "
            "another remote_root); this is not retried by itself.",
            paths=(path,),
            retryable=False,
        )
    if exc.code == _wire.FAILURE and b"statvfs@openssh.com" in connection.extensions:
        try:
            vfs = connection.statvfs(directory)
        except _wire.SFTPError:
            vfs = None
        if vfs is not None and vfs.flag & _wire.ST_RDONLY:
            return TransferFailed(
                f"The server refused writing {path}: the file system of {directory} is "
                "mounted read-only on the server. Have it mounted read-write (or choose "
                "another remote_root); this is not retried by itself.",
                paths=(path,),
                retryable=False,
            )
        if vfs is not None and vfs.bavail * vfs.frsize < _wire.MAX_CHUNK:
            return TransferFailed(
                f"The server's disk is full: {path} could not be written, only "
                f"{vfs.bavail * vfs.frsize:,} bytes are free under {directory}. Its "
                "temporary file was removed. Free space on the server (min_free_bytes makes "
                "the target not ready before it fills).",
                paths=(path,),
                retryable=True,
            )
    return TransferFailed(
        f"The server failed to write {path}: {exc.strerror} (SFTP status {exc.code}, on {where}).",
        paths=(path,),
        retryable=True,
    )


def chunks(source: BinaryIO, throttle: Callable[[int], None] | None) -> Iterator[memoryview]:
    """`source` in WRITE-sized pieces, each in a buffer of its own (it stays referenced by
    the request until sent) and booked against the bandwidth limit; the HashingReader
    raises FixityMismatch at a wrong end."""
    while True:
        buffer = bytearray(_wire.MAX_CHUNK)
        count = source.readinto(buffer)
        if not count:
            return
        if throttle is not None:
            throttle(count)
        yield memoryview(buffer)[:count]


def _write_all(
    connection: _wire.Connection,
    handle: bytes,
    source: BinaryIO,
    path: str,
    throttle: Callable[[int], None] | None,
    finish: list[tuple[int, list[bytes]]],
) -> int:
    """Every byte of `source` as pipelined WRITEs, then `finish` (ending with the CLOSE);
    the number of bytes written once every reply is in and each said OK.

    The handle is closed when this returns or raises (unless the connection is gone): a
    source that fails half way, or a refused WRITE, still gets its CLOSE, after the replies
    of what was sent, so no other file's handle is ever closed by mistake. The first error
    is raised only once every reply is collected.
    """
    replies: queue.SimpleQueue[_wire.Reply] = queue.SimpleQueue()
    outstanding = offset = 0
    refused: _wire.SFTPError | None = None

    def collect(down_to: int) -> None:
        nonlocal outstanding, refused
        while outstanding > down_to:
            outstanding -= 1
            try:
                _check_status(connection.wait(replies), path)
            except _wire.ConnectionLost:
                raise
            except _wire.SFTPError as exc:
                refused = refused or exc

    try:
        for data in chunks(source, throttle):
            connection.submit(_wire.WRITE, [_head(handle, offset, len(data)), data], replies)
            offset += len(data)
            outstanding += 1
            collect(WINDOW - 1)
            if refused is not None:
                break
    except _wire.ConnectionLost:
        raise
    except BaseException:
        collect(0)
        with contextlib.suppress(_wire.SFTPError):
            connection.close_handle(handle)
        raise
    if refused is not None:
        finish = finish[-1:]  # a refused WRITE: only the CLOSE, the file is not kept
    for ptype, body in finish:
        connection.submit(ptype, body, replies, flush=False)
        outstanding += 1
    connection.flush()
    collect(0)
    if refused is not None:
        raise refused
    return offset


def _taken(
    connection: _wire.Connection, root: str, copy: RemoteStaged, refusal: str
) -> TransferFailed | str:
    """The RENAME was refused: the name taken by the same bytes is the copy; taken by other
    bytes, a failure that leaves them untouched; not taken, the server's refusal."""
    from archive_core import transfer

    try:
        there = _remote.lookup(connection, root, copy.path)
        size = copy.digests.size
        same = there.size == size and remote_digests(connection, copy.path, size).sha1 == (
            copy.digests.sha1
        )
    except _wire.SFTPError as exc:
        if isinstance(exc, _wire.ConnectionLost):
            raise
        copy.discard()
        why = refusal if exc.errno == errno.ENOENT else exc.strerror
        return TransferFailed(
            f"The server refused renaming {copy.temp} to {copy.path}: {why}; nothing was "
            "published.",
            paths=(copy.path,),
            retryable=True,
        )
    copy.discard()
    if same:
        return transfer.ALREADY_PUBLISHED
    return TransferFailed(
        f"{copy.path} already exists on the server with other bytes ({there.size} bytes); "
        "archive-core never replaces a file it did not write. It is left as it is.",
        paths=(copy.path,),
    )


def remote_digests(
    connection: _wire.Connection,
    path: str,
    size: int,
    *,
    progress: Any = None,
    throttle: Callable[[int], None] | None = None,
) -> Any:
    """sha1 and sha256 (`transfer.Digests`) of the remote file at `path`, read once."""
    from archive_core import transfer

    with RemoteReader(connection, path, size, throttle=throttle) as there:
        return transfer.hash_stream(there, progress=progress)  # type: ignore[arg-type]


class RemoteReader:
    """A remote file read front to back with up to WINDOW READs out; a BinaryIO for readers.

    Ends at `size` (the file's size when opened); a file that ends sooner raises. With
    `throttle`, each READ waits its turn under the target's bandwidth_limit.
    """

    def __init__(
        self,
        connection: _wire.Connection,
        path: str,
        size: int,
        *,
        throttle: Callable[[int], None] | None = None,
    ) -> None:
        self._connection = connection
        self._throttle = throttle
        self.name = path
        self._size = size
        self._handle = connection.open(path, _wire.O_READ)
        self._replies: queue.SimpleQueue[_wire.Reply] = queue.SimpleQueue()
        self._asked = 0  # offset up to which READs were sent
        self._next = 0  # offset of the next byte handed out
        self._ready: dict[int, bytes] = {}
        self._outstanding = 0
        self._pending = b""

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        while self._outstanding < WINDOW and self._asked < self._size:
            length = min(_wire.MAX_CHUNK, self._size - self._asked)
            if self._throttle is not None:
                self._throttle(length)
            body = [_head(self._handle, self._asked, length)]
            self._connection.submit(_wire.READ, body, self._replies, tag=self._asked)
            self._asked += length
            self._outstanding += 1

    def _take(self) -> bytes:
        while self._next not in self._ready:
            self._fill()
            if not self._outstanding:
                return b""
            offset, rtype, payload = self._connection.wait(self._replies)
            self._outstanding -= 1
            if rtype == -1:
                raise _wire.broke(payload) from payload
            if rtype == _wire.DATA:
                (count,) = _U32.unpack_from(payload, 0)
                self._ready[offset] = payload[4 : 4 + count]
                continue
            code, message = _wire._status(payload)
            if code == _wire.EOF:
                raise TransferFailed(
                    f"{self.name} ended after {offset} bytes on the server, not {self._size}; "
                    "it changed while it was read.",
                    paths=(self.name,),
                    retryable=True,
                )
            raise _wire.SFTPError(code, message, self.name)
        data = self._ready.pop(self._next)
        if len(data) < min(_wire.MAX_CHUNK, self._size - self._next):
            # A short READ: ask again for the rest of that chunk before going on.
            self._ready.clear()
            self._asked = self._next + len(data)
        self._next += len(data)
        self._fill()
        return data

    def readinto(self, view: Any) -> int:
        if not self._pending:
            self._pending = self._take()
        count = min(len(view), len(self._pending))
        view[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def read(self, count: int = -1) -> bytes:
        if count is None or count < 0:
            parts = []
            while part := self.read(_wire.MAX_CHUNK):
                parts.append(part)
            return b"".join(parts)
        buffer = bytearray(count)
        got = self.readinto(buffer)
        return bytes(buffer[:got])

    def close(self) -> None:
        while self._outstanding:
            with contextlib.suppress(_wire.SFTPError, queue.Empty):
                self._connection.wait(self._replies)
            self._outstanding -= 1
        if self._handle:
            with contextlib.suppress(_wire.SFTPError):
                self._connection.close_handle(self._handle)
            self._handle = b""

    def __enter__(self) -> RemoteReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
