"""Stand-in for portal.generic.decorators: the role check Portal's views use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.permissions import BasePermission


def user_has_any_role(user: Any, roles: Iterable[str]) -> bool:
    """Stub only: whether `user` holds one of `roles`.

    Portal assigns roles to groups; in the stub a role is a Django auth Group of that name.
    A superuser holds every role, as in Portal.
    """
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=list(roles)).exists()


class HasAnyRole(BasePermission):
    """Allows the request when its user holds one of the view's `roles`."""

    message = "You do not hold a role that allows this page."

    def has_permission(self, request: Any, view: Any) -> bool:
        return user_has_any_role(request.user, getattr(view, "roles", ()))
