"""The driver contract: what a driver declares about itself and the operations it performs.

A driver is a class registered in the entry-point group `archive_core.drivers`. Everything the
core needs before any I/O is class-level metadata (`name`, `api_version`, `capabilities`,
`Config`); an instance is built per target with its validated config and does no I/O until an
operation or `check_ready()` is called. Operations take one frozen request and yield exactly
one `FileOutcome` per item, so partial success is normal and the core can journal and show
progress as files finish.

Every driver answers `stat()`, whatever it declares: the core never reports a file archived
because the catalog remembers a copy, only once the target says the copy is there.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from archive_core.model import (
    ArchiveRequest,
    DeleteRequest,
    FileOutcome,
    Readiness,
    RestoreRequest,
    StatRequest,
    VerifyRequest,
)

if TYPE_CHECKING:
    from archive_core.leases import Leases

#: The contract version this core implements. A driver whose `api_version` differs in the
#: major number is refused with a reason instead of being called with the wrong shapes.
API_VERSION = 1


class Capability(enum.StrEnum):
    """What a driver can do. Absent unless the driver declares it."""

    ARCHIVE = "archive"
    RESTORE = "restore"
    DELETE = "delete"
    VERIFY = "verify"  # read copies back and hash them
    BULK = "bulk"  # many FileSets per call are efficient (Portal bulk policies)
    PLAN = "plan"  # can order a restore batch for its medium (tape)
    # returns placement with archive outcomes, and gets it back with every request for the
    # copy (restore, delete, verify, stat), so it can plan without touching hardware
    PLACEMENT = "placement"
    PARTIAL_RESTORE = "partial_restore"  # byte ranges of a copy
    # the storage itself checks the bytes it stored against the checksum the driver sent
    # with them (an object store's x-amz-checksum-sha256, say): a copy archived is a copy
    # verified, for policies that require verified copies
    TRUSTED_CHECKSUM = "trusted_checksum"
    # keeps the core's manifests beside the copies (`write_manifest`, `read_manifests`) and
    # lists what it holds (`list_copies`), so a lost catalog can be rebuilt from the target
    MANIFEST = "manifest"


#: The operation each capability guards, for the core's check before entering a driver.
OPERATIONS: dict[str, Capability] = {
    "archive": Capability.ARCHIVE,
    "restore": Capability.RESTORE,
    "delete": Capability.DELETE,
    "verify": Capability.VERIFY,
}


@attrs.frozen(kw_only=True)
class DriverContext:
    """What the core tells a driver instance about where it runs.

    `leases` holds a resource several workers share (a tape drive, a cartridge) across
    processes and machines, in the site's catalog; it does no I/O until a lease is asked for.
    None where the driver runs without a catalog (the conformance kit, a driver's own tests).
    """

    target: str  # the target (driver instance) name from the admin's config
    state_dir: Path  # a directory the driver may keep its own state in
    leases: Leases | None = None


@attrs.frozen(kw_only=True)
class OfferedPolicy:
    """A policy a driver instance exposes by itself (e.g. one per tape pool)."""

    uuid: str
    name: str
    max_files: int | None = None
    max_bytes: int | None = None


@runtime_checkable
class Driver(Protocol):
    """What the core calls. Subclassing `BaseDriver` is optional."""

    name: ClassVar[str]
    api_version: ClassVar[int]
    capabilities: ClassVar[frozenset[Capability]]
    Config: ClassVar[type]
    scheme: ClassVar[str]  # external id scheme, e.g. "filesys" in filesys://target/path

    def __init__(self, config: Any, context: DriverContext) -> None: ...

    def check_ready(self) -> Readiness: ...

    def stat(self, request: StatRequest) -> Iterable[FileOutcome]: ...

    def archive(self, request: ArchiveRequest) -> Iterable[FileOutcome]: ...

    def restore(self, request: RestoreRequest) -> Iterable[FileOutcome]: ...

    def delete(self, request: DeleteRequest) -> Iterable[FileOutcome]: ...

    def verify(self, request: VerifyRequest) -> Iterable[FileOutcome]: ...

    def policies(self) -> Iterable[OfferedPolicy]: ...

    def close(self) -> None: ...


class BaseDriver:
    """Optional base: stores config and context, and supplies the optional parts."""

    name: ClassVar[str]
    api_version: ClassVar[int] = API_VERSION
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    Config: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "scheme" not in cls.__dict__ and "name" in cls.__dict__:
            cls.scheme = cls.name

    def __init__(self, config: Any, context: DriverContext) -> None:
        self.config = config
        self.context = context

    def check_ready(self) -> Readiness:
        return Readiness.ready()

    def policies(self) -> Iterable[OfferedPolicy]:
        return ()

    def close(self) -> None:
        """Release connections or devices; called when the core is done with the instance."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.context.target!r}>"


def declared_capabilities(driver_cls: type) -> frozenset[Capability]:
    return frozenset(Capability(c) for c in getattr(driver_cls, "capabilities", ()))


def driver_scheme(driver_cls: type) -> str:
    return getattr(driver_cls, "scheme", None) or driver_cls.name


# --- declaring config ------------------------------------------------------------------------


def setting(
    *,
    help: str,
    default: Any = attrs.NOTHING,
    secret: bool = False,
    advanced: bool = False,
    confined: bool = False,
    validator: Any = None,
    converter: Any = None,
    factory: Any = None,
) -> Any:
    """An attrs field with the metadata the core uses for docs, checks, forms and masking.

    Secret settings are typed `archive_core.secret.Secret` and are given by reference in the
    config (`env:NAME`, `file:PATH`); they never appear in repr. A `confined` setting is a
    path the core refuses unless it lies under one of the site's `[config] allowed_roots`
    (where the site sets them): whoever edits targets in Portal's pages cannot point the
    driver at the rest of the machine.
    """
    return attrs.field(
        default=default if factory is None else attrs.NOTHING,
        factory=factory,
        validator=validator,
        converter=converter,
        repr=not secret,
        metadata={"help": help, "secret": secret, "advanced": advanced, "confined": confined},
    )


#: A setting's validator, as attrs calls it: raises ValueError with the rest of the sentence
#: after the setting's name ("files_in_flight: must be between 1 and 64").
Validator = Callable[[Any, Any, Any], None]


def one_of(choices: Iterable[str]) -> Validator:
    """A validator: the value is one of `choices` ("must be one of flat, item, date")."""
    allowed = tuple(choices)

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")

    check.choices = allowed  # type: ignore[attr-defined]  # forms offer them as a list
    return check


def between(low: float, high: float) -> Validator:
    """A validator: low <= value <= high ("must be between 1 and 64")."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")

    return check


def at_least(low: float) -> Validator:
    """A validator: value >= low ("must be 0 or more")."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if value < low:
            raise ValueError(f"must be {low} or more")

    return check


def above(low: float) -> Validator:
    """A validator: value > low ("must be more than 0"), for timeouts and rates."""

    def check(_instance: Any, _attribute: Any, value: Any) -> None:
        if not value > low:
            raise ValueError(f"must be more than {low}")

    return check


@attrs.frozen(kw_only=True)
class SettingInfo:
    name: str
    type: str
    help: str
    required: bool
    default: Any
    secret: bool
    advanced: bool
    confined: bool = False
    choices: tuple[str, ...] | None = None  # a `one_of` setting's values


def describe_config(config_cls: type) -> list[SettingInfo]:
    """The settings a driver's Config declares, for docs, `check` and the scaffolder."""
    infos = []
    for field in attrs.fields(config_cls):
        default = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            default = default.factory()
        required = default is attrs.NOTHING
        typ = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        infos.append(
            SettingInfo(
                name=field.name,
                type=str(typ),
                help=field.metadata.get("help", ""),
                required=required,
                default=None if required or field.metadata.get("secret") else default,
                secret=bool(field.metadata.get("secret", False)),
                advanced=bool(field.metadata.get("advanced", False)),
                confined=bool(field.metadata.get("confined", False)),
                choices=getattr(field.validator, "choices", None),
            )
        )
    return infos
