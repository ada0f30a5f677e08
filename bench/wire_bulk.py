"""The bench's bulk transfers over archive-core's SFTP v3 client (drivers/sftp/.../_wire.py).

`put_files` and `get_files` move many files over one connection with up to `window` requests
out, and `spawn_ssh` starts a plain `ssh -s ... sftp` under a Connection: the "ssh+wire" rows
of bench/sftp.py, which measured the transport the driver uses. They are not the driver's
code path (that is `_files` through the core's stager), so they live here.

`_wire.py` is loaded by path: the sftp driver package's __init__ needs the core, this does not.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib.util
import os
import queue
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def load_wire() -> ModuleType:
    path = REPO / "drivers" / "sftp" / "archive_core_sftp" / "_wire.py"
    spec = importlib.util.spec_from_file_location("archive_core_sftp_wire", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wire = load_wire()
Connection = wire.Connection
Reply = wire.Reply
SFTPError = wire.SFTPError
broke = wire.broke
_s, _path, _status, _string = wire._s, wire._path, wire._status, wire._string
_U32, _U64 = wire._U32, wire._U64
MAX_CHUNK, F_SETPIPE_SZ = wire.MAX_CHUNK, wire.F_SETPIPE_SZ
OPEN, CLOSE, READ, WRITE, EXTENDED = wire.OPEN, wire.CLOSE, wire.READ, wire.WRITE, wire.EXTENDED
STATUS, HANDLE, DATA = wire.STATUS, wire.HANDLE, wire.DATA
OK, BAD_MESSAGE, OP_UNSUPPORTED = wire.OK, wire.BAD_MESSAGE, wire.OP_UNSUPPORTED
O_READ, O_WRITE, O_CREAT, O_TRUNC = wire.O_READ, wire.O_WRITE, wire.O_CREAT, wire.O_TRUNC


def put_files(
    connection: Connection,
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
    return _Uploads(connection, pairs, chunk, window, files_in_flight, atomic, fsync, digest).run()


def get_files(
    connection: Connection,
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
    return _Downloads(connection, triples, chunk, window, files_in_flight).run()


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
