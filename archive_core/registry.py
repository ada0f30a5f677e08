"""Driver discovery: entry points listed without importing, loaded by stevedore, failures kept.

Drivers are the entry points of group `archive_core.drivers`. Listing reads distribution
metadata only; stevedore imports a driver when its class is first needed. A driver that fails
to import, declares wrong metadata, or whose name two distributions claim is a state with a
reason an admin can act on. Environment, read at the first listing and after `reset()`:

- `ARCHIVE_CORE_LOAD_DRIVERS`: comma list; when set, only these drivers load.
- `ARCHIVE_CORE_DISABLE_DRIVERS`: comma list of drivers that never load.
- `ARCHIVE_CORE_STRICT_DRIVERS=1`: raise instead of recording a broken driver (for CI).

An item of either list is a driver name (`s3`) or a name and the distribution that registers it
(`s3@acme-archive-s3`), which picks one registration when two distributions claim a name.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import re
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

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


@attrs.frozen(kw_only=True, order=True)
class DriverEntry:
    """One registration of a driver, as installed metadata states it (nothing imported)."""

    name: str
    distribution: str
    version: str
    value: str  # "module:Class"
    # What stevedore is handed to import this registration; not part of the value.
    entry_point: EntryPoint | None = attrs.field(default=None, eq=False, repr=False)

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


# Every registration; each name's state, decided from metadata until an import replaces it;
# strict mode. Kept until reset().
_Listing = tuple[tuple[DriverEntry, ...], dict[str, DriverState], bool]


class DriverRegistry:
    """Finds drivers through entry points, loads each in isolation, keeps failures as states.

    `hooks` (a `Hooks`, or a callable returning one so plugins load only when a failure needs
    telling) hears of every driver that fails to load. `environ` replaces `os.environ` and
    `group` the entry-point group, for tests.
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
        """Forget the listing, loaded classes and told failures (tests, after installs)."""
        with self._lock:
            self._cached: _Listing | None = None
            self._classes: dict[str, type] = {}
            self._told: set[str] = set()

    def entries(self) -> tuple[DriverEntry, ...]:
        """Every registration in the group, duplicates included, without importing a driver."""
        return self._listing()[0]

    def state(self, name: str, *, load: bool = True) -> DriverState:
        """One driver's state; with `load`, an allowed driver is imported to find out.

        In strict mode a broken, duplicate or missing driver raises instead.
        """
        with self._lock:
            entries, states, strict = self._listing()
            found = states.get(name) or _missing(name, self.group, entries)
            if load and found.status is DriverStatus.INSTALLED:
                found = states[name] = self._import(found)
        if load and found.status in (DriverStatus.FAILED, DriverStatus.DUPLICATE):
            self._tell_failure(found)
        if strict and found.status in _BROKEN:
            _refuse(found, strict=True)
        return found

    def states(self, *, load: bool = True) -> tuple[DriverState, ...]:
        """One state per installed or allow-listed name, sorted; one broken never hides others."""
        return tuple(self.state(name, load=load) for name in sorted(self._listing()[1]))

    def load(self, name: str) -> type:
        """The class of driver `name`, imported and validated once per process.

        Raises `DriverUnavailable` with an admin-readable `reason` (in strict mode a duplicate
        raises `DuplicateDriver` itself).
        """
        if (found := self.state(name)).ok:
            return self._classes[name]
        _refuse(found, strict=False)

    def _import(self, found: DriverState) -> DriverState:
        entry = found.entry
        assert entry is not None and entry.entry_point is not None  # only INSTALLED gets here
        where = f"driver {found.name!r} from distribution {entry.source!r}"
        try:
            cls = _load_with_stevedore(entry.entry_point)
        except (Exception, SystemExit) as exc:  # a driver's import must never take the host down
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            reason = f"{where} failed to import: {detail}"
            # The admin acts on the reason; the traceback is for the driver's author, at debug
            # level only, or every CLI command would print it again.
            logger.error("%s", reason)
            logger.debug("the import of %s failed here:", where, exc_info=exc)
            return attrs.evolve(found, status=DriverStatus.FAILED, reason=reason)
        found = attrs.evolve(found, api_version=_int_or_none(getattr(cls, "api_version", None)))
        if problems := _declaration_problems(cls, found.name, entry.value):
            reason = f"{where} was refused: {'; '.join(problems)}"
            logger.error("%s", reason)
            return attrs.evolve(found, status=DriverStatus.FAILED, reason=reason)
        self._classes[found.name] = cls
        return attrs.evolve(
            found,
            status=DriverStatus.LOADED,
            reason=f"loaded from distribution {entry.source!r}",
            capabilities=frozenset(map(Capability, cls.capabilities)),
        )

    def _tell_failure(self, failure: DriverState) -> None:
        """Tell the hooks, once per name, outside the lock so an observer cannot deadlock us."""
        with self._lock:
            if failure.name in self._told:
                return
            self._told.add(failure.name)
        try:  # building the hooks loads plugins, which may fail
            hooks = self._hooks() if callable(self._hooks) else self._hooks
            if hooks is not None:
                hooks.notify(
                    "archive_core_driver_load_failed", name=failure.name, reason=failure.reason
                )
        except Exception:
            logger.exception("could not tell plugins that driver %r failed to load", failure.name)

    def _listing(self) -> _Listing:
        with self._lock:
            if self._cached is None:
                environ = os.environ if self._environ is None else self._environ
                self._cached = _read_listing(self.group, environ)
            return self._cached


def _read_listing(group: str, environ: Mapping[str, str]) -> _Listing:
    """Decide every name from importlib.metadata, which knows each registration's distribution."""
    from importlib.metadata import entry_points

    # A set: one registration seen twice is one registration, not a duplicate of itself.
    entries = tuple(sorted({_entry_of(entry_point) for entry_point in entry_points(group=group)}))
    allow_raw = environ.get(LOAD_DRIVERS_ENV, "").strip()
    allow, deny = _selectors(allow_raw), _selectors(environ.get(DISABLE_DRIVERS_ENV, ""))
    states = {
        name: _decide(name, list(registered), allow, deny, allow_raw)
        for name, registered in itertools.groupby(entries, key=lambda e: e.name)
    }
    for name in {selector.partition("@")[0] for selector in allow} - states.keys():
        states[name] = _missing(name, group, entries, f"{LOAD_DRIVERS_ENV} lists it, but ")
    strict = environ.get(STRICT_DRIVERS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    return entries, states, strict


def _decide(
    name: str, registered: list[DriverEntry], allow: set[str], deny: set[str], allow_raw: str
) -> DriverState:
    """One name's state from its registrations and the allow and deny lists."""
    kept = [e for e in registered if not _picks(deny, e) and (not allow or _picks(allow, e))]
    conflicts = tuple(kept) if len(kept) > 1 else ()
    if len(kept) == 1:
        status = DriverStatus.INSTALLED
        reason = f"installed from distribution {kept[0].source!r}, not loaded yet"
    elif conflicts:
        status = DriverStatus.DUPLICATE
        example = f"{DISABLE_DRIVERS_ENV}={name}@{kept[-1].distribution}"
        reason = f"{_duplicate(name, conflicts).message} For example: {example}"
    elif any(_picks(deny, e) for e in registered):
        status = DriverStatus.DISABLED
        reason = f"driver {name!r} is disabled by {DISABLE_DRIVERS_ENV}"
    else:
        status = DriverStatus.DISABLED
        reason = (
            f"driver {name!r} is not listed in {LOAD_DRIVERS_ENV}={allow_raw!r}, which limits "
            "the drivers that load"
        )
    entry = (kept or registered)[0]
    return DriverState(name=name, entry=entry, status=status, reason=reason, conflicts=conflicts)


def _missing(name: str, group: str, entries: tuple[DriverEntry, ...], why: str = "") -> DriverState:
    installed = ", ".join(sorted({e.name for e in entries})) or "none"
    reason = (
        f"{why}no installed distribution registers driver {name!r} in entry-point group "
        f"{group!r} (installed drivers: {installed})"
    )
    return DriverState(name=name, entry=None, status=DriverStatus.NOT_INSTALLED, reason=reason)


def _load_with_stevedore(entry_point: EntryPoint) -> Any:
    """Import one chosen registration with a stevedore DriverManager, raising what it raised."""
    from stevedore.driver import DriverManager

    class ChosenDriver(DriverManager):
        # stevedore's own listing keeps no distribution, so by name alone it would import every
        # registration of the name (a duplicate's denied twin too), from a cache memoised for
        # the process (reset() would never see an install) and written under $HOME.
        def list_entry_points(self) -> list[EntryPoint]:
            return [entry_point]

    def reraise(_manager: object, _entry_point: object, exc: BaseException) -> NoReturn:
        raise exc  # stevedore would log it with a traceback and go on without the driver

    return ChosenDriver(
        entry_point.group, entry_point.name, on_load_failure_callback=reraise
    ).driver


def _selectors(raw: str) -> set[str]:
    """A comma list's items as `name` or `name@distribution`, the distribution normalised."""
    items = ((n.strip(), _normalise(d)) for n, _, d in (i.partition("@") for i in raw.split(",")))
    return {f"{n}@{d}" if d else n for n, d in items if n}


def _picks(selectors: set[str], entry: DriverEntry) -> bool:
    return not selectors.isdisjoint({entry.name, f"{entry.name}@{_normalise(entry.distribution)}"})


def _normalise(distribution: str) -> str:
    # PEP 503: "Acme_Archive.S3" and "acme-archive-s3" name the same distribution.
    return re.sub(r"[-_.]+", "-", distribution.strip()).lower()


def _entry_of(entry_point: EntryPoint) -> DriverEntry:
    dist = entry_point.dist
    return DriverEntry(
        name=entry_point.name,
        distribution=(dist and dist.name) or "unknown distribution",
        version=(dist and dist.version) or "unknown version",
        value=entry_point.value,
        entry_point=entry_point,
    )


def _declaration_problems(cls: Any, name: str, value: str) -> list[str]:
    """Everything wrong with a driver class's declarations, all at once for its author."""
    if not isinstance(cls, type):
        return [f"{value} is a {type(cls).__name__}, not a driver class"]
    problems = []
    if (declared := getattr(cls, "name", None)) != name:
        problems.append(f"its class declares name {declared!r}, but it is registered as {name!r}")
    if _int_or_none(api_version := getattr(cls, "api_version", None)) is None:
        problems.append(f"api_version must be an int, not {api_version!r}")
    elif api_version != API_VERSION:
        problems.append(
            f"it implements driver API version {api_version}, but this archive-core implements "
            f"version {API_VERSION}"
        )
    known, caps = list(Capability), getattr(cls, "capabilities", None)
    if isinstance(caps, str | bytes) or not isinstance(caps, Collection):
        problems.append(f"capabilities must be a collection of Capability values, not {caps!r}")
    elif unknown := [c for c in caps if c not in known]:
        unknown_text = ", ".join(map(repr, unknown))
        problems.append(f"unknown capabilities {unknown_text} (known: {', '.join(known)})")
    if not (isinstance(config := getattr(cls, "Config", None), type) and attrs.has(config)):
        problems.append(f"Config must be an attrs class, not {config!r}")
    return problems


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _duplicate(name: str, conflicts: tuple[DriverEntry, ...]) -> DuplicateDriver:
    return DuplicateDriver(name, [e.source for e in conflicts])


def _unavailable(name: str, reason: str) -> DriverUnavailable:
    return DriverUnavailable(reason[:1].upper() + reason[1:], reason=reason, driver=name)


def _refuse(found: DriverState, *, strict: bool) -> NoReturn:
    """Raise for a driver that cannot be used; only strict mode raises `DuplicateDriver` itself."""
    if found.status is not DriverStatus.DUPLICATE:
        raise _unavailable(found.name, found.reason)
    if strict:
        raise _duplicate(found.name, found.conflicts)
    raise _unavailable(found.name, found.reason) from _duplicate(found.name, found.conflicts)


class FixedRegistry:
    """Driver classes given directly, for the conformance kit and tests: none need be installed.

    Each class is checked as an installed one would be, so bad declarations show up the same way.
    """

    def __init__(self, drivers: Mapping[str, type]) -> None:
        self._drivers = dict(drivers)

    def __repr__(self) -> str:
        return f"<FixedRegistry {sorted(self._drivers)}>"

    def load(self, name: str) -> type:
        if (cls := self._drivers.get(name)) is None:
            reason = f"driver {name!r} is not installed"
            raise DriverUnavailable(
                f"No driver named {name!r} is given.", reason=reason, driver=name
            )
        value = f"{getattr(cls, '__module__', '?')}:{getattr(cls, '__qualname__', cls)!s}"
        if problems := _declaration_problems(cls, name, value):
            raise _unavailable(name, f"driver {name!r} ({value}) is invalid: {'; '.join(problems)}")
        return cls


# --- the process-wide registry -------------------------------------------------------------


def default_registry() -> DriverRegistry:
    """The registry of this process; failures are told to `default_hooks`."""
    return _default


def _default_hooks() -> Hooks:
    # Imported only when a failure must be told: listing drivers stays free of pluggy.
    from archive_core.hooks import default_hooks

    return default_hooks()


def reset_default_registry() -> None:
    """Replace the process-wide registry so the next use discovers again (tests)."""
    global _default
    _default = DriverRegistry(hooks=_default_hooks)


# Built at import, which costs nothing (it lists on first use), so no lock guards its creation.
_default = DriverRegistry(hooks=_default_hooks)
