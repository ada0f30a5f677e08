"""archive-core: one Portal archive plugin, many archive drivers found through entry points.

The public surface is re-exported here; `import archive_core` stays light (no SQLAlchemy, rich
or driver imports) because Portal workers and the CLI import it on every start.
"""

from archive_core.driver import (
    API_VERSION,
    BaseDriver,
    Capability,
    Driver,
    DriverContext,
    OfferedPolicy,
    setting,
)
from archive_core.errors import ArchiveCoreError
from archive_core.model import (
    ArchiveItem,
    ArchiveRequest,
    CopyRef,
    DeleteRequest,
    FileOutcome,
    Readiness,
    RestoreItem,
    RestoreRequest,
    VerifyRequest,
)
from archive_core.secret import Secret

__version__ = "0.1.0"

__all__ = [
    "API_VERSION",
    "ArchiveCoreError",
    "ArchiveItem",
    "ArchiveRequest",
    "BaseDriver",
    "Capability",
    "CopyRef",
    "DeleteRequest",
    "Driver",
    "DriverContext",
    "FileOutcome",
    "OfferedPolicy",
    "Readiness",
    "RestoreItem",
    "RestoreRequest",
    "Secret",
    "VerifyRequest",
    "setting",
]
