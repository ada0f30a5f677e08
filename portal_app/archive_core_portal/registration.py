"""archive-core's entry in Portal's app list, and the bootstrap that loads its plugin if enabled."""

from __future__ import annotations

import logging
from typing import Any

from portal.generic.plugin_interfaces import IAppRegister, IPluginBootstrap
from portal.pluginbase.core import Plugin, implements
from portal.utils.apps import is_app_enabled

log = logging.getLogger(__name__)

APP_ID = "archive-core"
APP_NAME = "archive-core"
# Fixed for the life of the app: Portal keys the registration by it.
REGISTRATION_GUID = "86ff5145-f65e-4ab9-99fe-a85dbb5d3cff"


class ArchiveCoreAppRegister(Plugin):
    """What Portal's app list shows for archive-core."""

    implements(IAppRegister)

    def __init__(self) -> None:
        self.name = APP_NAME
        self.plugin_guid = REGISTRATION_GUID

    def __call__(self) -> dict[str, Any]:
        from . import __version__

        return {
            "name": APP_NAME,
            "version": __version__,
            "author": "archive-core contributors",
            "author_url": "",
            "notes": "Archive Framework plugin: each policy archives through a driver.",
            "enabled": is_app_enabled(APP_ID),
            "app_id": APP_ID,
        }


ArchiveCoreAppRegister()


class ArchiveCoreBootstrap(Plugin):
    """Loads the archive plugin at Portal start-up, only while the app is enabled."""

    implements(IPluginBootstrap)

    def bootstrap(self) -> None:
        if not is_app_enabled(APP_ID):
            return
        try:
            from . import plugin  # noqa: F401  (instantiating it registers it with Portal)
        except ImportError as error:
            # One plugin that cannot load must not take Portal down with it: say what to do.
            log.error(
                "archive-core's archive plugin could not be loaded into Portal (%s). Install "
                "archive-core and its drivers into Portal's Python environment (for example "
                "/opt/cantemo/python/bin/pip install archive-core archive-core-driver-filesys) "
                "and restart Portal.",
                error,
            )


ArchiveCoreBootstrap()
