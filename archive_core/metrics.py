"""Prometheus metrics: files and bytes per operation, policy and target; failures; durations.

Portal runs its jobs in several Celery worker processes, so the metrics follow what the
Prometheus Python client documents for multi-process applications: every process writes its
counters to files in the directory `PROMETHEUS_MULTIPROC_DIR` names (set it, to an empty
directory of its own, in the environment of every worker, before they start), and one exporter
process, `archive-core metrics serve`, adds them up at each scrape. The exporter also asks the
catalog and the site at scrape time for what no worker counts: copies never verified, bad
copies, and each policy's readiness. Without `prometheus-client` installed
(`archive-core[metrics]`), nothing is counted and nothing fails.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from archive_core.model import FileOutcome

# The exporter's functions take the site (`archive_core.site.Site`, a layer above this one).
Site = Any

log = logging.getLogger("archive_core.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Job durations, seconds: from a file or two to a night of tape.
BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 12 * 3600)


#: Set once counting failed in this process: the rest of its jobs go uncounted, not logged
#: again for every file.
_off = threading.Event()


@functools.cache
def _instruments() -> dict[str, Any] | None:
    """The process's counters, made on first use; None without prometheus-client (or once
    counting failed)."""
    if _off.is_set():
        return None
    try:
        import prometheus_client as prom
    except ImportError:
        return None
    try:
        return _made(prom)
    except Exception:  # a PROMETHEUS_MULTIPROC_DIR that is no directory, say: never a job's end
        log.exception("metrics are off in this process: they could not be set up")
        return None


def _turn_off(why: str) -> None:
    log.exception("metrics are off in this process: %s", why)
    _off.set()
    _instruments.cache_clear()


def _made(prom: Any) -> dict[str, Any]:
    labels = ("operation", "policy", "target")
    return {
        "files": prom.Counter(
            "archive_core_files", "Files an operation finished on a target.", (*labels, "result")
        ),
        "bytes": prom.Counter(
            "archive_core_bytes", "Bytes of the files an operation finished on a target.", labels
        ),
        "failures": prom.Counter(
            "archive_core_failures",
            "Files an operation failed on a target, by kind (retryable: the way to the "
            "storage; permanent: the file or its copy).",
            (*labels, "kind"),
        ),
        "duration": prom.Histogram(
            "archive_core_job_duration_seconds",
            "How long jobs took.",
            ("operation", "policy"),
            buckets=BUCKETS,
        ),
    }


def observe_files(
    operation: str, policy: str, target: str, outcomes: Iterator[FileOutcome] | Any
) -> None:
    instruments = _instruments()
    if instruments is None:
        return
    try:
        _count(instruments, operation, policy, target, outcomes)
    except Exception:  # the metrics directory full or gone: the job goes on uncounted
        _turn_off("files could not be counted")


def _count(
    instruments: dict[str, Any], operation: str, policy: str, target: str, outcomes: Any
) -> None:
    # Added up first: a label lookup per file costs more than the file's other bookkeeping.
    ok = failed = size = 0
    kinds = {"retryable": 0, "permanent": 0}
    for outcome in outcomes:
        if outcome.ok:
            ok += 1
            size += outcome.size or 0
        else:
            failed += 1
            kinds["retryable" if outcome.retryable else "permanent"] += 1
    labels = (operation, policy, target)
    if ok:
        instruments["files"].labels(*labels, "ok").inc(ok)
    if size:
        instruments["bytes"].labels(*labels).inc(size)
    if failed:
        instruments["files"].labels(*labels, "failed").inc(failed)
        for kind, count in kinds.items():
            if count:
                instruments["failures"].labels(*labels, kind).inc(count)


def observe_job(operation: str, policy: str, seconds: float) -> None:
    instruments = _instruments()
    if instruments is None:
        return
    try:
        instruments["duration"].labels(operation, policy).observe(seconds)
    except Exception:  # as for the files: never a job's end
        _turn_off("a job's duration could not be kept")


class SiteCollector:
    """What the exporter asks the catalog and the site at each scrape."""

    def __init__(self, site: Site) -> None:
        self._site = site

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        unverified = GaugeMetricFamily(
            "archive_core_unverified_copies",
            "Copies never read back since they were archived (the scrub's queue).",
            labels=("policy", "target"),
        )
        bad = GaugeMetricFamily(
            "archive_core_bad_copies",
            "Copies whose last verification failed.",
            labels=("policy", "target"),
        )
        copies = GaugeMetricFamily(
            "archive_core_copies", "Copies the catalog records.", labels=("policy", "target")
        )
        for row in self._site.catalog.summary():
            unverified.add_metric((row.policy, row.target), row.never_verified)
            bad.add_metric((row.policy, row.target), row.failed)
            copies.add_metric((row.policy, row.target), row.copies)
        ready = GaugeMetricFamily(
            "archive_core_policy_ready",
            "1 when the policy is ready for Portal.",
            labels=("policy",),
        )
        for policy in self._site.policies():
            ready.add_metric((policy.uuid,), 1.0 if self._site.readiness(policy).ok else 0.0)
        yield from (copies, unverified, bad, ready)


def registry_for(site: Site) -> Any:
    """The exporter's registry: every worker's counters (multi-process mode) and the site's
    gauges."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        MultiProcessCollector(registry)
    else:
        log.warning(
            "%s is not set: the exporter sees only the site's gauges, not the workers' counters",
            MULTIPROC_ENV,
        )
    registry.register(SiteCollector(site))
    return registry


def exposition(site: Site) -> bytes:
    """The metrics in Prometheus' text format, once (for `metrics show`, or a textfile)."""
    from prometheus_client import generate_latest

    return generate_latest(registry_for(site))


def serve(site: Site, *, address: str, port: int) -> None:
    """Serve `/metrics` until interrupted."""
    from wsgiref.simple_server import make_server

    from prometheus_client import make_wsgi_app

    app = make_wsgi_app(registry_for(site))
    with make_server(address, port, app) as server:
        log.info("serving metrics on http://%s:%d/metrics", address, port)
        server.serve_forever()
