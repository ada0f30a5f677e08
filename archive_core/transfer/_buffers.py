"""The page-aligned chunk buffers every copy of this process borrows and gives back."""

from __future__ import annotations

import mmap
import threading

#: Bytes moved per read and write; large enough that hashlib and the kernel dominate Python.
CHUNK_SIZE = 8 * 1024 * 1024

#: Chunks in flight in the large-file pipeline: one being read, the others hashed or written.
PIPELINE_DEPTH = 4


class BufferPool:
    """Page-aligned chunk buffers, kept between copies.

    Reusing buffers avoids re-faulting fresh memory for every file (costly in VMs where the
    host backs guest pages lazily) and anonymous mmap gives the alignment O_DIRECT needs.
    """

    def __init__(self, size: int, keep: int) -> None:
        self._size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def acquire(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self._size)

    def release(self, buffer: mmap.mmap) -> None:
        """Keep `buffer` for the next copy, or let it go when the pool is full.

        A buffer let go is never closed here: views of it (a copy's chunk, a frame held by a
        traceback) may still be exported, and mmap.close() would then raise BufferError and
        fail a file that was copied perfectly well. The mapping is freed with its last view.
        """
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buffer)


#: One pool per process: every copy, in any thread, draws from it.
POOL = BufferPool(CHUNK_SIZE, keep=2 * PIPELINE_DEPTH)
