"""A small SFTP version 3 client over a pair of pipes: the system `ssh -s <host> sftp`'s.

- `Connection(read_fd, write_fd, process)` speaks SFTP over them: INIT/VERSION, then
  requests (`_session.connect` starts ssh and makes one).
- One reader thread reads the replies in large chunks into one buffer, cuts them into packets
  (no per-byte Python) and hands each to the request that waits for it, by request id: to a
  queue (`queue.SimpleQueue`, C speed), or, for a READ, straight into a local file
  (`os.pwrite` of a memoryview of the buffer: no copy of the data in Python).
- Requests are written by the caller's thread(s) with one `os.writev` each (header and data
  are separate buffers: the data is never copied in Python); a lock keeps packets whole,
  and `submit(..., flush=False)` corks several into one write. Only the reader thread
  reads, and it never writes: a full pipe towards ssh cannot stall the replies, so there is
  no deadlock however many requests are outstanding. A server that stops reading or
  answering for operation_timeout ends the connection.
- Blocking calls for the requests the driver makes one at a time (open, close, stat, lstat,
  opendir/readdir, remove, mkdir, realpath, rename, and OpenSSH's fsync and statvfs); the
  pipelined ones (writes, reads, renames of a chunk) go through `submit` and `wait`.
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
from collections.abc import Sequence
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


#: statvfs@openssh.com's flag of a file system mounted read-only.
ST_RDONLY = 1


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

    def stat(self, path: str | bytes) -> Attrs:
        return self._attrs(STAT, _path(path), path=path)

    def lstat(self, path: str | bytes) -> Attrs:
        return self._attrs(LSTAT, _path(path), path=path)

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

    def realpath(self, path: str | bytes) -> bytes:
        rtype, payload = self.request(REALPATH, _path(path))
        return _string(self._expect(rtype, payload, NAME, path), 4)[0]

    def rename(self, old: str | bytes, new: str | bytes) -> None:
        """SFTP v3 RENAME: fails when `new` exists (OpenSSH's sftp-server)."""
        self._ok(RENAME, _path(old), _path(new), path=old)

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
