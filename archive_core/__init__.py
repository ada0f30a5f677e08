"""archive-core: one Portal archive plugin, many archive drivers found through entry points.

What a driver may import is re-exported here; `import archive_core` stays light (no
SQLAlchemy, rich or driver imports) because Portal workers and the CLI import it on every
start. Besides this module, drivers and hook plugins may import the public modules listed in
`PUBLIC_MODULES`, each with its own documented surface. Every other module of the package
(catalog, leases, jobs, site, portal, registry, policies, cli, demo, naming, externalid, and
the definitions behind the names below) is internal: it may change in any release.
"""

from archive_core.driver import (
    API_VERSION,
    BaseDriver,
    Capability,
    Driver,
    DriverContext,
    OfferedPolicy,
    above,
    at_least,
    between,
    one_of,
    setting,
)
from archive_core.errors import (
    ArchiveCoreError,
    ConfigError,
    CopyNotFound,
    FixityMismatch,
    LeaseHolderAlive,
    LeaseLost,
    LeaseTimeout,
    TransferFailed,
    UnsafeName,
)
from archive_core.leases import (
    PRIORITY_ARCHIVE,
    PRIORITY_RESTORE,
    HeldLease,
    Lease,
    Leases,
    LeaseWaiter,
)
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    ManifestRequest,
    ProgressCallback,
    Readiness,
    RestoreItem,
    RestoreRequest,
    StatRequest,
    StoredCopy,
    StoredManifest,
    VerifyRequest,
)
from archive_core.naming import LAYOUTS
from archive_core.secret import Secret
from archive_core.workers import WorkerId

__version__ = "0.1.0"


def __getattr__(name: str):
    # Loaded on first use: reading a driver's settings is not needed to list drivers.
    if name == "structure_settings":
        from archive_core.policies import structure

        return structure
    raise AttributeError(f"module 'archive_core' has no attribute {name!r}")


#: The modules besides this one that drivers and plugins may import (see the driver guide).
PUBLIC_MODULES = (
    "archive_core.transfer",  # hash-while-copy, safe paths, sources, staging and publish
    "archive_core.transfer.stager",  # the chunked durable publisher: inline, threads, processes
    "archive_core.objectstore",  # ObjectStoreDriver: a base for key/value storage
    "archive_core.hooks",  # hookimpl and the hook specifications, for hook plugins
    "archive_core.operator",  # OperatorSite: a site for a driver's operator commands
    "archive_core.testing",  # the conformance kit, for a driver's own tests
)

__all__ = [
    "API_VERSION",
    "LAYOUTS",
    "PRIORITY_ARCHIVE",
    "PRIORITY_RESTORE",
    "PUBLIC_MODULES",
    "ArchiveCoreError",
    "ArchiveItem",
    "ArchiveRequest",
    "BaseDriver",
    "Capability",
    "ConfigError",
    "CopyNotFound",
    "CopyRef",
    "DeleteRequest",
    "Driver",
    "DriverContext",
    "FileOutcome",
    "FixityMismatch",
    "HeldLease",
    "Lease",
    "LeaseHolderAlive",
    "LeaseLost",
    "LeaseTimeout",
    "LeaseWaiter",
    "Leases",
    "ManifestRequest",
    "OfferedPolicy",
    "ProgressCallback",
    "Readiness",
    "RestoreItem",
    "RestoreRequest",
    "Secret",
    "StatRequest",
    "StoredCopy",
    "StoredManifest",
    "TransferFailed",
    "UnsafeName",
    "VerifyRequest",
    "WorkerId",
    "above",
    "at_least",
    "between",
    "one_of",
    "setting",
    "structure_settings",
]
