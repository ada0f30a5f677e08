"""Driver discovery: entry points listed without importing, loaded by stevedore, failures kept.

Drivers are found in the entry-point group `archive_core.drivers`, exactly as a third party's
pip package is found. Listing reads distribution metadata only; stevedore's `DriverManager`
imports a driver the first time its class is needed. A driver that cannot be imported, declares
the wrong metadata, or whose name two distributions claim becomes a state with a reason an admin
can act on; every other driver keeps working. Environment, read at the first listing and again
after `reset()`:

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


class DriverStatus(enum.StrEnum):
    """Where a driver stands in this process."""

    LOADED = "loaded"
    INSTALLED = "installed"  # found and allowed, not imported yet (listing without loading)
    FAILED = "failed"
    DISABLED = "disabled"
    NOT_INSTALLED = "not installed"
    DUPLICATE = "duplicate"


#: What strict mode raises for instead of returning the state.
_BROKEN = frozenset({DriverStatus.FAILED, DriverStatus.NOT_INSTALLED, DriverStatus.DUPLICATE})


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


@attrs.frozen(kw_only=True)
class _Listing:
    """The group as installed metadata and the environment decide it, before any import."""

    entries: tuple[DriverEntry, ...]
    states: Mapping[str, DriverState]
    chosen: Mapping[str, EntryPoint]  # the one registration each INSTALLED name loads
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
        self.reset()

    def __repr__(self) -> str:
        return f"<DriverRegistry group={self.group!r}>"

    def reset(self) -> None:
        """Forget the listing, loaded classes and recorded failures (tests, after installs)."""
        with self._lock:
            self._listing: _Listing | None = None
            self._imported: dict[str, DriverState] = {}  # loaded or failed, by name
            self._classes: dict[str, type] = {}
            self._reported: set[str] = set()

    def entries(self) -> tuple[DriverEntry, ...]:
        """Every registration in the group, duplicates included, without importing a driver."""
        return self._list().entries

    def state(self, name: str, *, load: bool = True) -> DriverState:
        """The state of one driver; with `load`, an allowed driver is imported to find out.

        In strict mode a broken, duplicate or missing driver raises instead.
        """
        if load:
            with contextlib.suppress(DriverUnavailable):  # load() records why
                self.load(name)
        found = self._state_of(name)
        if self._list().strict and found.status in _BROKEN:
            raise _error(found)
        return found

    def states(self, *, load: bool = True) -> tuple[DriverState, ...]:
        """One state per known name (installed or allow-listed), sorted by name.

        With `load`, every allowed driver is imported in isolation so the listing shows real
        status and capabilities; one broken driver never hides the others.
        """
        return tuple(self.state(name, load=load) for name in sorted(self._list().states))

    def load(self, name: str) -> type:
        """The driver class registered as `name`, imported and validated once per process.

        Raises `DriverUnavailable` with an admin-readable `reason` when the driver is missing,
        disabled, claimed twice, fails to import or declares wrong metadata; in strict mode a
        duplicate raises `DuplicateDriver` itself.
        """
        with self._lock:
            found = self._state_of(name)
            if found.status is DriverStatus.INSTALLED:
                found = self._imported[name] = self._import(name)
            if found.ok:
                return self._classes[name]
        if found.status in (DriverStatus.FAILED, DriverStatus.DUPLICATE):
            self._report_failure(found)
        error = _error(found)
        if isinstance(error, DuplicateDriver) and not self._list().strict:
            raise _unavailable(found) from error
        raise error

    def _import(self, name: str) -> DriverState:
        entry_point = self._list().chosen[name]
        entry = _entry_of(entry_point)
        where = f"driver {name!r} from distribution {entry.source!r}"
        try:
            cls = _load_with_stevedore(entry_point)
        except (Exception, SystemExit) as exc:  # a driver's import must never take the host down
            reason = f"{where} failed to import: {_describe(exc)}"
            # The reason is what an admin acts on; the traceback, for the driver's author,
            # only with debug logging: every CLI command would otherwise print it again.
            logger.error("%s", reason)
            logger.debug("the import of %s failed here:", where, exc_info=exc)
            return DriverState(name=name, entry=entry, status=DriverStatus.FAILED, reason=reason)
        api_version = _int_or_none(getattr(cls, "api_version", None))
        if problems := _declaration_problems(cls, entry):
            reason = f"{where} was refused: {'; '.join(problems)}"
            logger.error("%s", reason)
            return DriverState(
                name=name,
                entry=entry,
                status=DriverStatus.FAILED,
                reason=reason,
                api_version=api_version,
            )
        self._classes[name] = cls
        return DriverState(
            name=name,
            entry=entry,
            status=DriverStatus.LOADED,
            reason=f"loaded from distribution {entry.source!r}",
            api_version=api_version,
            capabilities=frozenset(Capability(c) for c in cls.capabilities),
        )

    def _state_of(self, name: str) -> DriverState:
        listing = self._list()
        found = self._imported.get(name) or listing.states.get(name)
        return found or _missing(name, self.group, listing.entries)

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

    def _list(self) -> _Listing:
        with self._lock:
            if self._listing is None:
                environ = os.environ if self._environ is None else self._environ
                self._listing = _read_listing(self.group, environ)
            return self._listing


def _read_listing(group: str, environ: Mapping[str, str]) -> _Listing:
    """Decide every name from importlib.metadata, which knows each registration's distribution.

    stevedore's own listing (`stevedore._cache`) keeps name and value only, so it cannot tell
    two distributions that claim one name apart: this listing decides, and stevedore is handed
    the one registration chosen for a name.
    """
    from importlib.metadata import entry_points

    found: dict[str, dict[DriverEntry, EntryPoint]] = {}
    for entry_point in entry_points(group=group):
        # One distribution reachable twice on sys.path is one registration, not a duplicate.
        found.setdefault(entry_point.name, {}).setdefault(_entry_of(entry_point), entry_point)
    entries = tuple(sorted((e for f in found.values() for e in f), key=_entry_order))
    allow_raw = environ.get(LOAD_DRIVERS_ENV, "").strip()
    allow, deny = _selectors(allow_raw), _selectors(environ.get(DISABLE_DRIVERS_ENV, ""))
    states = {
        name: _decide(name, sorted(f, key=_entry_order), allow, deny, allow_raw)
        for name, f in found.items()
    }
    for name, _ in allow:
        if name not in states:
            states[name] = _missing(name, group, entries, f"{LOAD_DRIVERS_ENV} lists it, but ")
    installed = {n: s.entry for n, s in states.items() if s.status is DriverStatus.INSTALLED}
    return _Listing(
        entries=entries,
        states=states,
        chosen={name: found[name][entry] for name, entry in installed.items() if entry},
        strict=environ.get(STRICT_DRIVERS_ENV, "").strip().lower() in {"1", "true", "yes", "on"},
    )


def _decide(
    name: str,
    registered: list[DriverEntry],
    allow: _Selectors,
    deny: _Selectors,
    allow_raw: str,
) -> DriverState:
    """One name's state from its registrations and the allow and deny lists."""
    kept = [e for e in registered if not _picks(deny, e) and (not allow or _picks(allow, e))]
    if len(kept) == 1:
        reason = f"installed from distribution {kept[0].source!r}, not loaded yet"
        return DriverState(name=name, entry=kept[0], status=DriverStatus.INSTALLED, reason=reason)
    if kept:
        duplicate = DuplicateDriver(name, [e.source for e in kept])
        example = f"{DISABLE_DRIVERS_ENV}={name}@{kept[-1].distribution}"
        return DriverState(
            name=name,
            entry=kept[0],
            status=DriverStatus.DUPLICATE,
            reason=f"{duplicate.message} For example: {example}",
            conflicts=tuple(kept),
        )
    if any(_picks(deny, e) for e in registered):
        reason = f"driver {name!r} is disabled by {DISABLE_DRIVERS_ENV}"
    else:
        reason = (
            f"driver {name!r} is not listed in {LOAD_DRIVERS_ENV}={allow_raw!r}, which limits "
            "the drivers that load"
        )
    return DriverState(name=name, entry=registered[0], status=DriverStatus.DISABLED, reason=reason)


def _missing(name: str, group: str, entries: tuple[DriverEntry, ...], why: str = "") -> DriverState:
    installed = ", ".join(sorted({e.name for e in entries})) or "none"
    return DriverState(
        name=name,
        entry=None,
        status=DriverStatus.NOT_INSTALLED,
        reason=f"{why}no installed distribution registers driver {name!r} in entry-point group "
        f"{group!r} (installed drivers: {installed})",
    )


def _load_with_stevedore(entry_point: EntryPoint) -> Any:
    """Import one chosen registration with a stevedore DriverManager, raising what it raised."""
    from stevedore.driver import DriverManager
    from stevedore.exception import NoMatches

    class ChosenDriver(DriverManager):
        # By name alone stevedore would import every registration of the name (a duplicate's
        # denied twin too) from its cache, which is memoised for the process, so reset() would
        # never see a new install: it gets the registration the listing chose instead.
        def list_entry_points(self) -> list[EntryPoint]:
            return [entry_point]

    failures: list[BaseException] = []
    try:
        manager = ChosenDriver(
            entry_point.group,
            entry_point.name,
            on_load_failure_callback=lambda _manager, _entry_point, exc: failures.append(exc),
        )
    except NoMatches:  # stevedore drops a plugin that failed to load; the callback kept why
        raise failures[0] from None
    return manager.driver


_Selectors = tuple[tuple[str, str | None], ...]  # (driver name, normalised distribution or None)


def _selectors(raw: str) -> _Selectors:
    items = (item.partition("@") for item in raw.split(","))
    return tuple((n.strip(), _normalise(d) or None) for n, _, d in items if n.strip())


def _picks(selectors: _Selectors, entry: DriverEntry) -> bool:
    dist = _normalise(entry.distribution)
    return any(n == entry.name and d in (None, dist) for n, d in selectors)


def _normalise(distribution: str) -> str:
    # PEP 503: "Acme_Archive.S3" and "acme-archive-s3" name the same distribution.
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


def _entry_of(entry_point: EntryPoint) -> DriverEntry:
    dist = getattr(entry_point, "dist", None)
    return DriverEntry(
        name=entry_point.name,
        distribution=getattr(dist, "name", None) or "unknown distribution",
        version=getattr(dist, "version", None) or "unknown version",
        value=entry_point.value,
    )


def _entry_order(entry: DriverEntry) -> tuple[str, str, str]:
    return entry.name, entry.distribution, entry.version


def _declaration_problems(cls: Any, entry: DriverEntry) -> list[str]:
    """Everything wrong with a driver class's declarations, all at once for its author."""
    if not isinstance(cls, type):
        return [f"{entry.value} is a {type(cls).__name__}, not a driver class"]
    problems = []
    if (declared := getattr(cls, "name", None)) != entry.name:
        problems.append(
            f"its class declares name {declared!r}, but it is registered as {entry.name!r}"
        )
    api_version = getattr(cls, "api_version", None)
    if _int_or_none(api_version) is None:
        problems.append(f"api_version must be an int, not {api_version!r}")
    elif api_version != API_VERSION:
        problems.append(
            f"it implements driver API version {api_version}, but this archive-core implements "
            f"version {API_VERSION}"
        )
    capabilities = getattr(cls, "capabilities", None)
    known = [c.value for c in Capability]
    if isinstance(capabilities, str | bytes) or not isinstance(capabilities, Collection):
        problems.append(
            f"capabilities must be a collection of Capability values, not {capabilities!r}"
        )
    elif unknown := [c for c in capabilities if c not in known]:
        problems.append(
            f"unknown capabilities {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    if not (isinstance(config := getattr(cls, "Config", None), type) and attrs.has(config)):
        problems.append(f"Config must be an attrs class, not {config!r}")
    return problems


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _unavailable(found: DriverState) -> DriverUnavailable:
    message = found.reason[:1].upper() + found.reason[1:]
    return DriverUnavailable(message, reason=found.reason, driver=found.name)


def _error(found: DriverState) -> DriverUnavailable | DuplicateDriver:
    if found.status is DriverStatus.DUPLICATE:
        return DuplicateDriver(found.name, [e.source for e in found.conflicts])
    return _unavailable(found)


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
        qualname = getattr(cls, "__qualname__", cls)
        value = f"{getattr(cls, '__module__', '?')}:{qualname!s}"
        entry = DriverEntry(name=name, distribution="(given directly)", version="", value=value)
        if problems := _declaration_problems(cls, entry):
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
