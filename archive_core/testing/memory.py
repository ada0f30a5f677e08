"""The reference drivers: an in-memory object store, complete, and a deliberately minimal one.

`MemoryDriver` is the smallest complete driver: a Config with a secret, readiness with a
reason, and the three object methods of `ObjectStoreDriver`. The kit tests itself on it,
and it is the example `docs/writing-drivers.md` walks through. `MinimalDriver` declares no
optional capability at all (archive and restore only), which proves the kit's capability
gating. Neither is registered as an entry point: they never show up in a real site.

Buckets live in this process only; a test makes one with `create_bucket()`.
"""

from __future__ import annotations

import io
import shutil
import threading
import uuid
from typing import Any, BinaryIO

import attrs

from archive_core.driver import API_VERSION, Capability, setting
from archive_core.errors import CopyNotFound
from archive_core.model import Readiness
from archive_core.objectstore import ObjectStoreDriver
from archive_core.secret import Secret

_lock = threading.Lock()
_buckets: dict[str, dict[str, bytes]] = {}
_tokens: dict[str, str | None] = {}


def create_bucket(name: str | None = None, *, token: str | None = None) -> str:
    """Make an empty bucket (optionally guarded by `token`); returns its name."""
    name = name or f"bucket-{uuid.uuid4().hex[:12]}"
    with _lock:
        _buckets[name] = {}
        _tokens[name] = token
    return name


def bucket_contents(name: str) -> dict[str, bytes]:
    """A copy of what the bucket holds, key -> bytes."""
    with _lock:
        return dict(_buckets[name])


def drop_bucket(name: str) -> None:
    with _lock:
        _buckets.pop(name, None)
        _tokens.pop(name, None)


def _bucket_name(_instance: Any, _attribute: Any, value: str) -> None:
    if not value or "/" in value:
        raise ValueError("must be a non-empty name without '/'")


@attrs.frozen(kw_only=True)
class MemoryConfig:
    """Settings of one in-memory target."""

    bucket: str = setting(
        help="Name of the bucket the copies are kept in (made beforehand with create_bucket).",
        validator=_bucket_name,
    )
    token: Secret | None = setting(
        help="Access token of the bucket, given by reference (env:NAME or file:PATH).",
        default=None,
        secret=True,
    )


class _Upload(io.BytesIO):
    """Bytes of one object on their way in; the write seam the kit's fault checks use."""


class MemoryDriver(ObjectStoreDriver):
    """Keeps each copy as one object in an in-memory bucket."""

    name = "memory"
    api_version = API_VERSION
    capabilities = frozenset(
        {
            Capability.ARCHIVE,
            Capability.RESTORE,
            Capability.DELETE,
            Capability.VERIFY,
            Capability.BULK,
        }
    )
    Config = MemoryConfig
    config: MemoryConfig

    def probe(self) -> Readiness:
        bucket = self.config.bucket
        with _lock:
            if bucket not in _buckets:
                return Readiness.not_ready(f"bucket {bucket!r} does not exist")
            expected = _tokens[bucket]
        given = self.config.token.reveal() if self.config.token else None
        if expected is not None and given != expected:
            return Readiness.not_ready(f"bucket {bucket!r} refused the access token")
        return Readiness.ready(f"bucket {bucket!r} holds {len(_buckets[bucket])} objects")

    def put(self, key: str, stream: BinaryIO, size: int | None) -> None:
        upload = _Upload()
        shutil.copyfileobj(stream, upload, 1024 * 1024)
        # Only a stream read to its end (its sha1 checked) gets here: publish in one step.
        with _lock:
            self._objects()[key] = upload.getvalue()

    def get(self, key: str) -> BinaryIO:
        with _lock:
            data = self._objects().get(key)
        if data is None:
            raise CopyNotFound(f"bucket {self.config.bucket!r} holds no object {key!r}")
        return io.BytesIO(data)

    def remove(self, key: str) -> None:
        with _lock:
            self._objects().pop(key, None)

    def _objects(self) -> dict[str, bytes]:
        try:
            return _buckets[self.config.bucket]
        except KeyError:
            raise CopyNotFound(f"bucket {self.config.bucket!r} does not exist") from None


class MinimalDriver(MemoryDriver):
    """Archive and restore only: no delete, no verify, no bulk."""

    name = "minimal"
    capabilities = frozenset({Capability.ARCHIVE, Capability.RESTORE})
