"""Stand-in for portal.pluginbase.core: plugins register themselves when instantiated."""

from __future__ import annotations

import sys
from typing import Any

from portal.generic.plugin_interfaces import IArchivePlugin, Interface

_registered: dict[type[Interface], list[Any]] = {}


class PluginError(Exception):
    """Raised by Portal's plugin machinery."""


def implements(*interfaces: type[Interface]) -> None:
    """Declare, inside a class body, the interfaces the class provides (Portal's spelling)."""
    class_namespace = sys._getframe(1).f_locals
    class_namespace.setdefault("_implements", []).extend(interfaces)


def implemented_interfaces(cls: type) -> list[type[Interface]]:
    """Every interface `cls` or one of its bases declared."""
    found: list[type[Interface]] = []
    for klass in cls.__mro__:
        for interface in vars(klass).get("_implements", ()):
            if interface not in found:
                found.append(interface)
    return found


class Plugin:
    """Base of every Portal plugin: creating an instance registers it under its interfaces.

    Registration happens in `__new__` because Portal's own plugins never call
    `super().__init__()`.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Plugin:
        instance = super().__new__(cls)
        for interface in implemented_interfaces(cls):
            _registered.setdefault(interface, []).append(instance)
        return instance


class ArchivePlugin(Plugin):
    """Base of Archive Framework plugins; the methods are the contract a subclass must provide."""

    implements(IArchivePlugin)

    def archive(self, file_sets: list[Any], policy_uuid: str, job_id: str) -> Any:
        raise NotImplementedError("an archive plugin must implement archive()")

    def restore(self, file_sets: list[Any], policy_uuid: str) -> Any:
        raise NotImplementedError("an archive plugin must implement restore()")

    def delete(self, file_sets: list[Any], policy_uuid: str) -> Any:
        raise NotImplementedError("an archive plugin must implement delete()")

    def get_policies(self) -> list[dict[str, Any]]:
        raise NotImplementedError("an archive plugin must implement get_policies()")

    def is_ready(self) -> bool:
        raise NotImplementedError("an archive plugin must implement is_ready()")


def plugins_implementing(interface: type[Interface]) -> list[Any]:
    """Stub only: the registered instances providing `interface`, in registration order."""
    return list(_registered.get(interface, ()))
