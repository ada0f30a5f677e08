"""The archive plugin Portal sees: Portal's ArchivePlugin base around archive-core's implementation.

This is the only module of archive-core that imports `portal.*`; everything it does comes from
`archive_core.portal.ArchiveCorePlugin`, which is tested without Portal.
"""

from __future__ import annotations

from portal.pluginbase.core import ArchivePlugin

from archive_core.portal import ArchiveCorePlugin


class ArchiveCorePortalPlugin(ArchiveCorePlugin, ArchivePlugin):
    """archive-core, registered with Portal's Archive Framework.

    ArchiveCorePlugin comes first among the bases so its methods and attributes win over
    anything Portal's base defines; Portal's base contributes the registration only.
    """


ArchiveCorePortalPlugin()
