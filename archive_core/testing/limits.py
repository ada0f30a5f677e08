"""Checks of a driver at its limits: part boundaries, memory per transfer, a readiness probe
that hangs, and two workers archiving the same files at once.

Registered into `CHECKS` when `archive_core.testing` is imported.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from archive_core.driver import Capability
from archive_core.errors import ArchiveCoreError
from archive_core.model import ArchiveRequest, RestoreItem, RestoreRequest
from archive_core.testing.calls import archive_item, outcomes, request
from archive_core.testing.checks import _archive, check, part_span
from archive_core.testing.harness import KIT_POLICY, KIT_TARGET, Harness, MiB
from archive_core.testing.verdict import ContractViolation, expect

# --- part boundaries ---------------------------------------------------------------------------


@check(Capability.ARCHIVE, Capability.RESTORE, uses="chunk_sizes")
def files_at_each_part_boundary_round_trip(h: Harness) -> None:
    """Files of exactly N, N-1 and N+1 bytes, for each part size N the driver declares, come
    back byte for byte."""
    originals = []
    for size in sorted(set(h.subject.chunk_sizes)):
        # Random bytes, so that a part stored twice, dropped or out of order shows.
        content = os.urandom(size + 1)
        for length in (size - 1, size, size + 1):
            originals.append(h.media(f"part-{size}-{length}.bin", content[:length]))
    archived, not_archived, error = _archive(h.plugin, originals)
    expect(not not_archived, f"archiving files at the part boundaries failed: {error}")
    wanted = [h.elsewhere(fs) for fs in archived]
    try:
        h.plugin.restore(wanted, KIT_POLICY)
    except ArchiveCoreError as exc:
        raise ContractViolation(
            f"files at the part boundaries do not come back: {exc.message}"
        ) from None
    for before, after in zip(originals, wanted, strict=True):
        expect(
            h.bytes_of(after) == h.bytes_of(before),
            f"a file of {len(h.bytes_of(before))} bytes came back different",
        )


# --- memory per transfer -----------------------------------------------------------------------

#: Allowed above `memory_per_transfer` for the core's own buffers (hashing, reading).
CORE_BUFFERS = 16 * MiB
#: The large file is this many times (memory_per_transfer + CORE_BUFFERS).
LARGE_FILE_FACTOR = 4


def _peak_allocations(work: Callable[[], Any]) -> int:
    """Peak bytes of Python allocations (every thread) while `work()` runs, above the start."""
    import tracemalloc

    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        work()
        return tracemalloc.get_traced_memory()[1] - start
    finally:
        if not tracing:
            tracemalloc.stop()


@check(Capability.ARCHIVE, uses="memory_per_transfer")
def a_large_transfer_holds_bounded_memory(h: Harness) -> None:
    """Archiving and restoring a file many times the declared memory_per_transfer stays
    within it: memory that grows with the file's size is refused."""
    bound = h.subject.memory_per_transfer or 0
    limit = bound + CORE_BUFFERS
    size = LARGE_FILE_FACTOR * limit
    big = h.media("large.bin", size=size)
    found: dict[str, Any] = {}
    with h.driver() as driver:
        sent = request(ArchiveRequest, [archive_item(big, "large")])

        def archive() -> None:
            found.update(outcomes("archive", driver.archive, sent))

        peaks = {"archiving": _peak_allocations(archive)}
        outcome = found["large"]
        expect(outcome.ok, f"archiving a {size // MiB} MiB file failed: {outcome.error}")
        if h.supports(Capability.RESTORE):
            back = RestoreItem(
                key="large",
                locator=outcome.locator,
                destination=str(h.restored / "large" / "large.bin"),
                sha1=big.sha1,
            )
            wanted = request(RestoreRequest, [back])

            def restore() -> None:
                found.update(outcomes("restore", driver.restore, wanted))

            peaks["restoring"] = _peak_allocations(restore)
            restored = found["large"]
            expect(restored.ok, f"restoring a {size // MiB} MiB file failed: {restored.error}")
    for what, peak in peaks.items():
        expect(
            peak <= limit,
            f"{what} a {size // MiB} MiB file held {peak / MiB:.1f} MiB of Python allocations "
            f"at its peak, more than memory_per_transfer ({bound / MiB:g} MiB) plus "
            f"{CORE_BUFFERS // MiB} MiB for the core's buffers: the transfer's memory grows "
            "with the file's size. Stream it in bounded parts.",
        )


# --- a readiness probe that hangs --------------------------------------------------------------

#: The readiness timeout of the site this check sets up, and what is allowed above it for
#: the answer to come back (thread start, logging).
STALL_TIMEOUT_SECONDS = 0.5
STALL_SLACK_SECONDS = 2.0


@check()
def a_hung_readiness_probe_is_not_ready_within_the_timeout(h: Harness) -> None:
    """While check_ready() hangs, is_ready() answers False within ready_timeout_seconds, and
    the target's readiness says why."""
    from archive_core.testing import faults
    from archive_core.testing.calls import answer_within

    plugin = h.plugin_for(
        h.subject.settings,
        portal={"ready_timeout_seconds": STALL_TIMEOUT_SECONDS, "ready_cache_seconds": 0.0},
    )
    site = plugin.site()
    bound = STALL_TIMEOUT_SECONDS + STALL_SLACK_SECONDS
    answer = threading.Event()
    try:
        # On the class, before the site builds its driver: a driver that probes while it is
        # built (in the caller's thread, outside the core's deadline) hangs there too.
        with faults.injected(h.driver_class, "check_ready", faults.stall(until=answer)) as stall:
            started = time.monotonic()
            answered, ready = answer_within(bound, plugin.is_ready)
            waited = time.monotonic() - started
            expect(
                answered,
                f"is_ready() gave no answer within {bound:g} s while the driver's check_ready() "
                f"hung (ready_timeout_seconds = {STALL_TIMEOUT_SECONDS:g}): does the driver "
                "probe its storage while it is built?",
            )
            readiness = site.readiness(site.policy(KIT_POLICY))
    finally:
        answer.set()  # the probe's thread ends; the kit never leaves one waiting
    expect(stall.calls, "is_ready() never asked the driver's check_ready()")
    expect(not ready, "is_ready() is True while the driver's readiness probe hangs")
    expect(
        waited <= bound,
        f"is_ready() took {waited:.1f} s with ready_timeout_seconds = {STALL_TIMEOUT_SECONDS}",
    )
    expect(
        not readiness.ok and readiness.reason.strip(),
        f"a target whose probe hangs has readiness {readiness!r}, not a reason to show",
    )


# --- two workers at once -----------------------------------------------------------------------


@check(Capability.ARCHIVE, Capability.RESTORE)
def two_sites_archiving_the_same_files_at_once_agree(h: Harness) -> None:
    """Two sites (two workers, two catalogs) archiving the same files into one storage at the
    same moment both succeed, with the same external ids and one copy per file."""
    span = part_span(h)
    sizes = [0, 1, 1000, 64 * 1024, 300_000, 1 * MiB + span]
    files = [h.media(f"both{i}.bin", os.urandom(size)) for i, size in enumerate(sizes)]
    sites = [h.plugin, h.plugin_for(h.subject.settings)]
    start = threading.Barrier(len(sites), timeout=60)

    def archive(plugin: Any) -> tuple[list[Any], list[Any], str]:
        start.wait()  # both calls begin together, not one after the other
        return _archive(plugin, list(files))

    with ThreadPoolExecutor(max_workers=len(sites), thread_name_prefix="kit-site") as pool:
        results = list(pool.map(archive, sites))
    for number, (_, not_archived, error) in enumerate(results, 1):
        expect(not not_archived, f"site {number} of two archiving at once failed: {error}")
    first, second = ([fs.external_ids for fs in archived] for archived, _, _ in results)
    expect(
        first == second,
        f"two sites archiving the same files at once got other external ids: {first} and {second}",
    )
    for number, plugin in enumerate(sites, 1):
        copies = plugin.site().catalog.copies(target=KIT_TARGET)
        expect(
            len(copies) == len(files),
            f"site {number}'s catalog lists {len(copies)} copies for {len(files)} files",
        )
    storage = h.subject.local_storage
    if storage is not None:
        for fs in files:
            tag = f"_{fs.item_id}_{fs.sha1}"
            held = [name for _, _, names in os.walk(storage) for name in names if tag in name]
            expect(len(held) == 1, f"the storage holds {len(held)} files for one file: {held}")
    for plugin, archived in zip(sites, (r[0] for r in results), strict=True):
        wanted = [h.elsewhere(fs) for fs in archived]
        plugin.restore(wanted, KIT_POLICY)
        for before, after in zip(files, wanted, strict=True):
            expect(h.bytes_of(after) == h.bytes_of(before), f"{after.files[0]} came back different")
