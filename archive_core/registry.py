"""Driver discovery: entry points listed without importing, loaded once, failures kept as states.

Drivers are found in the entry-point group `archive_core.drivers`, exactly as a third party's
pip package is found. Listing reads distribution metadata only; a driver module is imported the
first time its driver is loaded, once per process. A driver that cannot be imported, declares
the wrong metadata, or whose name two distributions claim becomes a recorded state with a reason
an admin can act on; every other driver keeps working.

Environment (read when the registry first resolves, again after `reset()`):

- `ARCHIVE_CORE_LOAD_DRIVERS`: comma list; when set, only these drivers load.
- `ARCHIVE_CORE_DISABLE_DRIVERS`: comma list of drivers that never load.
- `ARCHIVE_CORE_STRICT_DRIVERS=1`: raise instead of recording a broken driver (for CI).

An item of either list is a driver name (`s3`) or a name and the distribution that registers it
(`s3@acme-archive-s3`), which picks one registration when two distributions claim a name.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from archive_core.driver import API_VERSION, Capability
from archive_core.errors import DriverUnavailable, DuplicateDriver

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

    from archive_core.hooks import Hooks

logger = logging.getLogger(__name__)

DRIVER_GROUP = "archive_core.drivers"
LOAD_DRIVERS_ENV = "ARCHIVE_CORE_LOAD_DRIVERS"
DISABLE_DRIVERS_ENV = "ARCHIVE_CORE_DISABLE_DRIVERS"
STRICT_DRIVERS_ENV = "ARCHIVE_CORE_STRICT_DRIVERS"

_TRUE = frozenset({"1", "true", "yes", "on"})


class DriverStatus(enum.StrEnum):
    """Where a driver stands in this process."""

    LOADED = "loaded"
    INSTALLED = "installed"  # found and allowed, not imported yet (listing without loading)
    FAILED = "failed"
    DISABLED = "disabled"
    NOT_INSTALLED = "not installed"
    DUPLICATE = "duplicate"


@attrs.frozen(kw_only=True)
class DriverEntry:
    """One registration of a driver, as installed metadata states it (nothing imported)."""

    name: str
    distribution: str
    version: str
    value: str  # "module:Class"

    @property
    def source(self) -> str:
        """The distribution and version, as admins see them in `pip list`."""
        return f"{self.distribution} {self.version}"


@attrs.frozen(kw_only=True)
class DriverState:
    """What the registry knows about one driver name, with the reason shown to admins."""

    name: str
    entry: DriverEntry | None  # None when no installed distribution registers the name
    status: DriverStatus
    reason: str
    api_version: int | None = None
    capabilities: frozenset[Capability] = frozenset()
    conflicts: tuple[DriverEntry, ...] = ()  # every registration of a duplicate name

    @property
    def ok(self) -> bool:
        return self.status is DriverStatus.LOADED


@attrs.frozen
class _Selector:
    """One item of an allow or deny list: a driver name, optionally tied to a distribution."""

    name: str
    distribution: str | None

    def matches(self, entry: DriverEntry) -> bool:
        if entry.name != self.name:
            return False
        return self.distribution is None or _normalise(entry.distribution) == self.distribution


@attrs.frozen(kw_only=True)
class _Discovery:
    """One resolution of the entry-point group under one environment."""

    entries: tuple[DriverEntry, ...]
    #: Names with exactly one allowed registration: importable on demand.
    candidates: Mapping[str, tuple[DriverEntry, EntryPoint]]
    #: Names decided without importing anything: disabled, duplicate, allow-listed but missing.
    verdicts: Mapping[str, DriverState]
    #: Duplicate name -> the "distribution version" of each registration claiming it.
    duplicates: Mapping[str, tuple[str, ...]]
    strict: bool


class DriverRegistry:
    """Finds drivers through entry points, loads each in isolation, keeps failures as states.

    `hooks` is told about every driver that fails to load; it may be a `Hooks` or a callable
    returning one, so plugins are only loaded once a failure needs reporting. `environ` replaces
    `os.environ` for the allow, deny and strict variables (tests). `group` exists so tests can
    isolate themselves from installed drivers.
    """

    def __init__(
        self,
        *,
        group: str = DRIVER_GROUP,
        hooks: Hooks | Callable[[], Hooks] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.group = group
        self._hooks = hooks
        self._environ = environ
        # Re-entrant: a driver module may itself consult the registry while it is imported.
        self._lock = threading.RLock()
        self._discovery: _Discovery | None = None
        self._loaded: dict[str, tuple[type, DriverState]] = {}
        self._failed: dict[str, DriverState] = {}
        self._reported: set[str] = set()

    def __repr__(self) -> str:
        return f"<DriverRegistry group={self.group!r}>"

    def reset(self) -> None:
        """Forget discovery, loaded classes and recorded failures (tests, after installs)."""
        with self._lock:
            self._discovery = None
            self._loaded.clear()
            self._failed.clear()
            self._reported.clear()

    # --- listing, never importing --------------------------------------------------------

    def entries(self) -> tuple[DriverEntry, ...]:
        """Every registration in the group, duplicates included, without importing a driver."""
        return self._resolve().entries

    def state(self, name: str, *, load: bool = True) -> DriverState:
        """The state of one driver; with `load`, an allowed driver is imported to find out.

        In strict mode a broken, duplicate or missing driver raises instead.
        """
        if load:
            # A failure is recorded by load(); the state below carries its reason.
            with contextlib.suppress(DriverUnavailable):
                self.load(name)
        found = self._current_state(name)
        if self._resolve().strict:
            self._raise_if_broken(found)
        return found

    def states(self, *, load: bool = True) -> tuple[DriverState, ...]:
        """One state per known name (installed or allow-listed), sorted by name.

        With `load`, every allowed driver is imported in isolation so the listing shows real
        status and capabilities; one broken driver never hides the others.
        """
        discovery = self._resolve()
        names = sorted({e.name for e in discovery.entries} | set(discovery.verdicts))
        return tuple(self.state(name, load=load) for name in names)

    # --- loading ---------------------------------------------------------------------------

    def load(self, name: str) -> type:
        """The driver class registered as `name`, imported and validated once per process.

        Raises `DriverUnavailable` with an admin-readable `reason` when the driver is missing,
        disabled, claimed twice, fails to import or declares wrong metadata; in strict mode a
        duplicate raises `DuplicateDriver` itself.
        """
        with self._lock:
            discovery = self._resolve()
            if name in self._loaded:
                return self._loaded[name][0]
            failure = self._failed.get(name) or discovery.verdicts.get(name)
            if failure is None and name not in discovery.candidates:
                failure = self._not_installed(name, discovery)
            if failure is None:
                outcome = self._import_and_validate(*discovery.candidates[name])
                if not isinstance(outcome, DriverState):
                    self._loaded[name] = outcome
                    return outcome[0]
                self._failed[name] = failure = outcome
        if failure.status in (DriverStatus.FAILED, DriverStatus.DUPLICATE):
            self._report_failure(failure)
        if failure.status is DriverStatus.DUPLICATE:
            duplicate = DuplicateDriver(name, discovery.duplicates[name])
            if discovery.strict:
                raise duplicate
            raise _unavailable(failure) from duplicate
        raise _unavailable(failure)

    def _import_and_validate(
        self, entry: DriverEntry, entry_point: EntryPoint
    ) -> tuple[type, DriverState] | DriverState:
        where = f"driver {entry.name!r} from distribution {entry.source!r}"
        try:
            loaded = _load_entry_point(entry_point)
        except (Exception, SystemExit) as exc:  # a driver's import must never take the host down
            reason = f"{where} failed to import: {_describe(exc)}"
            logger.error("%s", reason, exc_info=exc)
            return DriverState(
                name=entry.name, entry=entry, status=DriverStatus.FAILED, reason=reason
            )
        problems = _metadata_problems(loaded, entry)
        if problems:
            reason = f"{where} was refused: {'; '.join(problems)}"
            logger.error("%s", reason)
            return DriverState(
                name=entry.name,
                entry=entry,
                status=DriverStatus.FAILED,
                reason=reason,
                api_version=_int_or_none(getattr(loaded, "api_version", None)),
            )
        capabilities = frozenset(Capability(c) for c in loaded.capabilities)
        logger.debug("loaded %s (%s)", where, entry.value)
        return loaded, DriverState(
            name=entry.name,
            entry=entry,
            status=DriverStatus.LOADED,
            reason=f"loaded from distribution {entry.source!r}",
            api_version=loaded.api_version,
            capabilities=capabilities,
        )

    # --- state bookkeeping -----------------------------------------------------------------

    def _current_state(self, name: str) -> DriverState:
        with self._lock:
            discovery = self._resolve()
            if name in self._loaded:
                return self._loaded[name][1]
            if name in self._failed:
                return self._failed[name]
            if name in discovery.verdicts:
                return discovery.verdicts[name]
            if name in discovery.candidates:
                entry = discovery.candidates[name][0]
                return DriverState(
                    name=name,
                    entry=entry,
                    status=DriverStatus.INSTALLED,
                    reason=f"installed from distribution {entry.source!r}, not loaded yet",
                )
            return self._not_installed(name, discovery)

    def _not_installed(self, name: str, discovery: _Discovery) -> DriverState:
        installed = sorted({e.name for e in discovery.entries})
        return DriverState(
            name=name,
            entry=None,
            status=DriverStatus.NOT_INSTALLED,
            reason=(
                f"no installed distribution registers driver {name!r} in entry-point group "
                f"{self.group!r} (installed drivers: {', '.join(installed) or 'none'})"
            ),
        )

    def _raise_if_broken(self, found: DriverState) -> None:
        if found.status is DriverStatus.DUPLICATE:
            raise DuplicateDriver(found.name, self._resolve().duplicates[found.name])
        if found.status in (DriverStatus.FAILED, DriverStatus.NOT_INSTALLED):
            raise _unavailable(found)

    def _report_failure(self, failure: DriverState) -> None:
        """Tell the hooks, once per name, outside the lock so an observer cannot deadlock us."""
        with self._lock:
            if failure.name in self._reported:
                return
            self._reported.add(failure.name)
        try:
            hooks = self._hooks() if callable(self._hooks) else self._hooks
            if hooks is not None:
                hooks.notify(
                    "archive_core_driver_load_failed", name=failure.name, reason=failure.reason
                )
        except Exception:
            logger.exception("could not tell plugins that driver %r failed to load", failure.name)

    # --- discovery -------------------------------------------------------------------------

    def _resolve(self) -> _Discovery:
        with self._lock:
            if self._discovery is None:
                environ = os.environ if self._environ is None else self._environ
                self._discovery = _discover(self.group, environ)
            return self._discovery


def _discover(group: str, environ: Mapping[str, str]) -> _Discovery:
    from importlib.metadata import entry_points

    registrations: dict[str, list[tuple[DriverEntry, EntryPoint]]] = {}
    seen: set[DriverEntry] = set()
    for entry_point in entry_points(group=group):
        entry = _entry_of(entry_point)
        if entry in seen:  # the same distribution reachable twice is one registration
            continue
        seen.add(entry)
        registrations.setdefault(entry.name, []).append((entry, entry_point))

    allow_raw = environ.get(LOAD_DRIVERS_ENV, "")
    allow = _selectors(allow_raw)
    deny = _selectors(environ.get(DISABLE_DRIVERS_ENV, ""))
    candidates: dict[str, tuple[DriverEntry, EntryPoint]] = {}
    verdicts: dict[str, DriverState] = {}
    duplicates: dict[str, tuple[str, ...]] = {}

    for name, found in sorted(registrations.items()):
        found.sort(key=lambda pair: (pair[0].distribution, pair[0].version))
        kept = [p for p in found if not any(s.matches(p[0]) for s in deny)]
        denied = len(kept) < len(found)
        if allow:
            kept = [p for p in kept if any(s.matches(p[0]) for s in allow)]
        if len(kept) == 1:
            candidates[name] = kept[0]
        elif not kept:
            reason = (
                f"driver {name!r} is disabled by {DISABLE_DRIVERS_ENV}"
                if denied
                else f"driver {name!r} is not listed in {LOAD_DRIVERS_ENV}={allow_raw.strip()!r}, "
                "which limits the drivers that load"
            )
            verdicts[name] = DriverState(
                name=name, entry=found[0][0], status=DriverStatus.DISABLED, reason=reason
            )
        else:
            conflicts = tuple(p[0] for p in kept)
            duplicate = DuplicateDriver(name, [e.source for e in conflicts])
            duplicates[name] = duplicate.distributions
            example = f"{name}@{conflicts[-1].distribution}"
            verdicts[name] = DriverState(
                name=name,
                entry=conflicts[0],
                status=DriverStatus.DUPLICATE,
                reason=f"{duplicate.message} For example: {DISABLE_DRIVERS_ENV}={example}",
                conflicts=conflicts,
            )

    for selector in allow:
        if selector.name not in registrations and selector.name not in verdicts:
            verdicts[selector.name] = DriverState(
                name=selector.name,
                entry=None,
                status=DriverStatus.NOT_INSTALLED,
                reason=(
                    f"driver {selector.name!r} is listed in {LOAD_DRIVERS_ENV}, but no installed "
                    f"distribution registers it in entry-point group {group!r}"
                ),
            )

    entries = tuple(sorted(seen, key=lambda e: (e.name, e.distribution, e.version)))
    return _Discovery(
        entries=entries,
        candidates=candidates,
        verdicts=verdicts,
        duplicates=duplicates,
        strict=environ.get(STRICT_DRIVERS_ENV, "").strip().lower() in _TRUE,
    )


def _entry_of(entry_point: EntryPoint) -> DriverEntry:
    dist = getattr(entry_point, "dist", None)
    return DriverEntry(
        name=entry_point.name,
        distribution=(getattr(dist, "name", None) or "unknown distribution"),
        version=(getattr(dist, "version", None) or "unknown version"),
        value=entry_point.value,
    )


def _selectors(raw: str) -> tuple[_Selector, ...]:
    selectors = []
    for item in raw.split(","):
        name, _, distribution = item.partition("@")
        if name.strip():
            selectors.append(_Selector(name.strip(), _normalise(distribution) or None))
    return tuple(selectors)


def _normalise(distribution: str) -> str:
    # PEP 503: "Acme_Archive.S3" and "acme-archive-s3" name the same distribution.
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


def _load_entry_point(entry_point: EntryPoint) -> Any:
    """Import one entry point through stevedore, raising whatever the import raised."""
    from stevedore.extension import ExtensionManager

    errors: list[BaseException] = []

    class _OneEntryPoint(ExtensionManager):
        # stevedore would list the whole group again from its own on-disk cache, which keeps no
        # distribution and merges duplicates; give it the one registration already chosen.
        def list_entry_points(self) -> list[EntryPoint]:
            return [entry_point]

    manager = _OneEntryPoint(
        entry_point.group,
        on_load_failure_callback=lambda _manager, _entry_point, exc: errors.append(exc),
    )
    if errors:
        raise errors[0]
    return manager.extensions[0].plugin


def _metadata_problems(loaded: Any, entry: DriverEntry) -> list[str]:
    """Everything wrong with a driver class's declarations, all at once for its author."""
    if not isinstance(loaded, type):
        return [f"{entry.value} is a {type(loaded).__name__}, not a driver class"]
    problems = []
    declared = getattr(loaded, "name", None)
    if declared != entry.name:
        problems.append(
            f"its class declares name {declared!r}, but it is registered as {entry.name!r}"
        )
    api_version = getattr(loaded, "api_version", None)
    if _int_or_none(api_version) is None:
        problems.append(f"api_version must be an int, not {api_version!r}")
    elif api_version != API_VERSION:
        problems.append(
            f"it implements driver API version {api_version}, but this archive-core implements "
            f"version {API_VERSION}"
        )
    capabilities = getattr(loaded, "capabilities", None)
    if isinstance(capabilities, str | bytes) or not isinstance(capabilities, Collection):
        problems.append(
            f"capabilities must be a collection of Capability values, not {capabilities!r}"
        )
    else:
        unknown = [c for c in capabilities if not _is_capability(c)]
        if unknown:
            known = ", ".join(c.value for c in Capability)
            problems.append(
                f"unknown capabilities {', '.join(map(repr, unknown))} (known: {known})"
            )
    config = getattr(loaded, "Config", None)
    if not (isinstance(config, type) and attrs.has(config)):
        problems.append(f"Config must be an attrs class, not {config!r}")
    return problems


def _is_capability(value: Any) -> bool:
    try:
        Capability(value)
    except ValueError:
        return False
    return True


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _unavailable(found: DriverState) -> DriverUnavailable:
    message = found.reason[:1].upper() + found.reason[1:]
    return DriverUnavailable(message, reason=found.reason, driver=found.name)


class FixedRegistry:
    """Driver classes given directly instead of found through entry points.

    For the conformance kit and tests: a driver under test need not be installed. Each class
    is checked as an installed one would be, so bad declarations show up the same way.
    """

    def __init__(self, drivers: Mapping[str, type]) -> None:
        self._drivers = dict(drivers)

    def __repr__(self) -> str:
        return f"<FixedRegistry {sorted(self._drivers)}>"

    def load(self, name: str) -> type:
        cls = self._drivers.get(name)
        if cls is None:
            raise DriverUnavailable(
                f"No driver named {name!r} is given.",
                reason=f"driver {name!r} is not installed",
                driver=name,
            )
        entry = DriverEntry(
            name=name,
            distribution="(given directly)",
            version="",
            value=f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', cls)!s}",
        )
        problems = _metadata_problems(cls, entry)
        if problems:
            reason = f"driver {name!r} ({entry.value}) is invalid: {'; '.join(problems)}"
            raise DriverUnavailable(reason[:1].upper() + reason[1:], reason=reason, driver=name)
        return cls


# --- the process-wide registry -------------------------------------------------------------

_default: DriverRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> DriverRegistry:
    """The registry of this process, built on first use; failures are told to `default_hooks`."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DriverRegistry(hooks=_default_hooks)
        return _default


def _default_hooks() -> Hooks:
    # Imported only when a failure must be reported: listing drivers stays free of pluggy.
    from archive_core.hooks import default_hooks

    return default_hooks()


def reset_default_registry() -> None:
    """Drop the process-wide registry so the next use discovers again (tests)."""
    global _default
    with _default_lock:
        _default = None
