"""Plugin hooks (pluggy): what plugins may observe or add, and a caller no plugin can break.

Plugins are found in the entry-point group `archive_core.plugins` and implement any of the
`HookSpecs` with `@hookimpl`. Observers are told about jobs and files; they can never fail a
job: each implementation is called on its own, and one that raises is logged and skipped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import attrs
import pluggy

from archive_core.driver import OPERATIONS
from archive_core.errors import ArchiveCoreError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    import click

    from archive_core.catalog import CopyRecord
    from archive_core.model import FileOutcome

logger = logging.getLogger(__name__)

PROJECT = "archive_core"
PLUGIN_GROUP = "archive_core.plugins"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@attrs.frozen(kw_only=True)
class JobInfo:
    """The job a hook is about."""

    job_id: str | None
    policy: str
    operation: str = attrs.field(validator=attrs.validators.in_(tuple(OPERATIONS)))
    file_count: int


@attrs.frozen(kw_only=True)
class JobSummary:
    """How a job ended."""

    succeeded: int
    failed: int
    bytes: int
    seconds: float


class HookSpecs:
    """The hooks a plugin may implement; arguments are passed by keyword."""

    @hookspec
    def archive_core_job_started(self, job: JobInfo) -> None:
        """A job is about to move its first file."""

    @hookspec
    def archive_core_job_finished(self, job: JobInfo, summary: JobSummary) -> None:
        """A job ended, successfully or not; `summary` counts its files and bytes."""

    @hookspec
    def archive_core_file_done(self, job: JobInfo, outcome: FileOutcome) -> None:
        """One file of a job succeeded."""

    @hookspec
    def archive_core_file_failed(self, job: JobInfo, outcome: FileOutcome) -> None:
        """One file of a job failed; `outcome.error` says why."""

    @hookspec
    def archive_core_copy_bad(self, copy: CopyRecord, error: str) -> None:
        """A scrub read an archived copy back and it was wrong or gone; `error` says how.
        The copy is recorded as failed in the catalog until a verification passes."""

    @hookspec
    def archive_core_driver_load_failed(self, name: str, reason: str) -> None:
        """A driver could not be loaded; its policies are not ready for `reason`."""

    @hookspec
    def archive_core_cli_commands(self, cli: click.Group) -> None:
        """Add commands to the `archive-core` command group."""


class Hooks:
    """The registered plugins and a guarded way to call them."""

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager(PROJECT)
        self._manager.add_hookspecs(HookSpecs)
        self._failures: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<Hooks plugins={list(self.names())!r} failed={list(self._failures)!r}>"

    @classmethod
    def from_entry_points(cls, group: str = PLUGIN_GROUP) -> Hooks:
        """Load every plugin of `group`, each in isolation; failures go to `failures`."""
        from importlib.metadata import entry_points

        hooks = cls()
        for entry_point in entry_points(group=group):
            hooks._load_entry_point(entry_point)
        return hooks

    def _load_entry_point(self, entry_point: EntryPoint) -> None:
        dist = getattr(entry_point, "dist", None)
        source = f"{getattr(dist, 'name', None) or 'unknown distribution'} " + (
            getattr(dist, "version", None) or "unknown version"
        )
        where = f"plugin {entry_point.name!r} from distribution {source!r}"
        try:
            plugin = entry_point.load()
        except (Exception, SystemExit) as exc:  # one plugin's import must not stop the others
            self._record_failure(entry_point.name, f"{where} failed to import: {_describe(exc)}")
            logger.debug("import of %s failed", where, exc_info=exc)
            return
        try:
            self.register(plugin, name=entry_point.name)
        except ArchiveCoreError as exc:
            self._record_failure(entry_point.name, f"{where} was refused: {exc}")

    def _record_failure(self, name: str, reason: str) -> None:
        self._failures[name] = reason
        logger.error("archive-core plugin %r could not be loaded: %s", name, reason)

    @property
    def failures(self) -> Mapping[str, str]:
        """Plugin name -> why it is not active, for listings."""
        return MappingProxyType(dict(self._failures))

    def names(self) -> tuple[str, ...]:
        """The names of the active plugins, in registration order."""
        return tuple(name for name, _ in self._manager.list_name_plugin())

    def register(self, plugin: object, name: str | None = None) -> str:
        """Activate `plugin` (module, class or instance with `@hookimpl` methods); its name."""
        try:
            registered = self._manager.register(plugin, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            label = repr(name) if name else repr(plugin)
            raise ArchiveCoreError(f"Plugin {label} cannot be registered: {exc}") from exc
        if registered is None:
            label = repr(name) if name else repr(plugin)
            raise ArchiveCoreError(f"Plugin {label} is blocked and was not registered.")
        # A misspelt hook would otherwise be accepted and silently never called.
        unknown = sorted(
            caller.name
            for caller in self._manager.get_hookcallers(plugin) or ()
            if caller.spec is None
            and any(
                impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls()
            )
        )
        if unknown:
            self._manager.unregister(plugin)
            raise ArchiveCoreError(
                f"Plugin {registered!r} implements hooks archive-core does not define: "
                f"{', '.join(unknown)}. Known hooks: {', '.join(_spec_names())}."
            )
        return registered

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation of `hook_name`; one that raises is logged, never raised."""
        implementations = self._implementations(hook_name, kwargs)
        if not implementations:
            return  # the usual case, once per file: nobody listens
        for _ in self._call_each(hook_name, implementations, kwargs):
            pass

    def collect(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Like `notify`, returning the results that are not None, in call order."""
        implementations = self._implementations(hook_name, kwargs)
        return [
            result
            for result in self._call_each(hook_name, implementations, kwargs)
            if result is not None
        ]

    def _implementations(self, hook_name: str, kwargs: dict[str, Any]) -> list[Any]:
        """The hook's implementations, once the call is checked against the hook's spec."""
        caller = getattr(self._manager.hook, hook_name, None)
        if caller is None or caller.spec is None:
            raise ArchiveCoreError(
                f"archive-core has no hook named {hook_name!r}. "
                f"Known hooks: {', '.join(_spec_names())}."
            )
        expected = caller.spec.argnames
        if len(kwargs) != len(expected) or not all(arg in kwargs for arg in expected):
            raise ArchiveCoreError(
                f"Hook {hook_name} takes {', '.join(sorted(expected))}; "
                f"it was called with {', '.join(sorted(kwargs)) or 'nothing'}."
            )
        return caller.get_hookimpls()

    def _call_each(
        self, hook_name: str, implementations: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        # pluggy's own call order (last registered first, tryfirst/trylast honoured); wrappers
        # exist to wrap a call chain, which observers called one by one do not have.
        for impl in reversed(implementations):
            if impl.hookwrapper or impl.wrapper:
                continue
            try:
                yield impl.function(*(kwargs[arg] for arg in impl.argnames))
            except Exception:
                logger.exception(
                    "archive-core plugin %r raised in %s%s; the other plugins still run",
                    impl.plugin_name,
                    hook_name,
                    _job_context(kwargs),
                )


def _spec_names() -> list[str]:
    return sorted(n for n in vars(HookSpecs) if n.startswith(f"{PROJECT}_"))


def _job_context(kwargs: Mapping[str, Any]) -> str:
    job = kwargs.get("job")
    if isinstance(job, JobInfo):
        return f" (policy {job.policy}, job {job.job_id})"
    return ""


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --- the process-wide hooks ----------------------------------------------------------------

_default: Hooks | None = None
_default_lock = threading.Lock()


def default_hooks() -> Hooks:
    """The plugins of this process, loaded from entry points on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Hooks.from_entry_points()
        return _default


def reset_default_hooks() -> None:
    """Drop the process-wide hooks so the next use loads plugins again (tests)."""
    global _default
    with _default_lock:
        _default = None
