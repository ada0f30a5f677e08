"""Helpers the filesys driver's tests share: a driver on a root, sources, requests, listings."""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from archive_core_filesys.driver import FilesysConfig, FilesysDriver

from archive_core import workers
from archive_core.driver import DriverContext
from archive_core.model import ArchiveItem, ArchiveRequest, FileOutcome
from archive_core.naming import archive_name


def make_driver(root: Path, **settings: Any) -> FilesysDriver:
    settings.setdefault("min_free_bytes", 0)
    return FilesysDriver(
        FilesysConfig(root=root, **settings),
        DriverContext(target="vault", state_dir=root.parent),
    )


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def source(directory: Path, name: str, data: bytes, *, key: str, item_id: str = "VX-1", **kw):
    """A real source file and the ArchiveItem the core would build for it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    sha1 = sha1_of(data)
    fields: dict[str, Any] = {
        "key": key,
        "sources": [str(path)],
        "name": archive_name(str(path), item_id=item_id, sha1=sha1),
        "item_id": item_id,
        "sha1": sha1,
    }
    fields.update(kw)
    return ArchiveItem(**fields)


def run(operation: Callable[[Any], Any], items: list[Any], request_type: type, **kw: Any):
    """Call an operation; check it reports exactly once per item; outcomes by key."""
    outcomes = list(
        operation(request_type(policy="p-1", target="vault", job_id="job-1", items=items, **kw))
    )
    assert sorted(o.key for o in outcomes) == sorted(i.key for i in items)
    return {o.key: o for o in outcomes}


def archive(driver: FilesysDriver, items: list[ArchiveItem], **kw: Any) -> dict[str, FileOutcome]:
    return run(driver.archive, items, ArchiveRequest, **kw)


def files_under(path: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs}


def everything_under(path: Path) -> set[str]:
    found = set()
    for d, dirs, fs in os.walk(path):
        found.update(os.path.relpath(os.path.join(d, n), path) for n in (*dirs, *fs))
    return found


def partials(path: Path) -> list[str]:
    return [f for f in files_under(path) if f.endswith(".partial")]


def in_child(function: Callable[[], Any]) -> Any:
    """Run `function` in a forked child (to drop privileges or set limits) and return its value."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, pickle.dumps(function()))
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        payload = pipe.read()
    os.waitpid(pid, 0)
    assert payload, "the child process failed before answering"
    return pickle.loads(payload)


def published_under(path: Path) -> set[str]:
    """Files under `path` that are not temporary files."""
    return {f for f in files_under(path) if not f.endswith(".partial")}


def dead_worker() -> workers.WorkerId:
    """A worker of this host whose process has ended (as after SIGKILL)."""
    child = subprocess.Popen(["true"])
    child.wait()
    return workers.WorkerId(host=workers.current().host, pid=child.pid)


def temp_of(name: str, worker: workers.WorkerId, token: str = "0a1b2c3d0") -> str:
    """The temporary file name `worker` gives a copy of `name` (transfer.temporary_name)."""
    return f".{name}.{worker.host}.{worker.pid}.{token}.partial"
