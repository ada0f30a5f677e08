"""Synthetic file content: a file described by (size, seed), its bytes made on demand.

An archive-scale test cannot keep terabytes; a synthetic file is recorded as its size and a
seed, and reading it produces the same bytes every time: a pattern of PATTERN_BYTES drawn from
the seed, repeated. Its `fingerprint` names the content without producing it (to verify a
restore of terabytes); `sha256()` hashes the bytes themselves (for files small enough).
"""

from __future__ import annotations

import functools
import hashlib
import random

import attrs

PATTERN_BYTES = 65536


@functools.lru_cache(maxsize=64)
def _pattern(seed: int) -> bytes:
    return random.Random(seed).randbytes(PATTERN_BYTES)


@attrs.frozen
class SyntheticContent:
    """`size` bytes made from `seed`: byte n is byte n mod PATTERN_BYTES of the seed's pattern."""

    size: int
    seed: int

    @property
    def fingerprint(self) -> str:
        """A checksum of the description: equal for equal content, cheap at any size."""
        return hashlib.sha256(f"synthetic:{self.size}:{self.seed}".encode()).hexdigest()

    def read(self, offset: int, count: int) -> bytes:
        """Bytes [offset, offset + count) (fewer at the end of the content)."""
        end = min(self.size, offset + max(0, count))
        if end <= offset:
            return b""
        pattern = _pattern(self.seed)
        start = offset % PATTERN_BYTES
        first = pattern[start : start + (end - offset)]
        if len(first) == end - offset:
            return first
        whole, rest = divmod(end - offset - len(first), PATTERN_BYTES)
        return first + pattern * whole + pattern[:rest]

    def sha256(self) -> str:
        """The SHA-256 of the bytes (reads them all: for files of test size)."""
        digest = hashlib.sha256()
        for offset in range(0, self.size, 16 * PATTERN_BYTES):
            digest.update(self.read(offset, 16 * PATTERN_BYTES))
        return digest.hexdigest()
