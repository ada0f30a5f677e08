"""What Portal loads while the app is enabled: the archive plugin, and the admin pages' URLs
and menu entries.

The archive plugin is Portal's ArchivePlugin base around `archive_core.portal.ArchiveCorePlugin`
(tested without Portal); the pages (views.py) read the same instance.
"""

from __future__ import annotations

from typing import Any

from portal.generic.plugin_interfaces import IPluginBlock, IPluginURL
from portal.pluginbase.core import ArchivePlugin, Plugin, implements

from archive_core.portal import ArchiveCorePlugin

APP = "archive_core_portal"


class ArchiveCorePortalPlugin(ArchiveCorePlugin, ArchivePlugin):
    """archive-core, registered with Portal's Archive Framework.

    ArchiveCorePlugin comes first among the bases so its methods and attributes win over
    anything Portal's base defines; Portal's base contributes the registration only.
    """


#: The one instance: Portal calls it, and the admin pages read the same site through it.
PLUGIN = ArchiveCorePortalPlugin()


class ArchiveCoreURLs(Plugin):
    """Mounts urls.py (the admin pages, under /archive-core/) in Portal's URLconf."""

    implements(IPluginURL)

    def __init__(self) -> None:
        self.name = "archive-core admin pages"
        self.urls = f"portal.plugins.{APP}.urls"
        self.urlpattern = ""
        self.namespace = APP
        self.plugin_guid = "0b6f3a52-8d1e-4c7a-9f25-6e4d2c1b7a90"


ArchiveCoreURLs()


class ArchiveCoreBlock(Plugin):
    """A menu entry Portal renders at the named place of its pages (`IPluginBlock`)."""

    implements(IPluginBlock)

    def __init__(self, name: str, guid: str, template: str) -> None:
        self.name = name
        self.plugin_guid = guid  # fixed for the life of the app, like every plugin's
        self.template = template

    def return_string(self, tagname: str, *args: Any) -> dict[str, str]:
        return {"guid": self.plugin_guid, "template": self.template}


# The entry under System > Archive Framework, and the link in that section's left panel.
ArchiveCoreBlock(
    "NavigationArchivePlugin",
    "3e9d7c41-2a5b-4f68-b1c0-8d7e6f5a4b32",
    f"{APP}/navigation.html",
)
ArchiveCoreBlock(
    "admin_left_panel_inside_archive",
    "c5a8e2f7-61d4-4b3e-a9f0-2b7c6d5e4f13",
    f"{APP}/left_panel.html",
)
