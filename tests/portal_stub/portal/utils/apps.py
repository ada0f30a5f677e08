"""Stand-in for portal.utils.apps: whether an admin enabled an app (System > Apps in Portal)."""

from __future__ import annotations

_enabled: set[str] = set()


def is_app_enabled(app_id: str) -> bool:
    return app_id in _enabled


def enable_app(app_id: str) -> None:
    """Stub only: what the admin's click on "enable" does in Portal."""
    _enabled.add(app_id)


def disable_app(app_id: str) -> None:
    """Stub only."""
    _enabled.discard(app_id)
