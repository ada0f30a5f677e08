"""A small SFTP version 3 client over a pair of pipes: the system `ssh -s <host> sftp`'s.

Prototype (issue 9's transport measurement, bench/sftp.py); to be hardened by the driver.

- `spawn_ssh(...)` starts `ssh -x -T -s ... sftp` with its stdin and stdout on pipes;
  `Connection(read_fd, write_fd)` speaks SFTP over them: INIT/VERSION, then requests.
- One reader thread reads the replies in large chunks into one buffer, cuts them into packets
  (no per-byte Python) and hands each to the request that waits for it, by request id: to a
  queue (`queue.SimpleQueue`, C speed), or, for a READ, straight into a local file
  (`os.pwrite` of a memoryview of the buffer: no copy of the data in Python).
- Requests are written by the caller's thread(s) with one `os.writev` each (header and data
  are separate buffers: the data is never copied in Python); a lock keeps packets whole.
  Only the reader thread reads, and it never writes: a full pipe towards ssh cannot stall
  the replies, so there is no deadlock however many requests are outstanding.
- Blocking calls for every request the driver needs (open, close, read, write, stat, lstat,
  fstat, setstat, fsetstat, opendir/readdir, remove, mkdir, rmdir, realpath, rename, and
  the OpenSSH extensions posix-rename, fsync, statvfs, hardlink), and pipelined transfers:
  `put_files` / `get_files` keep several files in flight over one connection, each with its
  chunks pipelined, within one window of outstanding requests per connection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import select
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

# Packet types (draft-ietf-secsh-filexfer-02).
INIT, VERSION = 1, 2
OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = 3, 4, 5, 6, 7, 8, 9, 10
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME = 11, 12, 13, 14, 15, 16, 17, 18
READLINK, SYMLINK = 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS = 101, 102, 103, 104, 105
EXTENDED, EXTENDED_REPLY = 200, 201

# Status codes.
OK, EOF, NO_SUCH_FILE, PERMISSION_DENIED, FAILURE, BAD_MESSAGE = 0, 1, 2, 3, 4, 5
NO_CONNECTION, CONNECTION_LOST, OP_UNSUPPORTED = 6, 7, 8
_ERRNO = {
    EOF: 0,
    NO_SUCH_FILE: errno.ENOENT,
    PERMISSION_DENIED: errno.EACCES,
    FAILURE: errno.EIO,
    BAD_MESSAGE: errno.EBADMSG,
    NO_CONNECTION: errno.ENOTCONN,
    CONNECTION_LOST: errno.ECONNRESET,
    OP_UNSUPPORTED: errno.EOPNOTSUPP,
}

# Open flags (pflags).
O_READ, O_WRITE, O_APPEND, O_CREAT, O_TRUNC, O_EXCL = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20

# Attribute flags.
A_SIZE, A_UIDGID, A_PERMISSIONS, A_ACMODTIME, A_EXTENDED = 0x1, 0x2, 0x4, 0x8, 0x80000000

#: OpenSSH's sftp-server takes packets up to 256 KiB and reads up to 255 KiB at once (its
#: limits@openssh.com reply); a larger READ is answered short, a larger WRITE kills the session.
MAX_CHUNK = 255 * 1024

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEAD = struct.Struct(">IBI")  # length, type, request id
_READ_BUFFER = 4 * 1024 * 1024
_IOV_MAX = 1024
_CORK_BYTES = 1024 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class SFTPError(OSError):
    """A STATUS reply other than OK; `code` is the SFTP status, `errno` the nearest OS one."""

    def __init__(self, code: int, message: str, path: str | None = None) -> None:
        super().__init__(_ERRNO.get(code, errno.EIO), message or f"SFTP status {code}", path)
        self.code = code


class ConnectionLost(SFTPError):
    """The pipe closed (ssh exited) with requests outstanding."""

    def __init__(self, detail: str = "the SFTP connection closed") -> None:
        super().__init__(CONNECTION_LOST, detail)


def broke(reason: Any) -> ConnectionLost:
    """The ConnectionLost to raise for a reply the reader failed with `reason`."""
    if isinstance(reason, OSError) and reason.strerror:
        return ConnectionLost(f"the SFTP connection broke: {reason.strerror}")
    return ConnectionLost(f"the SFTP connection broke: {reason}")


class HandshakeTimeout(ConnectionLost):
    """No VERSION reply within the handshake timeout: the login or the server hangs."""


@dataclass(slots=True)
class Attrs:
    size: int | None = None
    uid: int | None = None
    gid: int | None = None
    permissions: int | None = None
    atime: int | None = None
    mtime: int | None = None
    extended: dict[bytes, bytes] = field(default_factory=dict)

    def encode(self) -> bytes:
        flags = 0
        parts: list[bytes] = []
        if self.size is not None:
            flags |= A_SIZE
            parts.append(_U64.pack(self.size))
        if self.uid is not None and self.gid is not None:
            flags |= A_UIDGID
            parts.append(struct.pack(">II", self.uid, self.gid))
        if self.permissions is not None:
            flags |= A_PERMISSIONS
            parts.append(_U32.pack(self.permissions))
        if self.atime is not None and self.mtime is not None:
            flags |= A_ACMODTIME
            parts.append(struct.pack(">II", self.atime, self.mtime))
        return _U32.pack(flags) + b"".join(parts)

    @classmethod
    def decode(cls, data: bytes | memoryview, at: int) -> tuple[Attrs, int]:
        (flags,) = _U32.unpack_from(data, at)
        at += 4
        attrs = cls()
        if flags & A_SIZE:
            (attrs.size,) = _U64.unpack_from(data, at)
            at += 8
        if flags & A_UIDGID:
            attrs.uid, attrs.gid = struct.unpack_from(">II", data, at)
            at += 8
        if flags & A_PERMISSIONS:
            (attrs.permissions,) = _U32.unpack_from(data, at)
            at += 4
        if flags & A_ACMODTIME:
            attrs.atime, attrs.mtime = struct.unpack_from(">II", data, at)
            at += 8
        if flags & A_EXTENDED:
            (count,) = _U32.unpack_from(data, at)
            at += 4
            for _ in range(count):
                key, at = _string(data, at)
                value, at = _string(data, at)
                attrs.extended[key] = value
        return attrs, at


@dataclass(slots=True)
class StatVFS:
    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    favail: int
    fsid: int
    flag: int
    namemax: int


def _s(value: bytes) -> bytes:
    return _U32.pack(len(value)) + value


def _path(value: str | bytes) -> bytes:
    return _s(os.fsencode(value))


def _string(data: bytes | memoryview, at: int) -> tuple[bytes, int]:
    (length,) = _U32.unpack_from(data, at)
    at += 4
    return bytes(data[at : at + length]), at + length


def _status(payload: bytes) -> tuple[int, str]:
    (code,) = _U32.unpack_from(payload, 0)
    message = ""
    if len(payload) >= 8:
        raw, _ = _string(payload, 4)
        message = raw.decode("utf-8", "replace")
    return code, message


#: What the reader hands to a queue: (tag, packet type, payload). For a READ with a sink the
#: payload is the number of bytes written to the sink.
Reply = tuple[Any, int, Any]


class Connection:
    """One SFTP session over `read_fd` (replies) and `write_fd` (requests).

    `process` (optional) is the ssh child; `close()` ends it. Thread-safe for requests from
    several threads; replies are routed by request id.
    """

    def __init__(
        self,
        read_fd: int,
        write_fd: int,
        process: subprocess.Popen[bytes] | None = None,
        *,
        handshake_timeout: float | None = None,
    ) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.process = process
        self.extensions: dict[bytes, bytes] = {}
        self.version = 0
        self._write_lock = threading.Lock()
        self._ids = iter(range(1, 1 << 32))
        # id -> (queue, tag, sink fd or -1, sink offset)
        self._pending: dict[int, tuple[queue.SimpleQueue[Reply], Any, int, int]] = {}
        self._lost: BaseException | None = None
        self._cork: list[bytes | memoryview] = []
        self._cork_ids: list[int] = []
        self._cork_bytes = 0
        #: Seconds a reply may take before the connection counts as dead (None: forever).
        self.operation_timeout: float | None = None
        self._deadline = None if handshake_timeout is None else time.monotonic() + handshake_timeout
        os.set_blocking(write_fd, False)  # writes wait with a timeout: see _write
        self._handshake()
        self._deadline = None
        self._reader = threading.Thread(target=self._read_loop, name="sftp-reader", daemon=True)
        self._reader.start()

    # ---- framing ---------------------------------------------------------------------------

    def _write(self, parts: Sequence[bytes | memoryview]) -> None:
        """Send `parts`, waiting at most operation_timeout for the pipe to take more.

        The pipe is non-blocking: a server that stops reading (frozen) fills the pipe and
        ssh's buffers, and a blocking writev would then hold this thread, and every other
        one behind the write lock, forever; operation_timeout bounds only waits for replies.
        """
        for at in range(0, len(parts), _IOV_MAX):
            group = list(parts[at : at + _IOV_MAX])
            first = 0  # group[first:] is still to send
            while first < len(group):
                try:
                    written = os.writev(self.write_fd, group[first:])
                except BlockingIOError:
                    self._wait_writable()
                    continue
                while first < len(group) and written >= len(group[first]):
                    written -= len(group[first])
                    first += 1
                if written:
                    group[first] = memoryview(group[first])[written:]

    def _wait_writable(self) -> None:
        """Until the pipe towards ssh takes bytes again; gives the connection up after
        operation_timeout (the handshake's deadline while logging in)."""
        if self._deadline is not None:
            timeout: float | None = max(0.0, self._deadline - time.monotonic())
        else:
            timeout = self.operation_timeout
        poller = select.poll()
        poller.register(self.write_fd, select.POLLOUT)
        if poller.poll(None if timeout is None else timeout * 1000):
            return  # writable, or an error the next writev reports (EPIPE)
        if self._deadline is not None:
            raise HandshakeTimeout("the SFTP server did not take the INIT in time")
        detail = f"the server took no data for {self.operation_timeout:g} s (operation_timeout)"
        self.abandon(detail)
        raise ConnectionLost(detail + "; the connection was dropped")

    def _read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            if self._deadline is not None:
                # Logging in may hang on a server that took the connection and went quiet.
                left = self._deadline - time.monotonic()
                if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                    raise HandshakeTimeout("the SFTP server did not answer in time")
            chunk = os.read(self.read_fd, n - len(out))
            if not chunk:
                raise ConnectionLost("the SFTP server closed the connection during INIT")
            out += chunk
        return bytes(out)

    def _handshake(self) -> None:
        self._write([_U32.pack(5), bytes([INIT]), _U32.pack(3)])
        (length,) = _U32.unpack(self._read_exactly(4))
        payload = self._read_exactly(length)
        if payload[0] != VERSION:
            raise SFTPError(BAD_MESSAGE, f"expected VERSION, got packet type {payload[0]}")
        (self.version,) = _U32.unpack_from(payload, 1)
        at = 5
        while at < len(payload):
            name, at = _string(payload, at)
            data, at = _string(payload, at)
            self.extensions[name] = data

    def submit(
        self,
        ptype: int,
        body: Sequence[bytes | memoryview],
        replies: queue.SimpleQueue[Reply],
        tag: Any = None,
        sink: int = -1,
        sink_offset: int = 0,
        *,
        flush: bool = True,
    ) -> int:
        """Send one request; its reply goes to `replies` as (tag, type, payload).

        With `sink` (a file descriptor) a DATA reply is written there at `sink_offset` by the
        reader thread, and the payload handed on is the number of bytes written. With
        `flush=False` the request waits (corked) until `flush()`, the next flushing submit, or
        until enough is corked: many small requests leave in one writev.
        """
        if self._lost is not None:
            raise ConnectionLost(str(self._lost))
        length = 5 + sum(len(p) for p in body)
        with self._write_lock:
            request_id = next(self._ids)
            self._pending[request_id] = (replies, tag, sink, sink_offset)
            self._cork.append(_HEAD.pack(length, ptype, request_id))
            self._cork.extend(body)
            self._cork_ids.append(request_id)
            self._cork_bytes += 4 + length
            if flush or self._cork_bytes >= _CORK_BYTES or len(self._cork) >= _IOV_MAX:
                self._flush_locked()
        return request_id

    def flush(self) -> None:
        """Send the corked requests."""
        with self._write_lock:
            if self._cork:
                self._flush_locked()

    def _flush_locked(self) -> None:
        parts, ids = self._cork, self._cork_ids
        self._cork, self._cork_ids, self._cork_bytes = [], [], 0
        try:
            self._write(parts)
        except OSError as error:
            for request_id in ids:
                self._pending.pop(request_id, None)
            if isinstance(error, ConnectionLost):
                raise  # operation_timeout: its own words
            raise ConnectionLost(f"could not send to the SFTP server: {error}") from error
        # The reader is gone: no reply will come.
        if self._lost is not None and any([self._pending.pop(i, None) is not None for i in ids]):
            raise ConnectionLost(str(self._lost))

    def _read_loop(self) -> None:
        buffer = bytearray(_READ_BUFFER)
        view = memoryview(buffer)
        start = end = 0
        pending = self._pending
        unpack_head = _HEAD.unpack_from
        try:
            while True:
                got = os.readv(self.read_fd, [view[end:]])
                if got == 0:
                    raise ConnectionLost("the SFTP server closed the connection")
                end += got
                while end - start >= 9:
                    length, ptype, request_id = unpack_head(buffer, start)
                    stop = start + 4 + length
                    if stop > end:
                        if 4 + length > len(buffer):
                            raise SFTPError(BAD_MESSAGE, f"reply of {length} bytes is too large")
                        break
                    waiter = pending.pop(request_id, None)
                    if waiter is None:
                        raise SFTPError(BAD_MESSAGE, f"reply to unknown request {request_id}")
                    replies, tag, sink, offset = waiter
                    if ptype == DATA and sink >= 0:
                        (count,) = _U32.unpack_from(buffer, start + 9)
                        data = view[start + 13 : start + 13 + count]
                        while data:
                            data = data[os.pwrite(sink, data, offset) :]
                            offset += count - len(data)
                        replies.put((tag, DATA, count))
                    else:
                        replies.put((tag, ptype, bytes(view[start + 9 : stop])))
                    start = stop
                if start == end:
                    start = end = 0
                elif len(buffer) - end < 64 * 1024 or len(buffer) - start < 300 * 1024:
                    # Move the partial packet to the front (at most one packet's bytes).
                    buffer[: end - start] = view[start:end]
                    end -= start
                    start = 0
        except BaseException as error:  # handed to every waiter
            if self._lost is None:
                self._lost = error
            # abandon()'s reason (operation_timeout) when it ended ssh: the reader's EOF
            # only follows from it.
            error = self._lost
            for request_id in list(pending):
                waiter = pending.pop(request_id, None)
                if waiter is not None:
                    waiter[0].put((waiter[1], -1, error))

    # ---- blocking requests -----------------------------------------------------------------

    def request(self, ptype: int, *body: bytes | memoryview) -> tuple[int, bytes]:
        replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self.submit(ptype, body, replies)
        _, rtype, payload = self.wait(replies)
        if rtype == -1:
            raise broke(payload) from payload
        return rtype, payload

    def wait(self, replies: queue.SimpleQueue[Reply]) -> Reply:
        """The next reply on `replies`; a server silent for operation_timeout ends the
        connection (ssh is killed, every request outstanding fails) and raises."""
        try:
            return replies.get(timeout=self.operation_timeout)
        except queue.Empty:
            pass
        detail = (
            f"the server did not answer within {self.operation_timeout:g} s (operation_timeout)"
        )
        self.abandon(detail)
        raise ConnectionLost(detail + "; the connection was dropped")

    @property
    def lost(self) -> BaseException | None:
        """Why the connection is gone, or None while it works."""
        return self._lost

    def abandon(self, detail: str) -> None:
        """Give the connection up: ssh killed, so the reader sees the end and fails waiters."""
        if self._lost is None:
            self._lost = ConnectionLost(detail)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()

    def _expect(self, rtype: int, payload: bytes, want: int, path: Any = None) -> bytes:
        if rtype == STATUS:
            # Checked first: a STATUS is what every request expecting one gets, error or not.
            code, message = _status(payload)
            if code == OK and want == STATUS:
                return payload
            raise SFTPError(code, message, None if path is None else os.fsdecode(path))
        if rtype == want:
            return payload
        raise SFTPError(BAD_MESSAGE, f"unexpected reply type {rtype} (wanted {want})")

    def _ok(self, ptype: int, *body: bytes, path: Any = None) -> None:
        rtype, payload = self.request(ptype, *body)
        self._expect(rtype, payload, STATUS, path)

    def _attrs(self, ptype: int, *body: bytes, path: Any = None) -> Attrs:
        rtype, payload = self.request(ptype, *body)
        return Attrs.decode(self._expect(rtype, payload, ATTRS, path), 0)[0]

    def _extended(self, name: bytes, *body: bytes) -> tuple[int, bytes]:
        if name not in self.extensions:
            raise SFTPError(OP_UNSUPPORTED, f"the server does not offer {name.decode()}")
        return self.request(EXTENDED, _s(name), *body)

    def open(self, path: str | bytes, flags: int, attrs: Attrs | None = None) -> bytes:
        rtype, payload = self.request(
            OPEN, _path(path), _U32.pack(flags), (attrs or Attrs()).encode()
        )
        return _string(self._expect(rtype, payload, HANDLE, path), 0)[0]

    def opendir(self, path: str | bytes) -> bytes:
        rtype, payload = self.request(OPENDIR, _path(path))
        return _string(self._expect(rtype, payload, HANDLE, path), 0)[0]

    def close_handle(self, handle: bytes) -> None:
        self._ok(CLOSE, _s(handle))

    def read(self, handle: bytes, offset: int, length: int) -> bytes:
        """Up to `length` bytes at `offset`; b"" at end of file."""
        rtype, payload = self.request(READ, _s(handle), _U64.pack(offset), _U32.pack(length))
        if rtype == STATUS and _status(payload)[0] == EOF:
            return b""
        return _string(self._expect(rtype, payload, DATA), 0)[0]

    def write(self, handle: bytes, offset: int, data: bytes | memoryview) -> None:
        head = _s(handle) + _U64.pack(offset) + _U32.pack(len(data))
        self._ok(WRITE, head, data)

    def stat(self, path: str | bytes) -> Attrs:
        return self._attrs(STAT, _path(path), path=path)

    def lstat(self, path: str | bytes) -> Attrs:
        return self._attrs(LSTAT, _path(path), path=path)

    def fstat(self, handle: bytes) -> Attrs:
        return self._attrs(FSTAT, _s(handle))

    def setstat(self, path: str | bytes, attrs: Attrs) -> None:
        self._ok(SETSTAT, _path(path), attrs.encode(), path=path)

    def fsetstat(self, handle: bytes, attrs: Attrs) -> None:
        self._ok(FSETSTAT, _s(handle), attrs.encode())

    def readdir(self, handle: bytes) -> list[tuple[bytes, Attrs]]:
        """One batch of (name, attrs); [] at the end of the directory."""
        rtype, payload = self.request(READDIR, _s(handle))
        if rtype == STATUS and _status(payload)[0] == EOF:
            return []
        payload = self._expect(rtype, payload, NAME)
        (count,) = _U32.unpack_from(payload, 0)
        at, out = 4, []
        for _ in range(count):
            name, at = _string(payload, at)
            _longname, at = _string(payload, at)
            attrs, at = Attrs.decode(payload, at)
            out.append((name, attrs))
        return out

    def listdir(self, path: str | bytes) -> list[tuple[bytes, Attrs]]:
        """Every entry but . and .."""
        handle = self.opendir(path)
        try:
            out = []
            while batch := self.readdir(handle):
                out.extend(entry for entry in batch if entry[0] not in (b".", b".."))
            return out
        finally:
            self.close_handle(handle)

    def remove(self, path: str | bytes) -> None:
        self._ok(REMOVE, _path(path), path=path)

    def mkdir(self, path: str | bytes, attrs: Attrs | None = None) -> None:
        self._ok(MKDIR, _path(path), (attrs or Attrs()).encode(), path=path)

    def rmdir(self, path: str | bytes) -> None:
        self._ok(RMDIR, _path(path), path=path)

    def realpath(self, path: str | bytes) -> bytes:
        rtype, payload = self.request(REALPATH, _path(path))
        return _string(self._expect(rtype, payload, NAME, path), 4)[0]

    def rename(self, old: str | bytes, new: str | bytes) -> None:
        """SFTP v3 RENAME: fails when `new` exists (OpenSSH's sftp-server)."""
        self._ok(RENAME, _path(old), _path(new), path=old)

    def posix_rename(self, old: str | bytes, new: str | bytes) -> None:
        """rename(2): replaces `new` atomically (posix-rename@openssh.com)."""
        rtype, payload = self._extended(b"posix-rename@openssh.com", _path(old), _path(new))
        self._expect(rtype, payload, STATUS, old)

    def hardlink(self, old: str | bytes, new: str | bytes) -> None:
        rtype, payload = self._extended(b"hardlink@openssh.com", _path(old), _path(new))
        self._expect(rtype, payload, STATUS, old)

    def fsync(self, handle: bytes) -> None:
        rtype, payload = self._extended(b"fsync@openssh.com", _s(handle))
        self._expect(rtype, payload, STATUS)

    def statvfs(self, path: str | bytes) -> StatVFS:
        rtype, payload = self._extended(b"statvfs@openssh.com", _path(path))
        values = struct.unpack_from(">11Q", self._expect(rtype, payload, EXTENDED_REPLY, path), 0)
        return StatVFS(*values)

    def close(self, timeout: float = 10.0) -> None:
        """End the session: close our end of the requests pipe, wait for ssh to exit (when we
        started it) and for the reader thread to see the end of the replies, then close that.

        The order matters: the reader may be about to call readv on `read_fd`; closed any
        earlier, the number can be reused at once by the next connection's pipe, and the
        old reader would eat the new connection's replies (seen: a hung INIT).
        """
        with contextlib.suppress(OSError):
            os.close(self.write_fd)
        if self.process is not None:
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout)
        if self._reader.is_alive() and self.process is None:
            raise RuntimeError("the SFTP peer did not close its end of the replies pipe")
        self._reader.join()
        with contextlib.suppress(OSError):
            os.close(self.read_fd)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- pipelined transfers ---------------------------------------------------------------

    def put_files(
        self,
        pairs: Iterable[tuple[str, str]],
        *,
        chunk: int = MAX_CHUNK,
        window: int = 64,
        files_in_flight: int = 8,
        atomic: bool = False,
        fsync: bool = False,
        digest: Callable[[bytes], None] | None = None,
    ) -> int:
        """Upload (local, remote) pairs; return the bytes sent.

        Up to `files_in_flight` files are open at once and up to `window` requests are
        outstanding on the connection. `atomic`: write "<remote>.part" and posix-rename it
        over <remote> once closed. `fsync`: fsync@openssh.com before the close. `digest` sees
        every chunk in order (hashing, in the caller's thread).
        """
        return _Uploads(self, pairs, chunk, window, files_in_flight, atomic, fsync, digest).run()

    def get_files(
        self,
        triples: Iterable[tuple[str, str, int]],
        *,
        chunk: int = MAX_CHUNK,
        window: int = 64,
        files_in_flight: int = 8,
    ) -> int:
        """Download (remote, local, size) triples; the reader thread writes the local files.

        Returns the bytes received. A file shorter than `size` is an error; reading stops at
        `size`.
        """
        return _Downloads(self, triples, chunk, window, files_in_flight).run()


class _Transfer:
    def __init__(
        self, connection: Connection, items: Iterable[Any], chunk: int, window: int, files: int
    ) -> None:
        if not 0 < chunk <= MAX_CHUNK:
            raise ValueError(f"chunk must be 1 to {MAX_CHUNK} bytes")
        self.c = connection
        self.items = iter(items)
        self.chunk = chunk
        self.window = window
        self.files = files
        self.replies: queue.SimpleQueue[Reply] = queue.SimpleQueue()
        self.outstanding = 0
        self.active = 0
        self.total = 0
        self.ready: deque[Any] = deque()  # file states that have requests to send

    def send(self, ptype: int, body: Sequence[bytes | memoryview], tag: Any, **kw: int) -> None:
        self.outstanding += 1
        self.c.submit(ptype, body, self.replies, tag, flush=False, **kw)

    def run(self) -> int:
        exhausted = False
        while True:
            while not exhausted and self.active < self.files and self.outstanding < self.window:
                item = next(self.items, None)
                if item is None:
                    exhausted = True
                    break
                self.active += 1
                self.begin(item)
            while self.ready and self.outstanding < self.window:
                state = self.ready.popleft()
                if self.pump(state):
                    self.ready.append(state)
            if self.outstanding == 0:
                if exhausted and self.active == 0:
                    return self.total
                if not self.ready:
                    raise RuntimeError("transfer stalled with nothing outstanding")
                continue
            try:
                tag, rtype, payload = self.replies.get_nowait()
            except queue.Empty:
                self.c.flush()  # nothing to do until a reply comes: send what is corked
                tag, rtype, payload = self.c.wait(self.replies)
            self.outstanding -= 1
            if rtype == -1:
                raise broke(payload) from payload
            self.reply(tag, rtype, payload)

    def status(self, rtype: int, payload: Any, path: str) -> None:
        if rtype != STATUS:
            raise SFTPError(BAD_MESSAGE, f"unexpected reply type {rtype}", path)
        code, message = _status(payload)
        if code != OK:
            raise SFTPError(code, message, path)

    def handle(self, rtype: int, payload: Any, path: str) -> bytes:
        if rtype == HANDLE:
            return _string(payload, 0)[0]
        self.status(rtype, payload, path)
        raise SFTPError(BAD_MESSAGE, "OPEN answered OK without a handle", path)

    def begin(self, item: Any) -> None:
        raise NotImplementedError

    def pump(self, state: Any) -> bool:
        raise NotImplementedError

    def reply(self, tag: Any, rtype: int, payload: Any) -> None:
        raise NotImplementedError


class _Up:
    __slots__ = ("fd", "handle", "local", "offset", "remote", "size", "target", "unacked")

    def __init__(self, local: str, remote: str, target: str) -> None:
        self.local, self.remote, self.target = local, remote, target
        self.fd = os.open(local, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size
        self.offset = 0
        self.unacked = 0
        self.handle = b""


class _Uploads(_Transfer):
    def __init__(
        self,
        connection: Connection,
        pairs: Iterable[tuple[str, str]],
        chunk: int,
        window: int,
        files: int,
        atomic: bool,
        fsync: bool,
        digest: Callable[[bytes], None] | None,
    ) -> None:
        super().__init__(connection, pairs, chunk, window, files)
        self.atomic = atomic
        self.fsync = fsync
        self.digest = digest
        if fsync and b"fsync@openssh.com" not in connection.extensions:
            raise SFTPError(OP_UNSUPPORTED, "the server does not offer fsync@openssh.com")

    def begin(self, item: tuple[str, str]) -> None:
        local, remote = item
        state = _Up(local, remote + ".part" if self.atomic else remote, remote)
        flags = _U32.pack(O_WRITE | O_CREAT | O_TRUNC)
        self.send(OPEN, [_path(state.remote), flags, _U32.pack(0)], ("open", state))

    def pump(self, state: _Up) -> bool:
        """Send the next WRITE; True while more are to come."""
        length = min(self.chunk, state.size - state.offset)
        data = os.pread(state.fd, length, state.offset)
        if len(data) != length:
            raise OSError(errno.EIO, f"{state.local} changed size during the upload")
        if self.digest is not None:
            self.digest(data)
        head = _s(state.handle) + _U64.pack(state.offset) + _U32.pack(length)
        state.offset += length
        state.unacked += 1
        self.send(WRITE, [head, data], ("write", state))
        self.total += length
        return state.offset < state.size

    def reply(self, tag: tuple[str, _Up], rtype: int, payload: Any) -> None:
        step, state = tag
        if step == "open":
            state.handle = self.handle(rtype, payload, state.remote)
            if state.size:
                self.ready.append(state)
            else:
                self.finish_writes(state)
        elif step == "write":
            self.status(rtype, payload, state.remote)
            state.unacked -= 1
            if state.unacked == 0 and state.offset == state.size:
                self.finish_writes(state)
        elif step == "fsync":
            self.status(rtype, payload, state.remote)
            self.send(CLOSE, [_s(state.handle)], ("close", state))
        elif step == "close":
            self.status(rtype, payload, state.remote)
            os.close(state.fd)
            if self.atomic:
                name = _s(b"posix-rename@openssh.com")
                body = [name, _path(state.remote), _path(state.target)]
                self.send(EXTENDED, body, ("rename", state))
            else:
                self.active -= 1
        elif step == "rename":
            self.status(rtype, payload, state.target)
            self.active -= 1

    def finish_writes(self, state: _Up) -> None:
        if self.fsync:
            body = [_s(b"fsync@openssh.com"), _s(state.handle)]
            self.send(EXTENDED, body, ("fsync", state))
        else:
            self.send(CLOSE, [_s(state.handle)], ("close", state))


class _Down:
    __slots__ = ("fd", "handle", "local", "offset", "received", "remote", "size", "unacked")

    def __init__(self, remote: str, local: str, size: int) -> None:
        self.remote, self.local, self.size = remote, local, size
        self.fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.offset = 0
        self.received = 0
        self.unacked = 0
        self.handle = b""


class _Downloads(_Transfer):
    def begin(self, item: tuple[str, str, int]) -> None:
        remote, local, size = item
        state = _Down(remote, local, size)
        body = [_path(remote), _U32.pack(O_READ), _U32.pack(0)]
        self.send(OPEN, body, ("open", state, 0, 0))

    def pump(self, state: _Down) -> bool:
        self.read_at(state, state.offset, min(self.chunk, state.size - state.offset))
        state.offset = min(state.offset + self.chunk, state.size)
        return state.offset < state.size

    def read_at(self, state: _Down, offset: int, length: int) -> None:
        body = [_s(state.handle), _U64.pack(offset), _U32.pack(length)]
        state.unacked += 1
        self.send(READ, body, ("read", state, offset, length), sink=state.fd, sink_offset=offset)

    def reply(self, tag: tuple[str, _Down, int, int], rtype: int, payload: Any) -> None:
        step, state, offset, length = tag
        if step == "open":
            state.handle = self.handle(rtype, payload, state.remote)
            if state.size:
                self.ready.append(state)
            else:
                self.send(CLOSE, [_s(state.handle)], ("close", state, 0, 0))
        elif step == "read":
            state.unacked -= 1
            if rtype != DATA:
                self.status(rtype, payload, state.remote)  # raises: EOF here means truncated
                raise SFTPError(BAD_MESSAGE, "READ answered OK without data", state.remote)
            state.received += payload
            self.total += payload
            if payload < length:  # a short read: ask for the rest
                self.read_at(state, offset + payload, length - payload)
            elif state.unacked == 0 and state.offset == state.size:
                self.send(CLOSE, [_s(state.handle)], ("close", state, 0, 0))
        elif step == "close":
            self.status(rtype, payload, state.remote)
            os.close(state.fd)
            self.active -= 1


def ssh_command(
    destination: str,
    options: Sequence[str] = (),
    *,
    ssh: str = "ssh",
    cipher: str | None = None,
) -> list[str]:
    """`ssh -x -T -s <options> <destination> sftp`: the sftp subsystem on stdin/stdout."""
    command = [ssh, "-x", "-T", "-a", "-o", "ClearAllForwardings=yes"]
    if cipher:
        command += ["-c", cipher]
    return [*command, *options, "-s", destination, "sftp"]


def spawn_ssh(command: Sequence[str], *, pipe_size: int = 1 << 20) -> Connection:
    """Start `command` (see ssh_command) and speak SFTP over its stdin and stdout (os.pipe)."""
    to_ssh_r, to_ssh_w = os.pipe()
    from_ssh_r, from_ssh_w = os.pipe()
    for fd in (to_ssh_w, from_ssh_r):
        with contextlib.suppress(OSError):  # larger pipes: fewer wake-ups per MiB
            fcntl.fcntl(fd, F_SETPIPE_SZ, pipe_size)
    try:
        process = subprocess.Popen(list(command), stdin=to_ssh_r, stdout=from_ssh_w)
    except BaseException:
        for fd in (to_ssh_r, to_ssh_w, from_ssh_r, from_ssh_w):
            os.close(fd)
        raise
    os.close(to_ssh_r)
    os.close(from_ssh_w)
    try:
        return Connection(from_ssh_r, to_ssh_w, process)
    except BaseException:
        process.kill()
        process.wait()
        os.close(from_ssh_r)
        os.close(to_ssh_w)
        raise
