"""Stand-in for Portal's `messages` tag library, which Cantemo's reference plugin templates load.

Empty: what those templates use from it (`permissionrequired`) is a builtin here
(portal_stub_tags). It exists so an app's template can `{% load messages %}` as the reference does.
"""

from __future__ import annotations

from django import template

register = template.Library()
