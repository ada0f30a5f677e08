"""Stand-in for portal.generic.baseviews: the base class of Portal's own views."""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseBase
from rest_framework.exceptions import NotAuthenticated
from rest_framework.views import APIView


class CView(APIView):
    """Portal's views are Django REST framework views; an app sets `renderer_classes`,
    `permission_classes`, `roles` and a `template_name`.

    A browser that is not signed in is sent to the login page, as Portal sends it, rather than
    shown DRF's bare 403 (SessionAuthentication turns "not authenticated" into 403).
    """

    def handle_exception(self, exc: Exception) -> HttpResponseBase:
        if isinstance(exc, NotAuthenticated):
            return redirect_to_login(self.request.get_full_path())
        return super().handle_exception(exc)
