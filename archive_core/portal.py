"""The face Portal sees: the one archive-plugin implementation, and Portal's quirks kept here.

Portal calls `archive`, `restore`, `delete`, `get_policies`, `is_ready` and
`get_policy_constrains` from its job workers. FileSets are read defensively (a Portal release
may add or drop optional fields) and handed back as the very objects Portal passed, changed only
through `_replace`. Construction never raises: Portal instantiates the plugin when it imports
the app, and a broken config must show up as "not ready" with its reason, not as a crash.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archive_core.errors import ArchiveCoreError, CatalogError, ConfigError, RestoreFailed
from archive_core.policies import CATALOG

if TYPE_CHECKING:
    from archive_core.jobs import JobReport
    from archive_core.site import Site

log = logging.getLogger(__name__)

_HEX = frozenset("0123456789abcdef")

#: Fixed identity of this plugin in Portal's plugin registry; never change it.
PLUGIN_GUID = "5d9b1c7e-3a6f-4e0b-9c2d-7f41a8e6b0c3"


class ArchiveCorePlugin:
    """Portal's IArchivePlugin, implemented once for every archive-core driver."""

    plugin_guid = PLUGIN_GUID
    name = "archive-core"
    role_archive = "portal_archive_archive_core"
    role_restore = "portal_restore_archive_core"
    role_purge = "portal_purge_archive_core"
    role_delete = "portal_delete_archive_core"
    portal_archive_settings = "portal_archive_settings"

    def __init__(
        self,
        config_path: str | os.PathLike[str] | None = None,
        *,
        site: Any = None,
        observer: Any = None,
        actor: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from archive_core.policies import default_config_path

        self.config_path = Path(config_path) if config_path else default_config_path()
        self.observer = observer  # progress for the CLI; Portal leaves it None
        # Who the audit trail names for this plugin's jobs (the CLI: its user); None: the
        # Portal job.
        self.actor = actor
        self._lock = threading.RLock()
        self._site = site
        self._users: dict[int, int] = {}  # id(site) -> calls using it now
        self._loaded_stamp: tuple[int, int, int] | None = None
        self._config_error: ConfigError | None = None
        self._clock = clock
        # A catalog that could not be read is not asked again on every call before this.
        self._catalog_quiet_until = 0.0
        self._version_checked = -math.inf  # when the catalog was last asked for a new version
        self._config_error_from_catalog = False
        if site is None:
            with self._lock:
                self._load()

    def __repr__(self) -> str:
        return f"<ArchiveCorePlugin config={str(self.config_path)!r}>"

    # --- Portal's contract ---------------------------------------------------------------------

    def archive(self, file_sets: Sequence[Any] | None, policy_uuid: str, job_id: Any = None):
        """Archive every FileSet; return (archived, not_archived, error_string, extra_data).

        Each archived FileSet comes back with `external_ids` set to one URI per copy. Files
        that fail are returned in `not_archived`, never as an exception, so one bad file does
        not fail the batch. The legacy setting returns only the archived list.
        """
        file_sets = list(file_sets or ())
        # One Site for the whole call: the result's shape is that of the config it ran on,
        # and the catalog is asked for a newer version once, not again for the answer.
        with self._held() as site:
            legacy = site is not None and site.config.portal.legacy_archive_result
            try:
                report = self._run_on(site, "archive", file_sets, policy_uuid, job_id)
            except ArchiveCoreError as exc:
                log.error("policy=%s job=%s archive refused: %s", policy_uuid, job_id, exc.message)
                return _archive_result([], file_sets, exc.message, policy_uuid, legacy=legacy)
        archived, not_archived = [], []
        for fs, result in zip(file_sets, report.results, strict=True):
            if result.ok:
                archived.append(_replace_external_ids(fs, result.external_ids))
            else:
                not_archived.append(fs)
        return _archive_result(
            archived, not_archived, report.error_text(), policy_uuid, legacy=legacy
        )

    def restore(self, file_sets: Sequence[Any] | None, policy_uuid: str, job_id: Any = None):
        """Restore every FileSet to its first path; raise one admin-readable error on failure."""
        file_sets = list(file_sets or ())
        report = self.run("restore", file_sets, policy_uuid, job_id)
        if report.failed:
            labels = report.labels
            raise RestoreFailed(
                [(labels[r.key], r.error or "unknown error") for r in report.failed],
                policy=policy_uuid,
            )
        return file_sets

    def delete(self, file_sets: Sequence[Any] | None, policy_uuid: str, job_id: Any = None):
        """Delete the archived copies; return the FileSets whose every copy is gone."""
        file_sets = list(file_sets or ())
        report = self.run("delete", file_sets, policy_uuid, job_id)
        if report.failed:
            log.error(
                "policy=%s job=%s delete incomplete: %s",
                policy_uuid,
                report.job_id,
                report.error_text(),
            )
        return [fs for fs, r in zip(file_sets, report.results, strict=True) if r.ok]

    def get_policies(self) -> list[dict[str, Any]]:
        with self._held(listing=True) as site:
            if site is None:
                return []
            return [
                {"uuid": p.uuid, "name": p.name, "bulk_support": site.bulk_support(p)}
                for p in site.policies()
            ]

    def get_policy_constrains(self) -> list[dict[str, Any]]:
        """Limits of bulk policies, one dict per bulk policy (spelling as Portal calls it)."""
        with self._held(listing=True) as site:
            if site is None:
                return []
            constraints = []
            for policy in site.policies():
                if not site.bulk_support(policy):
                    continue
                limits = policy.bulk
                constraints.append(
                    {
                        "uuid": policy.uuid,
                        "max_files": limits.max_files if limits else None,
                        "max_bytes": limits.max_bytes if limits else None,
                    }
                )
            return constraints

    def is_ready(self) -> bool:
        """True when the config loads and at least one policy's targets answer.

        Bounded by `ready_timeout_seconds` and cached for `ready_cache_seconds`; a policy
        that is not ready fails its own jobs with the reason, the others keep working.
        """
        with self._held(listing=True) as site:
            if site is None:
                log.warning("archive-core is not ready: %s", self._config_error)
                return False
            states = site.all_readiness()
        for state in states:
            if not state.readiness.ok:
                log.warning("policy %s is not ready: %s", state.policy.uuid, state.readiness.reason)
        return any(s.readiness.ok for s in states)

    # --- beyond Portal: used by the CLI ------------------------------------------------------

    def run(
        self, operation: str, file_sets: Sequence[Any], policy_uuid: str, job_id: Any = None
    ) -> JobReport:
        """Run one operation over `file_sets` and return its report: one result per FileSet.

        What each Portal call does, before its result is put in Portal's shape; the CLI
        calls this and reads the report. Raises ArchiveCoreError when the whole call is
        refused (a broken config, an unknown policy, an undeclared capability).
        """
        with self._held() as site:
            return self._run_on(site, operation, file_sets, policy_uuid, job_id)

    def verify(self, file_sets: Sequence[Any] | None, policy_uuid: str, job_id: Any = None):
        """Read archived copies back and check their sha1; (verified, failed, error_string)."""
        file_sets = list(file_sets or ())
        report = self.run("verify", file_sets, policy_uuid, job_id)
        pairs = list(zip(file_sets, report.results, strict=True))
        return (
            [fs for fs, r in pairs if r.ok],
            [fs for fs, r in pairs if not r.ok],
            report.error_text(),
        )

    def readiness(self):
        """Every policy with its readiness and reason; raises ConfigError when unusable."""
        return self.site().all_readiness()

    def site(self):
        """The Site behind this plugin; raises the config error if the config is broken."""
        site = self._current_site()
        if site is None:
            assert self._config_error is not None
            raise self._config_error
        return site

    # --- internals -----------------------------------------------------------------------------

    def _run_on(
        self,
        site: Site | None,
        operation: str,
        file_sets: Sequence[Any],
        policy_uuid: str,
        job_id: Any,
    ) -> JobReport:
        """`run` on a Site the caller holds (None: the config is broken)."""
        from archive_core.jobs import JobRunner

        jobs = [_read_file_set(fs, i) for i, fs in enumerate(file_sets)]
        if site is None:
            assert self._config_error is not None
            raise self._config_error
        runner = JobRunner(
            site,
            policy_uuid=policy_uuid,
            job_id=_job(job_id),
            operation=operation,
            observer=self.observer,
            actor=self.actor,
        )
        return runner.run(jobs)

    def _current_site(self):
        """The Site for the config on disk, reloaded when the file changed."""
        with self._lock:
            self._reload_if_changed()
            return self._site

    @contextlib.contextmanager
    def _held(self, *, listing: bool = False) -> Iterator[Any]:
        """The current Site, kept open until the block ends even if the config reloads.

        A reload swaps in a new Site at once; the old one is closed (drivers, catalog) only
        when the last call that was using it is done. `listing`: a call Portal makes often
        and caches itself (is_ready, get_policies), for which the catalog is asked for a
        newer configuration version at most once per `ready_cache_seconds`.
        """
        with self._lock:
            self._reload_if_changed(listing=listing)
            site = self._site
            if site is not None:
                self._users[id(site)] = self._users.get(id(site), 0) + 1
        try:
            yield site
        finally:
            if site is not None:
                self._release(site)

    def _release(self, site: Any) -> None:
        with self._lock:
            left = self._users[id(site)] - 1
            if left:
                self._users[id(site)] = left
                return
            del self._users[id(site)]
            retired = site is not self._site
        if retired:
            site.close()

    def _reload_if_changed(self, *, listing: bool = False) -> None:
        """Reload when the config file changed, or (with the catalog as the source) when a
        newer configuration version was saved: one small query per job call, none per file;
        for a `listing` call at most one per `ready_cache_seconds`, so that is_ready stays
        quick even while the catalog is slow. Called with the lock held."""
        if self._loaded_stamp is None and self._config_error is None:
            return  # a Site handed in by the caller: no file to follow
        if _stamp(self.config_path) != self._loaded_stamp:
            self._load()
            return
        if self._clock() < self._catalog_quiet_until:
            return  # the catalog failed just now: do not make every call wait for it
        if self._config_error is not None:
            if self._config_error_from_catalog:
                self._load()
            return
        source = self._site.config.config_source if self._site is not None else None
        if source is None or source.kind != CATALOG:
            return
        now = self._clock()
        if listing and now - self._version_checked < self._quiet_seconds():
            return
        self._version_checked = now
        try:
            latest = self._site.catalog.config_versions.latest_number()
        except CatalogError as exc:
            log.warning(
                "archive-core could not check for a newer configuration version (%s); "
                "keeping version %s",
                exc.message,
                source.version.number if source.version else "none",
            )
            self._catalog_quiet_until = self._clock() + self._quiet_seconds()
            return
        if latest != (source.version.number if source.version else 0):
            self._load()

    def _quiet_seconds(self) -> float:
        site = self._site
        return site.config.portal.ready_cache_seconds if site is not None else 15.0

    def _load(self) -> None:
        """Load the config into a new Site (called with the lock held)."""
        from archive_core import configstore
        from archive_core.site import Site

        stamp = _stamp(self.config_path)
        try:
            config, catalog = configstore.load(self.config_path)
        except ConfigError as exc:
            log.error("%s", exc.message)
            self._config_error = exc
            self._config_error_from_catalog = exc.from_catalog
            if exc.from_catalog:
                self._catalog_quiet_until = self._clock() + self._quiet_seconds()
            self._loaded_stamp = stamp
            return
        old, self._site = self._site, Site(config, catalog=catalog)
        self._config_error = None
        self._config_error_from_catalog = False
        self._loaded_stamp = stamp
        if old is not None and id(old) not in self._users:
            old.close()  # nobody is using it; otherwise the last user closes it


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells a changed config file: inode, size and modification time (None: missing)."""
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns)


# --- reading and writing Portal's FileSets ------------------------------------------------------


def _read_file_set(fs: Any, index: int):
    """A FileJob from a FileSet of any Portal release (missing optional fields are fine).

    Whatever is wrong with one FileSet (a path that is no path, no FileSet at all) becomes
    that file's `problem`, answered per file; the rest of the batch goes on.
    """
    from archive_core.jobs import FileJob

    files = getattr(fs, "files", None) or ()
    if isinstance(files, str | bytes | os.PathLike):
        files = (files,)
    external_ids = getattr(fs, "external_ids", None) or ()
    if isinstance(external_ids, str | bytes):
        external_ids = (external_ids,)
    sha1 = getattr(fs, "sha1", None) or getattr(fs, "hash", None)
    item_id = getattr(fs, "item_id", None)
    problem = None
    try:
        # Text is what Portal passes: only anything else goes through the conversions.
        paths = [p if type(p) is str else _text_path(p) for p in files if p]
        ids = [e if type(e) is str else _text(e) for e in external_ids if e]
    except (TypeError, ValueError) as exc:
        problem, paths, ids = f"Portal passed a file set archive-core cannot read: {exc}", [], []
    if not hasattr(fs, "files") and not hasattr(fs, "external_ids"):
        problem = f"Portal passed {type(fs).__name__} {fs!r:.80}, not a FileSet"
    # The one place Portal's sha1 is checked and normalised: everything after relies on it.
    sha1 = str(sha1).strip().lower() if sha1 else None
    if sha1 is not None and (len(sha1) != 40 or not set(sha1) <= _HEX):
        problem = problem or f"Portal's sha1 {sha1!r} is not 40 hexadecimal digits"
    return FileJob(
        key=str(index),
        files=tuple(paths),
        external_ids=tuple(ids),
        item_id=str(item_id) if item_id is not None else None,
        sha1=sha1,
        problem=problem,
    )


def _text_path(path: Any) -> str:
    """A path as text; bytes paths (a POSIX file name in no encoding) decode losslessly."""
    if isinstance(path, str | bytes | os.PathLike):
        return os.fsdecode(path)
    raise TypeError(f"the path {path!r} is a {type(path).__name__}, not a file path")


def _text(value: Any) -> str:
    return os.fsdecode(value) if isinstance(value, bytes) else str(value)


def _replace_external_ids(fs: Any, external_ids: tuple[str, ...]) -> Any:
    original = getattr(fs, "external_ids", None)
    value: Any = list(external_ids) if isinstance(original, list) else tuple(external_ids)
    return fs._replace(external_ids=value)


def _job(job_id: Any) -> str | None:
    return None if job_id is None else str(job_id)


def _archive_result(
    archived: list[Any], not_archived: list[Any], error: str, policy_uuid: str, *, legacy: bool
) -> Any:
    """archive()'s answer in Portal's shape: the legacy setting returns the archived only."""
    if legacy:
        if error:
            log.error("policy=%s archive: %s", policy_uuid, error)
        return archived
    return archived, not_archived, error, {}
