"""The face Portal sees: the one archive-plugin implementation, and Portal's quirks kept here.

Portal calls `archive`, `restore`, `delete`, `get_policies`, `is_ready` and
`get_policy_constrains` from its job workers. FileSets are read defensively (a Portal release
may add or drop optional fields) and handed back as the very objects Portal passed, changed only
through `_replace`. Construction never raises: Portal instantiates the plugin when it imports
the app, and a broken config must show up as "not ready" with its reason, not as a crash.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from archive_core.errors import ArchiveCoreError, ConfigError, RestoreFailed

log = logging.getLogger(__name__)

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
    ) -> None:
        from archive_core.policies import default_config_path

        self.config_path = Path(config_path) if config_path else default_config_path()
        self.observer = observer  # progress for the CLI; Portal leaves it None
        self._lock = threading.Lock()
        self._site = site
        self._loaded_mtime: float | None = None
        self._config_error: ConfigError | None = None
        if site is None:
            self._load()

    def __repr__(self) -> str:
        return f"<ArchiveCorePlugin config={str(self.config_path)!r}>"

    # --- Portal's contract ---------------------------------------------------------------------

    def archive(self, file_sets: Sequence[Any], policy_uuid: str, job_id: Any = None):
        """Archive every FileSet; return (archived, not_archived, error_string, extra_data).

        Each archived FileSet comes back with `external_ids` set to one URI per copy. Files
        that fail are returned in `not_archived`, never as an exception, so one bad file does
        not fail the batch. The legacy setting returns only the archived list.
        """
        file_sets = list(file_sets)
        jobs = [_read_file_set(fs, i) for i, fs in enumerate(file_sets)]
        try:
            report = self._run("archive", policy_uuid, _job(job_id), jobs)
        except ArchiveCoreError as exc:
            log.error("policy=%s job=%s archive refused: %s", policy_uuid, job_id, exc.message)
            return self._archive_result([], file_sets, exc.message, policy_uuid)
        archived, not_archived = [], []
        for fs, result in zip(file_sets, report.results, strict=True):
            if result.ok:
                archived.append(_replace_external_ids(fs, result.external_ids))
            else:
                not_archived.append(fs)
        return self._archive_result(archived, not_archived, report.error_text(), policy_uuid)

    def restore(self, file_sets: Sequence[Any], policy_uuid: str, job_id: Any = None):
        """Restore every FileSet to its first path; raise one admin-readable error on failure."""
        file_sets = list(file_sets)
        jobs = [_read_file_set(fs, i) for i, fs in enumerate(file_sets)]
        report = self._run("restore", policy_uuid, _job(job_id), jobs)
        if report.failed:
            labels = report.labels
            raise RestoreFailed(
                [(labels[r.key], r.error or "unknown error") for r in report.failed],
                policy=policy_uuid,
            )
        return file_sets

    def delete(self, file_sets: Sequence[Any], policy_uuid: str, job_id: Any = None):
        """Delete the archived copies; return the FileSets whose every copy is gone."""
        file_sets = list(file_sets)
        jobs = [_read_file_set(fs, i) for i, fs in enumerate(file_sets)]
        report = self._run("delete", policy_uuid, _job(job_id), jobs)
        if report.failed:
            log.error("policy=%s delete incomplete: %s", policy_uuid, report.error_text())
        return [fs for fs, r in zip(file_sets, report.results, strict=True) if r.ok]

    def get_policies(self) -> list[dict[str, Any]]:
        site = self._current_site()
        if site is None:
            return []
        return [
            {"uuid": p.uuid, "name": p.name, "bulk_support": site.bulk_support(p)}
            for p in site.policies()
        ]

    def get_policy_constrains(self) -> list[dict[str, Any]]:
        """Limits of bulk policies, one dict per bulk policy (spelling as Portal calls it)."""
        site = self._current_site()
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
        site = self._current_site()
        if site is None:
            log.warning("archive-core is not ready: %s", self._config_error)
            return False
        states = site.all_readiness()
        for state in states:
            if not state.readiness.ok:
                log.warning("policy %s is not ready: %s", state.policy.uuid, state.readiness.reason)
        return any(s.readiness.ok for s in states)

    # --- beyond Portal: used by the CLI ------------------------------------------------------

    def verify(self, file_sets: Sequence[Any], policy_uuid: str, job_id: Any = None):
        """Read archived copies back and check their sha1; (verified, failed, error_string)."""
        file_sets = list(file_sets)
        jobs = [_read_file_set(fs, i) for i, fs in enumerate(file_sets)]
        report = self._run("verify", policy_uuid, _job(job_id), jobs)
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

    def _archive_result(self, archived, not_archived, error: str, policy_uuid: str):
        site = self._current_site()
        legacy = site.config.portal.legacy_archive_result if site is not None else False
        if legacy:
            if error:
                log.error("policy=%s archive: %s", policy_uuid, error)
            return archived
        return archived, not_archived, error, {}

    def _run(self, operation: str, policy_uuid: str, job_id: str | None, jobs):
        from archive_core.jobs import JobRunner

        runner = JobRunner(
            self.site(),
            policy_uuid=policy_uuid,
            job_id=job_id,
            operation=operation,
            observer=self.observer,
        )
        return getattr(runner, operation)(jobs)

    def _current_site(self):
        """The Site for the config on disk, reloaded when the file changed."""
        if self._loaded_mtime is not None or self._config_error is not None:
            try:
                mtime = self.config_path.stat().st_mtime
            except OSError:
                mtime = None
            if mtime != self._loaded_mtime:
                self._load()
        return self._site

    def _load(self) -> None:
        from archive_core.policies import load_config
        from archive_core.site import Site

        with self._lock:
            try:
                mtime = self.config_path.stat().st_mtime
            except OSError:
                mtime = None
            try:
                config = load_config(self.config_path)
            except ConfigError as exc:
                log.error("%s", exc.message)
                self._config_error = exc
                self._loaded_mtime = mtime
                return
            old, self._site = self._site, Site(config)
            self._config_error = None
            self._loaded_mtime = mtime
        if old is not None:
            old.close()


# --- reading and writing Portal's FileSets ------------------------------------------------------


def _read_file_set(fs: Any, index: int):
    """A FileJob from a FileSet of any Portal release (missing optional fields are fine)."""
    from archive_core.jobs import FileJob

    files = getattr(fs, "files", None) or ()
    if isinstance(files, str | os.PathLike):
        files = (files,)
    external_ids = getattr(fs, "external_ids", None) or ()
    if isinstance(external_ids, str):
        external_ids = (external_ids,)
    sha1 = getattr(fs, "sha1", None) or getattr(fs, "hash", None)
    item_id = getattr(fs, "item_id", None)
    return FileJob(
        key=str(index),
        files=tuple(os.fspath(f) for f in files if f),
        external_ids=tuple(str(e) for e in external_ids if e),
        item_id=str(item_id) if item_id is not None else None,
        sha1=str(sha1) if sha1 else None,
    )


def _replace_external_ids(fs: Any, external_ids: tuple[str, ...]) -> Any:
    original = getattr(fs, "external_ids", None)
    value: Any = list(external_ids) if isinstance(original, list) else tuple(external_ids)
    return fs._replace(external_ids=value)


def _job(job_id: Any) -> str | None:
    return None if job_id is None else str(job_id)
